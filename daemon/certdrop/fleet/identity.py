"""The gateway's identity file: its Ed25519 seed, made at first start, 0600.

One line of text, ``certdrop-fleet-identity-v1 <base64 seed>``, so a person can see what
the file is without being able to use it by accident elsewhere. A file others can read
is refused, as ssh refuses a readable private key: the seed opens every sealed key.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path

from certdrop.errors import UserError
from certdrop.files import fsync_dir, write_new
from certdrop.fleet.crypto import SEED_BYTES, GatewayKey

HEADER = "certdrop-fleet-identity-v1"


def load_or_create(path: Path) -> tuple[GatewayKey, bool]:
    """The identity at ``path``, made (0600, exclusively) when missing; (key, created)."""
    try:
        return load(path), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = GatewayKey.generate()
    line = f"{HEADER} {base64.b64encode(key.seed()).decode()}\n".encode()
    try:
        write_new(path, line, 0o600)
    except FileExistsError:
        return load(path), False  # another process made it first: use that one
    fsync_dir(path.parent)
    return key, True


def load(path: Path) -> GatewayKey:
    """Read the identity at ``path``; FileNotFoundError when missing, UserError when bad."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:  # a symlink (ELOOP), a folder we may not enter, ...
        raise UserError(
            f"fleet.identity {path} cannot be opened ({exc.strerror}); it must be a regular "
            "file, not a symlink"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"fleet.identity {path} is not a regular file; point it at a key file")
        if info.st_mode & 0o077:
            raise UserError(
                f"fleet.identity {path} is readable by others (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); run chmod 600 {path}"
            )
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        header, encoded = data.decode("ascii").split()
        seed = base64.b64decode(encoded, validate=True)
    except (UnicodeDecodeError, ValueError, binascii.Error):
        header, seed = "", b""
    if header != HEADER or len(seed) != SEED_BYTES:
        raise UserError(
            f"fleet.identity {path} is not a certdrop identity file; move it away and "
            "certdrop makes a new one at start (the gateway then needs a new approval)"
        )
    return GatewayKey(seed)
