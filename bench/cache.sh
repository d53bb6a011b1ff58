#!/usr/bin/env bash
# bench/cache.sh -- the response cache (plugins/cache) under load, with
# run.sh's machinery (sourced: its servers, measure() and CPU accounting).
#
# Every row POSTs /v1/chat/completions with a JSON body ("temperature": 0)
# to the same fast nginx backend:
#
#   (1)  apache2 + mod_proxy                        forwards every request
#   (5)  mod_modelgate, the cache plugin loaded, ModelGateCacheable Off,
#        a different body per request               (the cache off)
#   (6)  the same, ModelGateCacheable On, a different body per request
#                                                    (every request a miss,
#                                                     looked up and stored)
#   (7)  the same, ModelGateCacheable On, one body  (every request a hit
#                                                     after the first)
#
# Targets (issue 12): (7) rps >= 1.5 x (1); (6) - (5) gateway CPU <= 2 us
# per request.  Knobs as run.sh's (BENCH_DURATION, BENCH_ROUNDS, ...);
# BENCH_CACHE_ONLY="1 5 6 7" picks rows; BENCH_CACHE_EXTRA= adds lines to the
# configuration of (5)-(7); BENCH_CACHE_LOCK=httpd (or shared, the default)
# picks the cache's lock; BENCH_CACHE_PREFILL=N stores N other answers in
# (7)'s cache before it is measured.
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/run.sh"

CACHE_ONLY=${BENCH_CACHE_ONLY:-1 5 6 7}
BENCH_PATH=/v1/chat/completions

# A wrk script: POST JSON; with $1 = unique, each request's body differs
# (a counter per wrk thread, and the thread's id).
wrk_script() {
    local file=$1 unique=$2
    cat >"$file" <<LUA
local n = 0
local tid = 0
-- Differs between the warm-up and the measured run (3 s apart or more):
-- the measured run's bodies were never seen.
local run = tostring(os.time())
function setup(thread)
    tid = tid + 1
    thread:set("tid", tid)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local fixed = '{"model":"bench","temperature":0,"messages":[{"role":"user","content":"is this good?"}]}'
wrk.body = fixed
function request()
    if $unique == 1 then
        n = n + 1
        return wrk.format(nil, nil, nil,
            '{"model":"bench","temperature":0,"messages":[{"role":"user","content":"question '
            .. run .. '-' .. tostring(tid) .. '-' .. n .. '"}]}')
    end
    return wrk.format(nil, nil, nil, fixed)
end
LUA
}

# (5), (6), (7): run.sh's (2) with the cache plugin and shmcb added.
start_cache_gateway() {
    local name=$1 cacheable=$2
    local so=$RESULTS/mod_modelgate_cache.so
    MG_EXTRA="LoadModule socache_shmcb_module $HTTPD_MODDIR/mod_socache_shmcb.so
LoadModule modelgate_cache_module \"$so\"
ModelGateCache \"shmcb:$RESULTS/$name-shmcb(67108864)\"${BENCH_CACHE_LOCK:+ lock=$BENCH_CACHE_LOCK}
<Location \"/v1/\">
    ModelGateCacheable $cacheable
</Location>
${BENCH_CACHE_EXTRA:-}"
    start_apache_modelgate
    # Under its own name, for the table.
    PORT[$name]=${PORT[apache-modelgate]}
    RUNNING[$name]=${RUNNING[apache-modelgate]}
    mkdir -p "$RESULTS/$name"
    cp "$RESULTS/apache-modelgate/httpd.conf" "$RESULTS/$name/httpd.conf"
}

stop_cache_gateway() {
    local name=$1
    cp "$RESULTS/apache-modelgate/error.log" "$RESULTS/$name/error.log" 2>/dev/null || true
    stop_server apache-modelgate
    unset "RUNNING[$name]"
}

# prefill NAME: with BENCH_CACHE_PREFILL=N, N answers stored first (other
# questions, one keep-alive connection): a hit then finds its answer among
# many, as in a cache in use (shmcb scans a subcache's index).
prefill() {
    [ "${BENCH_CACHE_PREFILL:-0}" -gt 0 ] || return 0
    log "$1: storing ${BENCH_CACHE_PREFILL} other answers first"
    "$PYTHON" "$SRCDIR/bench/cache_client.py" --port "${PORT[$1]}" --key "$BENCH_KEY" \
        --requests "$BENCH_CACHE_PREFILL" --unique --first 1 \
        --cache-status "modelgate; fwd=miss; stored" || die "$1: prefill failed"
}

cache_main() {
    prepare
    cp "$SRCDIR/.libs/mod_modelgate_cache.so" "$RESULTS/mod_modelgate_cache.so"
    wrk_script "$RESULTS/one-body.lua" 0
    wrk_script "$RESULTS/unique-body.lua" 1
    start_backend
    PORT[backend]=$BACKEND_PORT
    printf '# name\tround\trps\tp50_ms\tp99_ms\tgw_us_per_req\tbe_us_per_req\twrk_us_per_req\tgw_ctxsw_per_req\tidle_pct\tnon2xx\tsocket_errors\trun\tpre_idle_pct\n' \
        >"$RESULTS/results.tsv"
    local which
    for ROUND in $(seq "$ROUNDS"); do
        for which in $CACHE_ONLY; do
            case $which in
                1) WRK_SCRIPT=$RESULTS/one-body.lua
                   start_apache_proxy; measure apache-proxy; stop_server apache-proxy ;;
                5) WRK_SCRIPT=$RESULTS/unique-body.lua
                   start_cache_gateway cache-off Off; measure cache-off
                   stop_cache_gateway cache-off ;;
                6) WRK_SCRIPT=$RESULTS/unique-body.lua
                   start_cache_gateway cache-miss On; measure cache-miss
                   stop_cache_gateway cache-miss ;;
                7) WRK_SCRIPT=$RESULTS/one-body.lua
                   start_cache_gateway cache-hit On
                   prefill cache-hit
                   measure cache-hit
                   stop_cache_gateway cache-hit ;;
                *) die "BENCH_CACHE_ONLY: unknown row $which (1 5 6 7)" ;;
            esac
        done
    done
    stop_server backend
    cache_report | tee "$RESULTS/summary.txt"
}

cache_report() {
    local names=(apache-proxy cache-off cache-miss cache-hit)
    local labels=("(1) apache2 + mod_proxy" "(5) modelgate, cache off" \
                  "(6) modelgate, cache miss" "(7) modelgate, cache hit")
    local i name rps
    echo
    [ "$ROUNDS" -gt 1 ] && echo "medians of $ROUNDS rounds (rps_range: lowest-highest round)"
    printf '%-28s %8s %13s %7s %7s %9s %9s %5s %8s %6s\n' server rps rps_range \
        p50_ms p99_ms gw_us/req be_us/req idle% pre_idle errors
    for i in "${!names[@]}"; do
        name=${names[$i]}
        rps=$(median "$name" 3)
        [ -n "$rps" ] || continue
        printf '%-28s %8.0f %13s %7.3f %7.3f %9.1f %9.1f %5.0f %8s %6s\n' "${labels[$i]}" \
            "$rps" "$(spread "$name" 3)" "$(median "$name" 4)" "$(median "$name" 5)" \
            "$(median "$name" 6)" "$(median "$name" 7)" "$(median "$name" 10)" \
            "$(col "$name" 14 | head -n 1)" \
            "$(awk -F'\t' -v n="$name" '$1 == n { s += $11 + $12 } END { print s + 0 }' \
                "$RESULTS/results.tsv")"
    done
    echo
    echo "ratio rps (7)/(1) cache hit / bare apache forwarding: $(ratio cache-hit apache-proxy)   (target >= 1.5)"
    local a b
    a=$(median cache-miss 6); b=$(median cache-off 6)
    if [ -n "$a" ] && [ -n "$b" ]; then
        echo "gateway CPU added by a miss (6)-(5): $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", a - b }') us/request   (target <= 2)"
    fi
    echo "results: $RESULTS"
}

cache_main "$@"
