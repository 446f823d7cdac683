"""A small CA run by the real openssl binary in a temp folder: root -> intermediate -> leaf.

Leaves are signed with ``openssl x509 -req``, as an operator's own CA (or a script in
front of a commercial one) would do it. Nothing here is ever committed.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

CA_EXTENSIONS = """\
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def openssl(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the openssl binary with no terminal to prompt on; never raises on failure."""
    binary = shutil.which("openssl")
    if binary is None:
        pytest.fail("the openssl binary is needed for the real-peer tests; install openssl")
    return subprocess.run(
        [binary, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        check=False,
    )


def must(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    return result


class OpenSSLCA:
    """A root and an intermediate (P-256) made by openssl; leaves come from CSRs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.root = folder / "root.pem"
        self.intermediate = folder / "intermediate.pem"
        ext = folder / "ca.cnf"
        ext.write_text(CA_EXTENSIONS)
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
        must(openssl("req", "-x509", *ec, "-keyout", folder / "root.key", "-out", self.root,
                     "-subj", "/O=certdrop tests/CN=Test Root", "-days", "3",
                     "-config", ext, "-extensions", "v3_ca"))
        must(openssl("req", "-new", *ec, "-keyout", folder / "intermediate.key",
                     "-out", folder / "intermediate.csr",
                     "-subj", "/O=certdrop tests/CN=Test Intermediate"))
        must(openssl("x509", "-req", "-in", folder / "intermediate.csr", "-CA", self.root,
                     "-CAkey", folder / "root.key", "-set_serial", _serial(), "-days", "2",
                     "-extfile", ext, "-extensions", "v3_ca", "-out", self.intermediate))

    def sign(self, csr: Path, out: Path, *, copy_extensions: bool = True, subj: str = "") -> Path:
        """Sign ``csr`` with the intermediate; ``out`` holds the leaf, then the intermediate.

        ``copy_extensions=False`` drops the requested SANs and ``subj`` replaces the subject,
        as a CA that edits requests does.
        """
        leaf = out.with_suffix(".leaf.pem")
        options = ["-copy_extensions", "copy"] if copy_extensions else []
        if subj:
            options += ["-subj", subj]
        must(openssl("x509", "-req", "-in", csr, "-CA", self.intermediate,
                     "-CAkey", self.folder / "intermediate.key", "-set_serial", _serial(),
                     "-days", "1", *options, "-out", leaf))
        out.write_bytes(leaf.read_bytes() + self.intermediate.read_bytes())
        leaf.unlink()
        return out

    def leaf_of(self, signed: Path) -> x509.Certificate:
        return x509.load_pem_x509_certificates(signed.read_bytes())[0]


def _serial() -> str:
    return "0x" + secrets.token_hex(8)
