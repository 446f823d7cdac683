#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then lint, type-check and test.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(nginx postfix openssh-server openssh-client pebble lego certbot openssl
              logrotate systemd shellcheck nats-server prometheus faketime)
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "scripts/test.sh: needs root to install: ${missing[*]}" >&2
        exit 1
    fi
    # Packages must not start their default daemons: the tests start private instances.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'
.venv/bin/ruff check daemon tests bench
.venv/bin/mypy
# The layers stay honest: core, store, shell, daemon, cli; imports one way (.importlinter).
(cd daemon && ../.venv/bin/lint-imports ../.importlinter)
exec .venv/bin/python -m pytest "$@"
