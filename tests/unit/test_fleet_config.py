"""The [fleet] table: absent means a single gateway; every problem is named at once."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from certdrop.config import from_mapping
from certdrop.errors import ConfigError


def test_no_fleet_table_is_a_single_gateway(tmp_path: Path) -> None:
    """Without [fleet] the config has no fleet: certdrop behaves as before fleet mode."""
    assert from_mapping({}, base=tmp_path, source="t").fleet is None


def test_a_fleet_table_is_read_with_paths_from_the_config_folder(tmp_path: Path) -> None:
    """Servers, names and files are read; relative paths are taken from the config's folder."""
    config = from_mapping(
        {
            "state": "st",
            "fleet": {
                "servers": ["nats://10.0.0.1:4222", "tls://nats.example:4443"],
                "gateway": "gw-b",
                "tls_ca": "ca.pem",
                "tls_cert": "c.pem",
                "tls_key": "k.pem",
                "creds": "/etc/nats/gw.creds",
                "heartbeat_seconds": 5,
            },
        },
        base=tmp_path,
        source="t",
    )
    fleet = config.fleet
    assert fleet is not None
    assert fleet.servers == ("nats://10.0.0.1:4222", "tls://nats.example:4443")
    assert fleet.gateway == "gw-b" and fleet.heartbeat_seconds == 5 and fleet.replicas == 3
    assert fleet.tls_ca == str(tmp_path / "ca.pem") and fleet.creds == "/etc/nats/gw.creds"
    assert fleet.identity == tmp_path / "st" / "fleet.identity"


def test_the_gateway_name_defaults_to_the_short_host_name(tmp_path: Path) -> None:
    """An empty gateway name is this machine's host name without its domain."""
    config = from_mapping(
        {"fleet": {"servers": ["nats://127.0.0.1:4222"]}}, base=tmp_path, source="t"
    )
    assert config.fleet is not None
    assert config.fleet.gateway == socket.gethostname().split(".")[0]


def test_every_fleet_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Bad URLs, a dotted name, half a TLS pair and a typo are all named in one error."""
    with pytest.raises(ConfigError) as caught:
        from_mapping(
            {
                "fleet": {
                    "servers": ["http://x:1", "nats://:4222"],
                    "gateway": "gw.example.com",
                    "tls_cert": "c.pem",
                    "sever": "typo",
                }
            },
            base=tmp_path,
            source="certdrop.toml",
        )
    problems = caught.value.problems
    assert any("'http://x:1' must be nats://HOST" in p for p in problems)
    assert any("'nats://:4222' must be" in p for p in problems)
    assert any("fleet.gateway 'gw.example.com'" in p for p in problems)
    assert any("tls_cert and fleet.tls_key go together" in p for p in problems)
    assert any("fleet.sever is not a known setting" in p for p in problems)


def test_an_empty_server_list_is_refused(tmp_path: Path) -> None:
    """[fleet] without servers says what to write."""
    with pytest.raises(ConfigError, match=r"fleet\.servers must list the NATS URLs"):
        from_mapping({"fleet": {"gateway": "a"}}, base=tmp_path, source="t")
