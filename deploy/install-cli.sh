#!/usr/bin/env bash
# Install certdrop's man page and its bash and zsh completion, generated from the
# installed certdrop itself (so they always match its --help). Safe to run again.
#
#   install-cli.sh [--python PY] [--root DIR]
#
# Options:
#   --python PY   the Python of the certdrop install (default /opt/certdrop/bin/python);
#                 the man page needs argparse-manpage: pip install 'certdrop[man]'
#   --root DIR    write every file under DIR instead of / (image builds, tests)
#
# What it writes (0644):
#   /usr/local/share/man/man1/certdrop.1                 man certdrop
#   /usr/share/bash-completion/completions/certdrop      bash-completion loads it on demand
#   /usr/local/share/zsh/site-functions/_certdrop        on zsh's default $fpath
set -euo pipefail

prog=${0##*/}
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }

python=/opt/certdrop/bin/python
root=
while (($#)); do
    case $1 in
        --python) (($# >= 2)) || die "--python needs a path"; python=$2; shift 2 ;;
        --root) (($# >= 2)) || die "--root needs a folder"; root=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) die "unknown argument '$1'; see $prog --help" ;;
    esac
done
[[ -x $python ]] || command -v "$python" >/dev/null || die "no Python at $python; pass --python"

man_dir=$root/usr/local/share/man/man1
bash_dir=$root/usr/share/bash-completion/completions
zsh_dir=$root/usr/local/share/zsh/site-functions
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Generated first, installed after: a failure leaves the installed files as they were.
"$python" -m certdrop.cli.manpage > "$work/certdrop.1" \
    || die "the man page could not be made; pip install 'certdrop[man]' into $python's venv"
"$python" -m certdrop completion bash > "$work/certdrop"
"$python" -m certdrop completion zsh > "$work/_certdrop"

install -d -m 0755 "$man_dir" "$bash_dir" "$zsh_dir"
install -m 0644 "$work/certdrop.1" "$man_dir/certdrop.1"
install -m 0644 "$work/certdrop" "$bash_dir/certdrop"
install -m 0644 "$work/_certdrop" "$zsh_dir/_certdrop"
if [[ -z $root ]] && command -v mandb >/dev/null; then
    mandb -q 2>/dev/null || true
fi
printf '%s: installed %s, %s, %s\n' "$prog" \
    "$man_dir/certdrop.1" "$bash_dir/certdrop" "$zsh_dir/_certdrop"
