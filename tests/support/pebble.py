"""A private pebble ACME CA on 127.0.0.1 for the renewal hand-off."""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.request
from pathlib import Path

import trustme

from support.process import LOOPBACK, Service, ServiceProcess, free_port, need, write_private


class Pebble(Service):
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
        write_private(key_file, leaf.private_key_pem.bytes())
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
