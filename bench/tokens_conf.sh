# shellcheck shell=bash disable=SC2034  # sourced: its variables are its callers'
# bench/tokens_conf.sh -- the gateway with token layers and the request it
# is measured with, in one place for the two that measure it:
# bench/tokens.sh (throughput, SSE, its callgrind rows) and the guard's
# POST mode (tests/perf/instructions.sh post).  Sourced; defines only.
# Needs MODULE_SO (the built module) set by the caller.
#
# The gateway: key, a tier with tokens=, a global and a tenant request
# limit, a tenant token limit (unit=tokens): two token layers reserved
# and settled per request, three request layers, on the shm store.  The
# tenant's token limit is a fixed window of a day, not a bucket: a
# bucket of 10^12 a minute is full again a microsecond later, so no
# answer could show what the settle did; a day's window only goes down,
# by what each request was settled to (the guard checks it from
# x-ratelimit-remaining-tokens, which tells the layer with the smaller
# share left: this one once anything was counted).  10^12 a day: no
# bench run comes near it.
#
# BENCH_TOKENS=0: the same gateway without its two token layers, to tell
# token accounting's cost from the rest of a POST's (the body is read
# either way).

# The key every request carries (run.sh's BENCH_KEY, the same text).
TOKENS_KEY=mg-bench-key-0001

# The request: a non-streaming chat completion.  mock_model.py answers it
# with usage {prompt 3, completion 11, total 14}; bench/tokens.sh's nginx
# with a fixed {3, 5, 8}.
TOKENS_PATH=/v1/chat/completions
TOKENS_BODY='{"model":"mock-small","max_tokens":16,"messages":[{"role":"user","content":"one two three"}]}'

# tokens_keyfile DIR: DIR/bench.keys with TOKENS_KEY's digest, and the
# module copied to DIR (others rebuild the tree while a bench runs).
tokens_keyfile() {
    cp "$MODULE_SO" "$1/mod_modelgate.so"
    printf 'sha256:%s bench-key bench-tenant bench\n' \
        "$(printf %s "$TOKENS_KEY" | sha256sum | cut -d' ' -f1)" >"$1/bench.keys"
}

# tokens_gateway_conf DIR BACKEND_PORT: the gateway's lines of an
# httpd.conf (after the MPM and mod_proxy's), for a module and key file
# in DIR (tokens_keyfile).
tokens_gateway_conf() {
    local dir=$1 be=$2 tier_tokens="" tpd=""
    if [ "${BENCH_TOKENS:-1}" = 1 ]; then
        tier_tokens="tokens=1000000000000/min"
        tpd="ModelGateLimit bench-tpd tenant 1000000000000/day algorithm=fixed_window unit=tokens"
    fi
    cat <<EOF
LoadModule modelgate_module "$dir/mod_modelgate.so"
ModelGateStore shm capacity=65536
ModelGateTier bench 100000000/s burst=100000000 $tier_tokens
ModelGateLimit bench-global global 1000000000/s
ModelGateLimit bench-tenant tenant 1000000000/s
$tpd
ModelGateKeyFile "$dir/bench.keys"
ModelGateUpstream up http://127.0.0.1:$be
<Location "/v1/">
    Require all granted
    ModelGate On
    ModelGateRoute up
</Location>
EOF
}
