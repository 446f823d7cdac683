"""The values one drop's processing passes around."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from certdrop.pki import chain as chains
from certdrop.pki.assemble import Checked


@dataclass
class Outcome:
    """What became of one drop."""

    file: str
    result: str  # accepted | held | rejected
    recorded: list[str] = field(default_factory=list)
    code: str = ""
    reason: str = ""


@dataclass
class Work:
    """Changes planned for one drop, and the events to log once they are committed."""

    recorded: list[str] = field(default_factory=list)
    held: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    intermediates: int = 0
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    leaf_chains: list[chains.Chain] = field(default_factory=list)  # for `certdrop inspect`

    def event(self, level: str, event: str, /, **fields: Any) -> None:
        self.events.append((level, event, fields))

    def imported(self, name: str, paired_with: str, info: dict[str, Any], checked: Checked) -> None:
        """``cert.imported`` with the trust verdict, and a warning when it is no trust:
        ``cert.chain_incomplete`` when the chain reaches no root at all (intermediates
        missing, or the root not in trust.ca_bundle), else ``cert.untrusted`` (path
        validation found a defect; the detail names it)."""
        verdict = checked.verdict
        self.event(
            "info",
            "cert.imported",
            name=name,
            paired_with=paired_with,
            trusted=verdict.trusted,
            **({} if verdict.trusted else {"trust_detail": verdict.detail}),
            intermediates=len(checked.chain.intermediates),
            **{k: info[k] for k in ("sha256", "subject", "issuer", "not_after")},
        )
        if not verdict.trusted:
            event = "cert.chain_incomplete" if checked.chain.root is None else "cert.untrusted"
            self.event("warning", event, name=name, sha256=info["sha256"], detail=verdict.detail)
