"""The features a running daemon is made of, and the typed hooks they share.

A feature is any object with the six hook methods of :class:`Feature`. The daemon calls
them in the order of the list :func:`features` writes out, so that order is visible here
and nowhere else: the inventory is judged again (a changed trust store) before the
hostname deploy reads the verdicts, and the hostname deploy runs before the expiry check
hands a renewed certificate back, so a hostname service is pointed at it first.
"""

from __future__ import annotations

from typing import Protocol

from certdrop.clock import utc_now
from certdrop.daemon.metrics import MetricsEndpoint
from certdrop.daemon.state import Context
from certdrop.daemon.worker import Worker
from certdrop.fleet.node import FleetNode
from certdrop.intake.rejudge import rejudge
from certdrop.intake.work import Outcome
from certdrop.renewal.expiry_check import ExpiryCheck
from certdrop.services import hostname, reconcile


class Feature(Protocol):
    """What the daemon tells its features, and from which thread."""

    def on_start(self) -> None:
        """Main thread: the watcher runs and start-up recovery is queued."""

    def on_stop(self) -> None:
        """Main thread: stopping; the worker still drains what is queued."""

    def after_recover(self) -> None:
        """Worker: start-up recovery finished (drops left claimed by a crash)."""

    def after_drop(self, outcome: Outcome) -> None:
        """Worker: a drop ended (accepted, held or rejected)."""

    def after_reload(self) -> None:
        """Worker: a new configuration took effect."""

    def after_snapshot(self) -> None:
        """Worker: status.json was rewritten."""


class TrustRejudge:
    """Judge the inventory again when the trust store or profile changed (start-up and
    reload), before the hostname deploy looks at the verdicts."""

    def __init__(self, ctx: Context, worker: Worker) -> None:
        self.ctx = ctx
        self.worker = worker

    def after_recover(self) -> None:
        self._rejudge()

    def after_reload(self) -> None:
        self._rejudge()

    def _rejudge(self) -> None:
        ctx = self.ctx
        if rejudge(ctx.inventory, ctx.log, ctx.trust, utc_now()):
            self.worker.changed()

    def after_drop(self, outcome: Outcome) -> None:
        pass

    def on_start(self) -> None:
        pass

    def on_stop(self) -> None:
        pass

    def after_snapshot(self) -> None:
        pass


class HostnameDeploy:
    """Point ``hostname`` services at new certificates and deploy; reconcile at start-up
    and after a config reload."""

    def __init__(self, ctx: Context, worker: Worker) -> None:
        self.ctx = ctx
        self.worker = worker

    def after_drop(self, outcome: Outcome) -> None:
        changed = hostname.by_hostname(self.ctx, outcome.recorded) if outcome.recorded else []
        if changed:
            reconcile.reconcile(self.ctx, changed)
            self.worker.changed()

    def after_recover(self) -> None:
        self._reconcile_all()

    def after_reload(self) -> None:
        self._reconcile_all()

    def _reconcile_all(self) -> None:
        hostname.by_hostname(self.ctx)
        reconcile.reconcile(self.ctx)
        self.worker.changed()

    def on_start(self) -> None:
        pass

    def on_stop(self) -> None:
        pass

    def after_snapshot(self) -> None:
        pass


def features(ctx: Context, worker: Worker) -> list[Feature]:
    """Every feature of ``certdrop run``, in the order their hooks run. In fleet mode the
    fleet comes last (it publishes what the others changed) and holds the renewal lease."""
    if ctx.config.fleet is None:
        return [
            TrustRejudge(ctx, worker),
            HostnameDeploy(ctx, worker),
            MetricsEndpoint(ctx),
            ExpiryCheck(ctx, worker),
        ]
    node = ctx.fleet = FleetNode(ctx, worker, ctx.config.fleet, ctx.intake)
    return [
        TrustRejudge(ctx, worker),
        HostnameDeploy(ctx, worker),
        MetricsEndpoint(ctx, fleet=node.status_view),
        ExpiryCheck(ctx, worker, may_renew=node.may_renew),
        node,
    ]
