#!/usr/bin/env bash
# bench/jwt_bench.sh -- issue 13's target: a caller repeating one ES256
# bearer JWT against the same gateway, the same route and the same run as
# a caller with an API key (throughput >= 0.97 of the key's).
#
# One mod_modelgate (bench/run.sh's server (2): event MPM, three limit
# layers on the shm store, the nginx backend) with `ModelGateIdentity key
# jwt` and one ES256 issuer whose JWKS is a file; a token minted here
# (python3-cryptography, tests/integration/jwt_mint.py) valid for a day.
# Each round measures the API key, then the token (the order alternates
# between rounds), with run.sh's measure: rps, latency, the gateway's CPU
# per request.  The token is verified once per child and then found in
# the verified-token cache: what is compared is the cached path.
#
# Knobs: as bench/run.sh (BENCH_DURATION, BENCH_WARMUP, BENCH_CONNECTIONS,
# BENCH_THREADS, BENCH_BUILD, BENCH_QUIET_WAIT), BENCH_ROUNDS (default 3).
#
#   bash bench/jwt_bench.sh callgrind   instructions per request instead,
#       which a busy machine cannot skew: apache2 -X under valgrind
#       --tool=callgrind (counting inside ap_run_process_connection), W,
#       W + R and W + 2R requests on one keep-alive connection from fresh
#       starts, for each credential (as tests/perf/instructions.sh does);
#       BENCH_IR_REQUESTS=300 (R) BENCH_IR_WARMUP=20 (W).
#
# Cold verification per algorithm is bench/mg_jwt_bench.c's.
set -euo pipefail

BENCH_ROUNDS=${BENCH_ROUNDS:-3}
# shellcheck source=bench/run.sh
. "$(dirname "$0")/run.sh"          # defines only: main runs when executed
# shellcheck source=bench/callgrind.sh
. "$(dirname "$0")/callgrind.sh"    # callgrind_total

RESULTS="$BENCH_DIR/results/jwt-$(date +%Y%m%d-%H%M%S)"
JWT_ISS=https://idp.bench.test/

# mint DIR: DIR/idp.jwks and DIR/token (ES256, sub bench-jwt, the key's
# tenant and tier, so both callers are limited in the same three layers).
mint() {
    "$PYTHON" - "$1" "$SRCDIR/tests/integration" "$JWT_ISS" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[2])
import jwt_mint as jm
keys = jm.Keys("bench")
with open(sys.argv[1] + "/idp.jwks", "w") as f:
    json.dump(keys.jwks(), f)
tok = keys.token("ES256", jm.claims(iss=sys.argv[3], sub="bench-jwt", lifetime=86400,
                                    aud="modelgate", tenant="bench-tenant", tier="bench"))
with open(sys.argv[1] + "/token", "w") as f:
    f.write(tok)
PY
}

start_gateway() {
    local dir port
    dir=$(make_rundir mg-apikey)
    mkdir -p "$RESULTS/mg-jwt"
    port=$(free_port)
    cp "$MODULE_SO" "$dir/mod_modelgate.so"
    cp "$SRCDIR/.libs/mod_modelgate_jwt.so" "$dir/mod_modelgate_jwt.so"
    printf 'sha256:%s bench-key bench-tenant bench\n' \
        "$(printf %s "$BENCH_KEY" | sha256sum | cut -d' ' -f1)" >"$dir/bench.keys"
    mint "$dir"
    MG_EXTRA="LoadModule modelgate_jwt_module \"$dir/mod_modelgate_jwt.so\"
ModelGateIdentity key jwt
ModelGateJWTIssuer $JWT_ISS jwks=$dir/idp.jwks algs=ES256 audience=modelgate"
    modelgate_conf "$dir" "$port" 3 >"$dir/httpd.conf"
    apache_start mg-apikey "$dir" "$port"
    # the same server under the second name
    PORT[mg-apikey]=$port; PORT[mg-jwt]=$port
    RUNNING[mg-jwt]=${RUNNING[mg-apikey]}
    TOKEN=$(cat "$dir/token")
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
           "http://127.0.0.1:$port$BENCH_PATH")
    [ "$code" = 200 ] || die "the bearer token answers $code, not 200; see $dir/"
}

jwt_report() {
    local a b
    echo
    printf '%-22s %8s %13s %7s %7s %9s\n' caller rps rps_range p50_ms p99_ms gw_us/req
    for n in mg-apikey mg-jwt; do
        printf '%-22s %8.0f %13s %7.3f %7.3f %9.1f\n' \
            "$( [ $n = mg-apikey ] && echo "API key" || echo "ES256 JWT (repeated)")" \
            "$(median $n 3)" "$(spread $n 3)" "$(median $n 4)" "$(median $n 5)" "$(median $n 6)"
    done
    echo
    echo "ratio rps JWT / API key, same gateway and route: $(ratio mg-jwt mg-apikey)   (target >= 0.97)"
    a=$(median mg-jwt 6); b=$(median mg-apikey 6)
    echo "gateway CPU added by the JWT: $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", a - b }') us/request"
    if awk -F'\t' '$13 != "valid" && $1 !~ /^#/ { bad = 1 } END { exit !bad }' "$RESULTS/results.tsv"; then
        echo "WARNING: some runs were INVALID (non-2xx or socket errors): see results.tsv"
    fi
    echo "results: $RESULTS"
}

jwt_main() {
    prepare
    [ -f "$SRCDIR/.libs/mod_modelgate_jwt.so" ] || die "no mod_modelgate_jwt.so: run scripts/build.sh"
    start_backend
    PORT[backend]=$BACKEND_PORT
    start_gateway
    printf '# name\tround\trps\tp50_ms\tp99_ms\tgw_us_per_req\tbe_us_per_req\twrk_us_per_req\tgw_ctxsw_per_req\tidle_pct\tnon2xx\tsocket_errors\trun\tpre_idle_pct\n' \
        >"$RESULTS/results.tsv"
    for ROUND in $(seq "$ROUNDS"); do
        if [ $((ROUND % 2)) = 1 ]; then
            WRK_AUTH= measure mg-apikey
            WRK_AUTH="Authorization: Bearer $TOKEN" measure mg-jwt
        else
            WRK_AUTH="Authorization: Bearer $TOKEN" measure mg-jwt
            WRK_AUTH= measure mg-apikey
        fi
    done
    unset "RUNNING[mg-jwt]"
    stop_server mg-apikey
    stop_server backend
    jwt_report | tee "$RESULTS/summary.txt"
}

# ---- callgrind: instructions per request ---------------------------------

# keepalive LOAD HEADER: LOAD GETs on one connection, each a 200.
keepalive() {
    "$PYTHON" - "${PORT[mg-apikey]}" "$BENCH_PATH" "$2" "$1" <<'PY'
import http.client, sys
port, path, header, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
name, value = header.split(": ", 1)
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
for i in range(n):
    conn.request("GET", path, headers={name: value})
    resp = conn.getresponse()
    resp.read()
    if resp.status != 200:
        sys.exit("request %d: status %d" % (i, resp.status))
PY
}

# ir_total CRED LOAD: TOTAL := instructions of a fresh apache2 -X that
# served the readiness requests and then LOAD requests with CRED (key|jwt).
ir_total() {
    callgrind_total "$RESULTS/callgrind/$1.$2.out" mg-apikey start_gateway \
        ir_load "$1" "$2"
}

# ir_load CRED LOAD: the requests; the token is read here, after the start
# that minted it.  The gateway answers as mg-apikey and mg-jwt (one
# server): stopped once.
ir_load() {
    local header="X-API-Key: $BENCH_KEY"
    [ "$1" = jwt ] && header="Authorization: Bearer $TOKEN"
    keepalive "$2" "$header" || return 1
    unset "RUNNING[mg-jwt]"
}

jwt_callgrind() {
    local R=${BENCH_IR_REQUESTS:-300} W=${BENCH_IR_WARMUP:-20} cred k
    declare -A T=()
    prepare
    start_backend
    PORT[backend]=$BACKEND_PORT
    for cred in key jwt; do
        for k in 0 1 2; do
            ir_total "$cred" $((W + k * R))
            T[$cred.$k]=$TOTAL
            log "$cred, $((W + k * R)) requests: $TOTAL Ir"
        done
    done
    stop_server backend
    {
        for cred in key jwt; do
            echo "$cred: $(( (T[$cred.1] - T[$cred.0]) / R )) and $(( (T[$cred.2] - T[$cred.1]) / R )) Ir/request in the two intervals, mean $(( (T[$cred.2] - T[$cred.0]) / (2 * R) ))"
        done
        echo "the repeated ES256 token adds $(( (T[jwt.2] - T[jwt.0] - T[key.2] + T[key.0]) / (2 * R) )) instructions per request to the API key's"
        echo "results: $RESULTS"
    } | tee "$RESULTS/summary.txt"
}

# Run when executed; when sourced (bench/ab.sh jwt), only define.
if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    :
elif [ "${1:-}" = callgrind ]; then
    RESULTS="$BENCH_DIR/results/jwt-callgrind-$(date +%Y%m%d-%H%M%S)"
    jwt_callgrind
else
    jwt_main "$@"
fi
