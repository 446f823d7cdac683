"""A private OpenSSH sshd with a chrooted SFTP drop user on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import time
import uuid
from pathlib import Path

import paramiko

from support.process import (
    DROP_USER,
    LOOPBACK,
    SSHD_ROOT,
    Service,
    ServiceProcess,
    banner,
    free_port,
    need,
    run,
)


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


class Sshd(Service):
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
        self.process.wait_until(lambda: banner(self.port).startswith(b"SSH-2.0"), "its SSH banner")
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
