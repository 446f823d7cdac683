"""Ask a live service which certificate it serves.

A probe is one TLS handshake: plain TLS for ``https://host:port`` and EHLO + STARTTLS for
``smtp://host:port``. It verifies nothing (the point is to see *what* is served, not to
trust it), so it uses a bare client context: ``ssl.create_default_context()`` loads the
system trust store and costs ~65 ms a probe, a bare context ~6 ms.

``served_fingerprint`` answers once; ``wait_for_fingerprint`` answers "is it done", which
after an nginx reload takes several handshakes in a row: old workers keep serving the old
certificate to some connections for up to ~125 ms.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import math
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from certdrop.errors import CertdropError

__all__ = ["ProbeError", "ProbeResult", "served_fingerprint", "wait_for_fingerprint"]

_DEFAULT_PORTS = {"https": 443, "smtp": 25}
# Sent as our EHLO name; smtplib's default calls socket.getfqdn(), a DNS lookup.
_EHLO_NAME = "certdrop-probe"


class ProbeError(CertdropError):
    """A probe got no certificate from ``url``; ``reason`` says why in one sentence."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {reason}")


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of waiting for a service to serve a certificate.

    ``seen`` is the fingerprint of the last successful handshake (None if none succeeded),
    ``attempts`` the number of handshakes tried, ``detail`` one sentence for a person.
    """

    ok: bool
    seen: str | None
    attempts: int
    detail: str


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int

    @property
    def sni(self) -> str | None:
        """The name to send as SNI: the host if it is a name, nothing for an IP address."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return self.host
        return None


def _parse(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ProbeError(
            url, f"the URL is malformed ({exc}); use https://HOST:PORT or smtp://HOST:PORT"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ProbeError(
            url,
            f"unsupported URL scheme {parts.scheme!r}; use https://HOST:PORT or smtp://HOST:PORT",
        )
    if not parts.hostname:
        raise ProbeError(url, "the URL has no host; use https://HOST:PORT or smtp://HOST:PORT")
    return _Target(scheme, parts.hostname, port if port is not None else _DEFAULT_PORTS[scheme])


def _client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _fingerprint(url: str, sock: ssl.SSLSocket) -> str:
    der = sock.getpeercert(binary_form=True)
    if not der:
        raise ProbeError(
            url, "the server completed the TLS handshake without presenting a certificate"
        )
    return hashlib.sha256(der).hexdigest()


def _probe_https(url: str, target: _Target, timeout: float) -> str:
    with (
        socket.create_connection((target.host, target.port), timeout=timeout) as raw,
        _client_context().wrap_socket(raw, server_hostname=target.sni) as tls,
    ):
        return _fingerprint(url, tls)


def _probe_smtp(url: str, target: _Target, timeout: float) -> str:
    # smtplib sends the constructor's host as server_hostname; CPython sends no SNI for an IP.
    smtp = smtplib.SMTP(target.host, target.port, local_hostname=_EHLO_NAME, timeout=timeout)
    try:
        smtp.ehlo()
        if not smtp.has_extn("starttls"):
            raise ProbeError(
                url,
                "the SMTP server does not advertise STARTTLS; enable TLS "
                "on it (postfix: smtpd_tls_security_level=may)",
            )
        smtp.starttls(context=_client_context())
        if not isinstance(smtp.sock, ssl.SSLSocket):
            raise ProbeError(url, "STARTTLS did not switch the connection to TLS")
        fingerprint = _fingerprint(url, smtp.sock)
        # A polite QUIT keeps "lost connection after STARTTLS" out of the mail log.
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()
        return fingerprint
    finally:
        smtp.close()


def served_fingerprint(url: str, timeout: float = 5.0) -> str:
    """Return the lowercase sha256 hex of the DER certificate the service at ``url`` serves.

    ``timeout`` bounds each network step (connect, each read). Every failure is a
    ``ProbeError`` with one sentence saying what went wrong.
    """
    target = _parse(url)
    where = f"{target.host}:{target.port}"
    try:
        if target.scheme == "https":
            return _probe_https(url, target, timeout)
        return _probe_smtp(url, target, timeout)
    except ProbeError:
        raise
    except ConnectionRefusedError:
        reason = f"connection refused: nothing listens on {where}; is the service running?"
    except TimeoutError:
        reason = f"no answer from {where} within {timeout:g} s"
    except smtplib.SMTPServerDisconnected as exc:
        if "timed out" in str(exc):  # smtplib wraps a read timeout in this
            reason = f"no answer from {where} within {timeout:g} s"
        else:
            reason = f"the server at {where} closed the connection before TLS was set up"
    except ssl.SSLError as exc:
        reason = f"the TLS handshake with {where} failed ({exc.reason or exc}); is it a TLS port?"
    except smtplib.SMTPException as exc:
        reason = f"the SMTP dialogue with {where} failed: {exc}"
    except socket.gaierror as exc:
        reason = f"cannot resolve {target.host!r}: {exc.strerror}"
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
        reason = (
            f"the server at {where} dropped the connection during the handshake "
            f"({exc.strerror or type(exc).__name__}); is it a TLS port?"
        )
    except OSError as exc:
        reason = f"cannot connect to {where}: {exc.strerror or exc}"
    except Exception as exc:  # noqa: BLE001 - the contract: only ProbeError leaves here
        reason = f"unexpected {type(exc).__name__} while probing {where}: {exc}"
    raise ProbeError(url, reason)


def wait_for_fingerprint(
    url: str,
    expected: str,
    *,
    consecutive: int = 3,
    timeout: float = 10.0,
    interval: float = 0.05,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ProbeResult:
    """Probe ``url`` until ``consecutive`` handshakes in a row serve ``expected``.

    Gives up after ``timeout`` seconds or ``ceil(timeout / interval) + consecutive``
    handshakes, whichever comes first, and says what it saw last. ``expected`` may be
    upper case or colon-separated.
    """
    if consecutive < 1:
        raise ValueError(f"consecutive must be at least 1, not {consecutive}")
    if interval <= 0:
        raise ValueError(f"interval must be positive, not {interval}")
    want = expected.replace(":", "").strip().lower()
    max_attempts = math.ceil(max(timeout, 0.0) / interval) + consecutive
    deadline = clock() + timeout
    attempts = streak = 0
    seen: str | None = None
    last_error: str | None = None
    while True:
        attempts += 1
        step = min(5.0, max(deadline - clock(), 0.05))
        try:
            got = served_fingerprint(url, timeout=step)
        except ProbeError as exc:
            streak, last_error = 0, exc.reason
        else:
            seen, last_error = got, None
            streak = streak + 1 if got == want else 0
            if streak >= consecutive:
                return ProbeResult(
                    True,
                    seen,
                    attempts,
                    f"{url} served the expected certificate on {streak} handshakes in a row",
                )
        if attempts >= max_attempts or clock() + interval > deadline:
            break
        sleep(interval)
    if last_error is not None:
        detail = f"{url} gave no certificate on the last handshake: {last_error}"
    elif seen is None:
        detail = f"{url} gave no certificate within {timeout:g} s"
    elif seen == want:
        detail = (
            f"{url} served the expected certificate on only {streak} handshakes in a "
            f"row of {consecutive} needed"
        )
    else:
        detail = f"{url} still serves {seen[:16]}..., not the expected {want[:16]}..."
    return ProbeResult(False, seen, attempts, f"{detail} ({attempts} handshakes)")
