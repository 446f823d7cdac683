"""Unicode domain names through the command line and the config: `csr --cn 例え.jp`
asks for exactly what the idna package makes of it (UTS 46), a service's Unicode
`hostname` auto-assigns the certificate for its A-label, and `show` gives both forms."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import idna
from cryptography import x509
from cryptography.x509.oid import NameOID

from support.cli import INTERMEDIATE, Workspace
from support.daemon import RunningDaemon, drop
from support.openssl_ca import openssl
from support.pkitools import ec_key, issue

WIDE_WWW = "".join(chr(ord(c) + 0xFEE0) for c in "WWW")  # full-width, as an IME types it
REIE = idna.encode("例え.jp", uts46=True).decode("ascii")
MAIL = idna.encode("メール.例え.jp", uts46=True).decode("ascii")


def test_csr_converts_unicode_cn_and_sans_as_idna_does(tmp_path: Path) -> None:
    """The CSR's CN and SANs are the A-labels idna.encode(uts46=True) gives, openssl
    reads them, and the entry's SANs are the same."""
    ws = Workspace(tmp_path)
    made = ws.run("csr", "例え", "--cn", "例え.jp", "--san", "例え.jp", "--san", "*.例え.jp",
                  "--san", f"{WIDE_WWW}.例え。jp", "--json")  # fmt: skip
    assert made.code == 0, made.err
    csr = x509.load_pem_x509_csr(Path(made.json()["csr"]).read_bytes())
    cn = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    sans = csr.extensions[0].value.get_values_for_type(x509.DNSName)
    assert cn == REIE
    assert sans == [REIE, f"*.{REIE}", idna.encode(f"{WIDE_WWW}.例え。jp", uts46=True).decode()]
    text = openssl("req", "-in", Path(made.json()["csr"]), "-noout", "-text").stdout
    assert f"DNS:{REIE}" in text
    bad = ws.run("csr", "x", "--cn", "a.example", "--san", "例え..jp")
    assert bad.code == 1 and "not a valid internationalised domain name" in bad.err


def test_a_unicode_hostname_assigns_and_show_gives_both_forms(
    daemon_factory: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """hostname = "メール.例え.jp" in the config matches a certificate for its A-label;
    `show` lists SANs and the hostname as A-label (U-label)."""
    (tmp_path / "live").mkdir()
    ws = Workspace(
        tmp_path,
        '[services.mail]\nrole = "smtp-server"\ncombined_file = "live/mail.pem"\n'
        'hostname = "メール.例え.jp"\n',
    )
    assert ws.config.services["mail"].hostname == MAIL
    cert = issue("メール", ec_key(780), INTERMEDIATE, sans=[MAIL, f"*.{REIE}"])
    d = daemon_factory(root=tmp_path).start()
    drop(d.inbox, "メール.pem", cert.pem + INTERMEDIATE.pem + cert.key_pem())
    d.wait_for("service.assigned", service="mail", by="hostname", hostname=MAIL)
    d.wait_for("service.applied", service="mail", certificate="メール")
    assert d.stop() == 0
    shown = ws.run("show", "メール", "--json").json()
    assert shown["sans"] == [MAIL, f"*.{REIE}"]
    assert shown["sans_unicode"] == ["メール.例え.jp", "*.例え.jp"]
    assert shown["deployments"][0]["hostname_unicode"] == "メール.例え.jp"
    text = ws.run("show", "メール").out
    assert f"{MAIL} (メール.例え.jp)" in text and f"hostname {MAIL} (メール.例え.jp)" in text


def test_a_hostname_idna_refuses_is_a_config_error(tmp_path: Path) -> None:
    """An invalid Unicode hostname stops the config with a line naming the key."""
    ws = Workspace(tmp_path)
    ws.config_path.write_text(
        'inbox = "inbox"\nstate = "state"\n[services.mail]\nrole = "smtp-server"\n'
        'combined_file = "mail.pem"\nhostname = "メール..jp"\n'
    )
    result = ws.run("status")
    assert result.code == 1 and "services.mail.hostname" in result.err and "(IDNA)" in result.err
