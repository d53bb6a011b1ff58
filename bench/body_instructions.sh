#!/usr/bin/env bash
# bench/body_instructions.sh -- what reading a request's JSON body costs,
# counted in instructions (callgrind), not timed.  As
# tests/perf/instructions.sh: apache2 -X under callgrind, the whole process
# counted (bench/callgrind.sh), serves WARMUP and then WARMUP + REQUESTS
# identical POSTs of /v1/chat/completions (bench/body_client.py) on one
# keep-alive connection, each time from a fresh start; the difference is
# what REQUESTS requests cost.  The gateway is run.sh's (2) (API key, three
# layers, a route, shm store).  Rows, by the body's size:
#
#   body-100B     a short question (~100 bytes)
#   body-4K       a 4 KB prompt
#   body-50K      a 50 KB prompt
#
# Run it on two builds (mg_body_inspect with jansson, then with
# mg_json_scan) to compare: bench/README.md, "Reading the request body".
# Knobs: MG_PERF_REQUESTS=100 MG_PERF_WARMUP=20 MG_PERF_KEEP=1
#        MG_BODY_ROWS="body-100B body-4K body-50K"
# Run as root after scripts/build.sh; a few minutes.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/run.sh"                        # defines only
. "$HERE/callgrind.sh"                  # start_mock, callgrind_total
SRCDIR=$(cd "$HERE/.." && pwd)
BENCH_DIR=$HERE

REQUESTS=${MG_PERF_REQUESTS:-100}
WARMUP_REQ=${MG_PERF_WARMUP:-20}
ROWS=${MG_BODY_ROWS:-body-100B body-4K body-50K}
MODULE_SO=$SRCDIR/.libs/mod_modelgate.so
MG_STORE=shm

plog() { printf '[body-perf] %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || die "run as root"
[ -f "$MODULE_SO" ] || die "run scripts/build.sh first"

RESULTS=$(mktemp -d /tmp/mg-body-perf.XXXXXX)
chmod 755 "$RESULTS"
finish() {
    cleanup
    if [ "${MG_PERF_KEEP:-0}" = 1 ]; then plog "kept $RESULTS"; else rm -rf "$RESULTS"; fi
}
trap finish EXIT


# total ROW LOAD: TOTAL := instructions of the gateway serving LOAD
# requests of ROW's body (after its readiness request), from a fresh start.
total() {
    local row=$1 load=$2 file bytes
    file=$RESULTS/callgrind/$row.$load.out
    case $row in
        body-100B) bytes=0 ;;
        body-4K)   bytes=4096 ;;
        body-50K)  bytes=51200 ;;
        *) die "unknown row $row" ;;
    esac
    callgrind_total "$file" apache-modelgate start_apache_modelgate \
        "$PYTHON" "$HERE/body_client.py" --port @PORT@ \
        --key "$BENCH_KEY" --requests "$load" --prompt-bytes "$bytes"
}

plog "instructions per request, apache2 -X under callgrind, $REQUESTS POSTs after $WARMUP_REQ"
start_mock
declare -A PER=()
for row in $ROWS; do
    total "$row" "$WARMUP_REQ"; t0=$TOTAL
    total "$row" $((WARMUP_REQ + REQUESTS)); t1=$TOTAL
    PER[$row]=$(( (t1 - t0) / REQUESTS ))
    plog "$row: ${PER[$row]} Ir/request"
done
stop_server backend
for row in $ROWS; do
    printf '%-10s %9s Ir/request\n' "$row" "${PER[$row]}"
done
