#!/usr/bin/env bash
# Set up the SFTP drop channel for certdrop: a locked-down user that can only upload into
# the inbox. Safe to run again: every step checks before it changes anything.
#
#   setup-drop-user.sh [options] KEY
#
# KEY is an OpenSSH public key file, the key line itself ("ssh-ed25519 AAAA... comment"),
# or "-" to read it from standard input. Running again with another key adds that key.
#
# Options:
#   --user NAME     drop user (default certdrop-drop)
#   --chroot DIR    SFTP chroot; the inbox is DIR/inbox (default /srv/certdrop)
#   --snippet FILE  sshd snippet to install (default: sshd_config.d/certdrop-drop.conf
#                   beside this script)
#   --root DIR      write every file under DIR instead of / (image builds, tests)
#   --dry-run       change nothing outside --root: no useradd/usermod, no chown to users
#                   that do not exist, no sshd check (prints what it skips)
#
# What it does:
#   1. user NAME, system account, no shell (nologin), password login impossible ('*')
#   2. DIR root:root 0755 (sshd refuses a chroot that is not), DIR/inbox NAME 0700 and
#      DIR/inbox/rejected NAME 0700 (uploads carry private keys)
#   3. the key, with the "restrict" option, in /etc/ssh/NAME.authorized_keys (root 0644)
#   4. the snippet in /etc/ssh/sshd_config.d/NAME.conf, then `sshd -t` and `sshd -T` show
#      that the config is valid and the chroot applies to NAME; on failure the previous
#      snippet is put back. Reload sshd yourself afterwards: systemctl reload ssh
set -euo pipefail

prog=${0##*/}
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
note() { printf '%s: %s\n' "$prog" "$*" >&2; }

user=certdrop-drop
chroot_dir=/srv/certdrop
root=
dry_run=0
snippet="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/sshd_config.d/certdrop-drop.conf"
key_arg=

while (($#)); do
    case $1 in
        --user) user=${2:?--user needs a name}; shift 2 ;;
        --chroot) chroot_dir=${2:?--chroot needs a folder}; shift 2 ;;
        --snippet) snippet=${2:?--snippet needs a file}; shift 2 ;;
        --root) root=${2:?--root needs a folder}; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        --) shift; (($# == 1)) || die "one KEY after --"; key_arg=$1; shift ;;
        -?*) die "unknown option $1 (see --help)" ;;
        *) [[ -z $key_arg ]] || die "only one KEY argument, got '$key_arg' and '$1'"
           key_arg=$1; shift ;;
    esac
done

[[ -n $key_arg ]] || die "no public key given: pass a key file, a key line or - (see --help)"
[[ $user =~ ^[a-z_][a-z0-9_-]*$ ]] || die "user name '$user' is not a valid system user name"
[[ $chroot_dir =~ ^(/[A-Za-z0-9._-]+)+$ ]] ||
    die "--chroot must be an absolute folder of plain names (no trailing /), not '$chroot_dir'"
[[ -r $snippet ]] || die "sshd snippet $snippet not found; pass --snippet FILE"
if [[ -n $root ]]; then
    mkdir -p -- "$root"
    root=$(cd -- "$root" && pwd)
    [[ $root != / ]] || root=
fi
if ((!dry_run)) && ((EUID != 0)); then
    die "must run as root (or use --dry-run --root DIR to try it out)"
fi

is_root=0
((EUID == 0)) && is_root=1

# chown only where it can work: as root, and to a user that exists (in --dry-run the drop
# user usually does not).
own() { # own OWNER:GROUP PATH
    local owner=${1%%:*}
    if ((!is_root)); then
        note "not root: skipped chown $1 $2"
    elif ! id -u -- "$owner" >/dev/null 2>&1; then
        note "dry run: user $owner does not exist, skipped chown $1 $2"
    else
        chown -- "$1" "$2"
    fi
}

# --- the key -----------------------------------------------------------------------------
work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
if [[ $key_arg == - ]]; then
    cat >"$work/key.pub"
elif [[ -f $key_arg ]]; then
    cat -- "$key_arg" >"$work/key.pub"
else
    printf '%s\n' "$key_arg" >"$work/key.pub"
fi
key_line=$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$work/key.pub" | head -n 1 || true)
[[ -n $key_line ]] || die "no public key found in '$key_arg'"
printf '%s\n' "$key_line" >"$work/key.pub"
ssh-keygen -l -f "$work/key.pub" >/dev/null 2>&1 ||
    die "'$key_arg' is not an OpenSSH public key (ssh-keygen -l cannot read it)"
read -r -a key_words <<<"$key_line"
# The key blob identifies the key whatever options or comment surround it.
key_blob=
for ((i = 0; i < ${#key_words[@]} - 1; i++)); do
    if [[ ${key_words[i]} =~ ^(ssh-|ecdsa-|sk-) ]]; then
        key_blob=${key_words[i + 1]}
        break
    fi
done
[[ -n $key_blob ]] || die "cannot find the key type in '$key_line'"
# "restrict" turns off forwarding, pty and rc files for this key even if sshd_config changes.
[[ $key_line =~ ^(ssh-|ecdsa-|sk-) ]] && key_line="restrict $key_line"

# --- 1. the user ---------------------------------------------------------------------------
if id -u -- "$user" >/dev/null 2>&1; then
    note "user $user exists"
elif ((dry_run)); then
    note "dry run: would create system user $user (shell /usr/sbin/nologin, home $chroot_dir)"
else
    useradd --system --user-group --no-create-home --home-dir "$chroot_dir" \
        --shell /usr/sbin/nologin --comment "certdrop SFTP drop" -- "$user"
    note "created user $user"
fi
if ((!dry_run)); then
    # useradd leaves the account locked ('!'), which some sshd setups refuse even for key
    # login; '*' still allows no password.
    usermod -p '*' -- "$user"
fi
group=$user
if id -u -- "$user" >/dev/null 2>&1; then
    group=$(id -gn -- "$user")
fi

# --- 2. the chroot and the inbox -----------------------------------------------------------
chroot_path=$root$chroot_dir
mkdir -p -- "$chroot_path"
own root:root "$chroot_path"
chmod 0755 -- "$chroot_path"
for sub in inbox inbox/rejected; do
    mkdir -p -- "$chroot_path/$sub"
    own "$user:$group" "$chroot_path/$sub"
    chmod 0700 -- "$chroot_path/$sub"
done
if ((!dry_run)); then
    # sshd checks every component of the chroot path: root-owned, not group/world-writable.
    dir=$chroot_path
    while [[ -n $dir && $dir != "$root" ]]; do
        read -r mode uid < <(stat -c '%a %u' -- "$dir")
        if ((uid != 0)) || (((8#$mode & 8#022) != 0)); then
            die "$dir is owned by uid $uid with mode $mode: sshd needs every folder of the chroot path owned by root and not group/world-writable (chown root $dir; chmod go-w $dir), or choose another --chroot"
        fi
        dir=${dir%/*}
    done
fi

# --- 3. the authorized key -----------------------------------------------------------------
ssh_dir=$root/etc/ssh
keys_file=$ssh_dir/$user.authorized_keys
mkdir -p -- "$ssh_dir/sshd_config.d"
if [[ -f $keys_file ]] && grep -qF -- " $key_blob" "$keys_file"; then
    note "key already in $keys_file"
else
    tmp=$(mktemp "$keys_file.XXXXXX")
    [[ -f $keys_file ]] && cat -- "$keys_file" >"$tmp"
    printf '%s\n' "$key_line" >>"$tmp"
    chmod 0644 -- "$tmp"
    own root:root "$tmp"
    mv -f -- "$tmp" "$keys_file"
    note "added key to $keys_file"
fi

# --- 4. the sshd snippet -------------------------------------------------------------------
target=$ssh_dir/sshd_config.d/$user.conf
sed -e "s#certdrop-drop#$user#g" -e "s#^\([[:space:]]*ChrootDirectory\) .*#\1 $chroot_dir#" \
    -- "$snippet" >"$work/snippet.conf"
backup=
if [[ -f $target ]]; then
    backup=$work/previous.conf
    cp -p -- "$target" "$backup"
fi
if [[ -n $backup ]] && cmp -s -- "$work/snippet.conf" "$target"; then
    note "sshd snippet $target is up to date"
else
    tmp=$(mktemp "$target.XXXXXX")
    cat -- "$work/snippet.conf" >"$tmp"
    chmod 0644 -- "$tmp"
    own root:root "$tmp"
    mv -f -- "$tmp" "$target"
    note "installed sshd snippet $target"
fi

if ((dry_run)); then
    note "dry run: skipped sshd -t (check it with: sshd -t && sshd -T -C user=$user,host=localhost,addr=127.0.0.1)"
    exit 0
fi

rollback() {
    if [[ -n $backup ]]; then
        cp -p -- "$backup" "$target"
    else
        rm -f -- "$target"
    fi
    die "$1; the previous sshd snippet was put back"
}
sshd_bin=$(command -v sshd || echo /usr/sbin/sshd)
sshd_args=()
[[ -n $root ]] && sshd_args=(-f "$ssh_dir/sshd_config")
"$sshd_bin" -t "${sshd_args[@]}" || rollback "sshd -t rejects the config with $target"
effective=$("$sshd_bin" -T "${sshd_args[@]}" -C "user=$user,host=localhost,addr=127.0.0.1") ||
    rollback "sshd -T cannot evaluate the config for $user"
grep -qx "chrootdirectory $chroot_dir" <<<"$effective" ||
    rollback "the snippet is not in effect for $user: make sure sshd_config starts with 'Include /etc/ssh/sshd_config.d/*.conf' and has no earlier Match for $user"
grep -q '^forcecommand internal-sftp' <<<"$effective" ||
    rollback "ForceCommand internal-sftp is not in effect for $user"
note "sshd config OK; now run: systemctl reload ssh"
