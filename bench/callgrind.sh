# bench/callgrind.sh -- counting a request's instructions, shared by the
# guard (tests/perf/instructions.sh) and the bench's counted rows
# (cache_instructions.sh, body_instructions.sh, jwt_bench.sh callgrind).
# Sourced after bench/run.sh (its servers, sessions and ports); defines only.
#
# The whole apache2 -X process is counted: its start and stop are the same
# in every run of one configuration and cancel in the differences the
# callers take, while counting only inside ap_run_process_connection
# missed log_transaction, which the event MPM runs after it returns (from
# its write completion: the request's EOR bucket, its pool's cleanup).

# start_mock: the project's mock model backend on a free loopback port
# (BACKEND_PORT, PORT[backend]); only apache2 runs under callgrind, so its
# speed does not count.
start_mock() {
    local dir i port=
    dir=$(make_rundir backend)
    start_session backend "$dir" "$PYTHON" "$SRCDIR/tests/mock_backend/mock_model.py" \
        --host 127.0.0.1 --port 0 --quiet
    for i in $(seq 100); do
        # the file is made by the background shell: it may not exist yet
        # (and a failed awk would end the caller under set -e)
        port=$(awk '/^LISTENING/ { print $2; exit }' "$dir/console.log" \
               2>/dev/null || true)
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || die "the mock backend did not start: $(cat "$dir/console.log" 2>/dev/null)"
    BACKEND_PORT=$port
    PORT[backend]=$port
}

# callgrind_total FILE NAME START LOAD...: TOTAL := the instructions of
# server NAME, started by the function START under callgrind (dumping to
# FILE), from its start to its stop, having served its readiness request
# and then whatever the command LOAD... sends (an argument @PORT@ becomes
# the port NAME got: known only once it started).  Not run in a subshell: the
# servers it starts must be in RUNNING for the caller's EXIT trap.
callgrind_total() {
    local file=$1 name=$2 start=$3
    shift 3
    mkdir -p "$(dirname "$file")"
    chmod 1777 "$(dirname "$file")"     # the -X process dumps as www-data
    APACHE_WRAP="valgrind --tool=callgrind --callgrind-out-file=$file"
    READY_TRIES=900 STOP_WAIT=120 "$start" >/dev/null
    unset APACHE_WRAP
    # valgrind made the file as root; apache2 writes it at exit as www-data.
    chown www-data "$file"
    local load=() arg
    for arg in "$@"; do
        load+=("${arg//@PORT@/${PORT[$name]}}")
    done
    "${load[@]}" || die "$name: the load failed"
    STOP_WAIT=120 stop_server "$name"
    TOTAL=$(awk '/^(summary|totals):/ { print $2; exit }' "$file" 2>/dev/null || true)
    [ -n "$TOTAL" ] || die "$name: no callgrind totals in $file"
}
