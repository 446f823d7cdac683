"""What the metrics say, computed on the worker: the rows of one snapshot (:func:`numbers`)
as a frozen :class:`Numbers`, and the Prometheus families they become (:func:`families`).
Names and conventions: :mod:`certdrop.daemon.metrics`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from certdrop import __version__
from certdrop.pki import expiry

RESULTS = ("accepted", "held", "rejected")
SERVICE_STATES = ("ok", "pending", "failed")
CERT_LABELS = ("name", "subject", "issuer", "status")


@dataclass(frozen=True)
class CertRow:
    """One certificate's labels and times (Unix seconds), computed on the worker."""

    labels: tuple[str, str, str, str]
    not_before: float
    not_after: float
    renew_at: float
    overdue_at: float
    trusted: bool


@dataclass(frozen=True)
class ServiceRow:
    name: str
    state: str
    ready: bool  # proven to serve the certificate it should have


@dataclass(frozen=True)
class Numbers:
    """Everything one scrape reports; immutable, so the HTTP thread may read it freely."""

    certificates: tuple[CertRow, ...]
    services: tuple[ServiceRow, ...]
    drops: Mapping[tuple[str, str], int]
    renewal_failures: Mapping[str, int]
    held: int
    taken: float
    extra: tuple[Metric, ...] = ()  # families of other parts (the fleet's view)


def _epoch(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        moment = datetime.fromisoformat(iso)  # "...Z" since 3.11; 10x faster than strptime
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def numbers(
    status: Mapping[str, Any],
    drops: Mapping[tuple[str, str], int],
    renewal_failures: Mapping[str, int],
    policy: expiry.Policy,
    taken: float,
    extra: Iterable[Metric] = (),
) -> Numbers:
    """The numbers of a status snapshot plus the inventory's counts. Pure."""
    certs: list[CertRow] = []
    fingerprint: dict[str, str] = {}
    for cert in status.get("certificates", []):
        if cert.get("sha256"):
            fingerprint[str(cert["name"])] = str(cert["sha256"])
        nb, na = _epoch(cert.get("not_before")), _epoch(cert.get("not_after"))
        if nb is None or na is None:
            continue  # a request waiting for its certificate has no dates
        labels = tuple("" if cert.get(k) is None else str(cert[k]) for k in CERT_LABELS)
        certs.append(
            CertRow(
                labels=labels,  # type: ignore[arg-type]
                not_before=nb.timestamp(),
                not_after=na.timestamp(),
                renew_at=expiry.renewal_point(nb, na, policy.renew_before_days).timestamp(),
                overdue_at=expiry.overdue_point(
                    nb, na, policy.warn_days, policy.renew_before_days
                ).timestamp(),
                trusted=bool(cert.get("trusted")),
            )
        )
    services = tuple(
        ServiceRow(
            name=str(s["name"]),
            state=str(s.get("state") or "pending"),
            ready=s.get("state") == "ok"
            and s.get("sha256") is not None
            and fingerprint.get(str(s.get("certificate"))) == s.get("sha256"),
        )
        for s in status.get("services", [])
    )
    counted = {(r, ""): 0 for r in RESULTS if r != "rejected"}
    counted.update(drops)
    return Numbers(
        certificates=tuple(certs),
        services=services,
        drops=counted,
        renewal_failures=dict(renewal_failures),
        held=len(status.get("held", [])),
        taken=taken,
        extra=tuple(extra),
    )


def families(n: Numbers) -> Iterator[Metric]:
    """The metric families of ``n``, as prometheus_client's encoders take them. Pure."""
    for metric, attr, text in (
        ("expiration", "not_after", "Unix time a certificate in the inventory expires (notAfter)."),
        ("not_before", "not_before", "Unix time a certificate in the inventory becomes valid."),
        ("renewal", "renew_at", "Unix time certdrop starts renewing a certificate in use."),
        (
            "renewal_overdue",
            "overdue_at",
            "Unix time an unfinished renewal becomes overdue (certdrop check says CRITICAL).",
        ),
    ):
        gauge = GaugeMetricFamily(
            f"certdrop_certificate_{metric}_timestamp_seconds", text, labels=CERT_LABELS
        )
        for row in n.certificates:
            gauge.add_metric(row.labels, getattr(row, attr))
        yield gauge
    trusted = GaugeMetricFamily(
        "certdrop_certificate_trusted",
        "1 when a certificate passes path validation to a root of the trust store "
        "(trust.ca_bundle, trust.profile), else 0.",
        labels=CERT_LABELS,
    )
    for row in n.certificates:
        trusted.add_metric(row.labels, float(row.trusted))
    yield trusted
    state = GaugeMetricFamily(
        "certdrop_service_state",
        "1 for the state each configured service is in (ok, pending, failed), else 0.",
        labels=("service", "state"),
    )
    ready = GaugeMetricFamily(
        "certdrop_service_ready",
        "1 when a service was proven to serve the certificate it should have, else 0.",
        labels=("service",),
    )
    for svc in n.services:
        for name in SERVICE_STATES:
            state.add_metric((svc.name, name), float(svc.state == name))
        ready.add_metric((svc.name,), float(svc.ready))
    yield state
    yield ready
    drops = CounterMetricFamily(
        "certdrop_drops",
        "Drops that ended in each result (and rejection code) since the state was made.",
        labels=("result", "code"),
    )
    for (result, code), count in sorted(n.drops.items()):
        drops.add_metric((result, code), float(count))
    yield drops
    failures = CounterMetricFamily(
        "certdrop_renewal_failures",
        "Failed renewal attempts by stage (request, command, deploy) since the state was made.",
        labels=("stage",),
    )
    for stage, count in sorted(n.renewal_failures.items()):
        failures.add_metric((stage,), float(count))
    yield failures
    yield GaugeMetricFamily(
        "certdrop_held_pieces",
        "Certificates and keys held while they wait for their partner.",
        value=float(n.held),
    )
    yield GaugeMetricFamily(
        "certdrop_snapshot_timestamp_seconds",
        "Unix time these numbers were taken from the inventory.",
        value=n.taken,
    )
    yield InfoMetricFamily(
        "certdrop_build", "The certdrop version running.", {"version": __version__}
    )
