#!/usr/bin/env bash
# certdrop renewal hand-off through lego: get the CSR certdrop wrote signed by an ACME CA
# and drop the issued chain into the inbox, where certdrop pairs it with the key it kept.
#
#   lego-csr.sh CSR NAME INBOX
#
# In certdrop.toml:
#   [renewal]
#   command = ["/usr/local/lib/certdrop/renew/lego-csr.sh", "{csr}", "{name}", "{inbox}"]
#
# Settings come from the environment (under systemd: /etc/certdrop/renew.env):
#   LEGO_EMAIL      ACME account e-mail (required)
#   LEGO_SERVER     ACME directory URL (default: lego's own default, Let's Encrypt)
#   LEGO_HTTP_PORT  HTTP-01 listener, [iface]:port (default 127.0.0.1:80: forward the CA's
#                   /.well-known/acme-challenge/ requests to it, or set :80)
#   LEGO_DNS        a lego DNS provider name: use DNS-01 instead of HTTP-01
#   LEGO_PATH       lego's folder (account, certificates). Default: a temporary folder,
#                   removed afterwards (a new ACME account each time). Set it, e.g. to
#                   /var/lib/certdrop/lego, to keep the account.
#   LEGO_ARGS       more lego global options, split at spaces (no quoting)
#   LEGO_BIN        the lego program (default: lego from PATH)
# lego itself reads LEGO_CA_CERTIFICATES (extra CAs for the ACME server's HTTPS) and the
# DNS providers' own variables.
#
# The chain (leaf + intermediates, as lego writes certificates/<CN>.crt) lands as
# INBOX/NAME.pem, written under a dot-name ending in .part and renamed, so certdrop never
# reads half a file. Exit 0 only when the file is in the inbox.
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
[[ -n ${LEGO_EMAIL:-} ]] ||
    die "LEGO_EMAIL is not set: put LEGO_EMAIL=you@example.org into /etc/certdrop/renew.env"
lego_bin=${LEGO_BIN:-lego}
command -v -- "$lego_bin" >/dev/null ||
    die "$lego_bin not found (PATH=$PATH): apt-get install lego, or set LEGO_BIN"

tmp=
work=$(mktemp -d)
cleanup() {
    [[ -z $tmp ]] || rm -f -- "$tmp"
    rm -rf -- "$work"
}
trap cleanup EXIT

lego_path=${LEGO_PATH:-$work/lego}
args=(--accept-tos --email "$LEGO_EMAIL" --path "$lego_path" --csr "$csr")
[[ -z ${LEGO_SERVER:-} ]] || args+=(--server "$LEGO_SERVER")
if [[ -n ${LEGO_DNS:-} ]]; then
    args+=(--dns "$LEGO_DNS")
else
    args+=(--http --http.port "${LEGO_HTTP_PORT:-127.0.0.1:80}")
fi
read -r -a extra <<<"${LEGO_ARGS:-}"
args+=("${extra[@]}")

# lego names its output after the CSR's CN (sanitised): rather than guess that name, take
# the one *.crt (not *.issuer.crt) this run wrote. A kept LEGO_PATH holds older ones too,
# so compare against what was there before.
shopt -s nullglob
declare -A before=()
for f in "$lego_path"/certificates/*.crt; do
    [[ $f == *.issuer.crt ]] || before[$f]=$(cksum <"$f")
done

rc=0
"$lego_bin" "${args[@]}" run || rc=$?
((rc == 0)) || die "lego failed (exit $rc) for $csr; see its messages above"

written=()
for f in "$lego_path"/certificates/*.crt; do
    [[ $f != *.issuer.crt ]] || continue
    [[ ${before[$f]-} == "$(cksum <"$f")" ]] || written+=("$f")
done
((${#written[@]} > 0)) ||
    die "lego exited 0 but wrote no certificate under $lego_path/certificates"
((${#written[@]} == 1)) ||
    die "lego wrote ${#written[@]} certificates (${written[*]}); expected one"
grep -q -- '-----BEGIN CERTIFICATE-----' "${written[0]}" ||
    die "${written[0]} holds no PEM certificate"

drop_into_inbox "$inbox" "$name" "${written[0]}"
