"""The preflight behind ``certdrop check``: would the daemon work with this config, here?

Each check is one :class:`Finding`. Loading the config is the first check (a config that
does not load is ``unknown``: nothing else can be judged); then every file and folder the
config names, the programs it runs and, when asked, the live probe targets and the
running daemon. Nothing here changes anything.

Levels and what they mean to a monitor (the Nagios plugin guidelines):

- ``critical``: certdrop cannot do its job: a broken trust bundle (every drop untrusted,
  so hostname auto-assignment never happens), a service folder or reload program that is
  missing (every deploy fails), a probe target that does not answer, a daemon that does
  not run or is unhealthy;
- ``warning``: something will fail later or for some drops only: a passphrase file
  missing, a renewal command not found, a service that serves another certificate than
  the one it should or whose last deploy failed;
- ``unknown``: this user cannot tell (a file it may not read).

Checks run as root judge for the daemon; run as another user (a monitor in
``state_group``) a file that exists but is root-only is fine: the daemon is root.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import sqlite3
import ssl
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from certdrop import config as configuration
from certdrop.clock import utc_now
from certdrop.daemon import control
from certdrop.errors import UserError, permission_message
from certdrop.pki.chain import is_ca
from certdrop.renewal import report
from certdrop.services.probe import ProbeError, served_fingerprint

LEVELS = ("ok", "warning", "critical", "unknown")
EXIT_CODES = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}
# Which level wins when several are found: a definite CRITICAL beats "cannot tell", which
# beats a WARNING (an unknown part may hide something worse).
PRECEDENCE = {"ok": 0, "warning": 1, "unknown": 2, "critical": 3}
# systemd's default PATH for services: a monitor's own PATH often lacks the sbin folders
# where nginx and postfix live, though the daemon finds them there.
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNSEEN = "cannot be looked at by this user; run the check as root, or let this user read it"


@dataclass(frozen=True)
class Finding:
    """One check's verdict. ``check`` names what was checked (a config key or ``daemon``),
    ``detail`` says in one sentence what was found and, when it is not ok, the fix."""

    check: str
    level: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"check": self.check, "level": self.level, "detail": self.detail}


def worst(levels: Iterable[str]) -> str:
    """The level that speaks for all of ``levels`` (``ok`` for none)."""
    return max(levels, key=PRECEDENCE.__getitem__, default="ok")


def preflight(config: configuration.Config) -> list[Finding]:
    """Every file, folder and program check of ``config``; no network."""
    root = os.geteuid() == 0
    found = [Finding("config", "ok", f"{config.source} loads")]
    found += _folders(config)
    found.append(_ca_bundle(config.ca_bundle, root))
    found += [_passphrase_file(f, root) for f in config.passphrase_files]
    for name, svc in sorted(config.services.items()):
        found += _service(name, svc, root)
    if config.renewal_command:
        found.append(_program("renewal.command", config.renewal_command[0], "warning"))
    if config.state_group:
        found.append(_group("state_group", config.state_group, "critical"))
    return found


def probes(config: configuration.Config, desired: Mapping[str, str | None]) -> list[Finding]:
    """One TLS handshake with each service's probe target; ``desired`` maps a service to
    the fingerprint it should serve (None: nothing assigned yet)."""
    found = []
    for name, svc in sorted(config.services.items()):
        if not svc.probe:
            continue
        where = f"services.{name}.probe"
        try:
            seen = served_fingerprint(svc.probe, timeout=svc.probe_timeout_seconds)
        except ProbeError as exc:
            found.append(Finding(where, "critical", f"{svc.probe}: {exc.reason}"))
            continue
        want = desired.get(name)
        if want is not None and seen != want:
            found.append(
                Finding(
                    where,
                    "warning",
                    f"{svc.probe} serves {seen[:16]}..., not the certificate {name} should "
                    f"have ({want[:16]}...); see `certdrop status` for the service's state",
                )
            )
        else:
            found.append(Finding(where, "ok", f"{svc.probe} answers with {seen[:16]}..."))
    return found


def daemon_health(config: configuration.Config, timeout: float = 10) -> Finding:
    """Ask the running daemon (control socket) whether it does its job."""
    try:
        reply = json.loads(control.ask(config.state / "control.sock", "health", timeout=timeout))
    except control.NotRunning as exc:
        return Finding("daemon", "critical", f"{exc}; start it (systemctl start certdrop)")
    except UserError as exc:
        return Finding("daemon", "unknown", str(exc))
    except ValueError:
        return Finding("daemon", "unknown", "the daemon's health answer is not JSON")
    who = f"the daemon (pid {reply.get('pid')}, since {reply.get('started')})"
    if not reply.get("healthy"):
        return Finding("daemon", "critical", f"{who} is unhealthy: {reply.get('problem')}")
    if not reply.get("ready"):
        return Finding(
            "daemon", "warning", f"{who} is still starting (the start-up reconcile runs)"
        )
    return Finding("daemon", "ok", f"{who} is healthy")


def services_findings(states: Iterable[Mapping[str, object]]) -> Iterator[Finding]:
    """A warning for each service whose last deploy failed (its old certificate stays)."""
    for svc in states:
        if svc.get("state") == "failed":
            yield Finding(
                f"services.{svc.get('name')}",
                "warning",
                f"the last deploy failed: {svc.get('detail')}",
            )


# -- the checks ---------------------------------------------------------------------------
def _folders(config: configuration.Config) -> list[Finding]:
    found = []
    for key, folder in (
        ("inbox", config.inbox),
        ("state", config.state),
        ("outbox", config.outbox),
    ):
        try:
            is_dir = folder.is_dir()
            exists = is_dir or folder.exists()
        except PermissionError as exc:
            found.append(Finding(key, "unknown", permission_message(exc)))
            continue
        if exists and not is_dir:
            found.append(
                Finding(key, "critical", f"{folder} is not a folder; remove it or fix {key}")
            )
        elif not exists:
            found.append(Finding(key, "ok", f"{folder} does not exist yet; certdrop run makes it"))
        else:
            found.append(Finding(key, "ok", f"{folder} is a folder"))
    return found


def _ca_bundle(bundle: Path | None, root: bool) -> Finding:
    key = "trust.ca_bundle"
    path = bundle or Path(ssl.get_default_verify_paths().openssl_cafile)
    what = str(path) if bundle else f"the system trust store {path}"
    fix = (
        "fix trust.ca_bundle (a PEM file of root certificates)"
        if bundle
        else ("install ca-certificates or set trust.ca_bundle")
    )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Finding(key, "critical", f"{what} does not exist, so no drop is trusted; {fix}")
    except PermissionError:
        if root:
            return Finding(key, "critical", f"{what} cannot be read; {fix}")
        return Finding(
            key,
            "unknown",
            f"{what} is not readable by this user; it holds only "
            "public certificates, so chmod 0644 it to let monitors check it",
        )
    except OSError as exc:
        return Finding(key, "critical", f"{what} cannot be read ({exc.strerror}); {fix}")
    try:
        with warnings.catch_warnings():
            # System stores carry a few old roots with negative serials; they still anchor.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            certs = x509.load_pem_x509_certificates(data)
            authorities = sum(1 for c in certs if is_ca(c))
    except ValueError:
        return Finding(
            key, "critical", f"{what} holds no PEM certificate, so no drop is trusted; {fix}"
        )
    if not authorities:
        return Finding(
            key,
            "critical",
            f"{what} holds {len(certs)} certificate(s) but no CA (basicConstraints CA:TRUE), "
            f"so no drop is trusted; {fix}",
        )
    return Finding(key, "ok", f"{what} holds {authorities} CA certificate(s)")


def _passphrase_file(path: Path, root: bool) -> Finding:
    key = "intake.passphrase_files"
    try:
        path.stat()
    except FileNotFoundError:
        return Finding(
            key,
            "warning",
            f"{path} does not exist, so encrypted keys it would open are rejected; create "
            "it (0600, one passphrase a line) or remove it from intake.passphrase_files",
        )
    except PermissionError:
        return Finding(key, "unknown", f"{path} {UNSEEN}")
    if os.access(path, os.R_OK):
        return Finding(key, "ok", f"{path} is readable")
    if root:
        return Finding(key, "warning", f"{path} cannot be read; chmod 0600 it, owned by root")
    return Finding(key, "ok", f"{path} exists (root-only, as it should be)")


def _service(name: str, svc: configuration.ServiceConfig, root: bool) -> list[Finding]:
    where = f"services.{name}"
    found = []
    files = [svc.cert_file, svc.key_file, svc.chain_file, svc.combined_file]
    for folder in sorted({f.parent for f in files if f is not None}):
        found.append(_service_folder(where, folder, root))
    if svc.owner:
        found.append(_user(f"{where}.owner", svc.owner))
    if svc.group:
        found.append(_group(f"{where}.group", svc.group, "critical"))
    if svc.reload:
        found.append(_program(f"{where}.reload", svc.reload[0], "critical"))
    return found


def _service_folder(where: str, folder: Path, root: bool) -> Finding:
    try:
        is_dir = folder.is_dir()
    except PermissionError:
        return Finding(where, "unknown", f"{folder} {UNSEEN}")
    if not is_dir:
        return Finding(
            where,
            "critical",
            f"the folder {folder} does not exist, so every deploy to {where[9:]} fails; "
            f"create it (install -d {folder}) or fix the service's file paths",
        )
    if root and not os.access(folder, os.W_OK | os.X_OK):
        return Finding(
            where, "critical", f"{folder} is not writable (a read-only mount?); fix the mount"
        )
    return Finding(where, "ok", f"{folder} is a folder")


def _user(key: str, name: str) -> Finding:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return Finding(key, "critical", f"there is no user {name!r}; create it or fix {key}")
    return Finding(key, "ok", f"the user {name!r} exists")


def _group(key: str, name: str, level: str) -> Finding:
    try:
        grp.getgrnam(name)
    except KeyError:
        return Finding(key, level, f"there is no group {name!r}; create it or fix {key}")
    return Finding(key, "ok", f"the group {name!r} exists")


def _program(key: str, program: str, level: str) -> Finding:
    """Is ``program`` (argv[0]) found where the daemon will look for it?"""
    if "/" in program:
        path = Path(program)
        if path.is_file() and os.access(path, os.X_OK):
            return Finding(key, "ok", f"{program} is an executable file")
        problem = "is not executable" if path.is_file() else "does not exist"
        return Finding(key, level, f"{program} {problem}; install it or fix {key}")
    folders = f"{os.environ.get('PATH', '')}{os.pathsep}{SERVICE_PATH}".split(os.pathsep)
    search = os.pathsep.join(dict.fromkeys(f for f in folders if f))
    found = shutil.which(program, path=search)
    if found is None:
        return Finding(
            key,
            level,
            f"{program!r} is not found on the PATH ({search}); install it, or give its "
            f"absolute path in {key}",
        )
    return Finding(key, "ok", f"{program!r} is {found}")


# -- the whole check ----------------------------------------------------------------------
def checkup(
    config: configuration.Config, *, probe: bool = False, daemon: bool = False
) -> dict[str, Any]:
    """``certdrop check``: the expiry report plus the preflight, judged as one.

    The object is the expiry report (:func:`certdrop.renewal.report.run`) with
    ``preflight`` (every finding) added and ``status``/``exit_code`` covering both:
    0 ok, 1 warning, 2 critical, 3 unknown.
    """
    unreadable: Finding | None = None
    try:
        data = report.run(config)
    except PermissionError as exc:
        unreadable = Finding("state", "unknown", permission_message(exc))
    except (UserError, sqlite3.Error) as exc:
        unreadable = Finding("state", "unknown", f"the state cannot be judged: {exc}")
    if unreadable is not None:
        data = report.report(config, None, utc_now())
        data["source"] = None
    services: list[dict[str, Any]] = list(data["services"])
    found = preflight(config)
    if unreadable is not None:
        found.append(unreadable)
    found += services_findings(services)
    if probe:
        found += probes(config, {str(s["name"]): s["desired_sha256"] for s in services})
    if daemon:
        found.append(daemon_health(config))
    expiry_levels = [
        "critical" if c["level"] in ("overdue", "expired") else str(c["level"])
        for c in data["certificates"]
    ]
    level = worst([*expiry_levels, *(f.level for f in found)])
    return {
        **data,
        "status": level,
        "exit_code": EXIT_CODES[level],
        "preflight": [f.to_json() for f in found],
    }

