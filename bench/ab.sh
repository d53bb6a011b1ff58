#!/usr/bin/env bash
# bench/ab.sh -- a throughput ratio that this noisy machine can give:
# two servers (or two callers of one) measured in many short wrk runs,
# alternating A B B A A B ..., both servers started and warmed once.
#
# Why: on this 2-vCPU VM the speed of the machine itself drifts by 15-40 %
# over tens of seconds (the backend's CPU per request, the same work in
# every run, moves as much as the gateways' do), so run.sh's rounds -- a
# server started, warmed 3 s and measured 10 s, then the other -- compare
# different machines.  Here each B run is next to an A run, seconds apart,
# and what is reported is the median of the per-pair ratios with its 95 %
# confidence interval from order statistics (distribution-free: the k-th
# lowest and highest of n ratios, k from the binomial(n, 1/2) tail), and
# the same for the gateway CPU per request (B - A, us).
#
#   bash bench/ab.sh gate     run.sh's (1) bare apache2 + mod_proxy -> (2)
#                             mod_modelgate (key, 3 layers, route; GET)
#                             -- issue 10's >= 0.97
#   bash bench/ab.sh jwt      one gateway: API key -> repeated ES256 bearer
#                             JWT (jwt_bench.sh's) -- issue 13's >= 0.97
#   bash bench/ab.sh tokens   bare -> gateway with token layers, a
#                             non-streaming chat completion (tokens.sh's
#                             JSON rows) -- issue 11's >= 0.95
#   bash bench/ab.sh cache    the cache off -> every request a miss
#                             (cache_conf.sh's rows, in front of the mock
#                             backend): BENCH_AB_REQUESTS=2000 sequential
#                             POSTs on one keep-alive connection a run, a
#                             new question each, so the gateway's CPU per
#                             request is one request's path, without wrk's
#                             64 connections' scheduling -- issue 12's
#                             <= 2 us added by a miss
#   bash bench/ab.sh variant  (2) with BENCH_AB_A_EXTRA -> (2) with
#                             BENCH_AB_B_EXTRA (lines added to its
#                             configuration): what a part of the gateway
#                             costs, e.g. BENCH_AB_B_EXTRA="ModelGateTrace Off"
#
# Knobs: BENCH_AB_PAIRS=20 BENCH_AB_SECS=3 (each run), BENCH_WARMUP=3s (once
# per server), BENCH_CONNECTIONS=64 BENCH_THREADS=2, BENCH_BUILD=0 (1: run
# scripts/build.sh first).  Results in bench/results/ab-MODE-<timestamp>/:
# ab.tsv (one line a run), summary.txt.
set -euo pipefail

AB_MODE=${1:-gate}
AB_PAIRS=${BENCH_AB_PAIRS:-20}
AB_SECS=${BENCH_AB_SECS:-3}
BENCH_BUILD=${BENCH_BUILD:-0}
AB_DIR=$(cd "$(dirname "$0")" && pwd)

# ns of CPU every thread of every process in the group has run
# (schedstat: nanoseconds, not clock ticks).
ab_cpu_ns() {
    local pid total=0 v
    for pid in $(pgrep -g "$1"); do
        v=$(cat /proc/"$pid"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }')
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# ab_run NAME SIDE URL WRK_ARGS...: one measured run; a line of ab.tsv.
ab_run() {
    local name=$1 side=$2 url=$3 out c0 c1 n rps bad err
    shift 3
    c0=$(ab_cpu_ns "${RUNNING[$name]}")
    out=$(timeout $(( AB_SECS + 30 )) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${AB_SECS}s" "$@" "$url" 2>&1) \
        || die "$name: wrk failed: $out"
    c1=$(ab_cpu_ns "${RUNNING[$name]}")
    n=$(awk '/requests in/ { print $1 }' <<<"$out")
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    bad=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")
    err=$(awk '/Socket errors:/ { s = 0; for (i = 3; i <= NF; i++) s += $i + 0; print s }' <<<"$out")
    [ -n "$n" ] && [ "$n" -gt 0 ] || die "$name: wrk completed no request: $out"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$AB_PAIR" "$side" "$rps" \
        "$(awk -v c=$((c1 - c0)) -v n="$n" 'BEGIN { printf "%.2f", c / n / 1000 }')" \
        "${bad:-0}" "${err:-0}" >>"$RESULTS/ab.tsv"
}

# ab_seq NAME SIDE CLIENT_ARGS...: one run of bench/cache_client.py,
# AB_REQUESTS requests after the AB_NEXT-th question; a line of ab.tsv.
AB_NEXT=0
ab_seq() {
    local name=$1 side=$2 c0 c1 t0 t1
    shift 2
    c0=$(ab_cpu_ns "${RUNNING[$name]}"); t0=$(date +%s%N)
    "$PYTHON" "$SRCDIR/bench/cache_client.py" --port "${PORT[$name]}" --key "$BENCH_KEY" \
        --requests "$AB_REQUESTS" --unique --first "$AB_NEXT" "$@" || die "$name: the client failed"
    t1=$(date +%s%N); c1=$(ab_cpu_ns "${RUNNING[$name]}")
    AB_NEXT=$((AB_NEXT + AB_REQUESTS))
    printf '%s\t%s\t%s\t%s\t0\t0\n' "$AB_PAIR" "$side" \
        "$(awk -v n="$AB_REQUESTS" -v t=$((t1 - t0)) 'BEGIN { printf "%.1f", n * 1e9 / t }')" \
        "$(awk -v c=$((c1 - c0)) -v n="$AB_REQUESTS" 'BEGIN { printf "%.2f", c / n / 1000 }')" \
        >>"$RESULTS/ab.tsv"
}

# ab_pairs: AB_PAIRS pairs of ab_run for sides A and B, in the order
# A B, B A, A B, ... (a drift during a pair favours each side alike).
# The caller defines ab_side_a and ab_side_b (each calls ab_run).
ab_pairs() {
    printf '# pair\tside\trps\tgw_us_per_req\tnon2xx\tsocket_errors\n' >"$RESULTS/ab.tsv"
    wait_quiet
    for AB_PAIR in $(seq "$AB_PAIRS"); do
        if [ $((AB_PAIR % 2)) = 1 ]; then
            ab_side_a; ab_side_b
        else
            ab_side_b; ab_side_a
        fi
        log "pair $AB_PAIR: $(tail -n 2 "$RESULTS/ab.tsv" | cut -f2-4 | tr '\t\n' ' ')"
    done
}

# ab_report TITLE TARGET: medians and intervals of the pairs.
ab_report() {
    "$PYTHON" - "$RESULTS/ab.tsv" "$1" "$2" "$PRE_IDLE" <<'PY'
import math, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if not l.startswith("#")]
runs = {}
bad = 0
for pair, side, rps, us, non2xx, err in rows:
    runs[(int(pair), side)] = (float(rps), float(us))
    bad += int(non2xx) + int(err)
pairs = sorted({p for p, _ in runs if (p, "A") in runs and (p, "B") in runs})
n = len(pairs)
ratio = sorted(runs[(p, "B")][0] / runs[(p, "A")][0] for p in pairs)
added = sorted(runs[(p, "B")][1] - runs[(p, "A")][1] for p in pairs)
# k: the largest with P(Binomial(n, 1/2) <= k - 1) <= 0.025; the interval
# [x(k), x(n - k + 1)] holds the median with >= 95 % confidence.
k, tail = 0, 0.0
while k < n:
    tail_next = tail + math.comb(n, k) / 2 ** n
    if tail_next > 0.025:
        break
    tail, k = tail_next, k + 1
def interval(xs):
    return ("%.3f-%.3f" % (xs[k - 1], xs[n - k]) if k >= 1 else "n/a (too few pairs)")
print("%s: %d pairs of %s runs, machine %s%% idle before" % (sys.argv[2], n, "A/B", sys.argv[4]))
for side in ("A", "B"):
    print("  %s: req/s median %.0f (%.0f-%.0f), gateway CPU median %.1f us/request"
          % (side, statistics.median(runs[(p, side)][0] for p in pairs),
             min(runs[(p, side)][0] for p in pairs), max(runs[(p, side)][0] for p in pairs),
             statistics.median(runs[(p, side)][1] for p in pairs)))
print("  B/A req/s: median %.3f, 95%% interval %s, pairs %.3f-%.3f   (target %s)"
      % (statistics.median(ratio), interval(ratio), ratio[0], ratio[-1], sys.argv[3]))
print("  B-A gateway CPU: median %+.1f us/request, 95%% interval %s"
      % (statistics.median(added), interval(added)))
if bad:
    print("  INVALID: %d non-2xx responses or socket errors (see ab.tsv)" % bad)
PY
}

# ab_start_as NAME START...: START (a run.sh start function, and its
# arguments) makes its server in RESULTS/NAME, a directory of its own (its
# pid file, logs, shared memory files apart from the other side's), and
# the server is then known as NAME.  $AB_COPY: a file copied there first.
ab_start_as() {
    local name=$1 top=$RESULTS
    shift
    RESULTS=$top/$name
    mkdir -p "$RESULTS"; chmod 755 "$RESULTS"
    [ -z "${AB_COPY:-}" ] || cp "$AB_COPY" "$RESULTS/"
    "$@"
    RESULTS=$top
    PORT[$name]=${PORT[apache-modelgate]}
    RUNNING[$name]=${RUNNING[apache-modelgate]}
    unset "RUNNING[apache-modelgate]"
}

# ab_get_pairs NAME_A NAME_B TITLE TARGET: run.sh's GET with the key at
# two servers: each warmed, then the pairs and the report.
ab_get_pairs() {
    local s args=(-H "X-API-Key: $BENCH_KEY")
    for s in "$1" "$2"; do
        timeout 60 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "${args[@]}" \
            "http://127.0.0.1:${PORT[$s]}$BENCH_PATH" >/dev/null
    done
    AB_NAME_A=$1 AB_NAME_B=$2
    ab_side_a() { ab_run "$AB_NAME_A" A "http://127.0.0.1:${PORT[$AB_NAME_A]}$BENCH_PATH" -H "X-API-Key: $BENCH_KEY"; }
    ab_side_b() { ab_run "$AB_NAME_B" B "http://127.0.0.1:${PORT[$AB_NAME_B]}$BENCH_PATH" -H "X-API-Key: $BENCH_KEY"; }
    ab_pairs
    ab_report "$3" "$4" | tee "$RESULTS/summary.txt"
}

case $AB_MODE in
    gate)
        # shellcheck source=bench/run.sh
        . "$AB_DIR/run.sh"
        RESULTS="$BENCH_DIR/results/ab-gate-$(date +%Y%m%d-%H%M%S)"
        prepare
        start_backend; PORT[backend]=$BACKEND_PORT
        # BENCH_AB_FIRST=B starts (2) before (1): whether the order of the
        # starts matters here (the variant control's second server was the
        # slower one).
        if [ "${BENCH_AB_FIRST:-A}" = B ]; then
            start_apache_modelgate; start_apache_proxy
        else
            start_apache_proxy; start_apache_modelgate
        fi
        ab_get_pairs apache-proxy apache-modelgate \
            "A (1) apache2 + mod_proxy -> B (2) mod_modelgate, GET $BENCH_PATH" ">= 0.97"
        ;;
    jwt)
        # shellcheck source=bench/jwt_bench.sh
        . "$AB_DIR/jwt_bench.sh"     # and run.sh; defines only
        RESULTS="$BENCH_DIR/results/ab-jwt-$(date +%Y%m%d-%H%M%S)"
        prepare
        [ -f "$SRCDIR/.libs/mod_modelgate_jwt.so" ] || die "no mod_modelgate_jwt.so: run scripts/build.sh"
        start_backend; PORT[backend]=$BACKEND_PORT
        start_gateway                # one server: mg-apikey and mg-jwt
        url="http://127.0.0.1:${PORT[mg-apikey]}$BENCH_PATH"
        for h in "X-API-Key: $BENCH_KEY" "Authorization: Bearer $TOKEN"; do
            timeout 60 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -H "$h" "$url" >/dev/null
        done
        ab_side_a() { ab_run mg-apikey A "$url" -H "X-API-Key: $BENCH_KEY"; }
        ab_side_b() { ab_run mg-jwt B "$url" -H "Authorization: Bearer $TOKEN"; }
        ab_pairs
        unset "RUNNING[mg-jwt]"
        ab_report "one gateway: A API key -> B repeated ES256 bearer JWT, GET $BENCH_PATH" ">= 0.97" \
            | tee "$RESULTS/summary.txt"
        ;;
    cache)
        # shellcheck source=bench/run.sh
        . "$AB_DIR/run.sh"
        # shellcheck source=bench/callgrind.sh
        . "$AB_DIR/callgrind.sh"         # start_mock
        # shellcheck source=bench/cache_conf.sh
        . "$AB_DIR/cache_conf.sh"        # the rows
        RESULTS="$BENCH_DIR/results/ab-cache-$(date +%Y%m%d-%H%M%S)"
        AB_REQUESTS=${BENCH_AB_REQUESTS:-2000}
        prepare
        start_mock
        cache_rows_prepare
        # Both rows at once, each in a directory of its own (their shmcb
        # files apart), under the names A and B.
        AB_COPY=$RESULTS/mod_modelgate_cache.so
        # BENCH_AB_ROWS="off miss" (A then B; each off or miss): "off off"
        # is the control (what two identical servers differ by here),
        # "miss off" the same comparison with the sides swapped.
        read -r row_a row_b <<<"${BENCH_AB_ROWS:-off miss}"
        row_args() {
            case $1 in
                off) ;;
                miss) echo "--cache-status"; echo "modelgate; fwd=miss; stored" ;;
                *) die "BENCH_AB_ROWS: $1 is neither off nor miss" ;;
            esac
        }
        mapfile -t args_a < <(row_args "$row_a")
        mapfile -t args_b < <(row_args "$row_b")
        ab_start_as A "start_cache_${row_a/miss/on}"
        ab_start_as B "start_cache_${row_b/miss/on}"
        AB_PAIR=0
        ab_seq A A "${args_a[@]}"; ab_seq B B "${args_b[@]}"        # warm
        # BENCH_AB_PREFILL_B=N: N more questions to B first (a cache that
        # holds many answers: shmcb scans a subcache's index on a lookup)
        if [ "${BENCH_AB_PREFILL_B:-0}" -gt 0 ]; then
            log "prefilling B with ${BENCH_AB_PREFILL_B} answers"
            AB_REQUESTS=$BENCH_AB_PREFILL_B ab_seq B B "${args_b[@]}"
        fi
        ab_side_a() { ab_seq A A "${args_a[@]}"; }
        ab_side_b() { ab_seq B B "${args_b[@]}"; }
        ab_pairs
        ab_report "A the cache $row_a -> B the cache $row_b ($AB_REQUESTS sequential POSTs a run, a new question each)" \
            "miss-off CPU <= 2 us" | tee "$RESULTS/summary.txt"
        ;;
    tokens)
        # shellcheck source=bench/tokens.sh
        BENCH_ONLY=" " . "$AB_DIR/tokens.sh"     # and run.sh; defines only
        RESULTS="$BENCH_DIR/results/ab-tokens-$(date +%Y%m%d-%H%M%S)"
        mkdir -p "$RESULTS"
        start_json_backend
        start_apache json-bare "$JSON_PORT" 0
        start_apache json-gateway "$JSON_PORT" 1
        lua="$RESULTS/post.lua"
        printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["X-API-Key"] = "%s"\n' \
            "'$TOKENS_BODY'" "$KEY" >"$lua"
        for s in json-bare json-gateway; do
            wait_http "${PORT[$s]}" "$TOKENS_PATH" POST "$TOKENS_BODY"
            timeout 60 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$lua" \
                "http://127.0.0.1:${PORT[$s]}$TOKENS_PATH" >/dev/null
        done
        ab_side_a() { ab_run json-bare A "http://127.0.0.1:${PORT[json-bare]}$TOKENS_PATH" -s "$lua"; }
        ab_side_b() { ab_run json-gateway B "http://127.0.0.1:${PORT[json-gateway]}$TOKENS_PATH" -s "$lua"; }
        ab_pairs
        ab_report "A apache2 + mod_proxy -> B the gateway with token layers, POST $TOKENS_PATH (nginx answers)" \
            ">= 0.95" | tee "$RESULTS/summary.txt"
        ;;
    variant)
        # shellcheck source=bench/run.sh
        . "$AB_DIR/run.sh"
        RESULTS="$BENCH_DIR/results/ab-variant-$(date +%Y%m%d-%H%M%S)"
        prepare
        start_backend; PORT[backend]=$BACKEND_PORT
        # Two of (2) at once, under the names mg-A and mg-B.
        MG_EXTRA=${BENCH_AB_A_EXTRA:-} ab_start_as mg-A start_apache_modelgate
        MG_EXTRA=${BENCH_AB_B_EXTRA:-} ab_start_as mg-B start_apache_modelgate
        ab_get_pairs mg-A mg-B \
            "A (2) + '${BENCH_AB_A_EXTRA:-}' -> B (2) + '${BENCH_AB_B_EXTRA:-}'" "-"
        ;;
    *)
        echo "usage: bash bench/ab.sh gate|jwt|tokens|cache|variant" >&2
        exit 2
        ;;
esac
