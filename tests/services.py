"""Real services on 127.0.0.1 for integration tests: nginx, postfix, an SMTP sink, sshd, pebble.

Each service is a context manager that starts real processes, waits (bounded) until they
answer, and on exit stops them by PID, the whole process tree, even when the test failed,
and removes what it created outside the test's own folder. There are no fixtures here, so
a test composes exactly the services it needs. ``../shared/real-services.md`` has the facts
behind each choice.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import queue
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import paramiko
import pytest
import trustme
from aiosmtpd.controller import Controller

LOOPBACK = "127.0.0.1"
DROP_USER = "certdrop-drop"
# The sshd chroot must be root-owned on a path with no group/world-writable component,
# which rules out /tmp (1777); every Sshd gets its own folder here and removes it.
SSHD_ROOT = Path("/srv/certdrop-tests")
READY_TIMEOUT = 15.0
COMMAND_TIMEOUT = 30.0
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


# --------------------------------------------------------------------------- helpers


def need(binary: str) -> str:
    """Return the path of ``binary``; skip the test without it (fail it when CI=true)."""
    found = shutil.which(binary) or shutil.which(binary, path=os.pathsep.join(_SBIN))
    if found:
        return found
    reason = f"{binary} is not installed; install it (apt-get install ...) to run this test"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true, so a missing service is a failure)")
    pytest.skip(reason)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def sha256_hex(der: bytes) -> str:
    """Return the lowercase sha256 hex of ``der`` (a certificate fingerprint)."""
    return hashlib.sha256(der).hexdigest()


def run(
    argv: list[str],
    *,
    timeout: float = COMMAND_TIMEOUT,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; raise RuntimeError with its output unless it exits 0."""
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        input=input_text,
        stdin=None if input_text is not None else subprocess.DEVNULL,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} exited {proc.returncode}: {' '.join(argv)}\n"
            f"{proc.stdout}{proc.stderr}".rstrip()
        )
    return proc


def _write_private(path: Path, data: bytes) -> None:
    """Write key material 0600 from the start (never world-readable, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def _banner(port: int) -> bytes:
    """Return the first bytes a server sends on connect, b'' if none."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0) as sock:
            return sock.recv(64)
    except OSError:
        return b""


# ------------------------------------------------------------------ process trees


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, starttime) of ``pid`` from /proc, None if it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def any_alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still run (zombies count as gone)."""
    return [pid for pid in pids if (stat := _stat(pid)) is not None and stat[0] not in "ZX"]


def _alive(pid: int, starttime: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[2] == starttime and stat[0] not in ("Z", "X")


def _tree(roots: Mapping[int, int]) -> dict[int, int]:
    """The live ``roots`` ({pid: starttime}) and all their descendants, parents first.

    A root whose start time differs is a recycled PID and is left out, with its children.
    """
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                children.setdefault(stat[1], []).append((int(entry.name), stat[2]))
    found = {pid: start for pid, start in roots.items() if _alive(pid, start)}
    todo = list(found)
    while todo:
        for pid, start in children.get(todo.pop(0), []):
            if pid not in found:
                found[pid] = start
                todo.append(pid)
    return found


class ServiceProcess:
    """One started daemon: its Popen, its log file, and how to stop its whole tree."""

    def __init__(
        self, name: str, argv: list[str], log: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        with log.open("ab") as out:
            # A new session, so a Ctrl-C in the test run reaches pytest, not the daemon.
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def pids(self) -> list[int]:
        """The live processes of this service: the started one and all its descendants."""
        root = _stat(self.popen.pid) if self.popen.returncode is None else None
        return list(_tree({self.popen.pid: root[2]})) if root is not None else []

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_until(
        self,
        ready: Callable[[], bool],
        what: str,
        timeout: float = READY_TIMEOUT,
        extra_log: Callable[[], str] = str,
    ) -> float:
        """Poll ``ready`` until true; return the seconds it took. Raise if the daemon dies."""
        start = time.monotonic()
        while True:
            if ready():
                return time.monotonic() - start
            if not self.running():
                raise RuntimeError(
                    f"{self.name} exited {self.popen.returncode} before "
                    f"{what}:\n{self.log_tail()}{extra_log()}"
                )
            if time.monotonic() - start > timeout:
                raise RuntimeError(
                    f"{self.name} did not get {what} within {timeout:g} s:\n"
                    f"{self.log_tail()}{extra_log()}"
                )
            time.sleep(0.02)

    def stop(
        self, main_pid: int | None = None, sig: int = signal.SIGTERM, grace: float = 5.0
    ) -> None:
        """Signal ``main_pid`` (default: the started process), then SIGKILL what is left.

        The tree is taken from /proc before signalling, and only processes with the same
        start time are killed, so a recycled PID is never hit.
        """
        root = _stat(self.popen.pid) if self.popen.returncode is None else None
        tree = _tree({self.popen.pid: root[2]}) if root is not None else {}
        target = main_pid if main_pid in tree else self.popen.pid
        if target in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, sig)
            deadline = time.monotonic() + grace
            while _alive(target, tree[target]) and time.monotonic() < deadline:
                self.popen.poll()  # reaps the started process if it was the target
                time.sleep(0.02)
        for _ in range(3):  # a dying parent may still fork; look again
            tree = _tree(tree)
            if not tree:
                break
            for pid in reversed(list(tree)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=grace)


class _Service:
    """Context-manager plumbing: start in ``_start``, stop in ``stop``, stop on a failed start."""

    def _start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- nginx


class Nginx(_Service):
    """A private nginx with one HTTPS server per (port, cert_file, key_file)."""

    def __init__(
        self, workdir: Path, servers: list[tuple[int, Path, Path]], *, worker_processes: int = 2
    ) -> None:
        self.workdir = workdir
        self.servers = list(servers)
        self.worker_processes = worker_processes
        self.conf = workdir / "nginx.conf"
        self.error_log = workdir / "error.log"
        self.pid_file = workdir / "nginx.pid"
        self.process: ServiceProcess | None = None
        self.startup_seconds = 0.0

    @property
    def urls(self) -> list[str]:
        """The probe URL of each server, in the order given."""
        return [f"https://{LOOPBACK}:{port}" for port, _, _ in self.servers]

    @property
    def pid(self) -> int:
        """The master's PID (nginx runs with ``daemon off``, so it is our child)."""
        assert self.process is not None, "nginx is not running"
        return self.process.pid

    def _argv(self, *extra: str) -> list[str]:
        paths = ["-c", str(self.conf), "-p", str(self.workdir), "-e", str(self.error_log)]
        return [need("nginx"), *extra, *paths]

    def reload_argv(self) -> list[str]:
        """The argv that reloads this instance (checks the config first; rc 1 if bad)."""
        return self._argv("-s", "reload")

    def reload(self) -> None:
        """Reload; raise RuntimeError (with nginx's message) if nginx refused."""
        run(self.reload_argv())

    def config_text(self) -> str:
        tmp = self.workdir / "tmp"
        servers = "".join(
            f"""
    server {{
        listen {LOOPBACK}:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 200 "ok\\n"; }}
    }}"""
            for port, cert, key in self.servers
        )
        return f"""# certdrop test instance
daemon off;
master_process on;
worker_processes {self.worker_processes};
pid {self.pid_file};
error_log {self.error_log} notice;
events {{ worker_connections 128; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;{servers}
}}
"""

    def _start(self) -> None:
        (self.workdir / "tmp").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.config_text())
        run(self._argv("-t", "-q"))
        started = time.monotonic()
        self.process = ServiceProcess("nginx", self._argv(), self.workdir / "nginx.out")
        self.process.wait_until(
            lambda: all(_port_open(p) for p, _, _ in self.servers), "all its ports open"
        )
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()  # SIGTERM: fast shutdown, the master stops its workers


# --------------------------------------------------------------------------- postfix

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


class Postfix(_Service):
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
            lambda: self.pid is not None and _banner(self.smtpd_port).startswith(b"220"),
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


@dataclass(frozen=True)
class SinkMessage:
    """One message the sink accepted; ``client_sha256`` is None without a client cert."""

    client_sha256: str | None
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes


class _SinkHandler:
    def __init__(self, out: queue.Queue[SinkMessage]) -> None:
        self.out = out

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        tls = (session.ssl or {}).get("ssl_object")
        der = tls.getpeercert(binary_form=True) if tls is not None else None
        self.out.put(
            SinkMessage(
                client_sha256=sha256_hex(der) if der else None,
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                content=bytes(envelope.original_content or envelope.content or b""),
            )
        )
        return "250 OK: message accepted"


class SmtpSink(_Service):
    """An aiosmtpd server that requires STARTTLS and records each client certificate."""

    def __init__(self, port: int, server_cert: Path, server_key: Path, client_ca: Path) -> None:
        self.port = port
        self.server_cert = server_cert
        self.server_key = server_key
        self.client_ca = client_ca
        self.messages: queue.Queue[SinkMessage] = queue.Queue()
        self.controller: Controller | None = None

    def _start(self) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        ctx.verify_mode = ssl.CERT_OPTIONAL  # ask for a client cert, verify it if shown
        ctx.load_verify_locations(self.client_ca)
        self.controller = Controller(
            _SinkHandler(self.messages),
            hostname=LOOPBACK,
            port=self.port,
            ready_timeout=5.0,
            tls_context=ctx,
            require_starttls=True,
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop(no_assert=True)
            self.controller = None

    def wait_for_message(self, timeout: float) -> str | None:
        """The client-cert fingerprint of the next message; '' if it showed none; None if
        no message came within ``timeout``."""
        message = self.wait_for(timeout)
        if message is None:
            return None
        return message.client_sha256 or ""

    def wait_for(self, timeout: float) -> SinkMessage | None:
        """The next message, or None if none came within ``timeout``."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None


# --------------------------------------------------------------------------- sshd


def ensure_drop_user() -> None:
    """Create the ``certdrop-drop`` user if missing and unlock it for key login."""
    if not _user_exists(DROP_USER):
        with contextlib.suppress(RuntimeError):  # a parallel run may have made it
            run(
                [
                    need("useradd"),
                    "--system",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    DROP_USER,
                ]
            )
        if not _user_exists(DROP_USER):
            raise RuntimeError(f"could not create the user {DROP_USER}")
    shadow = Path("/etc/shadow").read_text()
    entry = next((line for line in shadow.splitlines() if line.startswith(DROP_USER + ":")), "")
    if entry.split(":")[1:2] != ["*"]:
        # useradd leaves the account locked ('!'); sshd refuses key login to it.
        run([need("usermod"), "-p", "*", DROP_USER])


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _keygen(keygen: str, path: Path, comment: str) -> None:
    """Write a new passphrase-less ed25519 key pair to ``path`` and ``path.pub``."""
    run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


_SFTP_OPTIONS = (
    "BatchMode=yes", "IdentitiesOnly=yes", "StrictHostKeyChecking=no",
    "UserKnownHostsFile=/dev/null", "LogLevel=ERROR", "ConnectTimeout=10",
)  # fmt: skip


class Sshd(_Service):
    """OpenSSH sshd on 127.0.0.1 whose ``certdrop-drop`` user may only SFTP into ``inbox``.

    The chroot is ``/srv/certdrop-tests/<id>/chroot`` (root-owned), its upload folder
    ``inbox`` (owned by the drop user) is the folder to give the daemon as its inbox. Keys
    the client uses live in ``workdir``; everything under /srv is removed on exit.
    """

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.base = SSHD_ROOT / uuid.uuid4().hex[:12]
        self.chroot = self.base / "chroot"
        self.inbox = self.chroot / "inbox"
        self.etc = self.base / "etc"
        self.config = self.etc / "sshd_config"
        self.host_key = self.etc / "ssh_host_ed25519_key"
        self.client_key_path = workdir / "drop_ed25519"
        self.process: ServiceProcess | None = None
        self.startup_seconds = 0.0

    @property
    def pid(self) -> int:
        assert self.process is not None, "sshd is not running"
        return self.process.pid

    def config_text(self) -> str:
        return f"""# certdrop test instance
ListenAddress {LOOPBACK}:{self.port}
HostKey {self.host_key}
PidFile {self.etc / "sshd.pid"}
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
StrictModes no
AuthorizedKeysFile {self.etc}/authorized_keys.%u
AllowUsers {DROP_USER}
Subsystem sftp internal-sftp
LogLevel VERBOSE
Match User {DROP_USER}
    ChrootDirectory {self.chroot}
    ForceCommand internal-sftp
    AllowTcpForwarding no
    X11Forwarding no
    PermitTTY no
"""

    def _start(self) -> None:
        sshd = need("sshd")
        keygen = need("ssh-keygen")
        ensure_drop_user()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        for folder in (SSHD_ROOT, self.base, self.chroot, self.etc):
            folder.mkdir(mode=0o755, exist_ok=True)
            folder.chmod(0o755)  # not the umask's idea: sshd insists on exactly this
        self.inbox.mkdir(mode=0o755)
        shutil.chown(self.inbox, DROP_USER, DROP_USER)
        _keygen(keygen, self.host_key, "certdrop-test-host")
        self.workdir.mkdir(parents=True, exist_ok=True)
        _keygen(keygen, self.client_key_path, "certdrop-test-drop")
        # sshd reads this as the drop user, so it lives under /srv (not a 0700 tmp dir).
        authorized = self.etc / f"authorized_keys.{DROP_USER}"
        authorized.write_text(Path(f"{self.client_key_path}.pub").read_text())
        authorized.chmod(0o644)
        self.config.write_text(self.config_text())
        run([sshd, "-t", "-f", str(self.config)])
        started = time.monotonic()
        self.process = ServiceProcess(
            "sshd", [sshd, "-D", "-e", "-f", str(self.config)], self.workdir / "sshd.log"
        )
        self.process.wait_until(lambda: _banner(self.port).startswith(b"SSH-2.0"), "its SSH banner")
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        try:
            if self.process is not None:
                self.process.stop()  # the tree includes per-connection sshd children
        finally:
            if self.base.exists():
                shutil.rmtree(self.base)

    def host_public_key(self) -> paramiko.PKey:
        _, blob = Path(f"{self.host_key}.pub").read_text().split()[:2]
        return paramiko.Ed25519Key(data=base64.b64decode(blob))

    def paramiko_client(self) -> paramiko.SSHClient:
        """A connected SSHClient for the drop user that trusts exactly this host key."""
        client = paramiko.SSHClient()
        client.get_host_keys().add(
            f"[{LOOPBACK}]:{self.port}", "ssh-ed25519", self.host_public_key()
        )
        try:
            client.connect(
                LOOPBACK,
                port=self.port,
                username=DROP_USER,
                key_filename=str(self.client_key_path),
                look_for_keys=False,
                allow_agent=False,
                timeout=10,
                banner_timeout=10,
                auth_timeout=10,
            )
        except BaseException:
            client.close()
            raise
        return client

    def sftp_put_paramiko(self, local: Path, remote_name: str) -> Path:
        """Upload ``local`` as ``inbox/remote_name`` with paramiko; return the landed path."""
        with self.paramiko_client() as client, client.open_sftp() as sftp:
            # No stat after the upload (confirm): a running daemon claims the file at its close.
            sftp.put(str(local), f"/inbox/{remote_name}", confirm=False)
        return self.inbox / remote_name

    def sftp_argv(self) -> list[str]:
        """The ``sftp`` batch-mode argv (commands on stdin) for the drop user."""
        options = [arg for option in _SFTP_OPTIONS for arg in ("-o", option)]
        return [
            need("sftp"), "-b", "-", "-q", "-i", str(self.client_key_path), "-P", str(self.port),
            *options, f"{DROP_USER}@{LOOPBACK}",
        ]  # fmt: skip

    def sftp_put_cli(self, local: Path, remote_name: str) -> Path:
        """Upload ``local`` as ``inbox/remote_name`` with the ``sftp`` CLI; return its path."""
        quoted = json.dumps  # double quotes with backslash escapes, as sftp's batch parser
        run(
            self.sftp_argv(),
            input_text=f"put {quoted(str(local))} {quoted('/inbox/' + remote_name)}\n",
        )
        return self.inbox / remote_name


# --------------------------------------------------------------------------- pebble


class Pebble(_Service):
    """A pebble ACME CA on 127.0.0.1 that validates every challenge without looking."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.management_port = free_port()
        self.https_ca_file = workdir / "pebble-https-ca.pem"
        self.config = workdir / "pebble-config.json"
        self.process: ServiceProcess | None = None
        self.startup_seconds = 0.0

    @property
    def directory_url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}/dir"

    @property
    def pid(self) -> int:
        assert self.process is not None, "pebble is not running"
        return self.process.pid

    def _https_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.https_ca_file)
        return ctx

    def _get(self, url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=5, context=self._https_context()) as resp:
            body: bytes = resp.read()
            return body

    def root_pem(self) -> bytes:
        """The root that signs this run's certificates (a new one every start)."""
        return self._get(f"https://{LOOPBACK}:{self.management_port}/roots/0")

    def intermediate_pem(self) -> bytes:
        return self._get(f"https://{LOOPBACK}:{self.management_port}/intermediates/0")

    def lego_env(self) -> dict[str, str]:
        """The environment for lego: trust pebble's HTTPS certificate."""
        return {**os.environ, "LEGO_CA_CERTIFICATES": str(self.https_ca_file)}

    def lego_argv(self, csr: Path, outdir: Path, http_port: int) -> list[str]:
        """lego's argv to get ``csr`` signed; output lands in ``outdir/certificates/``."""
        return [
            need("lego"), "--server", self.directory_url, "--email", "x@example.test",
            "--accept-tos", "--path", str(outdir), "--csr", str(csr),
            "--http", "--http.port", f"{LOOPBACK}:{http_port}", "run",
        ]  # fmt: skip

    def _ready(self) -> bool:
        try:
            self._get(self.directory_url)
        except OSError:
            return False
        return True

    def _start(self) -> None:
        pebble = need("pebble")
        self.workdir.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        leaf = ca.issue_cert("localhost", LOOPBACK)
        ca.cert_pem.write_to_path(self.https_ca_file)
        cert_file = self.workdir / "pebble-https.pem"
        key_file = self.workdir / "pebble-https.key"
        cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        _write_private(key_file, leaf.private_key_pem.bytes())
        self.config.write_text(
            json.dumps(
                {
                    "pebble": {
                        "listenAddress": f"{LOOPBACK}:{self.port}",
                        "managementListenAddress": f"{LOOPBACK}:{self.management_port}",
                        "certificate": str(cert_file),
                        "privateKey": str(key_file),
                        # Never dialled (VA_ALWAYS_VALID), but must be set.
                        "httpPort": free_port(),
                        "tlsPort": free_port(),
                        "ocspResponderURL": "",
                        "externalAccountBindingRequired": False,
                    }
                },
                indent=2,
            )
        )
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_VA_ALWAYS_VALID": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
        }
        started = time.monotonic()
        self.process = ServiceProcess(
            "pebble", [pebble, "-config", str(self.config)], self.workdir / "pebble.log", env=env
        )
        self.process.wait_until(self._ready, "its ACME directory answering")
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
