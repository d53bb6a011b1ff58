#!/usr/bin/env bash
# bench/body_instructions.sh -- what reading a request's JSON body costs,
# counted in instructions (callgrind), not timed.  As
# tests/perf/instructions.sh: apache2 -X under callgrind, counting inside
# ap_run_process_connection, serves WARMUP and then WARMUP + REQUESTS
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

start_mock() {
    local dir i port=
    dir=$(make_rundir backend)
    start_session backend "$dir" "$PYTHON" "$SRCDIR/tests/mock_backend/mock_model.py" \
        --host 127.0.0.1 --port 0 --quiet
    for i in $(seq 100); do
        port=$(awk '/^LISTENING/ { print $2; exit }' "$dir/console.log")
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || die "the mock backend did not start"
    BACKEND_PORT=$port
}

# total ROW LOAD: TOTAL := instructions of the gateway serving LOAD
# requests of ROW's body (after its readiness request), from a fresh start.
total() {
    local row=$1 load=$2 out=$RESULTS/callgrind file t bytes
    mkdir -p "$out"; chmod 1777 "$out"
    file=$out/$row.$load.out
    case $row in
        body-100B) bytes=0 ;;
        body-4K)   bytes=4096 ;;
        body-50K)  bytes=51200 ;;
        *) die "unknown row $row" ;;
    esac
    APACHE_WRAP="valgrind --tool=callgrind --callgrind-out-file=$file --collect-atstart=no --toggle-collect=ap_run_process_connection"
    READY_TRIES=900 STOP_WAIT=120 start_apache_modelgate >/dev/null
    unset APACHE_WRAP
    chown www-data "$file"
    "$PYTHON" "$HERE/body_client.py" --port "${PORT[apache-modelgate]}" \
        --key "$BENCH_KEY" --requests "$load" --prompt-bytes "$bytes" \
        || die "$row: the load failed"
    STOP_WAIT=120 stop_server apache-modelgate
    t=$(awk '/^(summary|totals):/ { print $2; exit }' "$file" 2>/dev/null || true)
    [ -n "$t" ] || die "$row: no callgrind totals in $file"
    TOTAL=$t
}

plog "instructions per request, apache2 -X under callgrind, $REQUESTS POSTs after $WARMUP_REQ"
start_mock
PORT[backend]=$BACKEND_PORT
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
