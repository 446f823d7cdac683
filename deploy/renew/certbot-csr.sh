#!/usr/bin/env bash
# certdrop renewal hand-off through certbot: get the CSR certdrop wrote signed by an ACME
# CA and drop the issued chain into the inbox, where certdrop pairs it with its key.
#
#   certbot-csr.sh CSR NAME INBOX
#
# In certdrop.toml:
#   [renewal]
#   command = ["/usr/local/lib/certdrop/renew/certbot-csr.sh", "{csr}", "{name}", "{inbox}"]
#
# Settings come from the environment (under systemd: /etc/certdrop/renew.env):
#   CERTBOT_EMAIL         ACME account e-mail (unset: register without one)
#   CERTBOT_SERVER        ACME directory URL (default: certbot's own, Let's Encrypt)
#   CERTBOT_HTTP_ADDRESS  address of the standalone HTTP-01 listener (default 127.0.0.1:
#                         forward the CA's /.well-known/acme-challenge/ requests to it)
#   CERTBOT_HTTP_PORT     its port (default 80)
#   CERTBOT_CONFIG_DIR    certbot's --config-dir (account). Default: a temporary folder,
#                         removed afterwards (a new account each time); set it, e.g. to
#                         /var/lib/certdrop/certbot, to keep the account.
#   CERTBOT_ARGS          more certbot options, split at spaces (no quoting)
#   CERTBOT_BIN           the certbot program (default: certbot from PATH)
# certbot reads REQUESTS_CA_BUNDLE for extra CAs of the ACME server's HTTPS.
#
# The chain (leaf + intermediates, certbot's --fullchain-path) lands as INBOX/NAME.pem,
# written under a dot-name ending in .part and renamed, so certdrop never reads half a
# file. Exit 0 only when the file is in the inbox.
set -euo pipefail

prog=${0##*/}
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }

# Write the concatenation of FILES to INBOX/NAME.pem atomically. The inbox belongs to the
# SFTP drop user, so the temporary name is unpredictable and created with O_EXCL
# (noclobber): a planted file or symlink makes the write fail instead of being followed.
drop_into_inbox() { # INBOX NAME FILE...
    local inbox=$1 name=$2
    shift 2
    local final=$inbox/$name.pem
    [[ ! -d $final ]] || die "$final is a folder; remove it and run again"
    tmp=$(mktemp -u "$inbox/.$name.XXXXXXXXXX").part
    # One && chain: set -e does not apply inside a subshell that is tested with ||.
    (umask 077 && set -C && exec 3>"$tmp" && cat -- "$@" >&3 && sync /dev/fd/3) ||
        die "cannot write $tmp (is $inbox writable and the disk not full?)"
    mv -fT -- "$tmp" "$final" || die "cannot rename $tmp to $final"
    tmp=
    sync -- "$inbox" 2>/dev/null || true
    printf '%s: dropped %s\n' "$prog" "$final" >&2
}

(($# == 3)) || die "usage: $prog CSR NAME INBOX (got $# arguments)"
csr=$1 name=$2 inbox=$3
[[ -f $csr && -r $csr ]] || die "CSR file $csr is not readable"
[[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] ||
    die "NAME '$name' must be letters, digits, . _ - (no / and no leading dot)"
[[ -d $inbox && -w $inbox ]] || die "inbox $inbox is not a writable folder"
certbot_bin=${CERTBOT_BIN:-certbot}
command -v -- "$certbot_bin" >/dev/null ||
    die "$certbot_bin not found (PATH=$PATH): apt-get install certbot, or set CERTBOT_BIN"

tmp=
work=$(mktemp -d)
cleanup() {
    [[ -z $tmp ]] || rm -f -- "$tmp"
    rm -rf -- "$work"
}
trap cleanup EXIT
mkdir -- "$work/out"

# certbot's defaults (/etc/letsencrypt, /var/lib/letsencrypt, /var/log/letsencrypt) are
# read-only inside certdrop's systemd sandbox: everything goes to the temporary folder.
args=(certonly --non-interactive --agree-tos --csr "$csr"
    --standalone
    --http-01-address "${CERTBOT_HTTP_ADDRESS:-127.0.0.1}"
    --http-01-port "${CERTBOT_HTTP_PORT:-80}"
    --cert-path "$work/out/cert.pem"
    --chain-path "$work/out/chain.pem"
    --fullchain-path "$work/out/fullchain.pem"
    --config-dir "${CERTBOT_CONFIG_DIR:-$work/config}"
    --work-dir "$work/work"
    --logs-dir "$work/logs")
if [[ -n ${CERTBOT_EMAIL:-} ]]; then
    args+=(--email "$CERTBOT_EMAIL")
else
    args+=(--register-unsafely-without-email)
fi
[[ -z ${CERTBOT_SERVER:-} ]] || args+=(--server "$CERTBOT_SERVER")
read -r -a extra <<<"${CERTBOT_ARGS:-}"
args+=("${extra[@]}")

rc=0
"$certbot_bin" "${args[@]}" || rc=$?
if ((rc != 0)); then
    # The log folder is removed on exit: show its end so the reason survives.
    if [[ -f $work/logs/letsencrypt.log ]]; then
        tail -n 30 -- "$work/logs/letsencrypt.log" >&2
    fi
    die "certbot failed (exit $rc) for $csr; see its messages above"
fi

chain=$work/out/fullchain.pem
[[ -s $chain ]] || die "certbot exited 0 but wrote no $chain"
grep -q -- '-----BEGIN CERTIFICATE-----' "$chain" || die "$chain holds no PEM certificate"

drop_into_inbox "$inbox" "$name" "$chain"
