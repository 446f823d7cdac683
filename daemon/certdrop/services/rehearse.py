"""``certdrop assign --dry-run``: what assigning a certificate would do, doing nothing.

The same checks as :func:`certdrop.services.reconcile.assign` (known services, an issued
certificate, a pair that can be deployed now) and the same file plan
(:func:`certdrop.pki.layout.plan`); then, per service, the files it would write (path,
owner, group, mode, size, whether they already hold those bytes), the reload command
(run once for all services that share it) and the probe. Nothing is written, reloaded
or recorded; key bytes never leave the plan.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from typing import Any

from certdrop.config import Config, ServiceConfig
from certdrop.pki import layout
from certdrop.services.install import KEEP, FileError
from certdrop.services.reconcile import PROBE_CONSECUTIVE, checked_assignment, owner_ids
from certdrop.store.inventory import Inventory


def rehearse(
    config: Config, inventory: Inventory, name: str, services: list[str]
) -> dict[str, Any]:
    """The plan of ``assign NAME SERVICE...`` as a JSON-ready object."""
    wanted, entry, key_pem = checked_assignment(config, inventory, name, services)
    assert entry.cert_pem is not None
    rows = inventory.services()
    reloads: dict[tuple[str, ...], list[str]] = {}
    for service in wanted:
        reloads.setdefault(config.services[service].reload, []).append(service)
    found = []
    for service in wanted:
        svc = config.services[service]
        row = rows.get(service)
        plan: dict[str, Any] = {
            "service": service,
            "role": svc.role,
            "current": row.desired if row else None,
            "serving": row.deployed_sha256 if row else None,
            "reload": list(svc.reload) or None,
            "reload_shared_with": [s for s in reloads[svc.reload] if s != service],
            "probe": svc.probe or None,
            "proof": _proof(svc),
        }
        try:
            uid, gid = owner_ids(svc)
            files = layout.plan(svc, entry.cert_pem, entry.chain_pem or b"", key_pem)
        except (FileError, ValueError, TypeError) as exc:
            plan["problem"] = (
                getattr(exc, "reason", None) or f"the stored key cannot be used ({exc})"
            )
            plan["files"] = []
        else:
            plan["files"] = [_file(f, uid, gid) for f in files]
            plan["unchanged"] = (
                row is not None
                and row.state == "ok"
                and row.deployed_sha256 == entry.sha256
                and all(f["unchanged"] for f in plan["files"])
            )
        found.append(plan)
    return {"certificate": entry.name, "sha256": entry.sha256, "services": found, "changed": False}


def _proof(svc: ServiceConfig) -> str:
    if not svc.probe:
        return "not probed: ok once the reload succeeds"
    return (
        f"{svc.probe} must serve the new certificate on {PROBE_CONSECUTIVE} handshakes in a "
        f"row within {svc.probe_timeout_seconds:g} s, else the previous files come back"
    )


def _file(f: layout.ServiceFile, uid: int, gid: int) -> dict[str, Any]:
    """One planned file, without its bytes."""
    owner = pwd.getpwuid(os.geteuid() if uid == KEEP else uid).pw_name
    group = grp.getgrgid(os.getegid() if gid == KEEP else gid).gr_name
    try:
        st = os.lstat(f.path)
        exists = True
        unchanged = (
            stat.S_ISREG(st.st_mode)
            and stat.S_IMODE(st.st_mode) == f.mode
            and st.st_size == len(f.data)
            and f.path.read_bytes() == f.data
        )
    except OSError:
        exists = unchanged = False
    return {
        "role": f.role,
        "path": str(f.path),
        "owner": owner,
        "group": group,
        "mode": f"{f.mode:04o}",
        "bytes": len(f.data),
        "secret": f.secret,
        "exists": exists,
        "unchanged": unchanged,
    }
