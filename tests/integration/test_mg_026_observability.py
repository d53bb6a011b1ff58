"""Observability (issue 14): Prometheus metrics from shared memory
(SetHandler modelgate-metrics), counted exactly across every process of
event and prefork and across a graceful restart; W3C trace context and
X-Request-Id to the model server, the logs and the error bodies."""
import concurrent.futures
import os
import re
import shutil
import subprocess
import time

import pytest

import harness
from harness import DEMO_KEY, OTHER_KEY, PRO_KEY

TIERS = """
ModelGateTier free 100/min on_limit=fallback:mock-small,reject
ModelGateTier pro  100/min
"""
LIMITS = """
LoadModule authz_host_module %s/mod_authz_host.so
ModelGateLimit free-large key 2/day tiers=free models=mock-large
ModelGateLimit free-small key 1/day tiers=free models=mock-small
LogFormat "%%{modelgate-trace-id}n %%{modelgate-span-id}n %%{modelgate-request-id}n %%>s" mgtrace
CustomLog "${MG_RUN}/trace.log" mgtrace
<Location "/metrics">
    SetHandler modelgate-metrics
    Require ip 127.0.0.1
</Location>
""" % harness.HTTPD_MODDIR
LARGE = {"model": "mock-large", "messages": [{"role": "user", "content": "hi"}]}

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """[(name, {label: value}, value)] of an exposition, checking each
    line's shape on the way."""
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r'^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$', line), line
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        labels = dict(LABEL.findall(m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def total(samples, name, **want):
    return sum(v for n, labels, v in samples
               if n == name and all(labels.get(k) == x for k, x in want.items()))


def scrape(gw):
    resp = gw.get("/metrics")
    assert resp.status == 200, resp
    assert resp.header("content-type").startswith("text/plain; version=0.0.4")
    return resp.body.decode()


def settled(gw, expected_requests, timeout=10.0):
    """The scrape once every request of the mix is counted: httpd counts a
    request in log_transaction, after its client has the answer."""
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(gw)
        samples = parse(text)
        if total(samples, "modelgate_requests_total") >= expected_requests \
                or time.monotonic() > deadline:
            return text, samples
        time.sleep(0.05)


def chat(gw, key=None, body=LARGE, extra_headers=None):
    headers = {"Content-Type": "application/json"}
    headers.update(extra_headers or {})
    if key:
        headers["X-API-Key"] = key
    return harness.request(gw.port, "POST", "/v1/chat/completions", body=body,
                           headers=headers)


def metrics_gateway(gateways, backend, backend2, mpm="event"):
    backend.reset()
    backend2.reset()
    gw = gateways("metrics-" + mpm, backend_port=backend.port, mpm=mpm)
    gw.write_conf(harness.two_models(backend, backend2, TIERS, extra=LIMITS))
    return gw.start()


def run_mix(gw, allowed, rejected, unauthenticated):
    """`allowed` pro requests on 8 connections at once (so several
    children serve them under prefork), then for the free key 2 admitted,
    1 degraded (fallback) and `rejected` refused, then `unauthenticated`
    without a key."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: chat(gw, PRO_KEY).status, range(allowed)))
    assert statuses == [200] * allowed
    assert [chat(gw, DEMO_KEY).status for _ in range(2)] == [200, 200]
    degraded = chat(gw, DEMO_KEY)
    assert degraded.status == 200
    assert degraded.header("x-modelgate-degraded") == "fallback"
    assert [chat(gw, DEMO_KEY).status for _ in range(rejected)] == [429] * rejected
    assert [chat(gw).status for _ in range(unauthenticated)] == [401] * unauthenticated


def check_mix(samples, allowed, rejected, unauthenticated, degraded=1):
    req = "modelgate_requests_total"
    assert total(samples, req, tier="pro", outcome="allowed") == allowed
    assert total(samples, req, route="big", model="mock-large", tier="pro",
                 outcome="allowed") == allowed
    assert total(samples, req, tier="free", outcome="allowed") == 2
    assert total(samples, req, tier="free", outcome="degraded") == degraded
    # the fallback went to mock-small's upstream
    assert total(samples, req, route="small", model="mock-small", tier="free",
                 outcome="degraded") == degraded
    assert total(samples, req, tier="free", outcome="rejected") == rejected
    assert total(samples, req, tier="", outcome="unauthenticated") == unauthenticated
    assert total(samples, req) == allowed + 2 + degraded + rejected + unauthenticated
    assert total(samples, "modelgate_rejections_total", tier="free",
                 limit="free-large") == rejected
    assert total(samples, "modelgate_rejections_total") == rejected
    assert total(samples, "modelgate_degradations_total", tier="free",
                 action="fallback") == degraded
    assert total(samples, "modelgate_responses_total") == \
        allowed + 2 + degraded + rejected + unauthenticated
    # every admitted request observed once by each histogram
    served = allowed + 2 + degraded
    assert total(samples, "modelgate_upstream_latency_seconds_count") == served
    assert total(samples, "modelgate_gateway_latency_seconds_count") == \
        served + rejected + unauthenticated
    assert total(samples, "modelgate_upstream_latency_seconds_bucket", le="+Inf") == served


def check_classes(text, allowed, rejected, unauthenticated, degraded=1):
    samples = parse(text)
    by_class = {}
    for n, labels, v in samples:
        if n == "modelgate_responses_total":
            by_class[labels["class"]] = by_class.get(labels["class"], 0) + v
    assert by_class == {"2xx": allowed + 2 + degraded,
                        "4xx": rejected + unauthenticated}


def check_no_secrets(text):
    for secret in (DEMO_KEY, PRO_KEY, OTHER_KEY, "demo", "pro-1", "acme",
                   "/v1/chat/completions"):
        assert '"%s"' % secret not in text, secret


def promtool_check(text, tmp_path):
    # scripts/install-deps.sh installs Debian's prometheus for it: a missing
    # promtool would let a malformed exposition pass unseen.
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run scripts/install-deps.sh"
    p = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_mg_026_01_counts_are_exact_across_processes(gateways, backend, backend2,
                                                    mpm, tmp_path):
    gw = metrics_gateway(gateways, backend, backend2, mpm)
    n, m, u = 24, 3, 2
    run_mix(gw, n, m, u)
    text, samples = settled(gw, n + 3 + m + u)
    check_mix(samples, n, m, u)
    check_classes(text, n, m, u)
    check_no_secrets(text)
    promtool_check(text, tmp_path)
    # the scrapes themselves are not counted
    text, samples = settled(gw, n + 3 + m + u)
    assert total(samples, "modelgate_requests_total") == n + 3 + m + u


def test_mg_026_02_graceful_restart_keeps_the_counts(gateways, backend, backend2):
    gw = metrics_gateway(gateways, backend, backend2, "prefork")
    n, m, u = 10, 2, 1
    run_mix(gw, n, m, u)
    settled(gw, n + 3 + m + u)
    gw.graceful()
    text, samples = settled(gw, n + 3 + m + u)
    check_mix(samples, n, m, u)
    # and the new generation adds to them
    assert [chat(gw, PRO_KEY).status for _ in range(5)] == [200] * 5
    assert [chat(gw, DEMO_KEY).status for _ in range(2)] == [429] * 2
    text, samples = settled(gw, n + 3 + m + u + 7)
    check_mix(samples, n + 5, m + 2, u)


def test_mg_026_03_upstream_and_store_figures(gateways, backend, backend2, tmp_path):
    gw = metrics_gateway(gateways, backend, backend2)
    run_mix(gw, 4, 1, 0)
    text, samples = settled(gw, 8)
    promtool_check(text, tmp_path)
    for up in ("small", "big"):
        assert total(samples, "modelgate_upstream_breaker_state", upstream=up,
                     state="closed") == 1
        assert total(samples, "modelgate_upstream_breaker_state", upstream=up,
                     state="open") == 0
        assert total(samples, "modelgate_upstream_error_ratio", upstream=up) == 0
    assert total(samples, "modelgate_upstream_window_requests", upstream="big") == 6
    assert total(samples, "modelgate_upstream_window_requests", upstream="small") == 1
    # the shm store: pro-1's tier counter, demo's tier, free-large and
    # free-small counters
    assert total(samples, "modelgate_store_counters", store="shm", role="primary") == 4
    assert total(samples, "modelgate_store_capacity", store="shm") > 0
    assert total(samples, "modelgate_store_evicted_exhausted_total", store="shm") == 0


def test_mg_026_04_handler_answers_get_only(gateways, backend, backend2):
    gw = metrics_gateway(gateways, backend, backend2)
    assert gw.post("/metrics", body=b"x").status == 405
    head = harness.request(gw.port, "HEAD", "/metrics")
    assert head.status == 200 and head.body == b""


# ---- trace context ----------------------------------------------------------

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = re.compile(r'^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$')


def trace_lines(gw, count):
    deadline = time.monotonic() + 10
    while True:
        lines = gw.read_log("trace.log").splitlines()
        if len(lines) >= count or time.monotonic() > deadline:
            return [line.split() for line in lines]
        time.sleep(0.02)


def seen_by_backend(backend2):
    return backend2.requests()[-1]["headers"]


def test_mg_026_05_trace_continues_to_the_model_server(gateways, backend, backend2):
    gw = metrics_gateway(gateways, backend, backend2)
    resp = chat(gw, PRO_KEY, extra_headers={
        "traceparent": "00-%s-%s-01" % (TRACE, PARENT),
        "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
        "X-Request-Id": "req-abc.123"})
    assert resp.status == 200
    h = seen_by_backend(backend2)
    m = TRACEPARENT.match(h["traceparent"])
    assert m, h["traceparent"]
    assert m.group(1) == TRACE              # the client's trace
    span = m.group(2)
    assert span != PARENT and span != "0" * 16   # the gateway's span
    assert m.group(3) == "01"
    assert h["tracestate"] == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    assert h["x-request-id"] == "req-abc.123"
    assert trace_lines(gw, 1)[-1] == [TRACE, span, "req-abc.123", "200"]


def test_mg_026_06_trace_id_in_error_bodies(gateways, backend, backend2):
    gw = metrics_gateway(gateways, backend, backend2)
    tp = {"traceparent": "00-%s-%s-00" % (TRACE, PARENT)}
    for _ in range(3):                   # 2 admitted, 1 fallback
        assert chat(gw, DEMO_KEY).status == 200
    refused = chat(gw, DEMO_KEY, extra_headers=tp)
    assert refused.status == 429
    assert refused.json["error"]["code"] == "rate_limit_exceeded"
    assert refused.json["error"]["trace_id"] == TRACE
    # httpd logs a request after its answer went out: lines of requests on
    # different connections need not come in the order of the answers
    assert [l[3] for l in trace_lines(gw, 4) if l[0] == TRACE] == ["429"]
    # canned bodies too (401), each with its own request's trace
    anon = chat(gw)
    assert anon.status == 401
    assert anon.json["error"]["code"] == "missing_api_key"
    assert re.match(r'^[0-9a-f]{32}$', anon.json["error"]["trace_id"])
    assert anon.json["error"]["trace_id"] != TRACE
    assert [l[3] for l in trace_lines(gw, 5)
            if l[0] == anon.json["error"]["trace_id"]] == ["401"]
    anon2 = chat(gw)
    assert anon2.json["error"]["trace_id"] != anon.json["error"]["trace_id"]


BAD_TRACEPARENTS = [
    "00-%s-%s-0" % (TRACE, PARENT),                # wrong length
    "00-%s-%s-01-x" % (TRACE, PARENT),             # version 00, too long
    "ff-%s-%s-01" % (TRACE, PARENT),               # version ff
    "00-%s-%s-01" % ("0" * 32, PARENT),            # all-zero trace id
    "00-%s-%s-01" % (TRACE, "0" * 16),             # all-zero parent id
    "00-%s-%s-01" % (TRACE.upper(), PARENT),       # upper case
    "garbage",
]


@pytest.mark.parametrize("bad", BAD_TRACEPARENTS)
def test_mg_026_07_malformed_traceparent_starts_a_new_trace(gateways, backend, backend2, bad):
    gw = metrics_gateway(gateways, backend, backend2)
    resp = chat(gw, PRO_KEY, extra_headers={"traceparent": bad,
                                            "tracestate": "congo=t61rcWkgMzE",
                                            "X-Request-Id": "bad id"})
    assert resp.status == 200
    h = seen_by_backend(backend2)
    assert h["traceparent"] != bad
    m = TRACEPARENT.match(h["traceparent"])
    assert m, h["traceparent"]
    assert m.group(1) != TRACE and m.group(1) != "0" * 32
    assert m.group(2) != PARENT
    assert "tracestate" not in h          # it belonged to the broken trace
    # an invalid X-Request-Id is replaced by the gateway's span id
    assert h["x-request-id"] == m.group(2)
    line = trace_lines(gw, 1)[-1]
    assert line == [m.group(1), m.group(2), h["x-request-id"], "200"]


def test_mg_026_08_absent_traceparent_and_oversized_tracestate(gateways, backend, backend2):
    gw = metrics_gateway(gateways, backend, backend2)
    assert chat(gw, PRO_KEY).status == 200
    first = TRACEPARENT.match(seen_by_backend(backend2)["traceparent"])
    assert first and first.group(3) == "01"
    assert chat(gw, PRO_KEY).status == 200
    second = TRACEPARENT.match(seen_by_backend(backend2)["traceparent"])
    assert second.group(1) != first.group(1)
    # over 512 characters: the member over 128 goes, the rest is kept
    big = "x" * 200
    state = "a=1,long=%s,b=%s,c=%s,d=%s" % (big, "y" * 120, "z" * 120, "w" * 120)
    assert len(state) > 512
    assert chat(gw, PRO_KEY, extra_headers={
        "traceparent": "00-%s-%s-01" % (TRACE, PARENT), "tracestate": state}).status == 200
    assert seen_by_backend(backend2)["tracestate"] == \
        "a=1,b=%s,c=%s,d=%s" % ("y" * 120, "z" * 120, "w" * 120)


# ---- conf-examples/observability.conf: metrics and a JSON-lines access log --

def test_mg_026_09_observability_example(gateways, backend, backend2):
    import json
    backend.reset()
    backend2.reset()
    gw = gateways("observability", backend_port=backend.port)
    gw.backend2_port = backend2.port
    gw.use_conf(os.path.join(harness.CONF_EXAMPLES, "observability.conf"))
    gw.start()
    large = {"model": "large-model", "messages": [{"role": "user", "content": "hi"}]}
    tp = {"traceparent": "00-%s-%s-01" % (TRACE, PARENT), "X-Request-Id": "bug-4711"}
    assert chat(gw, PRO_KEY, body=large, extra_headers=tp).status == 200
    assert [chat(gw, DEMO_KEY, body=large).status for _ in range(3)] == [200] * 3
    degraded = chat(gw, DEMO_KEY, body=large)
    assert degraded.header("x-modelgate-degraded") == "fallback"
    refused = chat(gw, DEMO_KEY, body=large)
    assert refused.status == 429
    assert chat(gw, body=large).status == 401
    deadline = time.monotonic() + 10
    while True:
        lines = gw.read_log("access.json.log").splitlines()
        if len(lines) >= 7 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    rows = [json.loads(line) for line in lines]     # every line is JSON
    assert len(rows) == 7
    first = rows[0]
    assert first["trace_id"] == TRACE and first["request_id"] == "bug-4711"
    assert first["key_id"] == "pro-1" and first["tier"] == "pro"
    assert first["tenant"] == "acme"
    assert first["status"] == 200 and first["decision"] == "allowed"
    assert first["model"] == "large-model" and first["upstream"] == "large"
    assert first["requested_model"] == "-" and first["degraded"] == "-"
    assert isinstance(first["duration_us"], int)
    assert rows[4]["degraded"] == "fallback"
    assert rows[4]["requested_model"] == "large-model"
    assert rows[4]["model"] == "small-model" and rows[4]["upstream"] == "small"
    assert rows[5]["status"] == 429 and rows[5]["decision"] == "rejected"
    assert rows[5]["limit"] == "free-large"     # the requested model's
    assert rows[5]["trace_id"] == refused.json["error"]["trace_id"]
    assert rows[6]["status"] == 401 and rows[6]["decision"] == "missing-key"
    assert len({r["trace_id"] for r in rows}) == 7
    for line in lines:
        for secret in (DEMO_KEY, PRO_KEY):
            assert secret not in line
    samples = settled(gw, 7)[1]
    assert total(samples, "modelgate_requests_total") == 7
    assert total(samples, "modelgate_requests_total", outcome="degraded",
                 route="small", model="small-model", tier="free") == 1
    assert total(samples, "modelgate_rejections_total", limit="free-large") == 1


# ---- the quota endpoint (SetHandler modelgate-quota) ------------------------

QUOTA = """
<Location "/v1/modelgate/quota">
    ModelGate Off
    SetHandler modelgate-quota
</Location>
"""


def quota_gateway(gateways, backend, backend2, extra=""):
    backend.reset()
    backend2.reset()
    gw = gateways("quota", backend_port=backend.port)
    # after /v1/: <Location> blocks merge in the order they are written
    gw.write_conf(harness.two_models(backend, backend2, TIERS, extra=LIMITS)
                  + QUOTA + extra)
    return gw.start()


def quota(gw, key=DEMO_KEY, model="mock-large"):
    headers = {"X-API-Key": key} if key else {}
    return gw.get("/v1/modelgate/quota" + ("?model=" + model if model else ""),
                  headers=headers)


def remaining_in(header, name):
    m = re.search(r'"%s";r=(\d+);t=(\d+)' % re.escape(name), header)
    assert m, header
    return int(m.group(1))


def layer(resp, name):
    return [x for x in resp.json["limits"] if x["name"] == name][0]


def test_mg_026_10_quota_reads_without_spending(gateways, backend, backend2):
    gw = quota_gateway(gateways, backend, backend2)
    fresh = quota(gw)
    assert fresh.status == 200
    assert fresh.header("content-type") == "application/json"
    assert fresh.json["key_id"] == "demo" and fresh.json["tier"] == "free"
    assert fresh.json["model"] == "mock-large"
    names = [x["name"] for x in fresh.json["limits"]]
    assert names == ["free", "free-large"]
    big = layer(fresh, "free-large")
    assert big == {"name": "free-large", "scope": "key", "unit": "requests",
                   "algorithm": "token_bucket", "quota": 2, "window": 86400,
                   "remaining": 2, "reset": 0, "shadow": False}
    assert layer(fresh, "free")["quota"] == 100
    # without a model, the per-model limits do not apply
    assert [x["name"] for x in quota(gw, model=None).json["limits"]] == ["free"]

    first = chat(gw, DEMO_KEY)
    assert first.status == 200
    assert remaining_in(first.header("ratelimit"), "free-large") == 1
    # the same numbers as the last answer's headers (the binding layer
    # free-large refills one unit in 12 h: its t= holds for a second)
    q = quota(gw)
    assert q.json["ratelimit"] == first.header("ratelimit")
    assert q.json["ratelimit_policy"] == first.header("ratelimit-policy")
    samples = parse(scrape(gw))
    decisions = total(samples, "modelgate_store_decisions_total")
    inserted = total(samples, "modelgate_store_inserted_total")
    for _ in range(100):
        q = quota(gw)
        assert q.status == 200
        assert layer(q, "free-large")["remaining"] == 1
    # nothing consumed, created or decided
    samples = parse(scrape(gw))
    assert total(samples, "modelgate_store_decisions_total") == decisions
    assert total(samples, "modelgate_store_inserted_total") == inserted
    second = chat(gw, DEMO_KEY)
    assert second.status == 200 and second.header("x-modelgate-degraded") is None
    assert remaining_in(second.header("ratelimit"), "free-large") == 0
    assert layer(quota(gw), "free-large")["remaining"] == 0
    assert layer(quota(gw), "free-large")["reset"] > 0
    # the third is degraded: the two admitted were all the quota calls left
    assert chat(gw, DEMO_KEY).header("x-modelgate-degraded") == "fallback"
    # the endpoint's own calls are not requests of the gate
    assert total(settled(gw, 3)[1], "modelgate_requests_total") == 3


def test_mg_026_11_quota_needs_a_key(gateways, backend, backend2):
    gw = quota_gateway(gateways, backend, backend2)
    missing = quota(gw, key=None)
    assert missing.status == 401
    assert missing.header("content-type") == "application/json"
    assert missing.json["error"]["code"] == "missing_api_key"
    assert missing.header("www-authenticate") == 'Bearer realm="modelgate"'
    wrong = quota(gw, key="mg-not-a-key")
    assert wrong.status == 401
    assert wrong.json["error"]["code"] == "invalid_api_key"
    bearer = gw.get("/v1/modelgate/quota", headers={"Authorization": "Bearer " + PRO_KEY})
    assert bearer.status == 200 and bearer.json["tier"] == "pro"
    assert quota(gw, model="no-such-model").status == 404
    post = gw.post("/v1/modelgate/quota", body=b"{}",
                   headers={"X-API-Key": DEMO_KEY, "Content-Type": "application/json"})
    assert post.status == 405
    assert post.header("content-type") == "application/json"
    assert post.json["error"]["code"] == "method_not_allowed"
    # httpd's own Allow (TRACE is TraceEnable's, server-wide)
    assert {"GET", "HEAD"} <= set(post.header("allow").split(",")) <= {"GET", "HEAD", "TRACE"}


def test_mg_026_12_quota_never_a_way_around_the_gate(gateways, backend, backend2):
    """Where the gate applies, SetHandler modelgate-quota changes nothing
    about it: under a routed location the request is decided, charged and
    forwarded like any other; elsewhere the gate charges it and the
    handler says the configuration is wrong instead of answering as if
    nothing was spent."""
    gw = quota_gateway(gateways, backend, backend2, extra="""
<Location "/v1/routed-quota">
    SetHandler modelgate-quota
</Location>
<Location "/gated-quota">
    Require all granted
    ModelGate On
    SetHandler modelgate-quota
</Location>
""")
    gw.allow_errors(r"MG00701")
    routed = gw.get("/v1/routed-quota", headers={"X-API-Key": DEMO_KEY})
    assert routed.status == 404                    # the model server's answer
    assert remaining_in(routed.header("ratelimit"), "free") < 100   # charged
    assert backend.count() == 1
    resp = gw.get("/gated-quota", headers={"X-API-Key": DEMO_KEY})
    assert resp.status == 500
    assert resp.json["error"]["code"] == "gateway_error"
    assert remaining_in(resp.header("ratelimit"), "free") < 100
    samples = settled(gw, 2)[1]
    assert total(samples, "modelgate_requests_total", outcome="allowed") == 2


def test_mg_026_13_quota_on_redis(gateways, backend, backend2, tmp_path):
    redis = harness.RedisServer(tmp_path / "redis").start()
    try:
        backend.reset()
        backend2.reset()
        gw = gateways("quota-redis", backend_port=backend.port)
        gw.write_conf("""
LoadModule modelgate_redis_module "%s"
ModelGateStore redis 127.0.0.1:%d timeout=200
""" % (harness.REDIS_MODULE, redis.port)
            + harness.two_models(backend, backend2, TIERS, extra=LIMITS) + QUOTA)
        gw.start()
        assert layer(quota(gw), "free-large")["remaining"] == 2
        first = chat(gw, DEMO_KEY)
        assert first.status == 200
        assert remaining_in(first.header("ratelimit"), "free-large") == 1
        q = quota(gw)
        assert q.status == 200
        assert q.json["ratelimit"] == first.header("ratelimit")
        for _ in range(100):
            assert layer(quota(gw), "free-large")["remaining"] == 1
        second = chat(gw, DEMO_KEY)
        assert second.status == 200 and second.header("x-modelgate-degraded") is None
        assert remaining_in(second.header("ratelimit"), "free-large") == 0
        assert chat(gw, DEMO_KEY).header("x-modelgate-degraded") == "fallback"
        gw.stop()
    finally:
        redis.stop()


def test_mg_026_14_server_status_section(gateways, backend, backend2):
    gw = gateways("status", backend_port=backend.port)
    backend.reset()
    backend2.reset()
    gw.write_conf(harness.two_models(backend, backend2, TIERS, extra=LIMITS) + """
LoadModule status_module %s/mod_status.so
<Location "/server-status">
    SetHandler server-status
    Require ip 127.0.0.1
</Location>
""" % harness.HTTPD_MODDIR)
    gw.start()
    run_mix(gw, 4, 2, 1)
    settled(gw, 4 + 3 + 2 + 1)
    auto = gw.get("/server-status?auto")
    assert auto.status == 200
    lines = dict(line.split(": ", 1) for line in auto.body.decode().splitlines()
                 if line.startswith("ModelGate"))
    assert lines["ModelGateRequests"] == "10"
    assert lines["ModelGateRequests_allowed"] == "6"
    assert lines["ModelGateRequests_degraded"] == "1"
    assert lines["ModelGateRequests_rejected"] == "2"
    assert lines["ModelGateRequests_unauthenticated"] == "1"
    assert lines["ModelGateUpstreamBreaker_big"] == "closed"
    assert lines["ModelGateUpstreamBreaker_small"] == "closed"
    assert lines["ModelGateStore"] == "shm"
    assert int(lines["ModelGateStoreDecisions"]) >= 9
    assert "ModelGateStoreRoundTrips" not in lines     # not a remote store
    page = gw.get("/server-status").body.decode()
    assert "<h2>mod_modelgate</h2>" in page
    assert "Requests the gate saw: 10 (rejected by a limit: 2)" in page
    assert "Counter store <b>shm</b>" in page


def test_mg_026_15_trace_context_can_be_switched_off(gateways, backend, backend2):
    """ModelGateTrace Off: the client's trace context passes as it came,
    nothing is made, and error bodies carry no trace id."""
    backend.reset()
    backend2.reset()
    gw = gateways("notrace", backend_port=backend.port)
    gw.write_conf(harness.two_models(backend, backend2, TIERS, extra=LIMITS).replace(
        "    ModelGate On\n", "    ModelGate On\n    ModelGateTrace Off\n"))
    gw.start()
    assert chat(gw, PRO_KEY).status == 200
    h = seen_by_backend(backend2)
    assert "traceparent" not in h and "x-request-id" not in h
    sent = "00-%s-%s-01" % (TRACE, PARENT)
    chat(gw, PRO_KEY, extra_headers={"traceparent": sent})
    assert seen_by_backend(backend2)["traceparent"] == sent
    refused = chat(gw)
    assert refused.status == 401 and "trace_id" not in refused.json["error"]
