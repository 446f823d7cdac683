"""Deploy: make every service verifiably serve the certificate it should have.

The inventory's ``services`` table holds, per service, the certificate it should have
(``desired``) and the fingerprint it was proven to serve (``deployed_sha256``). Deploying
is reconciling the two, so a crash anywhere is repaired by reconciling again:

1. check the pair and plan the files (pure: :mod:`certdrop.pki.layout`);
2. keep the last good files, then install the new ones (:mod:`certdrop.services.install`);
3. run each distinct reload command once for all the services that share it;
4. probe until the new fingerprint is served on ``PROBE_CONSECUTIVE`` handshakes in a row;
5. on a failed reload or probe: restore the last good files, reload again, prove the old
   certificate is served, and mark the service ``failed`` with the reason.
"""

from __future__ import annotations

import contextlib
import grp
import pwd
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from certdrop.clock import iso, utc_now
from certdrop.config import Config, ServiceConfig
from certdrop.errors import UserError
from certdrop.pki import layout
from certdrop.pki.names import normal
from certdrop.services import install as deployfiles
from certdrop.services.install import KEEP, FileError, Saved
from certdrop.services.probe import ProbeResult, wait_for_fingerprint
from certdrop.services.reload import ReloadResult, run_reload
from certdrop.store.context import Context
from certdrop.store.inventory import Inventory
from certdrop.store.rows import Entry

# Old nginx workers serve the old certificate for up to ~125 ms after a reload; four
# handshakes 50 ms apart span at least 150 ms of the new one.
PROBE_CONSECUTIVE = 4
PROBE_INTERVAL = 0.05

T = TypeVar("T")


@dataclass(frozen=True)
class ServiceResult:
    """Where one service stands after a reconcile.

    ``sha256`` is what it was proven to serve (None if never proven), ``changed`` whether
    files were written and a reload run for it in this call.
    """

    service: str
    certificate: str | None
    sha256: str | None
    state: str  # ok | pending | failed
    detail: str
    changed: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "service": self.service,
            "certificate": self.certificate,
            "sha256": self.sha256,
            "state": self.state,
            "detail": self.detail,
            "changed": self.changed,
        }


@dataclass
class _Job:
    """One service to deploy in this reconcile."""

    service: ServiceConfig
    entry: Entry
    files: tuple[layout.ServiceFile, ...]
    uid: int
    gid: int
    previous: str | None
    baseline: Saved = field(default_factory=lambda: Saved(None, ()))

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def sha256(self) -> str:
        assert self.entry.sha256 is not None
        return self.entry.sha256


# -- public -------------------------------------------------------------------------------
def checked_assignment(
    config: Config, inventory: Inventory, name: str, services: Sequence[str]
) -> tuple[list[str], Entry, bytes]:
    """The services, entry and key of assigning ``name``; a UserError for an unknown
    certificate or service, a pending request, or a pair that cannot be deployed now."""
    wanted = known_services(config, services)
    entry = inventory.entry(normal(name))
    if entry is None:
        raise UserError(f"no certificate named {name!r}; `certdrop status` lists them")
    key_pem = inventory.key_pem(entry.name)
    if entry.cert_pem is None or key_pem is None or entry.status == "requested":
        raise UserError(
            f"{entry.name!r} is a request waiting for its certificate; drop the issued "
            "certificate first, then assign it"
        )
    problem = layout.pair_problem(entry.cert_pem, entry.chain_pem or b"", key_pem, utc_now())
    if problem is not None:
        raise UserError(f"{entry.name!r} cannot be deployed: {problem}")
    return wanted, entry, key_pem


def assign(
    ctx: Context,
    name: str,
    services: Sequence[str],
    *,
    by: str = "assign",
    in_transaction: Callable[[], None] = lambda: None,
) -> list[ServiceResult]:
    """Make ``name`` the desired certificate of ``services`` and deploy it to them now.

    ``in_transaction`` runs inside the transaction that records the choice (fleet mode
    queues the decision in its outbox there, so the two commit together).

    Raises UserError (changing nothing) for an unknown certificate or service, a pending
    request, or a pair that is mismatched or out of its validity window.
    """
    wanted, entry, _ = checked_assignment(ctx.config, ctx.inventory, name, services)
    name = entry.name
    at = iso(utc_now())
    with ctx.inventory.transaction():
        for service in wanted:
            ctx.inventory.set_desired(service, name, f"assigned {name}; deploying", at)
        ctx.inventory.sync_usage(set(ctx.config.services))
        in_transaction()
    for service in wanted:
        ctx.log.info(
            "service.assigned", service=service, certificate=name, sha256=entry.sha256, by=by
        )
    return reconcile(ctx, wanted)


def reconcile(ctx: Context, services: Sequence[str] | None = None) -> list[ServiceResult]:
    """Deploy wherever desired and deployed differ (or the files on disk drifted).

    ``services`` limits it to those names (default: every configured service). A service
    already serving its desired certificate from the right files is left alone.
    """
    names = known_services(ctx.config, services)
    now = utc_now()
    with ctx.inventory.transaction():
        ctx.inventory.sync_usage(set(ctx.config.services))
    results: dict[str, ServiceResult] = {}
    jobs: list[_Job] = []
    for name in names:
        service = ctx.config.services[name]
        row = ctx.inventory.service(name)
        desired = row.desired if row is not None else None
        deployed = row.deployed_sha256 if row is not None else None
        if not desired:
            results[name] = ServiceResult(
                name, None, deployed, "pending", "no certificate assigned"
            )
            continue
        entry = ctx.inventory.entry(desired)
        key_pem = ctx.inventory.key_pem(desired)
        if entry is None or entry.cert_pem is None or key_pem is None:
            problem: str | None = (
                f"the certificate {desired!r} is no longer in the inventory; assign another"
            )
        else:
            problem = layout.pair_problem(entry.cert_pem, entry.chain_pem or b"", key_pem, now)
        if problem is None:
            assert entry is not None and entry.cert_pem is not None and key_pem is not None
            try:
                uid, gid = owner_ids(service)
                files = layout.plan(service, entry.cert_pem, entry.chain_pem or b"", key_pem)
            except (FileError, ValueError, TypeError) as exc:
                problem = getattr(exc, "reason", None) or f"the stored key cannot be used ({exc})"
        if problem is not None:
            results[name] = _fail(ctx, name, desired, deployed, problem, touched=False)
            continue
        assert entry is not None
        if (
            row is not None
            and row.state == "ok"
            and deployed == entry.sha256
            and deployfiles.matches(files, uid, gid)
        ):
            results[name] = ServiceResult(name, desired, deployed, "ok", row.detail)
            continue
        jobs.append(_Job(service, entry, files, uid, gid, deployed))
    groups: dict[tuple[str, ...], list[_Job]] = {}
    for job in jobs:
        groups.setdefault(job.service.reload, []).append(job)
    for argv, group in groups.items():
        for result in _deploy_group(ctx, argv, group):
            results[result.service] = result
    return [results[name] for name in names]


# -- one group of services sharing a reload command --------------------------------------------
def _deploy_group(ctx: Context, argv: tuple[str, ...], jobs: list[_Job]) -> list[ServiceResult]:
    started = time.monotonic()
    state = ctx.config.state
    at = iso(utc_now())
    with ctx.inventory.transaction():
        for job in jobs:
            ctx.inventory.set_service_state(job.name, "pending", f"deploying {job.entry.name}", at)
    results: list[ServiceResult] = []
    installed: list[_Job] = []
    for job in jobs:
        try:
            job.baseline = deployfiles.keep_baseline(state, job.name, job.files)
            deployfiles.install(job.files, job.uid, job.gid)
        except FileError as exc:
            if exc.changed:  # a rename failed half-way: put the old set back
                with contextlib.suppress(FileError):
                    deployfiles.restore(job.baseline, [f.path for f in job.files])
            results.append(
                _fail(ctx, job.name, job.entry.name, job.previous, exc.reason, exc.changed)
            )
            continue
        installed.append(job)
    if not installed:
        return results
    timeout = max(j.service.reload_timeout_seconds for j in installed)
    reload = run_reload(argv, timeout)
    failing: list[tuple[_Job, str]] = []
    if not reload.ok:
        failing = [(job, f"reload failed: {reload.detail}") for job in installed]
    else:
        proofs = _in_parallel([_prover(job.service, job.sha256) for job in installed])
        for job, proof in zip(installed, proofs, strict=True):
            if proof is not None and not proof.ok:
                failing.append((job, f"the new certificate was not served: {proof.detail}"))
                continue
            detail = proof.detail if proof is not None else "not probed"
            results.append(_applied(ctx, job, detail, reload, time.monotonic() - started))
    if failing:
        results += _roll_back(ctx, argv, failing)
    return results


def _applied(
    ctx: Context, job: _Job, detail: str, reload: ReloadResult, seconds: float
) -> ServiceResult:
    deployfiles.save_good(ctx.config.state, job.name, job.files, job.uid, job.gid, job.sha256)
    with ctx.inventory.transaction():
        ctx.inventory.set_service_state(job.name, "ok", detail, iso(utc_now()), job.sha256)
    ctx.log.info(
        "service.applied",
        service=job.name,
        certificate=job.entry.name,
        sha256=job.sha256,
        previous_sha256=job.previous,
        files=[str(f.path) for f in job.files],
        reload_seconds=round(reload.seconds, 3),
        seconds=round(seconds, 3),
        detail=detail,
    )
    return ServiceResult(job.name, job.entry.name, job.sha256, "ok", detail, changed=True)


def _roll_back(
    ctx: Context, argv: tuple[str, ...], failing: list[tuple[_Job, str]]
) -> list[ServiceResult]:
    restore_errors: dict[str, str] = {}
    for job, _ in failing:
        try:
            deployfiles.restore(job.baseline, [f.path for f in job.files])
        except FileError as exc:
            restore_errors[job.name] = exc.reason
    timeout = max(job.service.reload_timeout_seconds for job, _ in failing)
    reload = run_reload(argv, timeout)
    olds = [job.baseline.served_sha256() for job, _ in failing]
    # Probed even when the reload failed: a service that refused the new files usually
    # still serves the old certificate, and saying so is worth a handshake.
    checks: list[Callable[[], ProbeResult | None]] = [
        _prover(job.service, old) if old else _nothing
        for (job, _), old in zip(failing, olds, strict=True)
    ]
    proofs = _in_parallel(checks)
    results = []
    for (job, reason), old, proof in zip(failing, olds, proofs, strict=True):
        proven = proof is not None and proof.ok
        back = _rollback_detail(restore_errors.get(job.name), old, reload, proof)
        ctx.log.warning(
            "service.rolled_back",
            service=job.name,
            certificate=job.entry.name,
            sha256=old,
            proven=proven,
            reason=reason,
            detail=back,
        )
        deployed = old if proven else job.previous
        results.append(_fail(ctx, job.name, job.entry.name, deployed, f"{reason}; {back}", True))
    return results


def _rollback_detail(
    restore_error: str | None, old: str | None, reload: ReloadResult, proof: ProbeResult | None
) -> str:
    """One sentence on where a rollback left the service."""
    if restore_error is not None:
        return f"the previous files could not be restored: {restore_error}"
    if old is None:
        return "there was no previous certificate, so the new files were removed"
    done = "previous files restored and reloaded"
    if not reload.ok:
        done = f"previous files restored; the reload failed again ({reload.summary})"
    if proof is None:
        return f"{done}; not probed"
    if proof.ok:
        return f"{done}; the previous certificate {old[:16]}... is served"
    return f"{done}; the previous certificate is not served either: {proof.detail}"


def _fail(
    ctx: Context,
    name: str,
    certificate: str | None,
    deployed: str | None,
    reason: str,
    touched: bool,
) -> ServiceResult:
    with ctx.inventory.transaction():
        ctx.inventory.set_service_state(name, "failed", reason, iso(utc_now()), deployed)
    ctx.log.error("service.failed", service=name, certificate=certificate, reason=reason)
    return ServiceResult(name, certificate, deployed, "failed", reason, changed=touched)


# -- probing --------------------------------------------------------------------------------
def _nothing() -> None:
    return None


def _prover(service: ServiceConfig, sha256: str) -> Callable[[], ProbeResult | None]:
    """A call that proves ``service`` serves ``sha256`` (None: the service has no probe)."""
    if not service.probe:
        return _nothing

    def prove() -> ProbeResult:
        return wait_for_fingerprint(
            service.probe,
            sha256,
            consecutive=PROBE_CONSECUTIVE,
            timeout=service.probe_timeout_seconds,
            interval=PROBE_INTERVAL,
        )

    return prove


def _in_parallel(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run the calls (probes of different services) at once; results in call order."""
    if len(calls) <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=min(8, len(calls)), thread_name_prefix="probe") as pool:
        return list(pool.map(lambda call: call(), calls))


# -- helpers ----------------------------------------------------------------------------
def known_services(config: Config, services: Sequence[str] | None) -> list[str]:
    """``services`` (default: every configured one), each checked to be configured."""
    configured = config.services
    if services is None:
        return sorted(configured)
    unknown = [s for s in services if s not in configured]
    if unknown:
        have = ", ".join(sorted(configured)) or "none"
        raise UserError(
            f"no service named {', '.join(map(repr, unknown))} in {config.source} "
            f"(configured: {have}); add a [services.NAME] table or fix the name"
        )
    return list(dict.fromkeys(services))


def owner_ids(service: ServiceConfig) -> tuple[int, int]:
    """The uid and gid the service's files get (KEEP: the daemon's own)."""
    uid = gid = KEEP
    try:
        if service.owner:
            uid = pwd.getpwnam(service.owner).pw_uid
        if service.group:
            gid = grp.getgrnam(service.group).gr_gid
    except KeyError:
        raise FileError(
            f"services.{service.name}: the owner {service.owner!r} or group {service.group!r} "
            "does not exist on this system; create it or fix the config"
        ) from None
    return uid, gid
