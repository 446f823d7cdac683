"""``certdrop inspect FILE... [--json]``: what dropping each file would do, changing nothing."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from certdrop import config as configuration
from certdrop.cli.common import Subparsers, add_json, command, completes_files, print_json
from certdrop.cli.table import safe
from certdrop.daemon.state import rehearsing
from certdrop.errors import Rejection, UserError
from certdrop.intake import inspect as inspection
from certdrop.intake.inbox import display_name
from certdrop.intake.pipeline import Intake
from certdrop.store.eventlog import open_log


def add_parser(sub: Subparsers) -> None:
    p = command(
        sub,
        "inspect",
        "say what dropping files would do; changes nothing",
        "Run files through the same intake as a drop, against a private copy of the "
        "inventory that is thrown away: the pieces found, what pairs with what (in these "
        "files, with held pieces, with pending requests), each chain and whether it is "
        "trusted, the entry names, and the verdict with the rejection code and reason a "
        "drop would get. Files count as dropped one after the other, in the order given. "
        "Nothing is moved, recorded or logged; the state folder stays byte-identical.",
        """
        certdrop inspect server.pem
        certdrop inspect server.crt server.key   # the key pairs with the certificate
        certdrop inspect --json '本番 証明書.pfx' | jq '.[0].result'
        """,
    )
    completes_files(
        p.add_argument("files", metavar="FILE", nargs="+", help="files as they would be dropped")
    )
    add_json(p)
    p.set_defaults(handler=run_inspect)


def run_inspect(config: configuration.Config, args: argparse.Namespace) -> int:
    files: list[tuple[str, bytes | Rejection]] = []
    for name in args.files:
        path = Path(name)
        try:
            files.append((display_name(path.name), inspection.read(path, config.max_file_bytes)))
        except OSError as exc:
            raise UserError(f"cannot read {name}: {exc.strerror or exc}") from None
    # The pipeline only logs after a commit, which a rehearsal never reaches; should it
    # ever log, the line goes nowhere.
    log, sink = open_log(Path(os.devnull), echo=False)
    try:
        with rehearsing(config) as inventory:
            findings = inspection.inspect(Intake(config, inventory, log, rehearsal=True), files)
    finally:
        sink.close()
    if args.json:
        print_json(findings)
    else:
        sys.stdout.write(render(findings))
    return 0


def render(findings: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for f in findings:
        verdict = f["result"]
        if verdict == "rejected":
            verdict += f" ({f['code']}): {f['reason']}"
        elif f.get("entries"):
            verdict += f" as {', '.join(f['entries'])}"
        lines.append(f"{safe(f['file'])}: would be {safe(verdict)}")
        for piece in f["pieces"]:
            lines.append(f"  {_piece(piece)}")
        for pair in f.get("pairs", []):
            key = safe(pair["paired_with"])
            lines.append(f"  pairs: {safe(pair['certificate'])} with the key from {key}")
        for held in f.get("held", []):
            what = held.get("subject") or held.get("key") or ""
            lines.append(f"  held: {held['kind']} {safe(what)} waits for its partner")
        for dup in f.get("duplicate_of", []):
            lines.append(f"  already known: {safe(dup)}")
        for chain in f.get("chains", []):
            path = " <- ".join([chain["leaf"], *chain["intermediates"]])
            end = f"root {chain['root']}" if chain["root"] else "no trusted root"
            word = "trusted" if chain["trusted"] else "NOT trusted"
            lines.append(f"  chain: {safe(path)} <- {safe(end)} ({word})")
        if f.get("csr"):
            lines.append(f"  CSR would be written to {safe(f['csr'])}")
    return "\n".join(lines) + "\n"


def _piece(p: dict[str, Any]) -> str:
    kind = p["kind"]
    if kind in ("certificate", "intermediate"):
        return f"{kind}: {safe(p['subject'])}, until {p['not_after']}, sha256 {p['sha256'][:16]}"
    if kind == "key":
        return f"key: {p['type']} {p['bits']}"
    if kind == "csr":
        return f"CSR: {safe(p['subject'])}"
    return f"request: {safe(p.get('name'))} for {safe(', '.join(p.get('sans') or []))}"
