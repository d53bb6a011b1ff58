#!/usr/bin/env bash
# bench/run.sh -- what mod_modelgate costs, measured against what it replaces.
#
# One run measures, with wrk on loopback, five servers in front of (or being)
# one fast static backend (a separate nginx answering {"ok":true}):
#
#   (0) the backend itself                   (reference: wrk + backend alone)
#   (1) apache2 event + mod_proxy ProxyPass  (bare apache)
#   (2) apache2 event + mod_modelgate: key identity and three limit layers
#       (tier + ModelGateLimit global + tenant) on the shm store
#   (3) nginx reverse proxy + limit_req keyed on X-API-Key (never rejects)
#   (4) nginx reverse proxy                  (bare nginx)
#
# and prints, for each: requests/s, p50 and p99 latency, and the gateway's
# CPU time per request (utime+stime of all its processes from /proc, before
# and after the measured run, divided by the requests wrk completed), then
# the ratios (2)/(1) and (3)/(4) of requests/s.  bench/README.md has the
# figures and what they mean; bench/profile.sh looks inside (2).
#
# Knobs (environment):
#   BENCH_DURATION=10s BENCH_WARMUP=3s BENCH_CONNECTIONS=64 BENCH_THREADS=2
#                         wrk's load, the same for every server
#   BENCH_ROUNDS=1        repeat the whole sequence, interleaved; medians
#   BENCH_ONLY="0 1 2 3 4"  which servers to measure
#   BENCH_BUILD=1         run scripts/build.sh first (0: use .libs as it is)
#   BENCH_QUIET_WAIT=60   seconds to wait for an idle machine before each run
#   BENCH_MG_EXTRA=       lines added to (2)'s configuration, to try variants
#                         (e.g. "Mutex posixsem modelgate-store")
#   BENCH_SERVERS_ONLY=1  start all five, print their ports, wait for Ctrl-C
#   BENCH_REDIS_DOWN=1    with BENCH_MG_STORE=redis: stop Redis once (2) is
#                         up, with ModelGateStoreFailure open, to measure
#                         what a dead Redis costs once the breaker is open
#   BENCH_MG_STORE=redis  (2) keeps its counters in a redis-server of its own
#                         (plugins/redis, exact mode) instead of shared
#                         memory; the report adds Redis round trips per
#                         request from INFO commandstats
#   BENCH_MG_STORE=redis-sync  the same Redis in local-sync mode: (2) decides
#                         in shared memory and exchanges every
#                         BENCH_SYNC_INTERVAL ms (default 100)
#
# Everything binds to 127.0.0.1, runs in bench/results/<timestamp>/, is
# started in the foreground in a session of its own and stopped by PID; the
# EXIT trap stops whatever is still running, also on failure or Ctrl-C.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
SRCDIR=$(cd "$BENCH_DIR/.." && pwd)

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-3s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
BUILD=${BENCH_BUILD:-1}
ONLY=${BENCH_ONLY:-0 1 2 3 4}
ROUNDS=${BENCH_ROUNDS:-1}
QUIET_WAIT=${BENCH_QUIET_WAIT:-60}
SERVERS_ONLY=${BENCH_SERVERS_ONLY:-0}
MG_EXTRA=${BENCH_MG_EXTRA:-}
MG_STORE=${BENCH_MG_STORE:-shm}
SYNC_INTERVAL=${BENCH_SYNC_INTERVAL:-100}
REDIS_DOWN=${BENCH_REDIS_DOWN:-0}
REDIS_PORT=
# Threads per apache process: at least the number of connections (see
# apache_base_conf).
APACHE_THREADS=$(( CONNECTIONS > 64 ? CONNECTIONS : 64 ))

HTTPD=/usr/sbin/apache2
HTTPD_MODDIR=/usr/lib/apache2/modules
NGINX=/usr/sbin/nginx
PYTHON=$(command -v /usr/bin/python3 || command -v python3)
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)

# The key every request carries; its digest goes into the key file.
BENCH_KEY=mg-bench-key-0001
# The path wrk asks for: under /v1/ for every server.
BENCH_PATH=/v1/models

RESULTS="$BENCH_DIR/results/$(date +%Y%m%d-%H%M%S)"

log()  { printf '[bench] %s\n' "$*" >&2; }
warn() { printf '[bench] WARNING: %s\n' "$*" >&2; }
die()  { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# ---- processes we started: stopped by PID, always ------------------------------

# Leader PIDs of the servers still running.  Each was started with setsid,
# so its PID is also its process group's id and its children's group.
declare -A RUNNING=()

# stop_server NAME: SIGTERM to the leader (apache2 and nginx both stop
# their children on it), wait, then SIGKILL what is left of its group.
stop_server() {
    local name=$1 pid=${RUNNING[$1]:-}
    [ -n "$pid" ] || return 0
    unset "RUNNING[$name]"
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq $(( ${STOP_WAIT:-10} * 10 ))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null || pgrep -g "$pid" >/dev/null 2>&1; then
        warn "$name (pid $pid) did not stop in ${STOP_WAIT:-10} s: killing its process group"
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local name
    for name in "${!RUNNING[@]}"; do
        stop_server "$name"
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- helpers ------------------------------------------------------------------

free_port() {
    "$PYTHON" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready NAME PORT: until a keyed request through the server answers 200.
# This is also the sanity check: a gateway that refuses the key, or cannot
# reach the backend, stops the run here instead of producing numbers.
wait_ready() {
    local name=$1 port=$2 pid=${RUNNING[$1]} code=000 i
    for i in $(seq "${READY_TRIES:-150}"); do
        if ! kill -0 "$pid" 2>/dev/null; then
            die "$name exited while starting; see $RESULTS/$name/"
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
               -H "X-API-Key: $BENCH_KEY" "http://127.0.0.1:$port$BENCH_PATH" || true)
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    die "$name on port $port answers $code, not 200; see $RESULTS/$name/"
}

# start_session NAME DIR CMD...: the server in the foreground, in a session
# of its own (its group then is its own too, and a signal to our group does
# not reach it, nor one to its group us), stdout/stderr to DIR/console.log.
start_session() {
    local name=$1 dir=$2
    shift 2
    setsid "$@" >"$dir/console.log" 2>&1 </dev/null &
    RUNNING[$name]=$!
}

# cpu_ticks PGID: user+system clock ticks of every process in the group.
# The leader's cutime+cstime adds the children it reaped, so a child that
# exits during the run is still counted.  /proc/PID/stat is split after the
# last ')' because the command name may contain spaces.
cpu_ticks() {
    local pgid=$1 f line total=0
    for f in /proc/[0-9]*/stat; do
        line=$(cat "$f" 2>/dev/null) || continue
        line=${line##*) }
        # shellcheck disable=SC2086
        set -- $line
        # $1 state $2 ppid $3 pgrp ... $12 utime $13 stime $14 cutime $15 cstime
        [ "$3" = "$pgid" ] || continue
        total=$((total + ${12} + ${13}))
        if [ "${f#/proc/}" = "$pgid/stat" ]; then
            total=$((total + ${14} + ${15}))
        fi
    done
    echo "$total"
}

# host_cpu: "busy total" jiffies of the whole machine from /proc/stat.
host_cpu() {
    awk '/^cpu /{ idle = $5 + $6; t = 0; for (i = 2; i <= 9; i++) t += $i;
                  print t - idle, t; exit }' /proc/stat
}

# to_ms VALUE: wrk's "812.00us" / "1.23ms" / "1.01s" in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1;
        if (f < 0) { print "?"; exit } printf "%.3f", n * f }'
}

# ---- the servers ----------------------------------------------------------------

# Shared by the two apaches: identical MPM settings.  Two processes of
# $APACHE_THREADS threads, a fixed pool (StartServers = ServerLimit, wide
# spare-thread bounds), so no child is forked or killed during a run.  Each
# process alone has a thread for every connection: with 32 threads per
# process, event found all of a process's workers busy and closed idle
# keep-alive connections (wrk counted hundreds of read errors and
# reconnected), which measures the MPM's overload handling, not the proxy.
# MaxKeepAliveRequests 0 (unlimited), like keepalive_requests 1000000 in the
# nginx configurations: no server closes a connection mid-run.  No access
# log anywhere; error logs at warn.
apache_base_conf() {
    local dir=$1 port=$2
    cat <<EOF
ServerRoot "$dir"
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile "$dir/httpd.pid"
DefaultRuntimeDir "$dir"
ErrorLog "$dir/error.log"
LogLevel warn
User www-data
Group www-data
LoadModule mpm_event_module $HTTPD_MODDIR/mod_mpm_event.so
StartServers 2
ServerLimit 2
ThreadsPerChild $APACHE_THREADS
ThreadLimit $APACHE_THREADS
MaxRequestWorkers $((2 * APACHE_THREADS))
MinSpareThreads 1
MaxSpareThreads $((4 * APACHE_THREADS))
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 75
LoadModule authz_core_module $HTTPD_MODDIR/mod_authz_core.so
LoadModule proxy_module $HTTPD_MODDIR/mod_proxy.so
LoadModule proxy_http_module $HTTPD_MODDIR/mod_proxy_http.so
DocumentRoot "$dir/htdocs"
<Directory />
    AllowOverride None
    Require all denied
</Directory>
EOF
}

# make_rundir NAME: bench/results/<ts>/NAME, searchable by www-data (the
# apache children take their mutex files there).
make_rundir() {
    local dir=$RESULTS/$1
    mkdir -p "$dir/htdocs"
    chmod 755 "$dir"
    echo "$dir"
}

apache_start() {
    local name=$1 dir=$2 port=$3 out
    if ! out=$(timeout 60 "$HTTPD" -d "$dir" -f "$dir/httpd.conf" -t 2>&1); then
        die "apache2 -t refused $dir/httpd.conf: $out"
    fi
    if [ -n "${APACHE_WRAP:-}" ]; then
        # bench/profile.sh: one process (-X) under a profiler.
        # shellcheck disable=SC2086
        start_session "$name" "$dir" $APACHE_WRAP "$HTTPD" -d "$dir" -f "$dir/httpd.conf" -X
    else
        start_session "$name" "$dir" "$HTTPD" -d "$dir" -f "$dir/httpd.conf" -D FOREGROUND
    fi
    wait_ready "$name" "$port"
}

# nginx_conf DIR PORT WORKERS HTTP_BLOCK: a complete nginx.conf; -p DIR
# keeps every temp path in the run dir.  `user` only matters as root.
nginx_conf() {
    local dir=$1 port=$2 workers=$3 http_block=$4
    cat <<EOF
daemon off;
master_process on;
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
user www-data www-data;
events {
    worker_connections 4096;
}
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path $dir/tmp/client;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
$http_block
}
EOF
}

nginx_start() {
    local name=$1 dir=$2 port=$3 out
    mkdir -p "$dir/tmp"
    if ! out=$(timeout 60 "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -t 2>&1); then
        die "nginx -t refused $dir/nginx.conf: $out"
    fi
    start_session "$name" "$dir" "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
    wait_ready "$name" "$port"
}

# The fast backend: one nginx worker answering a fixed JSON body from
# memory.  One worker, because the two cores are shared with wrk and the
# gateway; row (0) shows it answers ~2x what the fastest gateway forwards
# (and there wrk, not the backend, is the limit).
start_backend() {
    local dir
    dir=$(make_rundir backend)
    BACKEND_PORT=$(free_port)
    nginx_conf "$dir" "$BACKEND_PORT" 1 "
    server {
        listen 127.0.0.1:$BACKEND_PORT;
        location / {
            default_type application/json;
            return 200 '{\"ok\":true}';
        }
    }" >"$dir/nginx.conf"
    nginx_start backend "$dir" "$BACKEND_PORT"
}

# (1) bare apache: ProxyPass.  mod_proxy keeps the backend connections of
# its worker open and reuses them (HTTP keep-alive is its default).
start_apache_proxy() {
    local dir port
    dir=$(make_rundir apache-proxy)
    port=$(free_port)
    {
        apache_base_conf "$dir" "$port"
        cat <<EOF

# ---- (1) bare reverse proxy ----
ProxyPass /v1/ http://127.0.0.1:$BACKEND_PORT/v1/
<Location "/v1/">
    Require all granted
</Location>
EOF
    } >"$dir/httpd.conf"
    apache_start apache-proxy "$dir" "$port"
    PORT[apache-proxy]=$port
}

# (2) mod_modelgate: the key file holds the one key's digest; the tier and
# the two ModelGateLimit layers are far above what the box can do, so every
# request is counted in three layers and none is refused.
MG_LAYERS=3
modelgate_conf() {
    local dir=$1 port=$2 layers=$3
    apache_base_conf "$dir" "$port"
    local store="ModelGateStore shm capacity=65536" load=""
    if [ "$MG_STORE" = redis ]; then
        load="LoadModule modelgate_redis_module \"$dir/mod_modelgate_redis.so\""
        store="ModelGateStore redis 127.0.0.1:$REDIS_PORT timeout=200
ModelGateStoreFailure open"
    elif [ "$MG_STORE" = redis-sync ]; then
        load="LoadModule modelgate_redis_module \"$dir/mod_modelgate_redis.so\""
        store="ModelGateStore redis 127.0.0.1:$REDIS_PORT timeout=200 mode=local-sync interval=$SYNC_INTERVAL capacity=65536"
    fi
    cat <<EOF
LoadModule modelgate_module "$dir/mod_modelgate.so"
$load

# ---- (2) mod_modelgate ----
$store
ModelGateTier bench 100000000/s burst=100000000
EOF
    if [ "$layers" = 3 ]; then
        cat <<EOF
ModelGateLimit bench-global global 1000000000/s
ModelGateLimit bench-tenant tenant 1000000000/s
EOF
    fi
    cat <<EOF
ModelGateKeyFile "$dir/bench.keys"
$MG_EXTRA
ModelGateUpstream fast http://127.0.0.1:$BACKEND_PORT
<Location "/v1/">
    Require all granted
    ModelGate On
    ModelGateRoute fast
</Location>
EOF
}

start_apache_modelgate() {
    local dir port out
    dir=$(make_rundir apache-modelgate)
    port=$(free_port)
    # A copy of the module: others rebuild the tree while this runs.
    cp "$MODULE_SO" "$dir/mod_modelgate.so"
    if [ "$MG_STORE" != shm ]; then
        cp "$SRCDIR/.libs/mod_modelgate_redis.so" "$dir/mod_modelgate_redis.so"
    fi
    printf 'sha256:%s bench-key bench-tenant bench\n' \
        "$(printf %s "$BENCH_KEY" | sha256sum | cut -d' ' -f1)" >"$dir/bench.keys"
    MG_LAYERS=3
    modelgate_conf "$dir" "$port" 3 >"$dir/httpd.conf"
    if ! out=$(timeout 60 "$HTTPD" -d "$dir" -f "$dir/httpd.conf" -t 2>&1); then
        if grep -q ModelGateLimit <<<"$out"; then
            warn "only 1 layer: ModelGateLimit not available ($out)"
            MG_LAYERS=1
            modelgate_conf "$dir" "$port" 1 >"$dir/httpd.conf"
        else
            die "apache2 -t refused $dir/httpd.conf: $out"
        fi
    fi
    apache_start apache-modelgate "$dir" "$port"
    PORT[apache-modelgate]=$port
}

# nginx gateways: the backend as an upstream with a keep-alive pool;
# HTTP/1.1 and an empty Connection header are what let nginx reuse it.
nginx_gateway_block() {
    local port=$1 limit=$2
    cat <<EOF
    upstream fast {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }
EOF
    if [ "$limit" = 1 ]; then
        # burst: nginx counts in milliseconds, so two requests in the same
        # millisecond need burst > 0 whatever the rate; nodelay forwards
        # them at once.  429 makes any refusal visible to wrk as non-2xx.
        cat <<EOF
    limit_req_zone \$http_x_api_key zone=perkey:10m rate=100000000r/s;
    limit_req_status 429;
EOF
    fi
    cat <<EOF
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
EOF
    [ "$limit" = 1 ] && echo "            limit_req zone=perkey burst=100000 nodelay;"
    cat <<EOF
            proxy_pass http://fast;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF
}

start_nginx_gateway() {
    local name=$1 limit=$2 dir port
    dir=$(make_rundir "$name")
    port=$(free_port)
    nginx_conf "$dir" "$port" 2 "$(nginx_gateway_block "$port" "$limit")" >"$dir/nginx.conf"
    nginx_start "$name" "$dir" "$port"
    PORT[$name]=$port
}

# ---- the load ---------------------------------------------------------------------

declare -A PORT=()
ROUND=1

# ctx_switches PGID: voluntary + involuntary context switches of every
# thread in the group (threads live as long as their process here: the
# pools are fixed).  Many per request means threads sleep and wake on
# locks or queues instead of running.
ctx_switches() {
    local pgid=$1 pid total=0 v
    for pid in $(pgrep -g "$pgid"); do
        v=$(cat /proc/"$pid"/task/*/status 2>/dev/null \
            | awk '/ctxt_switches/ { s += $2 } END { print s + 0 }')
        total=$((total + v))
    done
    echo "$total"
}

# per_req DELTA SCALE N: DELTA * SCALE / N with one decimal.
per_req() {
    awk -v d="$1" -v k="$2" -v n="$3" 'BEGIN { printf "%.1f", d * k / n }'
}

# wait_quiet: up to BENCH_QUIET_WAIT seconds for a second in which the
# machine is at least 90% idle (before our own load).  Anything else running
# on two cores -- a build, a test suite -- shows up directly in the
# numbers; the idle share found goes into the row (pre_idle%).
wait_quiet() {
    local i a b idle=0
    for i in $(seq "$QUIET_WAIT"); do
        a=$(host_cpu); sleep 1; b=$(host_cpu)
        idle=$(awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
            printf "%.0f", 100 - 100 * (y[1] - x[1]) / (y[2] - x[2]) }')
        [ "$idle" -lt 90 ] || break
        [ "$i" -gt 1 ] || log "machine busy ($idle% idle): waiting up to ${QUIET_WAIT}s for it to calm down"
    done
    [ "$idle" -ge 90 ] || warn "machine still busy ($idle% idle) before measuring: numbers will be low and noisy"
    PRE_IDLE=$idle
}

# measure NAME: warm-up, then the measured wrk run, with the CPU time of the
# server's process group (and the backend's, wrk's and the host's) around
# it; appends one row to results.tsv.
measure() {
    local name=$1 port=${PORT[$1]} pgid=${RUNNING[$1]} dir=$RESULTS/$1
    local url="http://127.0.0.1:$port$BENCH_PATH"
    # WRK_AUTH: another credential header (bench/jwt_bench.sh's bearer JWT)
    local wrk=(wrk -t"$THREADS" -c"$CONNECTIONS" -H "${WRK_AUTH:-X-API-Key: $BENCH_KEY}")
    # bench/cache.sh: a wrk Lua script (POST bodies) for its rows.
    [ -z "${WRK_SCRIPT:-}" ] || wrk+=(-s "$WRK_SCRIPT")
    local secs=${DURATION%s} tag="$name.r$ROUND"
    wait_quiet
    log "$name (round $ROUND): warm-up $WARMUP"
    timeout $(( ${WARMUP%s} + 30 )) "${wrk[@]}" -d"$WARMUP" "$url" >"$dir/wrk-warmup.r$ROUND.txt" 2>&1 \
        || die "$name: warm-up wrk failed: $(cat "$dir/wrk-warmup.r$ROUND.txt")"

    log "$name (round $ROUND): measuring $DURATION, $THREADS threads, $CONNECTIONS connections"
    local out=$dir/wrk.r$ROUND.txt c0 b0 h0 x0 c1 b1 h1 x1 wt
    c0=$(cpu_ticks "$pgid"); b0=$(cpu_ticks "${RUNNING[backend]}"); h0=$(host_cpu)
    x0=$(ctx_switches "$pgid")
    local r0=0 r1=0 u0=0 u1=0
    if [ "$name" = apache-modelgate ] && [ -n "${RUNNING[redis]:-}" ]; then
        r0=$(redis_calls evalsha); r0=${r0:-0}
        u0=$(redis_usec evalsha); u0=${u0:-0}
    fi
    # bash's `time` gives wrk's own CPU: it shares the two cores.
    wt=$( { TIMEFORMAT='%U %S'; time timeout $(( secs + 30 )) "${wrk[@]}" -d"$DURATION" --latency "$url" \
            >"$out" 2>&1; } 2>&1 ) || die "$name: wrk failed: $(cat "$out")"
    c1=$(cpu_ticks "$pgid"); b1=$(cpu_ticks "${RUNNING[backend]}"); h1=$(host_cpu)
    x1=$(ctx_switches "$pgid")
    if [ "$name" = apache-modelgate ] && [ -n "${RUNNING[redis]:-}" ]; then
        r1=$(redis_calls evalsha); r1=${r1:-0}
        u1=$(redis_usec evalsha); u1=${u1:-0}
    fi

    local n rps p50 p99 bad sockerr ok=valid
    n=$(awk '/requests in/ { print $1 }' "$out")
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
    bad=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out"); bad=${bad:-0}
    sockerr=$(awk '/Socket errors:/ { s = 0; for (i = 3; i <= NF; i++) s += $i + 0; print s }' "$out")
    sockerr=${sockerr:-0}
    [ -n "$n" ] && [ "$n" -gt 0 ] || die "$name: wrk completed no request: $(cat "$out")"
    # A run with refusals or errors measured something else: invalid.
    if [ "$bad" != 0 ] || [ "$sockerr" != 0 ]; then
        ok=INVALID
        warn "$name: $bad non-2xx responses, $sockerr socket errors: run INVALID"
    fi
    # Apache and nginx error logs must stay quiet under load.
    if grep -Eq '\[(\w+:)?(error|crit|alert|emerg)\]' "$dir/error.log" 2>/dev/null; then
        warn "$name: errors in $dir/error.log"
    fi
    # name round rps p50 p99 gw_us be_us wrk_us ctxsw idle non2xx sockerr ok pre_idle
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$ROUND" "$rps" "$p50" "$p99" \
        "$(per_req $((c1 - c0)) $((1000000 / CLK_TCK)) "$n")" \
        "$(per_req $((b1 - b0)) $((1000000 / CLK_TCK)) "$n")" \
        "$(awk -v w="$wt" -v n="$n" 'BEGIN { split(w, a, " "); printf "%.1f", (a[1] + a[2]) * 1e6 / n }')" \
        "$(per_req $((x1 - x0)) 1 "$n")" \
        "$(awk -v a="$h0" -v b="$h1" 'BEGIN { split(a, x, " "); split(b, y, " ");
            printf "%.0f", 100 - 100 * (y[1] - x[1]) / (y[2] - x[2]) }')" \
        "$bad" "$sockerr" "$ok" "$PRE_IDLE" >>"$RESULTS/results.tsv"
    log "$name (round $ROUND): $(tail -n 1 "$RESULTS/results.tsv" | cut -f3-)"
    if [ "$r1" != 0 ]; then
        # wrk may count a few requests still in flight at its end.
        printf 'redis round %s: %s EVALSHA for %s requests: %s round trips per request, %s us of Redis CPU in scripts per request\n' \
            "$ROUND" "$((r1 - r0))" "$n" \
            "$(awk -v c=$((r1 - r0)) -v n="$n" 'BEGIN { printf "%.3f", c / n }')" \
            "$(awk -v u=$((u1 - u0)) -v n="$n" 'BEGIN { printf "%.1f", u / n }')" \
            | tee -a "$RESULTS/redis-roundtrips.txt" >&2
    fi
}

# ---- main ---------------------------------------------------------------------------

# prepare: packages, the module, the results dir and what machine this is.
prepare() {
    [ "$(id -u)" = 0 ] || die "run as root (apache2 and nginx start as root and drop to www-data)"
    bash "$SRCDIR/scripts/install-deps.sh"
    bash "$BENCH_DIR/install-deps.sh"
    if [ "$BUILD" = 1 ]; then
        log "building the module (scripts/build.sh)"
        bash "$SRCDIR/scripts/build.sh" >/dev/null
    fi
    MODULE_SO=$SRCDIR/.libs/mod_modelgate.so
    [ -f "$MODULE_SO" ] || die "no $MODULE_SO: run scripts/build.sh"

    mkdir -p "$RESULTS"
    # Children running as www-data must be able to reach the run dirs.
    local d=$RESULTS
    while [ "$d" != / ]; do
        [ "$(stat -c %u "$d")" = 0 ] && chmod o+x "$d"
        d=$(dirname "$d")
    done
    log "results in $RESULTS"

    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "git: $(git -C "$SRCDIR" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$SRCDIR" diff --quiet HEAD -- mod_modelgate 2>/dev/null || echo ' (mod_modelgate/ modified)')"
        echo "module sha256: $(sha256sum "$MODULE_SO" | cut -d' ' -f1)"
        echo "nproc: $NCPU"
        echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
        echo "kernel: $(uname -r)"
        echo "apache2: $("$HTTPD" -v | awk -F': ' '/version/ { print $2 }')"
        echo "nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
        echo "wrk: $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }')"
        echo "load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency (warm-up $WARMUP), X-API-Key header, GET $BENCH_PATH"
        echo "rounds: $ROUNDS${MG_EXTRA:+; (2) extra: $MG_EXTRA}"
    } | tee "$RESULTS/machine.txt" >&2
}

# The redis-server (2) uses with BENCH_MG_STORE=redis: no persistence, on
# loopback, in a session of its own like the other servers.
start_redis() {
    local dir
    dir=$(make_rundir redis)
    REDIS_PORT=$(free_port)
    start_session redis "$dir" /usr/bin/redis-server --port "$REDIS_PORT" \
        --bind 127.0.0.1 --save "" --appendonly no --dir "$dir"
    local i
    for i in $(seq 100); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "redis-server did not start"
}

# Calls of a Redis command so far (INFO commandstats).
redis_calls() {
    redis-cli -p "$REDIS_PORT" info commandstats 2>/dev/null \
        | sed -n "s/^cmdstat_$1:calls=\([0-9]*\),.*/\1/p" | head -1
}

# Microseconds Redis spent in command $1 so far (its own CPU, not the wire).
redis_usec() {
    redis-cli -p "$REDIS_PORT" info commandstats 2>/dev/null \
        | sed -n "s/^cmdstat_$1:calls=[0-9]*,usec=\([0-9]*\),.*/\1/p" | head -1
}

main() {
    prepare
    start_backend
    PORT[backend]=$BACKEND_PORT
    if [ "$MG_STORE" != shm ]; then
        start_redis
    fi

    if [ "$SERVERS_ONLY" = 1 ]; then
        start_apache_proxy; start_apache_modelgate
        start_nginx_gateway nginx-limitreq 1; start_nginx_gateway nginx-proxy 0
        local n
        for n in "${!PORT[@]}"; do echo "$n: http://127.0.0.1:${PORT[$n]}$BENCH_PATH (pid ${RUNNING[$n]})"; done
        echo "key: X-API-Key: $BENCH_KEY"
        echo "Ctrl-C stops them all."
        # wait, unlike a foreground sleep, lets the INT/TERM trap run at once.
        while :; do sleep 3600 & wait $!; done
    fi

    # One gateway at a time, the others stopped: each gets the cores to
    # itself (with wrk and the backend).  With BENCH_ROUNDS > 1 the whole
    # sequence repeats, so slow drifts of the machine hit every server alike.
    printf '# name\tround\trps\tp50_ms\tp99_ms\tgw_us_per_req\tbe_us_per_req\twrk_us_per_req\tgw_ctxsw_per_req\tidle_pct\tnon2xx\tsocket_errors\trun\tpre_idle_pct\n' \
        >"$RESULTS/results.tsv"
    local which
    for ROUND in $(seq "$ROUNDS"); do
        for which in $ONLY; do
            case $which in
                0) measure backend ;;
                1) start_apache_proxy; measure apache-proxy; stop_server apache-proxy ;;
                2) start_apache_modelgate
                   if [ "$REDIS_DOWN" = 1 ] && [ -n "${RUNNING[redis]:-}" ]; then
                       # Dead for the rest of the run: every (2) request
                       # now meets the open breaker.
                       stop_server redis
                   fi
                   measure apache-modelgate; stop_server apache-modelgate ;;
                3) start_nginx_gateway nginx-limitreq 1; measure nginx-limitreq; stop_server nginx-limitreq ;;
                4) start_nginx_gateway nginx-proxy 0; measure nginx-proxy; stop_server nginx-proxy ;;
                *) die "BENCH_ONLY: unknown server $which (0-4)" ;;
            esac
        done
    done
    stop_server backend
    stop_server redis

    report | tee "$RESULTS/summary.txt"
    if [ -f "$RESULTS/redis-roundtrips.txt" ]; then
        echo "(2) on the $MG_STORE store:" | tee -a "$RESULTS/summary.txt"
        tee -a "$RESULTS/summary.txt" <"$RESULTS/redis-roundtrips.txt"
    fi
}

# ---- the report ---------------------------------------------------------------------------

# col NAME COLUMN: that column's values for NAME, one per round, sorted.
col() {
    awk -F'\t' -v n="$1" -v c="$2" '$1 == n { print $c }' "$RESULTS/results.tsv" | sort -g
}

# median NAME COLUMN (the middle round; the mean of the two middle ones)
median() {
    col "$1" "$2" | awk '{ v[NR] = $1 } END { if (NR == 0) exit;
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m }'
}

# spread NAME COLUMN: "min-max" over the rounds
spread() {
    col "$1" "$2" | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%.0f-%.0f", lo, hi }'
}

# ratio A B: median rps of A over median rps of B, and with rounds the
# range of the per-round ratios.
ratio() {
    local a b
    a=$(median "$1" 3); b=$(median "$2" 3)
    [ -n "$a" ] && [ -n "$b" ] || { echo "n/a"; return; }
    awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", a / b }'
    if [ "$ROUNDS" -gt 1 ]; then
        awk -F'\t' -v A="$1" -v B="$2" '$1 == A { a[$2] = $3 } $1 == B { b[$2] = $3 }
            END { lo = 9; hi = 0; for (r in a) if (r in b) { x = a[r] / b[r];
                  if (x < lo) lo = x; if (x > hi) hi = x }
                  printf "  (rounds: %.3f-%.3f)", lo, hi }' "$RESULTS/results.tsv"
    fi
}

report() {
    local names=(backend apache-proxy apache-modelgate nginx-limitreq nginx-proxy)
    local labels=("(0) backend direct" "(1) apache2 + mod_proxy" \
                  "(2) apache2 + mod_modelgate" "(3) nginx + limit_req" "(4) nginx proxy")
    local i name rps valid
    echo
    [ "$ROUNDS" -gt 1 ] && echo "medians of $ROUNDS rounds (rps_range: lowest-highest round)"
    printf '%-28s %8s %13s %7s %7s %9s %9s %9s %8s %5s %8s %6s %s\n' server rps rps_range \
        p50_ms p99_ms gw_us/req be_us/req wrk_us/req ctxsw/req idle% pre_idle errors run
    for i in "${!names[@]}"; do
        name=${names[$i]}
        rps=$(median "$name" 3)
        [ -n "$rps" ] || continue
        valid=valid
        awk -F'\t' -v n="$name" '$1 == n && $13 != "valid" { bad = 1 } END { exit !bad }' \
            "$RESULTS/results.tsv" && valid=INVALID
        printf '%-28s %8.0f %13s %7.3f %7.3f %9.1f %9.1f %9.1f %8.1f %5.0f %8s %6s %s\n' "${labels[$i]}" \
            "$rps" "$(spread "$name" 3)" "$(median "$name" 4)" "$(median "$name" 5)" \
            "$(median "$name" 6)" "$(median "$name" 7)" "$(median "$name" 8)" \
            "$(median "$name" 9)" "$(median "$name" 10)" "$(col "$name" 14 | head -n 1)" \
            "$(awk -F'\t' -v n="$name" '$1 == n { s += $11 + $12 } END { print s + 0 }' \
                "$RESULTS/results.tsv")" "$valid"
    done
    echo
    echo "gw_us/req: CPU time (user+sys) of all the gateway's processes per completed request"
    echo "  ((0): the backend's own); be_us/req: the backend nginx's; wrk_us/req: wrk's;"
    echo "  ctxsw/req: the gateway threads' context switches; idle%: the whole machine's idle time"
    echo "  during the run; pre_idle: the lowest idle% in the second before a run (below 90: the"
    echo "  machine was busy with something else and the numbers are suspect);"
    echo "  errors: non-2xx responses + socket errors (any makes the run INVALID)."
    if [ -n "$(median apache-modelgate 3)" ]; then
        if [ "$MG_LAYERS" = 1 ]; then
            echo "WARNING: only 1 layer: ModelGateLimit not available (tier layer only in (2))"
        else
            echo "(2) counts every request in $MG_LAYERS limit layers (tier, global, tenant) on the $MG_STORE store."
        fi
        [ -z "$MG_EXTRA" ] || echo "(2) with extra configuration: $MG_EXTRA"
    fi
    echo
    local target=0.97
    case $MG_STORE in redis) target=0.80 ;; redis-sync) target=0.95 ;; esac
    echo "ratio rps (2)/(1) mod_modelgate / bare apache: $(ratio apache-modelgate apache-proxy)   (target >= $target)"
    echo "ratio rps (3)/(4) nginx limit_req / bare nginx: $(ratio nginx-limitreq nginx-proxy)   (reference 0.962)"
    local a b
    a=$(median apache-modelgate 6); b=$(median apache-proxy 6)
    if [ -n "$a" ] && [ -n "$b" ]; then
        echo "gateway CPU added by mod_modelgate: $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", a - b }') us/request   (target <= ~1.5)"
    fi
    a=$(median nginx-limitreq 6); b=$(median nginx-proxy 6)
    if [ -n "$a" ] && [ -n "$b" ]; then
        echo "gateway CPU added by limit_req:     $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", a - b }') us/request"
    fi
    echo "results: $RESULTS"
}

# Run when executed; when sourced (bench/profile.sh), only define.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
