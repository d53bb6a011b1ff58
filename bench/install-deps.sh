#!/usr/bin/env bash
# Installs what bench/run.sh needs beyond scripts/install-deps.sh, from
# Debian's packages: wrk (the load generator) and nginx (the fast backend and
# the two nginx gateways).  Safe to run again: it installs only what is
# missing.  nginx-light is enough: limit_req, upstream keepalive and return
# are all core modules.
set -euo pipefail

missing=()
dpkg-query -W -f='${Status}' wrk 2>/dev/null | grep -q "install ok installed" || missing+=(wrk)
# Any of Debian's nginx flavours provides /usr/sbin/nginx; nginx-light is
# the smallest.
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "bench/install-deps: missing packages: ${missing[*]}; run as root to install them" >&2
    exit 1
fi
echo "bench/install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# policy-rc.d keeps the package scripts from starting the system nginx
# service, which would take port 80 and compete for the two cores.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -q --no-install-recommends "${missing[@]}"
