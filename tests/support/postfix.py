"""A private postfix instance on 127.0.0.1 (the incoming and outgoing MTA)."""

from __future__ import annotations

import os
import shutil
import smtplib
import tempfile
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

from support.process import LOOPBACK, Service, ServiceProcess, banner, need, run

_POSTFIX_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix(Service):
    """A private postfix (``postfix -c DIR``): smtpd with STARTTLS, optionally relaying.

    ``server_chain_file`` and ``client_chain_file`` hold the key first, then the leaf,
    then intermediates (``smtpd_tls_chain_files`` / ``smtp_tls_chain_files``).
    """

    def __init__(
        self,
        workdir: Path,
        smtpd_port: int,
        server_chain_file: Path,
        relay_port: int | None = None,
        client_chain_file: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.smtpd_port = smtpd_port
        self.server_chain_file = server_chain_file
        self.relay_port = relay_port
        self.client_chain_file = client_chain_file
        self.config_dir = workdir / "etc"
        self.queue_dir = workdir / "spool"
        # Opened by absolute path as the postfix user, who cannot pass a 0700 pytest tmp
        # folder; so it lives in its own 0755 folder under /tmp, made at start.
        self.data_dir = Path("/nonexistent")
        self.maillog = workdir / "maillog"
        self.process: ServiceProcess | None = None
        self.startup_seconds = 0.0

    @property
    def url(self) -> str:
        """The probe URL of its smtpd."""
        return f"smtp://{LOOPBACK}:{self.smtpd_port}"

    @property
    def pid(self) -> int | None:
        """The master's PID from ``master.pid`` (space-padded there), None before start."""
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _argv(self, command: str) -> list[str]:
        return [need("postfix"), "-c", str(self.config_dir), command]

    def reload_argv(self) -> list[str]:
        """The argv that makes this instance re-read its certificates (exits 0 even if bad)."""
        return self._argv("reload")

    def reload(self) -> None:
        run(self.reload_argv())

    def log_tail(self, chars: int = 3000) -> str:
        """The end of this instance's maillog (where postfix reports its errors)."""
        try:
            return self.maillog.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def main_cf(self) -> str:
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.workdir),
            "myhostname": "certdrop-test.example.test",
            "mydestination": "",
            "inet_interfaces": LOOPBACK,
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtp_dns_support_level": "disabled",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "biff": "no",
            "smtputf8_enable": "no",
            # A first relay attempt that fails must be retried in seconds, not minutes.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtp_connect_timeout": "5s",
            "smtpd_tls_security_level": "may",
            "smtpd_tls_chain_files": str(self.server_chain_file),
            "smtpd_tls_loglevel": "1",
        }
        if self.relay_port is not None:
            settings["relayhost"] = f"[{LOOPBACK}]:{self.relay_port}"
            settings["smtp_tls_security_level"] = "encrypt"
            settings["smtp_tls_loglevel"] = "1"
            if self.client_chain_file is not None:
                settings["smtp_tls_chain_files"] = str(self.client_chain_file)
        return "".join(f"{key} = {value}\n" for key, value in settings.items())

    def master_cf(self) -> str:
        return f"{LOOPBACK}:{self.smtpd_port} inet n - n - - smtpd\n" + _POSTFIX_SERVICES

    def _start(self) -> None:
        for folder in (self.config_dir, self.queue_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.data_dir = Path(tempfile.mkdtemp(prefix="certdrop-postfix-data-"))
        self.data_dir.chmod(0o755)
        past = time.time() - 10
        for name, text in (("main.cf", self.main_cf()), ("master.cf", self.master_cf())):
            (self.config_dir / name).write_text(text)
            # Postfix waits (300 ms polls) until a config file is over a second old, lest it
            # read a half-written one; back-dating saves ~1.5 s a start.
            os.utime(self.config_dir / name, (past, past))
        try:
            run(self._argv("check"))  # creates the spool tree
        except RuntimeError as exc:  # postfix says why in its log, not on stderr
            raise RuntimeError(f"{exc}\n{self.log_tail()}") from None
        shutil.chown(self.data_dir, "postfix")
        started = time.monotonic()
        # start-fg keeps the master our descendant, so it is reaped and found by PID.
        self.process = ServiceProcess(
            "postfix", self._argv("start-fg"), self.workdir / "postfix.out"
        )
        self.process.wait_until(
            lambda: self.pid is not None and banner(self.smtpd_port).startswith(b"220"),
            "its smtpd answering",
            extra_log=self.log_tail,
        )
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        try:
            if self.process is not None:
                # The master SIGTERMs its own process group; the tree kill catches the rest.
                self.process.stop(main_pid=self.pid)
        finally:
            if self.data_dir.parent == Path(tempfile.gettempdir()) and self.data_dir.is_dir():
                shutil.rmtree(self.data_dir)

    def send_test_message(
        self, recipient: str = "sink@example.test", sender: str = "certdrop-test@example.test"
    ) -> str:
        """Hand one message to this instance's smtpd (to be relayed); return its Message-ID."""
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = recipient
        msg["Subject"] = "certdrop relay test"
        msg["Message-ID"] = f"<{uuid.uuid4().hex}@certdrop.test>"
        msg.set_content("A test message relayed by a private postfix.\n")
        with smtplib.SMTP(
            LOOPBACK, self.smtpd_port, local_hostname="localhost", timeout=10
        ) as smtp:
            smtp.send_message(msg)
        return str(msg["Message-ID"])


# --------------------------------------------------------------------------- SMTP sink
