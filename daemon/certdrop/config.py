"""Configuration: TOML in, frozen values out, every problem reported at once."""

from __future__ import annotations

import grp
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certdrop.config_tables import GATEWAY_NAME as GATEWAY_NAME
from certdrop.config_tables import ROLES as ROLES
from certdrop.config_tables import FleetConfig as FleetConfig
from certdrop.config_tables import ServiceConfig as ServiceConfig
from certdrop.config_tables import TableReader, read_fleet, read_service, shared_files
from certdrop.errors import ConfigError
from certdrop.limits import DEFAULT_LIMITS, Limits
from certdrop.pki.names import service_name_problem
from certdrop.pki.trust import DEFAULT_PROFILE, PROFILES

PLACEHOLDERS = ("{csr}", "{name}", "{inbox}", "{outbox}")


@dataclass(frozen=True)
class Config:
    """The whole configuration; ``source`` names the file it came from, or "defaults"."""

    inbox: Path
    state: Path
    outbox: Path
    source: str = "defaults"
    max_file_bytes: int = 1_048_576
    passphrase_files: tuple[Path, ...] = ()
    ca_bundle: Path | None = None
    trust_profile: str = DEFAULT_PROFILE
    check_interval_seconds: float = 3600.0
    warn_days: tuple[int, ...] = (30, 14, 7, 1)
    renew_before_days: int = 0
    renewal_command: tuple[str, ...] = ()
    renewal_timeout_seconds: float = 300.0
    renewal_retry_base_seconds: float = 300.0
    metrics_listen: str = ""
    limits: Limits = DEFAULT_LIMITS
    # A group whose members may read the snapshot (status.json) and run the read-only
    # commands; "" keeps the state folder root-only (0700).
    state_group: str = ""
    services: Mapping[str, ServiceConfig] = field(default_factory=dict)
    fleet: FleetConfig | None = None  # None: a single gateway, as before fleet mode

    @property
    def status_log(self) -> Path:
        return self.state / "status.log"

    @property
    def status_json(self) -> Path:
        return self.state / "status.json"


def locate(explicit: str | None, environ: Mapping[str, str], cwd: Path) -> Path | None:
    """The config file to use: --config, then $CERTDROP_CONFIG, then ./certdrop.toml."""
    if explicit:
        return Path(explicit)
    if environ.get("CERTDROP_CONFIG"):
        return Path(environ["CERTDROP_CONFIG"])
    default = cwd / "certdrop.toml"
    return default if default.is_file() else None


def state_folder(path: Path) -> Path | None:
    """The state folder a config file names, read leniently: for ``certdrop reload``,
    which must reach the running daemon even when the file it is to re-read is broken
    (the daemon then refuses it and says why). None when even that cannot be told."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    try:
        value = tomllib.loads(text).get("state", "state")
    except tomllib.TOMLDecodeError:
        value = "state"
        for line in text.splitlines():  # top-level keys come before the first [table]
            if line.lstrip().startswith("["):
                break
            match = re.fullmatch(r"\s*state\s*=\s*\"([^\"\\]*)\"\s*(#.*)?", line)
            if match:
                value = match.group(1)
    if not isinstance(value, str) or not value:
        return None
    return (path.resolve().parent / value).resolve()


def load(path: Path | None, cwd: Path) -> Config:
    """Read and validate the config at ``path`` (None = the embedded defaults)."""
    if path is None:
        return from_mapping({}, base=cwd, source="defaults")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found; create it or pass --config"]) from None
    except PermissionError:
        raise ConfigError(
            str(path),
            [
                "cannot be read by this user (permission denied); run as root, or let a "
                "monitoring group read it (chgrp GROUP FILE; chmod 0640 FILE: it holds no "
                "secrets, only paths)"
            ],
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot be read ({exc.__class__.__name__})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"is not valid TOML: {exc}"]) from None
    return from_mapping(data, base=path.resolve().parent, source=str(path))


def from_mapping(data: Mapping[str, Any], *, base: Path, source: str) -> Config:
    """Validate a parsed TOML document; relative paths are taken from ``base``."""
    problems: list[str] = []
    top = TableReader(problems, "", data)
    top.unknown(
        {
            "inbox",
            "state",
            "outbox",
            "state_group",
            "intake",
            "trust",
            "expiry",
            "renewal",
            "metrics",
            "limits",
            "services",
            "fleet",
        }
    )
    limits = Limits.from_mapping(top.table_of("limits"), problems)

    def path(value: str) -> Path:
        return (base / value).resolve() if value else base

    inbox = path(top.string("inbox", "inbox"))
    state = path(top.string("state", "state"))
    outbox_value = top.string("outbox", "")
    outbox = path(outbox_value) if outbox_value else state / "outbox"
    state_group = top.string("state_group")
    if state_group:
        try:
            grp.getgrnam(state_group)
        except KeyError:
            problems.append(
                f"state_group: there is no group {state_group!r}; create it "
                f"(groupadd --system {state_group}) or fix the name"
            )

    intake = TableReader(problems, "intake.", top.table_of("intake"))
    intake.unknown({"max_file_bytes", "passphrase_files"})
    max_bytes = int(intake.number("max_file_bytes", 1_048_576, minimum=1))
    passphrase_files = tuple(path(p) for p in intake.strings("passphrase_files"))

    trust = TableReader(problems, "trust.", top.table_of("trust"))
    trust.unknown({"ca_bundle", "profile"})
    ca_value = trust.string("ca_bundle")
    ca_bundle = path(ca_value) if ca_value else None
    profile = trust.string("profile", DEFAULT_PROFILE)
    if profile not in PROFILES:
        choices = " or ".join(f'"{p}"' for p in PROFILES)
        problems.append(f"trust.profile must be {choices}, not {profile!r}")
        profile = DEFAULT_PROFILE

    expiry = TableReader(problems, "expiry.", top.table_of("expiry"))
    expiry.unknown({"check_interval_seconds", "warn_days", "renew_before_days"})
    interval = expiry.number("check_interval_seconds", 3600, minimum=1)
    warn_raw = expiry.get("warn_days", (list,), "a list of whole numbers", [30, 14, 7, 1])
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in warn_raw):
        problems.append("expiry.warn_days must be a list of whole numbers of days, e.g. [30, 7]")
        warn_raw = [30, 14, 7, 1]
    renew_before = int(expiry.number("renew_before_days", 0))

    renewal = TableReader(problems, "renewal.", top.table_of("renewal"))
    renewal.unknown({"command", "timeout_seconds", "retry_base_seconds"})
    command = renewal.strings("command")
    renew_timeout = renewal.number("timeout_seconds", 300, minimum=1)
    retry_base = renewal.number("retry_base_seconds", 300, minimum=0.1)

    metrics = TableReader(problems, "metrics.", top.table_of("metrics"))
    metrics.unknown({"listen"})
    listen = metrics.string("listen")
    if listen and not _is_loopback_listen(listen):
        problems.append(
            f"metrics.listen {listen!r} must be host:port; only loopback hosts are allowed "
            "unless you front it with a proxy (use 127.0.0.1:9810)"
        )

    fleet = read_fleet(top.table_of("fleet"), problems, path, state) if "fleet" in data else None

    services: dict[str, ServiceConfig] = {}
    for name, table in top.table_of("services").items():
        if not isinstance(table, dict):
            problems.append(f"services.{name} must be a table")
            continue
        if service_name_problem(name) is not None:
            problems.append(
                f"services.{name!r}: a service name must be 1-64 letters, digits, '.', '_' "
                "or '-', starting with a letter or digit; rename the table"
            )
            continue
        service = read_service(name, table, problems, path)
        if service is not None:
            services[name] = service

    problems.extend(shared_files(services))
    if problems:
        raise ConfigError(source, problems)
    return Config(
        inbox=inbox,
        state=state,
        outbox=outbox,
        source=source,
        max_file_bytes=max_bytes,
        passphrase_files=passphrase_files,
        ca_bundle=ca_bundle,
        trust_profile=profile,
        check_interval_seconds=interval,
        warn_days=tuple(sorted(set(warn_raw), reverse=True)),
        renew_before_days=renew_before,
        renewal_command=command,
        renewal_timeout_seconds=renew_timeout,
        renewal_retry_base_seconds=retry_base,
        metrics_listen=listen,
        limits=limits,
        state_group=state_group,
        services=services,
        fleet=fleet,
    )


def _is_loopback_listen(listen: str) -> bool:
    host, _, port = listen.rpartition(":")
    return host in ("127.0.0.1", "[::1]", "localhost") and port.isdigit()


def read_passphrases(config: Config) -> list[bytes]:
    """Candidate passphrases, one a line, from every intake.passphrase_files entry."""
    found: list[bytes] = []
    for file in config.passphrase_files:
        try:
            data = file.read_bytes()
        except OSError:
            continue  # reported by `certdrop check`; a missing file must not stop intake
        found.extend(line for line in data.splitlines() if line)
        # openssl -passin file: and `certdrop export` keep the CR of a CRLF line in the
        # password, so a key exported with this very file must open with it too.
        found.extend(line for line in data.split(b"\n") if line.strip(b"\r") and line[-1:] == b"\r")
    return found
