#!/usr/bin/env bash
# The whole test suite: dependencies, build, C unit tests (make check), the
# mock backend's own tests, the guards on the instructions the gateway adds
# to a GET, to a POST with token layers, to a streamed answer's events and
# to the response cache's miss and hit (tests/perf/instructions.sh), then
# the integration tests
# against a real apache2 (last: CI reads pytest's closing line).
# Run as root on a fresh Debian 12 machine: bash scripts/test.sh
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

echo "== instructions per request (callgrind; budget in bench/instruction-budget)"
bash tests/perf/instructions.sh get
echo "== instructions per POST with token layers (budget in bench/instruction-budget-post)"
bash tests/perf/instructions.sh post
echo "== instructions per SSE stream with token layers (budget in bench/instruction-budget-sse)"
bash tests/perf/instructions.sh sse
echo "== instructions of the response cache's miss and hit (budgets in bench/instruction-budget-cache)"
bash tests/perf/instructions.sh cache

echo "== integration tests (apache2 + mod_modelgate + mock backend)"
cd tests/integration
/usr/bin/python3 -m pytest -q "$@"
