"""Observability (issue 14): Prometheus metrics from shared memory
(SetHandler modelgate-metrics), counted exactly across every process of
event and prefork and across a graceful restart."""
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


def chat(gw, key=None, body=LARGE):
    headers = {"Content-Type": "application/json"}
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
    promtool = shutil.which("promtool")
    if not promtool:
        return
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
