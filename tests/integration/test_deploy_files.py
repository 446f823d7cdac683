"""The deployment kit in deploy/ is valid for the tools that will read it.

Each file is checked by its real consumer (systemd-analyze, sshd, logrotate, nginx,
postconf, bash, shellcheck, tomllib) and every check is also shown to fail on a broken
copy. The ACME clients are replaced by tiny stand-ins here; the real lego + pebble
end-to-end run belongs to the renewal integration tests.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import textwrap
import tomllib
from pathlib import Path

import pytest
import trustme

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "certdrop.service"
SNIPPET = DEPLOY / "sshd_config.d" / "certdrop-drop.conf"
SETUP = DEPLOY / "setup-drop-user.sh"
LOGROTATE = DEPLOY / "logrotate" / "certdrop"
EXAMPLE = DEPLOY / "certdrop.toml"
LEGO = DEPLOY / "renew" / "lego-csr.sh"
CERTBOT = DEPLOY / "renew" / "certbot-csr.sh"
CERTBOT_HOOK = DEPLOY / "hooks" / "certbot-deploy-hook.sh"
ACMESH_HOOK = DEPLOY / "hooks" / "acme.sh-deploy-hook.sh"
NGINX = DEPLOY / "nginx" / "certdrop-consoles.conf"
POSTFIX = DEPLOY / "postfix" / "main.cf.snippet"
SCRIPTS = sorted(DEPLOY.rglob("*.sh"))

# The Debian package that brings each program, for the message when one is missing.
PACKAGES = {
    "systemd-analyze": "systemd",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "logrotate": "logrotate",
    "shellcheck": "shellcheck",
    "nginx": "nginx",
    "postconf": "postfix",
}
# Exposure measured for deploy/certdrop.service with systemd 252: 2.5. A loosened sandbox
# (a dropped Protect*= line or a wider capability set) pushes it over.
MAX_EXPOSURE = 3.0
TIMEOUT = 60
IS_ROOT = os.geteuid() == 0


def need(program: str) -> str:
    """The path of ``program``; a skip on a developer machine, a failure in CI."""
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if found is None:
        message = f"{program} is not installed: apt-get install -y {PACKAGES[program]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def run(*argv: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv with a timeout, capturing text output, never raising on exit status."""
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=TIMEOUT, env=env
    )


def directives(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment of a systemd unit, in order."""
    found, section = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def values(key: str) -> list[str]:
    """Every value assigned to ``key`` in the shipped unit."""
    return [v for _, k, v in directives(UNIT.read_text()) if k == key]


def writable_paths() -> list[str]:
    """ReadWritePaths= of the shipped unit, without the "-" (may be missing) prefix."""
    return [p.lstrip("-") for v in values("ReadWritePaths") for p in v.split()]


def verify_problems(unit: Path) -> str:
    """What ``systemd-analyze verify`` finds wrong with ``unit``: "" when nothing."""
    result = run(need("systemd-analyze"), "verify", "--man=no", unit)
    output = result.stdout + result.stderr
    # Bad values and unknown keys are only warnings ("..., ignoring"): count them too.
    if result.returncode != 0 or re.search(r"ignoring|Unknown", output):
        return f"rc={result.returncode}: {output.strip()}"
    return ""


@pytest.fixture
def runnable_unit(tmp_path: Path) -> Path:
    """A copy of the unit whose ExecStart names an existing program with the same arguments."""
    program = tmp_path / "certdrop"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    text = UNIT.read_text()
    for key in ("ExecStart", "ExecReload"):
        text = text.replace(f"{key}=/usr/local/bin/certdrop ", f"{key}={program} ")
    assert f"ExecStart={program} " in text and f"ExecReload={program} " in text
    unit = tmp_path / "unit" / "certdrop.service"
    unit.parent.mkdir()
    unit.write_text(text)
    return unit


# --- systemd unit --------------------------------------------------------------------------


def test_unit_passes_systemd_analyze_verify(runnable_unit: Path) -> None:
    """systemd-analyze verify accepts the unit without errors or ignored settings."""
    assert verify_problems(runnable_unit) == ""


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("ExecStart={program}", "ExecStart=/nonexistent/certdrop"),
        ("Type=notify", "Type=notifyy"),
        ("WatchdogSec=60", "WatchdogSekk=60"),
        ("ProtectSystem=strict", "ProtectSystem=strictt"),
    ],
)
def test_unit_verify_catches_a_broken_copy(runnable_unit: Path, old: str, new: str) -> None:
    """The verify check fails for a missing binary, a bad value or a misspelt key."""
    text = runnable_unit.read_text()
    old = old.format(program=runnable_unit.parent.parent / "certdrop")
    assert old in text
    runnable_unit.write_text(text.replace(old, new, 1))
    assert verify_problems(runnable_unit) != ""


def test_unit_security_exposure_is_low(runnable_unit: Path) -> None:
    """systemd-analyze security rates the sandbox below the measured bound."""
    result = run(need("systemd-analyze"), "security", "--offline=true", runnable_unit)
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for certdrop\.service: (\d+(?:\.\d+)?)", output)
    assert match, output
    score = float(match.group(1))
    print(f"systemd-analyze security exposure: {score}")
    assert score < MAX_EXPOSURE, output


def test_unit_has_the_contracted_settings() -> None:
    """The unit carries the notify, reload, restart and sandbox settings operators rely on."""
    single = {k: v for _, k, v in directives(UNIT.read_text())}
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "60",
        "ExecStart": "/usr/local/bin/certdrop --config /etc/certdrop/certdrop.toml run",
        "ExecReload": "/usr/local/bin/certdrop --config /etc/certdrop/certdrop.toml reload",
        "Restart": "on-failure",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter": "@system-service",
        "UMask": "0077",
        "StateDirectory": "certdrop",
        "StateDirectoryMode": "0700",
    }
    assert {k: single.get(k) for k in expected} == expected
    for path in ("/var/lib/certdrop", "/srv/certdrop/inbox", "/etc/nginx/tls", "/etc/postfix/tls"):
        assert path in writable_paths()


def test_unit_capabilities_are_minimal_and_justified() -> None:
    """Only the needed capabilities are kept, and a comment says why for each."""
    granted = {cap for v in values("CapabilityBoundingSet") for cap in v.split()}
    assert granted == {
        "CAP_CHOWN",
        "CAP_FOWNER",
        "CAP_DAC_OVERRIDE",
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_NET_BIND_SERVICE",
    }
    comments = "\n".join(
        line for line in UNIT.read_text().splitlines() if line.lstrip().startswith("#")
    )
    for cap in [*granted, "CAP_KILL"]:  # CAP_KILL: the comment says why it is NOT granted
        assert re.search(rf"#\s*(CAP_\w+, )*{cap}\b.*:", comments), cap


# --- shell scripts -------------------------------------------------------------------------


def test_every_script_is_found() -> None:
    """The script checks below cover all five shipped scripts."""
    names = {p.name for p in SCRIPTS}
    assert {
        "setup-drop-user.sh",
        "lego-csr.sh",
        "certbot-csr.sh",
        "certbot-deploy-hook.sh",
        "acme.sh-deploy-hook.sh",
    } <= names
    assert len(SCRIPTS) >= 5


def shell_of(script: Path) -> str:
    """The shell a script is written for, from its first line."""
    first = script.read_text().splitlines()[0]
    return "bash" if "bash" in first else "sh"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script: Path) -> None:
    """Every shipped shell script parses with its shell's -n."""
    result = run(shell_of(script), "-n", script)
    assert result.returncode == 0, result.stderr


def test_syntax_check_fails_on_a_broken_script(tmp_path: Path) -> None:
    """bash -n does reject a script with a syntax error."""
    broken = tmp_path / "broken.sh"
    broken.write_text(LEGO.read_text().replace("fi\n", "\n", 1))
    assert run("bash", "-n", broken).returncode != 0


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_passes_shellcheck(script: Path) -> None:
    """shellcheck finds nothing, style hints included, in every shipped script."""
    result = run(need("shellcheck"), script)
    assert result.returncode == 0, result.stdout


def test_shellcheck_fails_on_a_sloppy_script(tmp_path: Path) -> None:
    """shellcheck does reject an unquoted expansion."""
    sloppy = tmp_path / "sloppy.sh"
    sloppy.write_text("#!/usr/bin/env bash\nrm -rf $1/tmp\n")
    assert run(need("shellcheck"), sloppy).returncode != 0


# --- SFTP drop user ------------------------------------------------------------------------


@pytest.fixture
def public_key(tmp_path: Path) -> Path:
    """A fresh ed25519 public key file, made for this test."""
    key = tmp_path / "keys" / "uploader"
    key.parent.mkdir()
    result = run(need("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", "t@x", "-f", key)
    assert result.returncode == 0, result.stderr
    return key.with_suffix(".pub")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_setup_drop_user_dry_run_builds_the_tree(tmp_path: Path, public_key: Path) -> None:
    """--dry-run --root builds chroot, inbox, key file and snippet with the right modes, twice."""
    root = tmp_path / "root"
    for _ in range(2):  # the second run must change nothing
        result = run("bash", SETUP, "--dry-run", "--root", root, public_key)
        assert result.returncode == 0, result.stderr
    chroot = root / "srv" / "certdrop"
    assert mode(chroot) == 0o755
    assert mode(chroot / "inbox") == 0o700
    assert mode(chroot / "inbox" / "rejected") == 0o700
    keys = root / "etc" / "ssh" / "certdrop-drop.authorized_keys"
    assert mode(keys) == 0o644
    lines = keys.read_text().splitlines()
    blob = public_key.read_text().split()[1]
    assert lines == [f"restrict ssh-ed25519 {blob} t@x"]
    snippet = root / "etc" / "ssh" / "sshd_config.d" / "certdrop-drop.conf"
    assert snippet.read_text() == SNIPPET.read_text()
    assert mode(snippet) == 0o644
    if IS_ROOT:
        assert chroot.stat().st_uid == 0
        assert keys.stat().st_uid == 0
    assert "dry run: skipped sshd -t" in result.stderr


def test_setup_drop_user_adds_a_second_key_and_owns_the_inbox(
    tmp_path: Path, public_key: Path
) -> None:
    """A second key given as text is appended, and an existing user gets the inbox."""
    root = tmp_path / "root"
    user = "nobody"  # exists on every Debian system, so the chown really happens as root
    assert (
        run("bash", SETUP, "--dry-run", "--root", root, "--user", user, public_key).returncode == 0
    )
    other = run(need("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "k2")
    assert other.returncode == 0
    key_text = (tmp_path / "k2.pub").read_text().strip()
    result = run("bash", SETUP, "--dry-run", "--root", root, "--user", user, key_text)
    assert result.returncode == 0, result.stderr
    keys = (root / "etc" / "ssh" / f"{user}.authorized_keys").read_text().splitlines()
    assert len(keys) == 2
    snippet = (root / "etc" / "ssh" / "sshd_config.d" / f"{user}.conf").read_text()
    assert f"Match User {user}\n" in snippet
    assert f"AuthorizedKeysFile /etc/ssh/{user}.authorized_keys" in snippet
    if IS_ROOT:
        inbox = root / "srv" / "certdrop" / "inbox"
        assert inbox.stat().st_uid == int(run("id", "-u", user).stdout)


def test_setup_drop_user_rejects_a_bad_key(tmp_path: Path) -> None:
    """Text that is not a public key stops the script before it writes a key file."""
    need("ssh-keygen")
    root = tmp_path / "root"
    result = run("bash", SETUP, "--dry-run", "--root", root, "not-a-key")
    assert result.returncode == 1
    assert "is not an OpenSSH public key" in result.stderr
    assert not (root / "etc" / "ssh" / "certdrop-drop.authorized_keys").exists()


@pytest.fixture
def sshd_config(tmp_path: Path) -> Path:
    """A minimal sshd_config laid out like Debian's: the snippet folder included at the top."""
    need("sshd")
    if IS_ROOT:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd -t wants its privsep dir
    included = tmp_path / "sshd_config.d"
    included.mkdir()
    shutil.copy(SNIPPET, included / SNIPPET.name)
    host_key = tmp_path / "host_key"
    result = run(need("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", host_key)
    assert result.returncode == 0, result.stderr
    config = tmp_path / "sshd_config"
    config.write_text(
        textwrap.dedent(
            f"""\
            Include {included}/*.conf
            HostKey {host_key}
            UsePAM no
            PasswordAuthentication yes
            X11Forwarding yes
            Subsystem sftp /usr/lib/openssh/sftp-server
            """
        )
    )
    return config


def effective(config: Path, user: str) -> dict[str, str]:
    """sshd's settings in force for a connection by ``user``."""
    result = run(need("sshd"), "-T", "-f", config, "-C", f"user={user},host=h,addr=127.0.0.1")
    assert result.returncode == 0, result.stderr
    return dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)


def test_sshd_snippet_passes_sshd_t_and_applies_only_to_the_drop_user(sshd_config: Path) -> None:
    """sshd -t accepts the snippet, which locks down certdrop-drop and nobody else."""
    result = run(need("sshd"), "-t", "-f", sshd_config)
    assert result.returncode == 0, result.stderr
    drop = effective(sshd_config, "certdrop-drop")
    assert drop["chrootdirectory"] == "/srv/certdrop"
    assert drop["forcecommand"].startswith("internal-sftp -u 0077")
    for key in ("allowtcpforwarding", "x11forwarding", "permittty", "passwordauthentication"):
        assert drop[key] == "no", key
    other = effective(sshd_config, "alice")
    assert other["chrootdirectory"] == "none"
    assert other["x11forwarding"] == "yes"


def test_sshd_t_fails_on_a_broken_snippet(sshd_config: Path) -> None:
    """sshd -t does reject a misspelt keyword in the snippet."""
    copy = sshd_config.parent / "sshd_config.d" / SNIPPET.name
    copy.write_text(copy.read_text().replace("ChrootDirectory", "ChrootDirectroy"))
    assert run(need("sshd"), "-t", "-f", sshd_config).returncode != 0


# --- example configuration -----------------------------------------------------------------


def test_example_config_has_the_four_services() -> None:
    """The example certdrop.toml parses and describes the gateway's four services."""
    data = tomllib.loads(EXAMPLE.read_text())
    services = data["services"]
    assert {name: s["role"] for name, s in services.items()} == {
        "incoming-mta": "smtp-server",
        "outgoing-mta": "smtp-client",
        "admin-console": "https",
        "quarantine-console": "https",
    }
    assert services["incoming-mta"]["combined_file"] == "/etc/postfix/tls/smtpd-chain.pem"
    assert services["outgoing-mta"]["combined_file"] == "/etc/postfix/tls/smtp-client-chain.pem"
    assert services["incoming-mta"]["probe"] == "smtp://127.0.0.1:25"
    assert services["outgoing-mta"]["probe"] == ""
    assert services["admin-console"]["probe"] == "https://127.0.0.1:8445"
    assert services["quarantine-console"]["probe"] == "https://127.0.0.1:8447"
    for name in ("admin-console", "quarantine-console"):
        assert services[name]["reload"] == ["nginx", "-s", "reload"]
        assert services[name]["key_format"] == "pkcs1"
        assert services[name]["cert_file"].startswith("/etc/nginx/tls/")
        assert services[name]["mode"] == "0644"
    for service in services.values():
        assert service["key_mode"] == "0600"
        assert {"owner", "group", "reload_timeout_seconds", "probe_timeout_seconds"} <= set(service)
    command = data["renewal"]["command"]
    assert command[0] == "/usr/local/lib/certdrop/renew/lego-csr.sh"
    assert command[1:] == ["{csr}", "{name}", "{inbox}"]
    assert {"intake", "trust", "expiry", "renewal", "metrics"} <= set(data)


def test_example_config_fits_the_unit_and_logrotate() -> None:
    """Every folder the example config writes is writable in the unit; logrotate finds the log."""
    data = tomllib.loads(EXAMPLE.read_text())
    assert data["state"] == "/var/lib/" + values("StateDirectory")[0]
    targets = [data["inbox"]]
    for service in data["services"].values():
        for key in ("cert_file", "key_file", "combined_file"):
            if key in service:
                targets.append(str(Path(service[key]).parent))
    for target in targets:
        assert any(target == p or target.startswith(p + "/") for p in writable_paths()), target
    assert f"{data['state']}/status.log {{" in LOGROTATE.read_text()


def test_example_config_loads_with_certdrop() -> None:
    """certdrop's own config loader accepts the example unchanged."""
    config = pytest.importorskip("certdrop.config")
    loaded = config.load(EXAMPLE, EXAMPLE.parent)
    assert set(loaded.services) == {
        "incoming-mta",
        "outgoing-mta",
        "admin-console",
        "quarantine-console",
    }


# --- logrotate -----------------------------------------------------------------------------


def test_logrotate_config_passes_logrotate_d(tmp_path: Path) -> None:
    """logrotate -d reads the file without errors, and it never copies and truncates."""
    result = run(need("logrotate"), "-d", "-s", tmp_path / "state", LOGROTATE)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "error" not in output.lower(), output
    assert "rotating pattern: /var/lib/certdrop/status.log" in output
    lines = [line.split("#")[0].split() for line in LOGROTATE.read_text().splitlines()]
    words = {line[0] for line in lines if line}
    assert "copytruncate" not in words
    assert {"compress", "delaycompress", "missingok", "notifempty", "create"} <= words


def test_logrotate_d_fails_on_a_broken_copy(tmp_path: Path) -> None:
    """logrotate -d does reject an unknown directive."""
    broken = tmp_path / "certdrop"
    broken.write_text(LOGROTATE.read_text().replace("delaycompress", "delaycompres"))
    result = run(need("logrotate"), "-d", "-s", tmp_path / "state", broken)
    assert result.returncode != 0 or "error" in (result.stdout + result.stderr).lower()


def test_logrotate_renames_and_creates_a_private_log(tmp_path: Path) -> None:
    """A forced rotation moves the log aside and leaves a new 0600 file at the path."""
    logrotate = need("logrotate")
    if not IS_ROOT:
        pytest.skip("'create 0600 root root' needs root")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    log = state / "status.log"
    log.write_text('{"event": "drop.accepted"}\n')
    before = log.stat().st_ino
    conf = tmp_path / "conf"
    conf.write_text(LOGROTATE.read_text().replace("/var/lib/certdrop/", f"{state}/"))
    result = run(logrotate, "-f", "-s", tmp_path / "lr.state", conf)
    assert result.returncode == 0, result.stderr
    assert (state / "status.log.1").read_text() == '{"event": "drop.accepted"}\n'
    assert log.stat().st_ino != before
    assert log.read_text() == ""
    assert mode(log) == 0o600


# --- nginx and postfix examples --------------------------------------------------------------


def test_nginx_example_passes_nginx_t(tmp_path: Path) -> None:
    """nginx -t accepts the consoles with real cert/key files, and rejects swapped keys."""
    nginx = need("nginx")
    ca = trustme.CA()
    paths = {}
    for name in ("admin", "quarantine"):
        leaf = ca.issue_cert(f"{name}.gw.example.org")
        chain, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        chain.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        paths[name] = (chain, key)

    def check(swap: bool) -> subprocess.CompletedProcess[str]:
        text = NGINX.read_text()
        for name, (chain, key) in paths.items():
            other = paths["quarantine" if name == "admin" else "admin"][1]
            text = text.replace(f"/etc/nginx/tls/{name}/fullchain.pem", str(chain))
            text = text.replace(f"/etc/nginx/tls/{name}/key.pem", str(other if swap else key))
        (tmp_path / "consoles.conf").write_text(text)
        main = tmp_path / "nginx.conf"
        temp = " ".join(
            f"{kind}_temp_path {tmp_path}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        main.write_text(
            f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
            f"http {{ access_log off; {temp} include {tmp_path}/consoles.conf; }}\n"
        )
        return run(nginx, "-t", "-q", "-c", main, "-p", tmp_path, "-e", tmp_path / "error.log")

    good = check(swap=False)
    assert good.returncode == 0, good.stderr
    assert check(swap=True).returncode != 0


def test_postfix_snippet_has_only_known_parameters(tmp_path: Path) -> None:
    """postconf knows every parameter of the snippet, and flags a misspelt one."""
    postconf = need("postconf")
    shutil.copy("/etc/postfix/master.cf", tmp_path / "master.cf")
    text = POSTFIX.read_text()
    assert "smtpd_tls_chain_files = /etc/postfix/tls/smtpd-chain.pem" in text
    assert "smtp_tls_chain_files = /etc/postfix/tls/smtp-client-chain.pem" in text
    (tmp_path / "main.cf").write_text(text)
    good = run(postconf, "-c", tmp_path, "-n")
    assert good.returncode == 0, good.stderr
    assert "warning" not in good.stderr, good.stderr
    assert "smtpd_tls_security_level = may" in good.stdout
    (tmp_path / "main.cf").write_text(text.replace("smtpd_tls_loglevel", "smtpd_tls_logleve"))
    assert "unused parameter" in run(postconf, "-c", tmp_path, "-n").stderr


# --- renewal hand-off and deploy hooks ---------------------------------------------------------

CHAIN = (
    "-----BEGIN CERTIFICATE-----\nbGVhZg==\n-----END CERTIFICATE-----\n"
    "-----BEGIN CERTIFICATE-----\naW50ZXJtZWRpYXRl\n-----END CERTIFICATE-----\n"
)

# Stand-ins for the ACME clients: the scripts' job is argument building, finding the output
# and the atomic drop, which these exercise; a real CA round trip is the renewal
# integration tests' job (lego + pebble).
FAKE_LEGO = """\
#!/usr/bin/env bash
printf '%s\\n' "$@" >"$FAKE_ARGS"
if [[ -n ${FAKE_FAIL:-} ]]; then echo "acme: error: 403 unauthorized" >&2; exit 3; fi
path=
while (($#)); do if [[ $1 == --path ]]; then path=$2; shift; fi; shift; done
mkdir -p "$path/certificates"
printf '%s' "$FAKE_CHAIN" >"$path/certificates/x.crt"
printf 'issuer only\\n' >"$path/certificates/x.issuer.crt"
if [[ -n ${FAKE_TWO:-} ]]; then printf '%s' "$FAKE_CHAIN" >"$path/certificates/y.crt"; fi
"""
# Records every rename the scripts make, then does it.
FAKE_MV = """\
#!/usr/bin/env bash
printf '%s\\n' "$@" >>"$FAKE_MV_LOG"
exec /bin/mv "$@"
"""
FAKE_CERTBOT = """\
#!/usr/bin/env bash
printf '%s\\n' "$@" >"$FAKE_ARGS"
if [[ -n ${FAKE_FAIL:-} ]]; then echo "Challenge failed" >&2; exit 1; fi
while (($#)); do
  if [[ $1 == --fullchain-path ]]; then printf '%s' "$FAKE_CHAIN" >"$2"; shift; fi
  shift
done
"""


@pytest.fixture
def renew_env(tmp_path: Path) -> dict[str, str]:
    """An environment with fake lego and certbot first on PATH and an empty inbox."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("lego", FAKE_LEGO), ("certbot", FAKE_CERTBOT), ("mv", FAKE_MV)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "inbox").mkdir()
    (tmp_path / "req.csr").write_text("-----BEGIN CERTIFICATE REQUEST-----\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEGO_", "CERTBOT_"))}
    env.update(
        PATH=f"{bin_dir}:{env['PATH']}",
        FAKE_ARGS=str(tmp_path / "args"),
        FAKE_MV_LOG=str(tmp_path / "mv.log"),
        FAKE_CHAIN=CHAIN,
        LEGO_EMAIL="pki@example.test",
        TMPDIR=str(tmp_path),
    )
    return env


def inbox_files(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "inbox").iterdir())


def test_lego_csr_drops_the_chain_atomically(tmp_path: Path, renew_env: dict[str, str]) -> None:
    """lego-csr.sh passes the CSR to lego and leaves exactly NAME.pem, 0600, in the inbox."""
    result = run(LEGO, tmp_path / "req.csr", "mx", tmp_path / "inbox", env=renew_env)
    assert result.returncode == 0, result.stderr
    assert inbox_files(tmp_path) == ["mx.pem"]
    dropped = tmp_path / "inbox" / "mx.pem"
    assert dropped.read_text() == CHAIN
    assert mode(dropped) == 0o600
    args = (tmp_path / "args").read_text().splitlines()
    assert args[-1] == "run"
    assert args[args.index("--csr") + 1] == str(tmp_path / "req.csr")
    assert args[args.index("--email") + 1] == "pki@example.test"
    assert args[args.index("--http.port") + 1] == "127.0.0.1:80"
    assert "--accept-tos" in args
    # Written under a name certdrop ignores, then renamed in the same folder.
    *_, source, target = (tmp_path / "mv.log").read_text().splitlines()
    assert re.fullmatch(rf"{tmp_path}/inbox/\.mx\.\w+\.part", source), source
    assert target == str(dropped)
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith("tmp.")]
    assert leftovers == []  # the temporary LEGO_PATH is gone


def test_lego_csr_takes_settings_from_the_environment(
    tmp_path: Path, renew_env: dict[str, str]
) -> None:
    """LEGO_SERVER, LEGO_HTTP_PORT, LEGO_PATH and LEGO_ARGS reach lego's command line."""
    renew_env.update(
        LEGO_SERVER="https://127.0.0.1:14000/dir",
        LEGO_HTTP_PORT="127.0.0.1:5002",
        LEGO_PATH=str(tmp_path / "kept"),
        LEGO_ARGS="--key-type rsa2048",
    )
    result = run(LEGO, tmp_path / "req.csr", "mx", tmp_path / "inbox", env=renew_env)
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "args").read_text().splitlines()
    assert args[args.index("--server") + 1] == "https://127.0.0.1:14000/dir"
    assert args[args.index("--http.port") + 1] == "127.0.0.1:5002"
    assert args[args.index("--path") + 1] == str(tmp_path / "kept")
    assert args[args.index("--key-type") + 1] == "rsa2048"
    assert (tmp_path / "kept" / "certificates" / "x.crt").exists()  # a kept path stays


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"FAKE_FAIL": "1"}, "lego failed (exit 3)"),
        ({"FAKE_TWO": "1"}, "expected one"),
        ({"LEGO_EMAIL": ""}, "LEGO_EMAIL is not set"),
    ],
)
def test_lego_csr_fails_clearly_and_drops_nothing(
    tmp_path: Path, renew_env: dict[str, str], setting: dict[str, str], message: str
) -> None:
    """A lego failure, an ambiguous output or a missing setting exits 1 with the reason."""
    renew_env.update(setting)
    result = run(LEGO, tmp_path / "req.csr", "mx", tmp_path / "inbox", env=renew_env)
    assert result.returncode == 1
    assert message in result.stderr
    assert inbox_files(tmp_path) == []


def test_lego_csr_refuses_a_name_with_a_slash(tmp_path: Path, renew_env: dict[str, str]) -> None:
    """A NAME that could leave the inbox is refused before lego runs."""
    result = run(LEGO, tmp_path / "req.csr", "../mx", tmp_path / "inbox", env=renew_env)
    assert result.returncode == 1
    assert not (tmp_path / "args").exists()


def test_certbot_csr_drops_the_fullchain(tmp_path: Path, renew_env: dict[str, str]) -> None:
    """certbot-csr.sh runs certbot --csr --standalone and drops its fullchain as NAME.pem."""
    result = run(CERTBOT, tmp_path / "req.csr", "mx", tmp_path / "inbox", env=renew_env)
    assert result.returncode == 0, result.stderr
    assert inbox_files(tmp_path) == ["mx.pem"]
    assert (tmp_path / "inbox" / "mx.pem").read_text() == CHAIN
    args = (tmp_path / "args").read_text().splitlines()
    assert args[:2] == ["certonly", "--non-interactive"]
    assert args[args.index("--csr") + 1] == str(tmp_path / "req.csr")
    assert "--standalone" in args
    assert "--register-unsafely-without-email" in args


def test_certbot_csr_fails_clearly(tmp_path: Path, renew_env: dict[str, str]) -> None:
    """A certbot failure exits 1 with the reason and drops nothing."""
    renew_env["FAKE_FAIL"] = "1"
    result = run(CERTBOT, tmp_path / "req.csr", "mx", tmp_path / "inbox", env=renew_env)
    assert result.returncode == 1
    assert "certbot failed (exit 1)" in result.stderr
    assert inbox_files(tmp_path) == []


@pytest.fixture
def lineage(tmp_path: Path) -> Path:
    """A certbot-style live folder whose key file lacks its final newline."""
    live = tmp_path / "live" / "mail.example.org"
    live.mkdir(parents=True)
    (live / "privkey.pem").write_text(
        "-----BEGIN PRIVATE KEY-----\nS0VZ\n-----END PRIVATE KEY-----"
    )
    (live / "fullchain.pem").write_text(CHAIN)
    (tmp_path / "inbox").mkdir()
    return live


def test_certbot_hook_drops_key_and_chain_as_one_file(tmp_path: Path, lineage: Path) -> None:
    """The certbot deploy hook writes key then chain to INBOX/<lineage>.pem, 0600."""
    env = dict(os.environ, RENEWED_LINEAGE=str(lineage), CERTDROP_INBOX=str(tmp_path / "inbox"))
    result = run(CERTBOT_HOOK, env=env)
    assert result.returncode == 0, result.stderr
    assert inbox_files(tmp_path) == ["mail.example.org.pem"]
    dropped = tmp_path / "inbox" / "mail.example.org.pem"
    key = (lineage / "privkey.pem").read_text()
    assert dropped.read_text() == key + "\n" + CHAIN
    assert mode(dropped) == 0o600


def test_certbot_hook_needs_its_lineage(tmp_path: Path, lineage: Path) -> None:
    """Run outside certbot (no RENEWED_LINEAGE), the hook exits 1 and drops nothing."""
    env = {k: v for k, v in os.environ.items() if k != "RENEWED_LINEAGE"}
    env["CERTDROP_INBOX"] = str(tmp_path / "inbox")
    result = run(CERTBOT_HOOK, env=env)
    assert result.returncode == 1
    assert "RENEWED_LINEAGE" in result.stderr
    assert inbox_files(tmp_path) == []


def test_acmesh_hook_drops_key_and_chain_as_one_file(tmp_path: Path, lineage: Path) -> None:
    """certdrop_deploy, sourced by a POSIX sh as acme.sh does, drops key + full chain."""
    script = '. "$1"; certdrop_deploy "*.example.org" "$2" /unused /unused "$3"'
    env = dict(os.environ, CERTDROP_INBOX=str(tmp_path / "inbox"))
    key, chain = lineage / "privkey.pem", lineage / "fullchain.pem"
    result = run("sh", "-c", script, "sh", ACMESH_HOOK, key, chain, env=env)
    assert result.returncode == 0, result.stderr
    assert inbox_files(tmp_path) == ["_.example.org.pem"]
    dropped = tmp_path / "inbox" / "_.example.org.pem"
    assert dropped.read_text() == key.read_text() + "\n" + CHAIN
    assert mode(dropped) == 0o600

    env["CERTDROP_INBOX"] = str(tmp_path / "missing")
    failed = run("sh", "-c", script, "sh", ACMESH_HOOK, key, chain, env=env)
    assert failed.returncode == 1
    assert "not a writable folder" in failed.stderr
