#!/usr/bin/env bash
# certbot deploy hook for operators who keep certbot in charge of issuing and renewing:
# after each renewal, hand the new key and chain to certdrop, which deploys them.
#
# Install as /etc/letsencrypt/renewal-hooks/deploy/certdrop.sh (runs for every
# certificate), or name it on one: certbot renew --deploy-hook /path/to/this.
#
# certbot sets RENEWED_LINEAGE (e.g. /etc/letsencrypt/live/mail.example.org). The drop is
# ONE file, INBOX/<lineage name>.pem = privkey.pem then fullchain.pem, written under a
# dot-name ending in .part and renamed, so certdrop never reads half a file.
#   CERTDROP_INBOX  the inbox (default /srv/certdrop/inbox)
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

umask 077
lineage=${RENEWED_LINEAGE:-}
[[ -n $lineage ]] || die "RENEWED_LINEAGE is not set: run me as a certbot --deploy-hook"
inbox=${CERTDROP_INBOX:-/srv/certdrop/inbox}
[[ -d $inbox && -w $inbox ]] || die "inbox $inbox is not a writable folder (set CERTDROP_INBOX)"
name=${lineage%/}
name=${name##*/}
[[ $name =~ ^[A-Za-z0-9_][A-Za-z0-9._-]*$ ]] || die "cannot use lineage name '$name' as a file name"
for f in privkey.pem fullchain.pem; do
    [[ -r $lineage/$f ]] || die "$lineage/$f is missing or unreadable"
done

tmp=
work=$(mktemp -d)
trap '[[ -z $tmp ]] || rm -f -- "$tmp"; rm -rf -- "$work"' EXIT
# Key first, then the chain, each ending in a newline so no two PEM lines run together.
with_newline() { cat -- "$1"; [[ -z $(tail -c 1 -- "$1") ]] || echo; }
with_newline "$lineage/privkey.pem" >"$work/key.pem"
with_newline "$lineage/fullchain.pem" >"$work/chain.pem"
drop_into_inbox "$inbox" "$name" "$work/key.pem" "$work/chain.pem"
