#!/usr/bin/env sh
# acme.sh deploy hook for operators who keep acme.sh in charge of issuing and renewing:
# after each issue/renewal, hand the new key and chain to certdrop, which deploys them.
#
# Install (the file name must match the function name prefix):
#   cp acme.sh-deploy-hook.sh ~/.acme.sh/deploy/certdrop.sh
# Use once per certificate; acme.sh remembers the hook and CERTDROP_INBOX for renewals:
#   CERTDROP_INBOX=/srv/certdrop/inbox acme.sh --deploy -d mail.example.org --deploy-hook certdrop
#
# The drop is ONE file, INBOX/<domain>.pem = key then full chain ("*" of a wildcard domain
# becomes "_"), written 0600 under a dot-name ending in .part and renamed, so certdrop
# never reads half a file.
#   CERTDROP_INBOX  the inbox (default /srv/certdrop/inbox)
#
# POSIX sh on purpose: acme.sh sources this file into its own shell (dash, busybox ash).

# Outside acme.sh (tests, manual runs) its log helpers do not exist.
command -v _info >/dev/null 2>&1 || _info() { printf 'certdrop: %s\n' "$*" >&2; }
command -v _err >/dev/null 2>&1 || _err() { printf 'certdrop: error: %s\n' "$*" >&2; }
command -v _debug >/dev/null 2>&1 || _debug() { :; }

# Print FILE, then a newline if FILE does not end in one, so PEM blocks never run together.
_certdrop_cat() {
  cat "$1" || return 1
  [ -z "$(tail -c 1 "$1")" ] || echo
}

#domain keyfile certfile cafile fullchain
certdrop_deploy() {
  _cdomain="$1"
  _ckey="$2"
  _ccert="$3"
  _cca="$4"
  _cfullchain="$5"
  _debug _cdomain "$_cdomain"
  _debug _ckey "$_ckey"
  _debug _ccert "$_ccert"
  _debug _cca "$_cca"
  _debug _cfullchain "$_cfullchain"

  if command -v _getdeployconf >/dev/null 2>&1; then
    _getdeployconf CERTDROP_INBOX
  fi
  _certdrop_inbox="${CERTDROP_INBOX:-/srv/certdrop/inbox}"
  if [ ! -d "$_certdrop_inbox" ] || [ ! -w "$_certdrop_inbox" ]; then
    _err "inbox $_certdrop_inbox is not a writable folder (set CERTDROP_INBOX)"
    return 1
  fi
  for _certdrop_f in "$_ckey" "$_cfullchain"; do
    if [ ! -r "$_certdrop_f" ]; then
      _err "$_certdrop_f is missing or unreadable"
      return 1
    fi
  done
  _certdrop_name="$(printf '%s' "$_cdomain" | tr '*' '_')"
  case "$_certdrop_name" in
    '' | .* | */*)
      _err "cannot use domain '$_cdomain' as a file name"
      return 1
      ;;
  esac
  _certdrop_final="$_certdrop_inbox/$_certdrop_name.pem"
  if [ -d "$_certdrop_final" ]; then
    _err "$_certdrop_final is a folder; remove it and deploy again"
    return 1
  fi

  # The inbox belongs to the SFTP drop user: an unpredictable temporary name, created with
  # O_EXCL (noclobber), so a planted file or symlink makes the write fail, never followed.
  _certdrop_tmp="$(mktemp -u "$_certdrop_inbox/.$_certdrop_name.XXXXXXXXXX").part" || return 1
  if ! (umask 077 && set -C && exec 3>"$_certdrop_tmp" &&
    _certdrop_cat "$_ckey" >&3 && _certdrop_cat "$_cfullchain" >&3 &&
    { sync /dev/fd/3 2>/dev/null || sync; }); then
    rm -f "$_certdrop_tmp"
    _err "cannot write $_certdrop_tmp (is the inbox writable and the disk not full?)"
    return 1
  fi
  if ! mv -f "$_certdrop_tmp" "$_certdrop_final"; then
    rm -f "$_certdrop_tmp"
    _err "cannot rename $_certdrop_tmp to $_certdrop_final"
    return 1
  fi
  sync "$_certdrop_inbox" 2>/dev/null || true

  if command -v _savedeployconf >/dev/null 2>&1 && [ -n "${CERTDROP_INBOX:-}" ]; then
    _savedeployconf CERTDROP_INBOX "$CERTDROP_INBOX"
  fi
  _info "dropped $_certdrop_final for certdrop"
  return 0
}
