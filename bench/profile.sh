#!/usr/bin/env bash
# bench/profile.sh -- where the gateway's time goes, (1) bare apache vs (2)
# mod_modelgate, with the servers and configurations of bench/run.sh.
#
#   bash bench/profile.sh callgrind   user-space instructions per request:
#                                     apache2 -X (one process) under
#                                     valgrind --tool=callgrind, a short
#                                     bounded wrk load (-t1 -c8)
#   bash bench/profile.sh perf        sampled CPU (perf, cpu-clock: this VM
#                                     has no hardware counters) of every
#                                     gateway process under run.sh's load,
#                                     kernel included -- where the lock
#                                     waits show
#
# Knobs: BENCH_PROFILE_DURATION (callgrind 15s, perf 10s), BENCH_MG_EXTRA
# and BENCH_BUILD as for run.sh.  Results in bench/results/profile-<ts>/.
set -euo pipefail

# shellcheck source=bench/run.sh
. "$(dirname "$0")/run.sh"          # defines only: main runs when executed

MODE=${1:-callgrind}
RESULTS="$BENCH_DIR/results/profile-$MODE-$(date +%Y%m%d-%H%M%S)"

# total_requests FILE: what wrk completed, plus the one readiness request.
total_requests() {
    echo $(( $(awk '/requests in/ { print $1 }' "$1") + 1 ))
}

# ---- callgrind: instructions, deterministic, user space only ---------------------

# Inclusive Ir of one function from a callgrind_annotate --inclusive listing.
ir_of() {
    awk -v f="$2" '$0 ~ ("[ :]" f " ") || $0 ~ ("[ :]" f "$") { gsub(",", "", $1); print $1; exit }' "$1"
}

# self_diff SELF1 N1 SELF2 N2: per-request self Ir of every function in
# two callgrind_annotate listings, largest increase first.  The object
# path of mod_modelgate.so (a copy in each run dir) is cut to its name.
self_diff() {
    awk -v n1="$2" -v n2="$4" '
        FNR == 1 { file++ }
        /^ *[0-9,]+ \(/ && !/PROGRAM TOTALS/ {
            ir = $1; gsub(",", "", ir)
            fn = $0; sub(/^ *[0-9,]+ \( *[0-9.]+%\) +/, "", fn)
            sub(/^[^ ]*:/, "", fn)                    # drop the source file
            gsub(/\[[^]]*\//, "[", fn)               # object: base name only
            if (file == 1) a[fn] += ir / n1; else b[fn] += ir / n2
        }
        END { for (f in b) printf "  %9.0f %9.0f %9.0f  %s\n", a[f], b[f], b[f] - a[f], f
              for (f in a) if (!(f in b)) printf "  %9.0f %9.0f %9.0f  %s\n", a[f], 0, -a[f], f }
    ' "$1" "$3" | sort -k3,3 -g -r
}

callgrind_one() {
    local name=$1 start=$2 out=$RESULTS/callgrind
    mkdir -p "$out"
    chmod 1777 "$out"             # the -X process writes it as www-data
    # Only what runs inside ap_run_process_connection is counted: the work
    # of the requests, not the start (loading libcrypto, reading the
    # configuration) nor the listener thread.
    APACHE_WRAP="valgrind --tool=callgrind --callgrind-out-file=$out/$name.out --collect-atstart=no --toggle-collect=ap_run_process_connection"
    READY_TRIES=900 STOP_WAIT=120 "$start"
    # valgrind created the output file as root; the dump at exit is
    # written after apache2 has become www-data.
    chown www-data "$out/$name.out"
    log "$name under callgrind: wrk -t1 -c8 -d$PDURATION"
    timeout $(( ${PDURATION%s} + 60 )) wrk -t1 -c8 -d"$PDURATION" -H "X-API-Key: $BENCH_KEY" \
        "http://127.0.0.1:${PORT[$name]}$BENCH_PATH" >"$out/$name.wrk.txt" 2>&1
    STOP_WAIT=120 stop_server "$name"
    unset APACHE_WRAP
    # (callgrind_annotate 3.19 warns about every function without a
    # source line; the listings are right all the same.)
    callgrind_annotate --inclusive=yes --threshold=100 "$out/$name.out" \
        >"$out/$name.inclusive.txt" 2>/dev/null
    callgrind_annotate --threshold=100 "$out/$name.out" >"$out/$name.self.txt" 2>/dev/null
}

profile_callgrind() {
    PDURATION=${BENCH_PROFILE_DURATION:-15s}
    start_backend
    PORT[backend]=$BACKEND_PORT
    callgrind_one apache-proxy start_apache_proxy
    callgrind_one apache-modelgate start_apache_modelgate

    local out=$RESULTS/callgrind name n total
    {
        echo "instructions (Ir) per request, user space, apache2 -X under callgrind"
        echo "(ap_run_process_connection: everything one keep-alive request costs the worker)"
        for name in apache-proxy apache-modelgate; do
            n=$(total_requests "$out/$name.wrk.txt")
            total=$(ir_of "$out/$name.inclusive.txt" ap_run_process_connection)
            printf '  %-18s %8d requests  %8.0f Ir/request\n' "$name" "$n" \
                "$(awk -v t="$total" -v n="$n" 'BEGIN { print t / n }')"
        done
        n=$(total_requests "$out/apache-modelgate.wrk.txt")
        echo
        echo "mod_modelgate's hooks and what they call, inclusive Ir per request:"
        # The hooks, then the core and library functions they spend in.
        local f v
        for f in mg_translate_name mg_access_checker mg_fixups insert_error_filter \
                 mg_identity_scrub mg_identity_take_credential mg_keys_lookup SHA256 \
                 mg_identity_announce decide_limits mg_layers_for_request \
                 mg_table_fingerprint shm_decide apr_global_mutex_lock \
                 apr_global_mutex_unlock mg_table_decide mg_headers_build \
                 set_limit_headers route_request mg_proxy_hand_off respond_canned \
                 apr_psprintf apr_table_setn; do
            v=$(ir_of "$out/apache-modelgate.inclusive.txt" "$f")
            [ -n "$v" ] || continue
            printf '  %-30s %8.0f\n' "$f" "$(awk -v t="$v" -v n="$n" 'BEGIN { print t / n }')"
        done
        echo
        echo "functions whose own (self) Ir per request grew most from (1) to (2):"
        printf '  %9s %9s %9s  %s\n' "(1)" "(2)" "added" "function [object]"
        self_diff "$out/apache-proxy.self.txt" "$(total_requests "$out/apache-proxy.wrk.txt")" \
                  "$out/apache-modelgate.self.txt" "$n" | awk 'NR <= 30'
    } | tee "$RESULTS/callgrind-summary.txt"
}

# ---- perf: sampled CPU time, kernel included ----------------------------------------

perf_one() {
    local name=$1 start=$2 out=$RESULTS/perf pids
    mkdir -p "$out"
    "$start"
    timeout 60 wrk -t"$THREADS" -c"$CONNECTIONS" -d3s -H "X-API-Key: $BENCH_KEY" \
        "http://127.0.0.1:${PORT[$name]}$BENCH_PATH" >/dev/null 2>&1
    pids=$(pgrep -g "${RUNNING[$name]}" | paste -sd,)
    log "$name under perf: wrk -t$THREADS -c$CONNECTIONS -d$PDURATION"
    timeout $(( ${PDURATION%s} + 60 )) wrk -t"$THREADS" -c"$CONNECTIONS" -d"$PDURATION" \
        -H "X-API-Key: $BENCH_KEY" "http://127.0.0.1:${PORT[$name]}$BENCH_PATH" \
        >"$out/$name.wrk.txt" 2>&1 &
    local wrk_pid=$!
    # Sample all but the first and last second of the load; 499 Hz and
    # call graphs cost the gateway noticeably, less than higher rates.
    sleep 1
    timeout $(( ${PDURATION%s} + 30 )) perf record -q -F 499 -e cpu-clock -g -p "$pids" \
        -o "$out/$name.data" -- sleep $(( ${PDURATION%s} - 2 )) >/dev/null 2>&1 || true
    wait "$wrk_pid"
    stop_server "$name"
    perf report -i "$out/$name.data" --no-children --sort dso --stdio -g none \
        2>/dev/null | grep '%' >"$out/$name.dso.txt" || true
    perf report -i "$out/$name.data" --children --sort sym --stdio -g none \
        2>/dev/null | grep '%' >"$out/$name.children.txt" || true
    perf report -i "$out/$name.data" --no-children --sort dso,sym --stdio -g none \
        2>/dev/null | grep '%' >"$out/$name.self.txt" || true
}

profile_perf() {
    PDURATION=${BENCH_PROFILE_DURATION:-10s}
    start_backend
    PORT[backend]=$BACKEND_PORT
    perf_one apache-proxy start_apache_proxy
    perf_one apache-modelgate start_apache_modelgate
    local out=$RESULTS/perf name
    {
        for name in apache-proxy apache-modelgate; do
            echo "== $name: $(grep -E '^Requests/sec' "$out/$name.wrk.txt") (under perf)"
            echo "by library (self):"
            head -n 10 "$out/$name.dso.txt"
            echo "locks and scheduling (children: time in the function and below):"
            grep -E '\] (__x64_sys_futex|futex_lock_pi|futex_unlock_pi|__futex_lock_pi64|__GI___lll_lock_wait|futex_wait|futex_wake|schedule|__poll|do_epoll_wait|apr_global_mutex_lock|apr_proc_mutex_lock|mg_access_checker|mg_table_decide)$' \
                "$out/$name.children.txt" || true
            echo
        done
    } | tee "$RESULTS/perf-summary.txt"
}

prepare
case $MODE in
    callgrind) command -v valgrind >/dev/null || die "valgrind missing (scripts/install-deps.sh installs it)"
               profile_callgrind ;;
    perf)      perf stat -e cpu-clock true >/dev/null 2>&1 || die "perf does not work here (Debian: linux-perf)"
               profile_perf ;;
    *)         die "usage: bench/profile.sh callgrind|perf" ;;
esac
