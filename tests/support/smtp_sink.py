"""An aiosmtpd sink on 127.0.0.1 that records the client certificates it saw."""

from __future__ import annotations

import queue
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from support.process import LOOPBACK, Service, sha256_hex


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


class SmtpSink(Service):
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
