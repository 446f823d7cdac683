"""Configuration: TOML in, frozen values out, every problem reported at once."""

from __future__ import annotations

import grp
import pwd
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from certdrop.errors import ConfigError
from certdrop.limits import DEFAULT_LIMITS, Limits
from certdrop.pki import domains
from certdrop.pki.names import service_name_problem
from certdrop.pki.trust import DEFAULT_PROFILE, PROFILES, HostnameError, subject_for

ROLES = ("https", "smtp-server", "smtp-client")
KEY_FORMATS = ("pkcs1", "pkcs8")
PLACEHOLDERS = ("{csr}", "{name}", "{inbox}", "{outbox}")
GATEWAY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")  # no '.': it splits fleet keys


@dataclass(frozen=True)
class ServiceConfig:
    """Where one service reads its certificate and key, and how it is reloaded and probed."""

    name: str
    role: str
    cert_file: Path | None = None
    key_file: Path | None = None
    chain_file: Path | None = None
    combined_file: Path | None = None
    key_format: str = "pkcs1"
    hostname: str = ""
    owner: str = ""
    group: str = ""
    mode: int = 0o644
    key_mode: int = 0o600
    reload: tuple[str, ...] = ()
    reload_timeout_seconds: float = 30.0
    probe: str = ""
    probe_timeout_seconds: float = 10.0


@dataclass(frozen=True)
class FleetConfig:
    """The ``[fleet]`` table: how this gateway reaches NATS and who it is there."""

    servers: tuple[str, ...]
    gateway: str
    identity: Path
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    creds: str = ""
    replicas: int = 3
    heartbeat_seconds: float = 10.0
    lease_seconds: float = 3600.0


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


class _Reader:
    """Pulls typed values out of a TOML table and collects every problem found."""

    def __init__(self, problems: list[str], where: str, table: Mapping[str, Any]) -> None:
        self.problems, self.where, self.table = problems, where, table

    def get(self, key: str, kinds: tuple[type, ...], kind_name: str, default: Any) -> Any:
        if key not in self.table:
            return default
        value = self.table[key]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            self.problems.append(f"{self.where}{key} must be {kind_name}, not {value!r}")
            return default
        return value

    def string(self, key: str, default: str = "") -> str:
        return str(self.get(key, (str,), "a string", default))

    def number(self, key: str, default: float, minimum: float = 0) -> float:
        value = float(self.get(key, (int, float), "a number", default))
        if value < minimum:
            self.problems.append(f"{self.where}{key} must be at least {minimum}, not {value}")
            return default
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key, (list,), "a list of strings", [])
        if not all(isinstance(v, str) for v in value):
            self.problems.append(f"{self.where}{key} must be a list of strings")
            return ()
        return tuple(value)

    def table_of(self, key: str) -> Mapping[str, Any]:
        return dict(self.get(key, (dict,), "a table", {}))

    def unknown(self, known: set[str]) -> None:
        for key in sorted(set(self.table) - known):
            self.problems.append(f"{self.where}{key} is not a known setting (a typo?)")


def from_mapping(data: Mapping[str, Any], *, base: Path, source: str) -> Config:
    """Validate a parsed TOML document; relative paths are taken from ``base``."""
    problems: list[str] = []
    top = _Reader(problems, "", data)
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

    intake = _Reader(problems, "intake.", top.table_of("intake"))
    intake.unknown({"max_file_bytes", "passphrase_files"})
    max_bytes = int(intake.number("max_file_bytes", 1_048_576, minimum=1))
    passphrase_files = tuple(path(p) for p in intake.strings("passphrase_files"))

    trust = _Reader(problems, "trust.", top.table_of("trust"))
    trust.unknown({"ca_bundle", "profile"})
    ca_value = trust.string("ca_bundle")
    ca_bundle = path(ca_value) if ca_value else None
    profile = trust.string("profile", DEFAULT_PROFILE)
    if profile not in PROFILES:
        choices = " or ".join(f'"{p}"' for p in PROFILES)
        problems.append(f"trust.profile must be {choices}, not {profile!r}")
        profile = DEFAULT_PROFILE

    expiry = _Reader(problems, "expiry.", top.table_of("expiry"))
    expiry.unknown({"check_interval_seconds", "warn_days", "renew_before_days"})
    interval = expiry.number("check_interval_seconds", 3600, minimum=1)
    warn_raw = expiry.get("warn_days", (list,), "a list of whole numbers", [30, 14, 7, 1])
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in warn_raw):
        problems.append("expiry.warn_days must be a list of whole numbers of days, e.g. [30, 7]")
        warn_raw = [30, 14, 7, 1]
    renew_before = int(expiry.number("renew_before_days", 0))

    renewal = _Reader(problems, "renewal.", top.table_of("renewal"))
    renewal.unknown({"command", "timeout_seconds", "retry_base_seconds"})
    command = renewal.strings("command")
    renew_timeout = renewal.number("timeout_seconds", 300, minimum=1)
    retry_base = renewal.number("retry_base_seconds", 300, minimum=0.1)

    metrics = _Reader(problems, "metrics.", top.table_of("metrics"))
    metrics.unknown({"listen"})
    listen = metrics.string("listen")
    if listen and not _is_loopback_listen(listen):
        problems.append(
            f"metrics.listen {listen!r} must be host:port; only loopback hosts are allowed "
            "unless you front it with a proxy (use 127.0.0.1:9810)"
        )

    fleet = _fleet(top.table_of("fleet"), problems, path, state) if "fleet" in data else None

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
        service = _service(name, table, problems, path)
        if service is not None:
            services[name] = service

    problems.extend(_shared_files(services))
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


def _fleet(table: Mapping[str, Any], problems: list[str], path: Any, state: Path) -> FleetConfig:
    r = _Reader(problems, "fleet.", table)
    keys = ("gateway", "identity", "tls_ca", "tls_cert", "tls_key", "creds")
    r.unknown({"servers", "replicas", "heartbeat_seconds", "lease_seconds", *keys})
    servers = r.strings("servers")
    if not servers:
        problems.append('fleet.servers must list the NATS URLs, e.g. ["nats://10.0.0.1:4222"]')
    for url in servers:
        if not url.startswith(("nats://", "tls://")) or not _is_host_port_url(url):
            problems.append(
                f"fleet.servers: {url!r} must be nats://HOST[:PORT] or tls://HOST[:PORT]"
            )
    gateway = r.string("gateway") or socket.gethostname().split(".")[0]
    if not GATEWAY_NAME.fullmatch(gateway):
        problems.append(
            f"fleet.gateway {gateway!r} must be 1-63 letters, digits, '_' or '-' (no dots); "
            'set gateway = "NAME" in [fleet]'
        )
    files = {k: str(path(v)) if (v := r.string(k)) else "" for k in keys[1:]}
    if bool(files["tls_cert"]) != bool(files["tls_key"]):
        problems.append("fleet.tls_cert and fleet.tls_key go together: set both or neither")
    return FleetConfig(
        servers=servers,
        gateway=gateway,
        identity=Path(files["identity"]) if files["identity"] else state / "fleet.identity",
        tls_ca=files["tls_ca"],
        tls_cert=files["tls_cert"],
        tls_key=files["tls_key"],
        creds=files["creds"],
        replicas=int(r.number("replicas", 3, minimum=1)),
        heartbeat_seconds=r.number("heartbeat_seconds", 10, minimum=0.5),
        lease_seconds=r.number("lease_seconds", 3600, minimum=1),
    )


def _is_host_port_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return bool(parts.hostname)


def _account_problems(where: str, owner: str, group: str) -> list[str]:
    """Problems with a service's owner/group names: they must exist on this system."""
    found = []
    if owner:
        try:
            pwd.getpwnam(owner)
        except KeyError:
            found.append(f"{where}owner: there is no user {owner!r}; create it or fix the name")
    if group:
        try:
            grp.getgrnam(group)
        except KeyError:
            found.append(f"{where}group: there is no group {group!r}; create it or fix the name")
    return found


def _shared_files(services: Mapping[str, ServiceConfig]) -> list[str]:
    """Each file belongs to one service: two writers of one file would undo each other."""
    owners: dict[Path, str] = {}
    found = []
    for name, svc in sorted(services.items()):
        for key in ("cert_file", "key_file", "chain_file", "combined_file"):
            file = getattr(svc, key)
            if file is None:
                continue
            if file in owners:
                found.append(
                    f"services.{name}.{key} is the same file as {owners[file]} ({file}); give "
                    "each service its own files, or merge the two services into one"
                )
            else:
                owners[file] = f"services.{name}.{key}"
    return found


def _is_loopback_listen(listen: str) -> bool:
    host, _, port = listen.rpartition(":")
    return host in ("127.0.0.1", "[::1]", "localhost") and port.isdigit()


def _service(
    name: str, table: Mapping[str, Any], problems: list[str], path: Any
) -> ServiceConfig | None:
    where = f"services.{name}."
    r = _Reader(problems, where, table)
    r.unknown(
        {
            "role",
            "hostname",
            "cert_file",
            "key_file",
            "chain_file",
            "combined_file",
            "key_format",
            "owner",
            "group",
            "mode",
            "key_mode",
            "reload",
            "reload_timeout_seconds",
            "probe",
            "probe_timeout_seconds",
        }
    )
    before = len(problems)
    role = r.string("role")
    if role not in ROLES:
        problems.append(f"{where}role must be one of {', '.join(ROLES)}, not {role!r}")
    key_format = r.string("key_format", "pkcs1")
    if key_format not in KEY_FORMATS:
        problems.append(f"{where}key_format must be pkcs1 or pkcs8, not {key_format!r}")
    files = {k: r.string(k) for k in ("cert_file", "key_file", "chain_file", "combined_file")}
    if not files["combined_file"] and not (files["cert_file"] and files["key_file"]):
        problems.append(
            f"{where}cert_file and key_file (or combined_file) must be set: name the files "
            "the service reads its certificate and key from"
        )
    if files["combined_file"] and (files["cert_file"] or files["key_file"] or files["chain_file"]):
        problems.append(
            f"{where}combined_file already holds key, leaf and intermediates: remove "
            "cert_file, key_file and chain_file, or remove combined_file"
        )
    named = [path(v) for v in files.values() if v]
    if len(set(named)) < len(named):
        problems.append(f"{where}cert_file, key_file and chain_file must be different files")
    problems.extend(_account_problems(where, r.string("owner"), r.string("group")))
    modes = {}
    for key, default in (("mode", 0o644), ("key_mode", 0o600)):
        raw = r.string(key, oct(default)[2:])
        try:
            modes[key] = int(raw, 8)
        except ValueError:
            problems.append(f'{where}{key} must be an octal string like "0600", not {raw!r}')
            modes[key] = default
        if not 0 <= modes[key] <= 0o777:
            problems.append(f'{where}{key} must be between "0000" and "0777", not {raw!r}')
            modes[key] = default
    if modes["key_mode"] & 0o007:
        problems.append(
            f"{where}key_mode {modes['key_mode']:04o} lets every user read the private key; "
            'use "0600" (or "0640" with group set to the service\'s group)'
        )
    reload = r.strings("reload")
    probe = r.string("probe")
    if probe and not probe.startswith(("https://", "smtp://")):
        problems.append(f"{where}probe must start with https:// or smtp://, not {probe!r}")
    elif probe and not _is_host_port_url(probe):
        problems.append(f"{where}probe {probe!r} must be https://HOST:PORT or smtp://HOST:PORT")
    if probe and role == "smtp-client":
        problems.append(
            f"{where}probe: an smtp-client shows its certificate only when it connects out, "
            'so no handshake can prove it; set probe = ""'
        )
    hostname = r.string("hostname")
    if hostname and not hostname.isascii():
        try:
            hostname = domains.to_ascii(hostname)  # 例え.jp -> xn--r8jz45g.jp (IDNA, UTS 46)
        except ValueError as exc:
            problems.append(
                f"{where}hostname {hostname!r} is not a valid domain name (IDNA): {exc}"
            )
    try:
        if hostname:
            subject_for(hostname)
    except HostnameError:
        problems.append(
            f"{where}hostname {hostname!r} is neither an IP address nor a valid domain name"
        )
    if len(problems) > before:
        return None
    return ServiceConfig(
        name=name,
        role=role,
        key_format=key_format,
        hostname=hostname,
        cert_file=path(files["cert_file"]) if files["cert_file"] else None,
        key_file=path(files["key_file"]) if files["key_file"] else None,
        chain_file=path(files["chain_file"]) if files["chain_file"] else None,
        combined_file=path(files["combined_file"]) if files["combined_file"] else None,
        owner=r.string("owner"),
        group=r.string("group"),
        mode=modes["mode"],
        key_mode=modes["key_mode"],
        reload=reload,
        reload_timeout_seconds=r.number("reload_timeout_seconds", 30, minimum=0.1),
        probe=probe,
        probe_timeout_seconds=r.number("probe_timeout_seconds", 10, minimum=0.1),
    )


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
