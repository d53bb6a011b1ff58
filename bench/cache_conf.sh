# shellcheck shell=bash disable=SC2034  # sourced: its variables are its callers'
# bench/cache_conf.sh -- the response cache's counted rows in one place for
# the two that count them: bench/cache_instructions.sh (the bench) and the
# guard's cache mode (tests/perf/instructions.sh cache).  Sourced after
# bench/run.sh and bench/callgrind.sh; defines only.  Needs, set by the
# caller: RESULTS (the run directory), MODULE_SO, MG_STORE=shm,
# BACKEND_PORT (start_mock), and optionally CACHE_EXTRA (lines added to
# every gateway row's configuration, to measure a variant).
#
# The rows, each POSTing a chat completion with "temperature": 0
# (bench/cache_client.py) on one keep-alive connection:
#
#   apache-proxy  bare apache2 + mod_proxy, one body          (forwards all)
#   cache-off     run.sh's (2) + mod_modelgate_cache loaded,
#                 ModelGateCacheable Off, a body per request
#   cache-miss    ModelGateCacheable On, a body per request   (all misses,
#                 each answer must say "modelgate; fwd=miss; stored")
#   cache-hit     ModelGateCacheable On, one body             (all hits
#                 after the first, each must say "modelgate; hit")
#
# The checks are part of the row: a cache that silently stopped storing or
# hitting would otherwise be counted as a cheap one.

CACHE_ROWS_ALL="apache-proxy cache-off cache-miss cache-hit"

# Worker threads of every row's apache2 -X (run.sh's are 64, for wrk's 64
# connections; these rows have one).  Each thread pays for its
# purge-generation memo (two SHA-256 record keys, ~10,000 instructions) on
# its first cached request, and the MPM hands a connection's requests to
# its idle threads in no fixed order: with 64, threads still served their
# first request after 250 and the two intervals of a miss were up to 3 %
# apart (2026-12-02, bench/README.md "The cache guard"); with 8, a
# warm-up of 50 leaves none cold (8 x (7/8)^50 = 0.01 expected) and they
# agree within 0.5 %.  What a warm thread spends on a request does not
# depend on how many there are.
CACHE_THREADS=8

# The gateway rows: run.sh's (2) with the cache plugin, shmcb and a
# location.  cache_rows_prepare, once per run: the plugin copied (others
# rebuild the tree while a count runs) and the rows' thread count.
cache_rows_prepare() {
    cp "$SRCDIR/.libs/mod_modelgate_cache.so" "$RESULTS/mod_modelgate_cache.so"
    APACHE_THREADS=$CACHE_THREADS
}
start_cache_row() {
    local cacheable=$1
    MG_EXTRA="LoadModule socache_shmcb_module $HTTPD_MODDIR/mod_socache_shmcb.so
LoadModule modelgate_cache_module \"$RESULTS/mod_modelgate_cache.so\"
ModelGateCache \"shmcb:$RESULTS/shmcb(67108864)\"
<Location \"/v1/\">
    ModelGateCacheable $cacheable
</Location>
${CACHE_EXTRA:-}"
    start_apache_modelgate
}
start_cache_off() { start_cache_row Off; }
start_cache_on()  { start_cache_row On; }

# cache_row_total ROW LOAD FILE: TOTAL := the instructions of ROW's server
# (apache2 -X under callgrind, dumping to FILE), from a fresh start to its
# stop, having served its readiness GET and then LOAD POSTs, every answer
# checked as the row says (bench/callgrind.sh's callgrind_total).
cache_row_total() {
    local row=$1 load=$2 file=$3 name start args=()
    case $row in
        apache-proxy) name=apache-proxy; start=start_apache_proxy ;;
        cache-off)    name=apache-modelgate; start=start_cache_off; args=(--unique) ;;
        cache-miss)   name=apache-modelgate; start=start_cache_on
                      args=(--unique --cache-status "modelgate; fwd=miss; stored") ;;
        cache-hit)    name=apache-modelgate; start=start_cache_on
                      args=(--cache-status "modelgate; hit") ;;
        *) die "unknown cache row $row" ;;
    esac
    callgrind_total "$file" "$name" "$start" \
        "$PYTHON" "$SRCDIR/bench/cache_client.py" --port @PORT@ --key "$BENCH_KEY" \
        --requests "$load" "${args[@]}"
}
