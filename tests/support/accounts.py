"""A throw-away system user and group, and running certdrop as that user.

For tests of what a monitoring account (not root) may do: the test runs as root, makes
the accounts with useradd/groupadd, runs the CLI with subprocess's user=/group=/
extra_groups=, and removes both accounts afterwards, even on failure.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import grp
import os
import pwd
import re
import secrets
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from support.daemon import ROOT
from support.process import need, run


@dataclass(frozen=True)
class Account:
    """A system user whose primary group is ``nogroup``, and a group it may be given."""

    user: str
    uid: int
    primary_gid: int
    group: str
    gid: int


@contextlib.contextmanager
def monitor_account() -> Iterator[Account]:
    """A new system user and group (random names), deleted when the block ends."""
    if os.geteuid() != 0:
        reason = "making a system user needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true)")
        pytest.skip(reason)
    suffix = secrets.token_hex(3)
    group, user = f"cdt-read-{suffix}", f"cdt-mon-{suffix}"
    run([need("groupadd"), "--system", group])
    try:
        run([need("useradd"), "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", "-N", "-g", "nogroup", user])  # fmt: skip
        try:
            entry = pwd.getpwnam(user)
            yield Account(user, entry.pw_uid, entry.pw_gid, group, grp.getgrnam(group).gr_gid)
        finally:
            run([need("userdel"), user])
    finally:
        run([need("groupdel"), group])


@contextlib.contextmanager
def shared_folder() -> Iterator[Path]:
    """A 0755 temp folder any user can enter (pytest's tmp_path sits in a 0700 folder)."""
    folder = Path(tempfile.mkdtemp(prefix="certdrop-monitor-", dir="/tmp"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def python_for(account: Account) -> tuple[list[str], dict[str, str]]:
    """An interpreter the account can run certdrop with, and its environment.

    This interpreter may live where only root can go (pyenv under /root); then the
    system python3 of the same minor version runs with this venv's site-packages.
    """
    sources = str(ROOT / "daemon")
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    probe = ["-c", "import certdrop, cryptography, structlog, prometheus_client"]
    candidates = [(sys.executable, sources)]
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if os.path.exists(system):
        packages = os.pathsep.join([sources, *site.getsitepackages()])
        candidates.append((system, packages))
    for python, path in candidates:
        trial = {**env, "PYTHONPATH": path}
        try:
            done = as_user(account, [python, *probe], env=trial, in_group=False)
        except PermissionError:
            continue
        if done.returncode == 0:
            return [python], trial
    if os.path.exists(system):
        # The checkout itself may sit below a folder only root may enter (CI's mktemp -d):
        # give the account a copy of certdrop and of the packages it needs.
        trial = {**env, "PYTHONPATH": str(_shared_copy())}
        done = as_user(account, [system, *probe], env=trial, in_group=False)
        if done.returncode == 0:
            return [system], trial
        candidates.append((system, f"{trial['PYTHONPATH']}: {done.stderr.strip()[-300:]}"))
    pytest.fail(f"no Python that {account.user} may run can import certdrop: {candidates}")


def as_user(
    account: Account, argv: Sequence[str], *, env: dict[str, str], in_group: bool
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as the account, a member of its group or not. ``extra_groups`` is
    always given, so root's own supplementary groups never leak into the child."""
    return subprocess.run(
        list(argv),
        user=account.uid,
        group=account.primary_gid,
        extra_groups=[account.gid] if in_group else [],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@functools.cache
def _shared_copy() -> Path:
    """certdrop and its runtime dependencies (by their installed file lists) copied once
    into a 0755 folder under /tmp, removed when the test session ends."""
    folder = Path(tempfile.mkdtemp(prefix="certdrop-monitor-python-", dir="/tmp"))
    atexit.register(shutil.rmtree, folder, True)
    shutil.copytree(ROOT / "daemon" / "certdrop", folder / "certdrop")
    wanted, seen = ["certdrop"], set()
    while wanted:
        name = re.split(r"[ ;<>=!~\[]", wanted.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        wanted += [r for r in dist.requires or [] if "extra ==" not in r]
        if name == "certdrop":
            continue
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if file.parts and file.parts[0].endswith((".dist-info", "__pycache__")):
                continue
            if source.is_file():
                target = folder / file
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder
