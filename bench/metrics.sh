#!/usr/bin/env bash
# bench/metrics.sh -- issue 14's targets for the metrics, by hand, as root:
#
#   1. metrics on vs off: run.sh's (2) configuration (API key, three
#      layers on the shm store, a route) twice, as is and with
#      `ModelGateMetrics Off`, interleaved for BENCH_ROUNDS rounds (default
#      5) in one run; the ratio of the median requests/s (target >= 0.99)
#      and of the gateway's CPU per request (target: <= 0.3 us added).
#   2. a scrape of ~1,000 series: a gateway with 20 upstreams, 20 models
#      and 5 tiers, one request per model and tier (so that every request
#      cell, status class and histogram has a count), then
#      BENCH_SCRAPES (default 200) scrapes one after the other on one
#      connection; the series counted, the median and p95 of curl's
#      time_total (target: <= 5 ms).
#
# Knobs as run.sh (BENCH_DURATION, BENCH_WARMUP, BENCH_CONNECTIONS,
# BENCH_BUILD, BENCH_QUIET_WAIT), plus BENCH_ROUNDS, BENCH_SCRAPES and
# BENCH_PARTS ("load scrape": which of the two to run).
# Results in bench/results/<timestamp>/ (summary.txt).
set -euo pipefail
BENCH_ROUNDS=${BENCH_ROUNDS:-5}
# shellcheck source=bench/run.sh
. "$(cd "$(dirname "$0")" && pwd)/run.sh"     # defines only
SCRAPES=${BENCH_SCRAPES:-200}
PARTS=${BENCH_PARTS:-load scrape}

# start_variant NAME EXTRA: run.sh's (2) with EXTRA lines, known as NAME.
start_variant() {
    local name=$1
    MG_EXTRA=$2
    start_apache_modelgate
    RUNNING[$name]=${RUNNING[apache-modelgate]}
    PORT[$name]=${PORT[apache-modelgate]}
    unset "RUNNING[apache-modelgate]"
    mkdir -p "$RESULTS/$name"
}

# The scrape gateway: U upstreams (all the fast backend), one model each,
# T tiers with a key each.
scrape_conf() {
    local dir=$1 port=$2 u t
    apache_base_conf "$dir" "$port"
    echo "LoadModule modelgate_module \"$dir/mod_modelgate.so\""
    echo "ModelGateStore shm capacity=65536"
    for t in $(seq 1 5); do echo "ModelGateTier tier$t 100000/s"; done
    for u in $(seq -w 1 20); do
        echo "ModelGateUpstream up$u http://127.0.0.1:$BACKEND_PORT"
        echo "ModelGateModel model-$u up$u"
    done
    cat <<EOF
ModelGateKeyFile "$dir/scrape.keys"
<Location "/v1/">
    Require all granted
    ModelGate On
    ModelGateRoute up01
</Location>
<Location "/metrics">
    SetHandler modelgate-metrics
    Require all granted
</Location>
EOF
}

scrape_bench() {
    local dir port t u key i
    dir=$(make_rundir scrape)
    port=$(free_port)
    cp "$MODULE_SO" "$dir/mod_modelgate.so"
    : >"$dir/scrape.keys"
    for t in $(seq 1 5); do
        printf 'sha256:%s key%s tenant%s tier%s\n' \
            "$(printf 'mg-scrape-key-%s' "$t" | sha256sum | cut -d' ' -f1)" "$t" "$t" "$t" \
            >>"$dir/scrape.keys"
    done
    scrape_conf "$dir" "$port" >"$dir/httpd.conf"
    BENCH_KEY=mg-scrape-key-1 apache_start scrape "$dir" "$port"
    for t in $(seq 1 5); do
        for u in $(seq -w 1 20); do
            curl -s -o /dev/null -H "X-API-Key: mg-scrape-key-$t" \
                -H 'Content-Type: application/json' \
                --data "{\"model\":\"model-$u\",\"messages\":[]}" \
                "http://127.0.0.1:$port/v1/chat/completions"
        done
    done
    sleep 1                          # log_transaction runs after the answer
    curl -s "http://127.0.0.1:$port/metrics" >"$dir/scrape.txt"
    local series
    series=$(grep -vc '^#' "$dir/scrape.txt")
    wait_quiet
    # One connection (curl reuses it for every URL it is given).
    local urls=()
    for i in $(seq "$SCRAPES"); do
        urls+=(-o /dev/null "http://127.0.0.1:$port/metrics")
    done
    curl -s -w '%{time_total}\n' "${urls[@]}" >"$dir/times.txt"
    stop_server scrape
    sort -g "$dir/times.txt" | awk -v s="$series" -v b="$(wc -c <"$dir/scrape.txt")" '
        { v[NR] = $1 * 1000 }
        END { printf "scrape of %d series (%d bytes), %d scrapes: median %.2f ms, p95 %.2f ms, max %.2f ms   (target <= 5 ms)\n",
                     s, b, NR, v[int(NR / 2) + 1], v[int(NR * 0.95)], v[NR] }'
}

metrics_main() {
    prepare
    start_backend
    PORT[backend]=$BACKEND_PORT
    printf '# name\tround\trps\tp50_ms\tp99_ms\tgw_us_per_req\tbe_us_per_req\twrk_us_per_req\tgw_ctxsw_per_req\tidle_pct\tnon2xx\tsocket_errors\trun\tpre_idle_pct\n' \
        >"$RESULTS/results.tsv"
    for ROUND in $(seq "$ROUNDS"); do
        [[ " $PARTS " == *" load "* ]] || break
        # alternate which goes first, so a drift of the machine within a
        # round favours neither
        local order="on off"
        [ $((ROUND % 2)) = 0 ] && order="off on"
        local v
        for v in $order; do
            if [ "$v" = on ]; then
                start_variant metrics-on ""
            else
                start_variant metrics-off "ModelGateMetrics Off"
            fi
            measure "metrics-$v"
            stop_server "metrics-$v"
        done
    done
    {
        if [[ " $PARTS " == *" load "* ]]; then
        echo
        printf '%-12s %8s %13s %9s\n' variant rps rps_range gw_us/req
        for v in on off; do
            printf '%-12s %8.0f %13s %9.2f\n' "metrics-$v" "$(median "metrics-$v" 3)" \
                "$(spread "metrics-$v" 3)" "$(median "metrics-$v" 6)"
        done
        echo "ratio rps metrics on / off: $(ratio metrics-on metrics-off)   (target >= 0.99)"
        echo "gateway CPU added by the metrics: $(awk -v a="$(median metrics-on 6)" \
            -v b="$(median metrics-off 6)" 'BEGIN { printf "%.2f", a - b }') us/request   (target <= 0.3)"
        fi
        [[ " $PARTS " != *" scrape "* ]] || scrape_bench
    } | tee "$RESULTS/summary.txt"
    stop_server backend
    echo "results: $RESULTS"
}

metrics_main "$@"
