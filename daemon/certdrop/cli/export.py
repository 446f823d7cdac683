"""``certdrop export NAME --out FILE``: a password-protected backup of key, leaf and chain.

Export only reads the state (the inventory is opened read-only), so it runs beside a
running daemon without passing through it. The file is created 0600 under a temp name
in the target folder and then linked into place, so it never exists with wider
permissions, never half-written, and never replaces an existing file unless ``--force``.
Neither the password nor key bytes reach the status log, stdout or stderr.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sqlite3
import sys
from pathlib import Path

from cryptography import x509

from certdrop import config as configuration
from certdrop.cli.common import Subparsers, add_json, command, completes_files, print_json
from certdrop.cli.table import safe
from certdrop.daemon.state import reading
from certdrop.errors import UserError
from certdrop.files import publish
from certdrop.pki import chain as chains
from certdrop.pki import keys
from certdrop.pki.export import MAX_PASSWORD_BYTES, export_p12, export_pem, read_password
from certdrop.pki.names import file_name, normal
from certdrop.store.eventlog import open_log

FORMATS = ("pem", "p12")
_P12_SUFFIXES = (".p12", ".pfx")


def add_parser(sub: Subparsers) -> None:
    """``export``: the password comes from a file, a terminal, or is refused explicitly."""
    p = command(
        sub,
        "export",
        "write key, certificate and chain to a password-protected file",
        "Write a backup of an entry's key, certificate and intermediates. "
        "pem: the key as traditional PKCS#1/SEC1 encrypted with AES-256-CBC, then the "
        "leaf and intermediates; p12: PKCS#12 with AES-256-CBC and PBKDF2-SHA256. "
        "Without --out the file is NAME.p12 (or NAME.pem) in this folder, or a safe form "
        "of NAME; the path is printed. Without --password-file the password is asked "
        "twice on the terminal. Reads the state only.",
        """
        certdrop export web --out web.p12 --password-file export.pw
        certdrop export '本番 証明書' --password-file export.pw    # -> ./本番 証明書.p12
        certdrop export web --format pem --no-password --out web.pem --json
        """,
    )
    p.add_argument("name", metavar="NAME", help="the entry to export (see `certdrop status`)")
    out = p.add_argument("--out", metavar="FILE", help="the file to write (0600); default NAME.p12")
    completes_files(out)
    p.add_argument(
        "--format",
        choices=FORMATS,
        help="pem or p12; default p12 when FILE ends in .p12 or .pfx or is not given, else pem",
    )
    secret = p.add_mutually_exclusive_group()
    completes_files(
        secret.add_argument(
            "--password-file",
            metavar="FILE",
            help="read the password from FILE's first line, as openssl's -passin file: does",
        )
    )
    secret.add_argument(
        "--no-password", action="store_true", help="write the key unencrypted (be sure)"
    )
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    add_json(p)
    p.set_defaults(handler=run_export)


def run_export(config: configuration.Config, args: argparse.Namespace) -> int:
    """Export one entry; exit 1 with one line for an unknown name or any refusal."""
    name: str = normal(args.name)
    if args.out is None:
        fmt: str = args.format or "p12"
        out = Path(file_name(name, f".{fmt}"))
    else:
        out = Path(args.out)
        fmt = args.format or ("p12" if out.suffix.lower() in _P12_SUFFIXES else "pem")
    key_pem, chain = _read_entry(config, name)
    _check_target(out, force=args.force)  # before asking for a password that would be wasted
    password = _password(args)
    key = keys.load_pem(key_pem)
    if fmt == "p12":
        data = export_p12(name, key, chain, password)
    else:
        data = export_pem(key, chain, password)
    write_backup(out, data, force=args.force)
    sha256 = chains.fingerprint(chain[0])
    _log_export(config, name, sha256, fmt, password is not None, out)
    if args.json:
        print_json(
            {"name": name, "file": str(out.absolute()), "format": fmt,
             "encrypted": password is not None, "sha256": sha256}
        )  # fmt: skip
    else:
        print(safe(str(out)))
    return 0


def _read_entry(config: configuration.Config, name: str) -> tuple[bytes, list[x509.Certificate]]:
    """The key and the leaf-first chain of ``name``, read from a read-only inventory."""
    database = config.state / "inventory.sqlite3"
    if not database.is_file():
        raise UserError(
            f"no certificate named {name!r}: {config.state} holds no inventory yet; check --config"
        )
    try:
        with reading(config) as inventory:
            entry = inventory.entry(name)
            key_pem = inventory.key_pem(name)
    except sqlite3.Error as exc:
        raise UserError(f"cannot read {database}: {exc}") from None
    if entry is None or key_pem is None:
        raise UserError(f"no certificate named {name!r}; `certdrop status` lists the names")
    if entry.cert_pem is None:
        raise UserError(
            f"{name!r} is a request still waiting for its certificate; drop the certificate "
            "the CA issued into the inbox, then export"
        )
    return key_pem, chains.from_pem(entry.cert_pem + (entry.chain_pem or b""))


def _password(args: argparse.Namespace) -> bytes | None:
    """The export password: from --password-file, from the terminal (asked twice), or
    None with --no-password. Without a terminal nothing is asked and nothing written."""
    if args.no_password:
        return None
    if args.password_file is not None:
        source = args.password_file
        try:
            with open(source, "rb") as f:
                # Enough to see whether the first line is longer than openssl reads.
                data = f.read(MAX_PASSWORD_BYTES + 2)
        except OSError as exc:
            raise UserError(f"cannot read the password file {source}: {exc.strerror}") from None
        password = read_password(data, source=source)
        if password.endswith(b"\r"):
            print(
                f"certdrop: note: {source} has Windows (CRLF) line endings; like openssl's "
                "-passin file:, the CR is part of the password",
                file=sys.stderr,
            )
        return password
    if not sys.stdin.isatty():
        raise UserError(
            "no terminal to ask for the export password; use --password-file FILE, "
            "or --no-password for an unencrypted export"
        )
    try:
        first = getpass.getpass("Export password: ")
        second = getpass.getpass("Repeat the export password: ")
    except EOFError:
        raise UserError("no password given; nothing was written") from None
    if first != second:
        raise UserError("the two passwords differ; nothing was written")
    if not first:
        raise UserError("the password is empty; type one, or use --no-password")
    return first.encode("utf-8")


def _check_target(path: Path, *, force: bool) -> None:
    if path.is_dir():
        raise UserError(f"{path} is a folder; give the file to write, e.g. {path}/backup.p12")
    if not path.parent.is_dir():
        raise UserError(f"the folder {path.parent} does not exist; create it first")
    if not force and os.path.lexists(path):
        raise UserError(f"{path} already exists; choose another name or pass --force")


def write_backup(path: Path, data: bytes, *, force: bool = False) -> None:
    """Write ``data`` to ``path`` as a new 0600 file, crash-safely (see
    :func:`certdrop.files.publish`); every failure is one line naming the file."""
    _check_target(path, force=force)
    try:
        publish(path, data, 0o600, replace=force)
    except FileExistsError:
        raise UserError(f"{path} already exists; choose another name or pass --force") from None
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


def _log_export(
    config: configuration.Config, name: str, sha256: str, fmt: str, encrypted: bool, out: Path
) -> None:
    """Append ``cert.exported`` to the status log (O_APPEND: safe beside the daemon)."""
    log, sink = open_log(config.status_log, echo=False)
    try:
        (log.info if encrypted else log.warning)(
            "cert.exported",
            name=name,
            sha256=sha256,
            format=fmt,
            encrypted=encrypted,
            file=str(out.absolute()),
        )
    except OSError as exc:
        print(
            f"certdrop: warning: the export is written, but {config.status_log} could not "
            f"record it: {exc.strerror}",
            file=sys.stderr,
        )
    finally:
        sink.close()
