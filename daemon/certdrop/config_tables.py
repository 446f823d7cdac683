"""The ``[services.NAME]`` and ``[fleet]`` tables of the configuration, and the reader that
pulls typed values out of any table, collecting every problem found (used by
:mod:`certdrop.config`, which assembles the whole :class:`~certdrop.config.Config`)."""

from __future__ import annotations

import grp
import pwd
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from certdrop.pki import domains
from certdrop.pki.trust import HostnameError, subject_for

ROLES = ("https", "smtp-server", "smtp-client")
KEY_FORMATS = ("pkcs1", "pkcs8")
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


class TableReader:
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



def read_fleet(
    table: Mapping[str, Any], problems: list[str], path: Any, state: Path
) -> FleetConfig:
    """The ``[fleet]`` table; the identity file defaults to ``state/fleet.identity``."""
    r = TableReader(problems, "fleet.", table)
    keys = ("gateway", "identity", "tls_ca", "tls_cert", "tls_key", "creds")
    r.unknown({"servers", "replicas", "heartbeat_seconds", "lease_seconds", *keys})
    servers = r.strings("servers")
    if not servers:
        problems.append('fleet.servers must list the NATS URLs, e.g. ["nats://10.0.0.1:4222"]')
    for url in servers:
        if not url.startswith(("nats://", "tls://")) or not is_host_port_url(url):
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


def is_host_port_url(url: str) -> bool:
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


def shared_files(services: Mapping[str, ServiceConfig]) -> list[str]:
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


def read_service(
    name: str, table: Mapping[str, Any], problems: list[str], path: Any
) -> ServiceConfig | None:
    """One ``[services.NAME]`` table; None (with the problems noted) when it is unusable."""
    where = f"services.{name}."
    r = TableReader(problems, where, table)
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
    elif probe and not is_host_port_url(probe):
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
