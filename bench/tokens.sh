#!/usr/bin/env bash
# bench/tokens.sh -- what token accounting (issue 11) costs, measured against
# bare apache2 + mod_proxy in the same run, in interleaved rounds.
#
#   A. SSE: a 200-event stream from the mock model server
#      (tests/mock_backend/mock_model.py, reply_words=200, no delay), read
#      by bench/sse_client.py one stream at a time: time to first event,
#      time to the last (events / that: the delivery rate), and the CPU
#      time of the server's threads (/proc/PID/task/TID/schedstat, ns)
#      per event.  The gateway has token layers, so every event passes
#      its usage filter; by default the client does not ask for usage, so
#      the gateway adds stream_options.include_usage, holds each event to
#      strip `"usage": null` and drops the usage-only one (the heavier
#      path; BENCH_SSE_INCLUDE_USAGE=1 measures the read-only one).
#   A'. SSE in pairs (BENCH_ONLY=sse-pairs): the same streams, bare and
#      gateway alternating stream by stream, BENCH_SSE_PAIRS=1000 pairs
#      over BENCH_ROUNDS rounds: the median per-pair difference of ttfb
#      and ttlb with a 95 % interval, and the ratios it implies; the
#      servers' CPU a stream the same way.  BENCH_SSE_WORDS=200 (events
#      a stream), BENCH_SSE_DELAY_MS=0 (the mock's pause between events:
#      a model server's decoding, which 0 leaves out) apply to A and A'.
#   B. JSON: non-streaming POST /v1/chat/completions through wrk (a Lua
#      script sends the body) to an nginx answering a fixed chat completion
#      with usage; requests/s of (1) and (2).
#
#   (1) apache2 event + mod_proxy ProxyPass
#   (2) apache2 event + mod_modelgate: key, tier (with tokens=), a global
#       and a tenant request limit, a tenant token limit (unit=tokens, a
#       day's fixed window): two token layers reserved and settled per
#       request, on the shm store; bench/tokens_conf.sh writes it, and the
#       request, for this and for the guard's POST mode alike
#
# Knobs: BENCH_ROUNDS=5 BENCH_STREAMS=100 BENCH_DURATION=10s BENCH_WARMUP=3s
# BENCH_CONNECTIONS=64 BENCH_THREADS=2 BENCH_ONLY="sse json"
# BENCH_SSE_INCLUDE_USAGE=0 BENCH_TOKENS=1; BENCH_ONLY=callgrind counts instructions per
# SSE event and per non-streaming request instead (C below).  Results in bench/results/tokens-<timestamp>/.
# Everything binds to 127.0.0.1; servers run in sessions of their own and
# are stopped by PID (the EXIT trap too).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# run.sh's processes, stopped by PID (RUNNING, stop_server, the EXIT trap),
# free_port and apache_base_conf; it only defines when sourced
# shellcheck source=bench/run.sh
. "$BENCH_DIR/run.sh"
SRCDIR=$(cd "$BENCH_DIR/.." && pwd)
ROUNDS=${BENCH_ROUNDS:-5}
STREAMS=${BENCH_STREAMS:-100}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-3s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
ONLY=${BENCH_ONLY:-sse json}
INCLUDE_USAGE=${BENCH_SSE_INCLUDE_USAGE:-0}
# The gateway's configuration and the request (BENCH_TOKENS=0: without
# the token layers) are shared with the guard's POST mode
# (tests/perf/instructions.sh post).
# shellcheck source=bench/tokens_conf.sh
. "$BENCH_DIR/tokens_conf.sh"
HTTPD=/usr/sbin/apache2
MODS=/usr/lib/apache2/modules
NGINX=/usr/sbin/nginx
PYTHON=/usr/bin/python3
KEY=$TOKENS_KEY
RESULTS="$BENCH_DIR/results/tokens-$(date +%Y%m%d-%H%M%S)"
MODULE_SO="$SRCDIR/.libs/mod_modelgate.so"

log() { printf '[tokens] %s\n' "$*" >&2; }
die() { printf '[tokens] ERROR: %s\n' "$*" >&2; exit 1; }

rundir() { mkdir -p "$RESULTS/$1/htdocs" "$RESULTS/$1/tmp"; chmod 755 "$RESULTS/$1"; echo "$RESULTS/$1"; }

# ns of CPU the threads of every process in a group have run
cpu_ns() {
    local pid total=0 v
    for pid in $(pgrep -g "$1"); do
        v=$(cat /proc/"$pid"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }')
        total=$((total + v))
    done
    echo "$total"
}

# wait_quiet: up to BENCH_QUIET_WAIT seconds (default 60) for a second in
# which the machine is at least 80% idle; says what it found (the machine
# is shared: others' builds and tests show up in every figure here).
wait_quiet() {
    local i a b idle=0
    for i in $(seq "${BENCH_QUIET_WAIT:-60}"); do
        a=$(awk '/^cpu /{ print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat)
        sleep 1
        b=$(awk '/^cpu /{ print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat)
        idle=$(awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
            printf "%.0f", 100 * (y[1] - x[1]) / (y[2] - x[2]) }')
        [ "$idle" -lt 80 ] || break
    done
    PRE_IDLE=$idle                  # bench/ab.sh's report says it
    log "machine ${idle}% idle before round ${1:-1}"
}

wait_http() {
    local port=$1 path=$2 i code
    for i in $(seq 150); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -X "${3:-GET}" \
               -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \
               ${4:+--data "$4"} "http://127.0.0.1:$port$path" || true)
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    die "127.0.0.1:$port$path answers $code"
}

apache_conf() {   # DIR PORT BACKEND_PORT GATEWAY(0/1)
    local dir=$1 port=$2 be=$3 gw=$4
    apache_base_conf "$dir" "$port"
    if [ "$gw" = 0 ]; then
        printf 'ProxyPass /v1/ http://127.0.0.1:%s/v1/\n<Location "/v1/">\n    Require all granted\n</Location>\n' "$be"
        return
    fi
    tokens_gateway_conf "$dir" "$be"
}

start_apache() {  # NAME BACKEND_PORT GATEWAY -> PORT[NAME]
    local name=$1 dir port out
    dir=$(rundir "$name")
    port=$(free_port)
    tokens_keyfile "$dir"
    apache_conf "$dir" "$port" "$2" "$3" >"$dir/httpd.conf"
    out=$(timeout 60 "$HTTPD" -d "$dir" -f "$dir/httpd.conf" -t 2>&1) || die "apache2 -t: $out"
    setsid "$HTTPD" -d "$dir" -f "$dir/httpd.conf" -D FOREGROUND >"$dir/console.log" 2>&1 </dev/null &
    RUNNING[$name]=$!
    PORT[$name]=$port
}

declare -A PORT=()

# ---- A. SSE ---------------------------------------------------------------------

# sse_start: the mock (200-word replies), bare apache2 and the gateway,
# each warmed with 20 streams
sse_start() {
    local dir mock_port name r
    dir=$(rundir mock)
    setsid "$PYTHON" "$SRCDIR/tests/mock_backend/mock_model.py" --port 0 --quiet \
        >"$dir/port" 2>"$dir/console.log" </dev/null &
    RUNNING[mock]=$!
    for r in $(seq 50); do grep -qs LISTENING "$dir/port" && break; sleep 0.1; done
    mock_port=$(awk '{ print $2 }' "$dir/port")
    curl -s -o /dev/null -X POST \
        --data "{\"reply_words\": ${BENCH_SSE_WORDS:-200}, \"stream_chunk_delay_ms\": ${BENCH_SSE_DELAY_MS:-0}}" \
        "http://127.0.0.1:$mock_port/_mock/mode"
    start_apache sse-bare "$mock_port" 0
    start_apache sse-gateway "$mock_port" 1
    for name in sse-bare sse-gateway; do
        wait_http "${PORT[$name]}" /v1/models
        "$PYTHON" "$BENCH_DIR/sse_client.py" "${PORT[$name]}" 20 "$KEY" "$INCLUDE_USAGE" >/dev/null
    done
}

sse() {
    local name r out c0 c1 events
    sse_start
    for r in $(seq "$ROUNDS"); do
        wait_quiet "$r"
        for name in sse-bare sse-gateway; do
            c0=$(cpu_ns "${RUNNING[$name]}")
            out=$("$PYTHON" "$BENCH_DIR/sse_client.py" "${PORT[$name]}" "$STREAMS" "$KEY" "$INCLUDE_USAGE")
            c1=$(cpu_ns "${RUNNING[$name]}")
            events=$("$PYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])["events"][0])' "$out")
            printf '%s\t%s\t%s\t%s\n' "$name" "$r" "$(( (c1 - c0) / STREAMS ))" "$out" \
                | tee -a "$RESULTS/sse.tsv" >&2
        done
    done
    stop_server sse-bare; stop_server sse-gateway; stop_server mock
    "$PYTHON" - "$RESULTS/sse.tsv" "$STREAMS" <<'EOF' | tee "$RESULTS/sse-summary.txt"
import json, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = {}
for name, rnd, ns, js in rows:
    by.setdefault(name, []).append((int(ns), json.loads(js)))
b, g = by["sse-bare"], by["sse-gateway"]
ev = g[0][1]["events"][0] - 2          # content events (finish, [DONE] aside)
med = lambda xs: statistics.median(xs)
for name, rs in (("bare", b), ("gateway", g)):
    print("%-8s ttfb median %.3f ms  ttlb median %.3f ms  cpu %.1f us/stream  events %s"
          % (name, med([r[1]["ttfb_ms_median"] for r in rs]),
             med([r[1]["ttlb_ms_median"] for r in rs]),
             med([r[0] for r in rs]) / 1000, rs[0][1]["events"]))
ttfb = [x[1]["ttfb_ms_median"] / y[1]["ttfb_ms_median"] for x, y in zip(b, g)]
# events per second through the gateway over events per second through
# bare apache: ttlb bare / ttlb gateway (the same events each)
deliv = [x[1]["ttlb_ms_median"] / y[1]["ttlb_ms_median"] for x, y in zip(b, g)]
added = [(y[0] - x[0]) / (ev + 2) for x, y in zip(b, g)]
print("ttfb ratio bare/gateway per round %s, median %.3f" % (["%.3f" % x for x in ttfb], med(ttfb)))
print("delivery rate ratio gateway/bare (ttlb bare/gateway) per round %s, median %.3f"
      % (["%.3f" % x for x in deliv], med(deliv)))
print("gateway CPU added per event (the request's own cost spread over its %d events) "
      "per round %s ns, median %.0f ns" % (ev + 2, ["%.0f" % x for x in added], med(added)))
EOF
}

# sse_pairs: the same streams, bare and gateway alternating stream by
# stream (sse_client.py --pairs), BENCH_SSE_PAIRS pairs (default 1000) in
# ROUNDS rounds: a median difference with its interval, which rounds of
# STREAMS streams each, seconds apart, cannot give on this machine
sse_pairs() {
    local r n out
    n=$(( ${BENCH_SSE_PAIRS:-1000} / ROUNDS ))
    sse_start
    for r in $(seq "$ROUNDS"); do
        wait_quiet "$r"
        out=$(SSE_CPU_PGIDS="${RUNNING[sse-bare]} ${RUNNING[sse-gateway]}" \
              "$PYTHON" "$BENCH_DIR/sse_client.py" --pairs "$n" "${PORT[sse-bare]}" \
              "${PORT[sse-gateway]}" "$KEY" "$INCLUDE_USAGE")
        printf '%s\t%s\n' "$r" "$out" | tee -a "$RESULTS/sse-pairs.tsv" >&2
    done
    stop_server sse-bare; stop_server sse-gateway; stop_server mock
}

# ---- B. JSON, non-streaming ------------------------------------------------------

start_json_backend() {
    local dir be_port
    dir=$(rundir json-backend)
    be_port=$(free_port)
    cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
user www-data www-data;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp/client;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen 127.0.0.1:$be_port;
        location / {
            default_type application/json;
            return 200 '{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"mock-small","choices":[{"index":0,"message":{"role":"assistant","content":"This is a mock reply"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}';
        }
    }
}
EOF
    setsid "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/console.log" 2>&1 </dev/null &
    RUNNING[json-backend]=$!
    JSON_PORT=$be_port
}

json_bench() {
    local name r out lua be_port
    start_json_backend
    be_port=$JSON_PORT
    lua="$RESULTS/post.lua"
    cat >"$lua" <<EOF
wrk.method = "POST"
wrk.body = '$TOKENS_BODY'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "$KEY"
EOF
    start_apache json-bare "$be_port" 0
    start_apache json-gateway "$be_port" 1
    for name in json-bare json-gateway; do
        wait_http "${PORT[$name]}" "$TOKENS_PATH" POST "$TOKENS_BODY"
    done
    for r in $(seq "$ROUNDS"); do
        wait_quiet "$r"
        for name in json-bare json-gateway; do
            timeout 60 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$lua" \
                "http://127.0.0.1:${PORT[$name]}/v1/chat/completions" >/dev/null 2>&1
            c0=$(cpu_ns "${RUNNING[$name]}")
            out=$(timeout 90 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$lua" \
                "http://127.0.0.1:${PORT[$name]}/v1/chat/completions" 2>&1)
            c1=$(cpu_ns "${RUNNING[$name]}")
            n=$(awk '/requests in/ { print $1 }' <<<"$out")
            bad=$(awk '/Non-2xx/ { print $NF }' <<<"$out")
            printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$r" "$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")" \
                "$(( (c1 - c0) / n ))" "${bad:-0}" | tee -a "$RESULTS/json.tsv" >&2
        done
    done
    stop_server json-bare; stop_server json-gateway; stop_server json-backend
    "$PYTHON" - "$RESULTS/json.tsv" <<'EOF' | tee "$RESULTS/json-summary.txt"
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
b = [r for r in rows if r[0] == "json-bare"]
g = [r for r in rows if r[0] == "json-gateway"]
ratio = [float(y[2]) / float(x[2]) for x, y in zip(b, g)]
for name, rs in (("bare", b), ("gateway", g)):
    print("%-8s req/s median %.0f (%s)  cpu median %.1f us/request  non-2xx %s"
          % (name, statistics.median(float(r[2]) for r in rs), ", ".join(r[2] for r in rs),
             statistics.median(int(r[3]) for r in rs) / 1000, sum(int(r[4]) for r in rs)))
print("throughput ratio gateway/bare per round %s, median %.3f"
      % (["%.3f" % x for x in ratio], statistics.median(ratio)))
EOF
}

# ---- C. instructions per SSE event under callgrind ------------------------------

# apache2 -X under callgrind serves STREAMS streams of W words (one
# connection each); twice, with 200 and with 20 words: the difference over
# the 180 events between them is what one event costs, with nothing of the
# request's own cost in it.  Non-streaming: 220 and 20 requests on one
# keep-alive connection, the difference over 200.  The whole process is
# counted, as bench/callgrind.sh does (start and stop cancel in the
# differences): counting only inside ap_run_process_connection missed
# log_transaction, which the event MPM runs after it returns.
# BENCH_CG_TOGGLE=1 counts the old way, to compare with figures taken so;
# BENCH_CG_PARTS="sse json" picks the parts.  The callgrind files stay in
# the results (callgrind_annotate --inclusive=yes shows where they go).
callgrind_total() {   # NAME GATEWAY BACKEND_PORT LOAD... -> TOTAL
    local name=$1 gw=$2 be=$3 dir port file i
    shift 3
    dir=$(rundir "$name-$RANDOM")
    port=$(free_port)
    tokens_keyfile "$dir"
    apache_conf "$dir" "$port" "$be" "$gw" >"$dir/httpd.conf"
    file=$dir/callgrind.out
    touch "$file"; chown www-data "$file"; chmod 777 "$dir"
    local toggle=()
    [ "${BENCH_CG_TOGGLE:-0}" = 1 ] \
        && toggle=(--collect-atstart=no --toggle-collect=ap_run_process_connection)
    setsid valgrind --tool=callgrind --callgrind-out-file="$file" "${toggle[@]}" \
        "$HTTPD" -d "$dir" -f "$dir/httpd.conf" -X >"$dir/console.log" 2>&1 </dev/null &
    RUNNING[$name]=$!
    for i in $(seq 600); do
        curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$port/" && break
        sleep 0.2
    done
    "$@" "$port" >"$dir/client.out" || die "$name: the load failed: $(cat "$dir/client.out")"
    stop_server "$name"
    TOTAL=$(awk '/^(summary|totals):/ { print $2; exit }' "$file")
    [ -n "$TOTAL" ] || die "no callgrind totals in $file"
}

sse_load() {      # WORDS PORT: STREAMS streams of WORDS events
    curl -s -o /dev/null -X POST --data "{\"reply_words\": $1}" "http://127.0.0.1:$MOCK_PORT/_mock/mode"
    "$PYTHON" "$BENCH_DIR/sse_client.py" "$2" "$STREAMS" "$KEY" "$INCLUDE_USAGE"
}

wait_backend() {  # PORT: until the backend answers
    local i
    for i in $(seq 100); do
        curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/" && return 0
        sleep 0.1
    done
    die "the backend on 127.0.0.1:$1 does not answer"
}

json_load() {     # N PORT: N chat completions on one keep-alive connection
    "$PYTHON" - "$1" "$2" "$KEY" "$TOKENS_PATH" "$TOKENS_BODY" <<'PY'
import http.client, sys
n, port, key, path, body = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
for i in range(n):
    c.request("POST", path, body=body,
              headers={"X-API-Key": key, "Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    if r.status != 200 or r.will_close:
        sys.exit("request %d: %d" % (i, r.status))
PY
}

cg_sse() {
    local dir name gw a b
    dir=$(rundir mock)
    setsid "$PYTHON" "$SRCDIR/tests/mock_backend/mock_model.py" --port 0 --quiet \
        >"$dir/port" 2>"$dir/console.log" </dev/null &
    RUNNING[mock]=$!
    for a in $(seq 50); do grep -qs LISTENING "$dir/port" && break; sleep 0.1; done
    MOCK_PORT=$(awk '{ print $2 }' "$dir/port")
    for name in bare gateway; do
        gw=0; [ "$name" = gateway ] && gw=1
        callgrind_total "cg-$name" "$gw" "$MOCK_PORT" sse_load 200; a=$TOTAL
        callgrind_total "cg-$name" "$gw" "$MOCK_PORT" sse_load 20; b=$TOTAL
        printf 'sse\t%s\t%s\t%s\t%s\n' "$name" "$a" "$b" \
            "$(( (a - b) / (STREAMS * 180) ))" | tee -a "$RESULTS/callgrind.tsv" >&2
    done
    stop_server mock
}

# the same for non-streaming requests, against the nginx backend
cg_json() {
    local name gw a b
    start_json_backend
    wait_backend "$JSON_PORT"
    for name in bare gateway; do
        gw=0; [ "$name" = gateway ] && gw=1
        callgrind_total "cg-$name" "$gw" "$JSON_PORT" json_load 220; a=$TOTAL
        callgrind_total "cg-$name" "$gw" "$JSON_PORT" json_load 20; b=$TOTAL
        printf 'json\t%s\t%s\t%s\t%s\n' "$name" "$a" "$b" "$(( (a - b) / 200 ))" \
            | tee -a "$RESULTS/callgrind.tsv" >&2
    done
    stop_server json-backend
}

callgrind_bench() {
    local part
    for part in ${BENCH_CG_PARTS:-sse json}; do
        case $part in
            sse) cg_sse ;;
            json) cg_json ;;
            *) die "unknown BENCH_CG_PARTS item $part" ;;
        esac
    done
    awk -F'\t' '{ per[$1 " " $2] = $5 } END {
        printf "instructions per SSE event: bare %d, gateway %d, added %d\n",
               per["sse bare"], per["sse gateway"], per["sse gateway"] - per["sse bare"]
        printf "instructions per non-streaming request: bare %d, gateway %d, added %d\n",
               per["json bare"], per["json gateway"], per["json gateway"] - per["json bare"] }' \
        "$RESULTS/callgrind.tsv" | tee "$RESULTS/callgrind-summary.txt"
}

mkdir -p "$RESULTS"
log "results in $RESULTS"
for what in $ONLY; do
    case $what in
        sse) sse ;;
        sse-pairs) sse_pairs ;;
        json) json_bench ;;
        callgrind) callgrind_bench ;;
        *) die "unknown BENCH_ONLY item $what" ;;
    esac
done
