#!/usr/bin/env bash
# The whole test suite: dependencies, build, C unit tests (make check), the
# mock backend's own tests, then the integration tests against a real
# apache2.  Run as root on a fresh Debian 12 machine: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/build.sh

echo "== unit tests (make check)"
if ! make check -j"$(nproc)"; then
    cat tests/unit/*.log 2>/dev/null || true
    exit 1
fi

echo "== mock model backend"
/usr/bin/python3 -m pytest -q tests/mock_backend

echo "== integration tests (apache2 + mod_modelgate + mock backend)"
cd tests/integration
/usr/bin/python3 -m pytest -q "$@"
