#!/usr/bin/env bash
# Installs what building, running and testing mod_modelgate need, from
# Debian's packages, and any packages named as arguments (bench/ adds its
# own).  Safe to run again: it installs only what is missing.
set -euo pipefail

PACKAGES=(
    # build
    gcc make autoconf automake libtool pkg-config
    apache2 apache2-dev libapr1-dev libaprutil1-dev
    libssl-dev libjansson-dev libhiredis-dev libcurl4-openssl-dev tzdata
    # tests
    libcmocka-dev python3 python3-pytest python3-cryptography curl redis-server
    valgrind
    # a locale whose decimal point is ',' (made below): the JSON readers'
    # reals must not depend on LC_NUMERIC (test_json_scan, test_cache_canon)
    locales
    # promtool, which checks the metrics exposition (test_mg_026)
    prometheus
    "$@"
)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Locales whose decimal point is not '.', for the unit tests that set one
# (they would skip without them, and check nothing): de_DE's ',' and
# ps_AF's two-byte U+066B.
comma_locale() {
    local l
    for l in de_DE ps_AF; do
        locale -a 2>/dev/null | grep -qi "^$l\.utf-\?8\$" && continue
        if [ "$(id -u)" = 0 ]; then
            localedef -i "$l" -f UTF-8 "$l.UTF-8" \
                || echo "install-deps: could not make the $l.UTF-8 locale" >&2
        fi
    done
}
if [ ${#missing[@]} -eq 0 ]; then
    comma_locale
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}; run as root to install them" >&2
    exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# --no-install-recommends keeps the machine lean; policy-rc.d stops the
# package scripts from starting system services (apache2, redis-server,
# nginx) that would take ports and compete for the cores.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -q --no-install-recommends "${missing[@]}"
comma_locale
