#!/usr/bin/env bash
# What bench/run.sh needs beyond the project's own packages: wrk (the load
# generator) and nginx (the fast backend and the two nginx gateways).
# nginx-light is enough: limit_req, upstream keepalive and return are all
# core modules.
set -euo pipefail
exec bash "$(dirname "$0")/../scripts/install-deps.sh" wrk nginx-light
