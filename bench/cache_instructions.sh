#!/usr/bin/env bash
# bench/cache_instructions.sh -- what the response cache costs, counted in
# instructions (callgrind), not timed: the shared 2-core machine cannot
# fool it.  As tests/perf/instructions.sh: apache2 -X under callgrind,
# counting inside ap_run_process_connection, serves WARMUP and then
# WARMUP + REQUESTS POSTs (bench/cache_client.py) on one keep-alive
# connection, each time from a fresh start; the difference is what
# REQUESTS requests cost.  Rows:
#
#   apache-proxy  bare apache2 + mod_proxy, one body          (forwards all)
#   cache-off     run.sh's (2) + mod_modelgate_cache loaded,
#                 ModelGateCacheable Off, a body per request
#   cache-miss    ModelGateCacheable On, a body per request   (all misses,
#                                                              each stored)
#   cache-hit     ModelGateCacheable On, one body             (all hits)
#
# The target "a miss adds <= 2 us of CPU" is checked as instructions:
# cache-miss - cache-off, with this machine's instructions per microsecond
# for the gateway measured by bench/cache.sh (gw_us/req of (5) against
# cache-off's count here).
#
# Knobs: MG_PERF_REQUESTS=300 MG_PERF_WARMUP=20 MG_PERF_KEEP=1
#        MG_CACHE_ROWS="apache-proxy cache-off cache-miss cache-hit"
# Run as root after scripts/build.sh; a few minutes.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/run.sh"                        # defines only
. "$HERE/callgrind.sh"                  # start_mock, callgrind_total
SRCDIR=$(cd "$HERE/.." && pwd)
BENCH_DIR=$HERE

REQUESTS=${MG_PERF_REQUESTS:-300}
WARMUP_REQ=${MG_PERF_WARMUP:-20}
ROWS=${MG_CACHE_ROWS:-apache-proxy cache-off cache-miss cache-hit}
MODULE_SO=$SRCDIR/.libs/mod_modelgate.so
CACHE_SO=$SRCDIR/.libs/mod_modelgate_cache.so
MG_STORE=shm
# run.sh's readiness GET stays on /v1/models (the mock answers GETs of
# /v1/chat/completions with 405); the load POSTs /v1/chat/completions.

plog() { printf '[cache-perf] %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || die "run as root"
[ -f "$MODULE_SO" ] && [ -f "$CACHE_SO" ] || die "run scripts/build.sh first"

RESULTS=$(mktemp -d /tmp/mg-cache-perf.XXXXXX)
chmod 755 "$RESULTS"
finish() {
    cleanup
    if [ "${MG_PERF_KEEP:-0}" = 1 ]; then plog "kept $RESULTS"; else rm -rf "$RESULTS"; fi
}
trap finish EXIT
cp "$CACHE_SO" "$RESULTS/mod_modelgate_cache.so"


# The gateway rows: run.sh's (2) with the cache plugin, shmcb and a location.
start_cache_row() {
    local cacheable=$1
    MG_EXTRA="LoadModule socache_shmcb_module $HTTPD_MODDIR/mod_socache_shmcb.so
LoadModule modelgate_cache_module \"$RESULTS/mod_modelgate_cache.so\"
ModelGateCache \"shmcb:$RESULTS/shmcb(67108864)\"
<Location \"/v1/\">
    ModelGateCacheable $cacheable
</Location>"
    start_apache_modelgate
}
start_cache_off()  { start_cache_row Off; }
start_cache_on()   { start_cache_row On; }

# total ROW LOAD: TOTAL := instructions of ROW's server serving LOAD
# requests (after its readiness request), from a fresh start.
total() {
    local row=$1 load=$2 file name start
    local args=()
    file=$RESULTS/callgrind/$row.$load.out
    case $row in
        apache-proxy) name=apache-proxy; start=start_apache_proxy ;;
        cache-off)    name=apache-modelgate; start=start_cache_off; args=(--unique) ;;
        cache-miss)   name=apache-modelgate; start=start_cache_on
                      args=(--unique --cache-status "modelgate; fwd=miss; stored") ;;
        cache-hit)    name=apache-modelgate; start=start_cache_on
                      args=(--cache-status "modelgate; hit") ;;
        *) die "unknown row $row" ;;
    esac
    callgrind_total "$file" "$name" "$start" \
        "$PYTHON" "$HERE/cache_client.py" --port @PORT@ --key "$BENCH_KEY" \
        --requests "$load" "${args[@]}"
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
    printf '%-14s %8s Ir/request\n' "$row" "${PER[$row]}"
done
if [ -n "${PER[cache-miss]:-}" ] && [ -n "${PER[cache-off]:-}" ]; then
    echo "a miss (looked up, stored) adds $(( PER[cache-miss] - PER[cache-off] )) Ir/request over the cache off"
fi
if [ -n "${PER[cache-hit]:-}" ] && [ -n "${PER[apache-proxy]:-}" ]; then
    echo "a hit costs $(awk -v h="${PER[cache-hit]}" -v p="${PER[apache-proxy]}" 'BEGIN { printf "%.2f", h / p }') x bare apache2 + mod_proxy forwarding the same POST"
fi
