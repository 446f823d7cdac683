"""The fleet kit: deploy/nats configs are valid for nats-server, and the [fleet] TLS keys
give a mutually authenticated connection to a real TLS-only NATS."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import trustme

from certdrop.fleet.engine import Engine, Settings
from certdrop.fleet.kv import Unavailable
from support.daemon import ROOT
from support.nats_cluster import NatsCluster
from support.process import need

pytestmark = pytest.mark.real


@pytest.mark.parametrize("name", ["nats-1.conf", "nats-2.conf", "nats-3.conf"])
def test_the_shipped_node_configs_are_valid(name: str) -> None:
    """Each deploy/nats node config passes nats-server's own config test."""
    done = subprocess.run(
        [need("nats-server"), "-c", str(ROOT / "deploy" / "nats" / name), "-t"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_mutual_tls_to_nats_works_and_no_client_certificate_is_refused(tmp_path: Path) -> None:
    """With tls_ca, tls_cert and tls_key the engine connects over tls:// and writes; the
    same server refuses an engine that shows no client certificate."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("gw-a.fleet.test")
    files = {}
    for label, blob in {
        "ca": ca.cert_pem.bytes(),
        "server": server.private_key_and_cert_chain_pem.bytes(),
        "client_cert": b"".join(c.bytes() for c in client.cert_chain_pems),
        "client_key": client.private_key_pem.bytes(),
    }.items():
        files[label] = tmp_path / f"{label}.pem"
        files[label].write_bytes(blob)
    files["client_key"].chmod(0o600)
    tls = (
        f'tls {{ cert_file: "{files["server"]}", key_file: "{files["server"]}",\n'
        f'      ca_file: "{files["ca"]}", verify: true, timeout: 2 }}\n'
    )
    with NatsCluster(tmp_path / "nats", size=1, extra=tls) as cluster:
        url = cluster.urls[0].replace("nats://", "tls://")
        good = Engine(
            Settings((url,), tls_ca=str(files["ca"]), tls_cert=str(files["client_cert"]),
                     tls_key=str(files["client_key"]), replicas=1),
            ("t_tls",),
        )  # fmt: skip
        ups: list[bool] = []
        bad = Engine(Settings((url,), tls_ca=str(files["ca"]), replicas=1, timeout=1), ("t_tls",),
                     lambda up, detail: ups.append(up))  # fmt: skip
        good.start()
        bad.start()
        try:
            assert good.wait_ready(20)
            good.create("t_tls", "k", b"over tls")
            assert good.get("t_tls", "k").value == b"over tls"  # type: ignore[union-attr]
            deadline = time.monotonic() + 10
            while not ups and time.monotonic() < deadline:
                time.sleep(0.05)
            assert ups == [False] and not bad.connected
            with pytest.raises(Unavailable):
                bad.get("t_tls", "k")
        finally:
            good.close()
            bad.close()
