"""conf-examples/grafana-modelgate.json (issue 14): every metric its
queries name exists in a real scrape, and every query gives data over two
real scrapes with traffic between them (evaluated by
docs/dashboard/render.py, which also draws the docs' picture)."""
import json
import os
import sys
import time

import pytest

import harness
from harness import DEMO_KEY, PRO_KEY
from test_mg_011_redis import redis  # noqa: F401 (fixture)
from test_mg_031_span_export import OTLP_MODULE

sys.path.insert(0, os.path.join(harness.SRCDIR, "docs", "dashboard"))
import render  # noqa: E402

DASHBOARD = os.path.join(harness.CONF_EXAMPLES, "grafana-modelgate.json")

pytestmark = pytest.mark.skipif(
    not (os.path.exists(harness.REDIS_MODULE) and os.path.exists(OTLP_MODULE)),
    reason="needs the redis and otlp plugins")

HEAD = """
LoadModule modelgate_redis_module "{redis_module}"
LoadModule modelgate_otlp_module "{otlp_module}"
ModelGateStore redis 127.0.0.1:{redis_port}
ModelGateStoreFailure local
ModelGateTraceExport http://127.0.0.1:{closed}/v1/traces sample=1 interval=50 timeout=200
ModelGateTier free 100/min on_limit=fallback:mock-small,reject tokens=100000/min
ModelGateTier pro  100/min tokens=100000/min
ModelGateLimit free-large key 2/day tiers=free models=mock-large
ModelGateLimit free-small key 1/day tiers=free models=mock-small
"""
METRICS = """
<Location "/metrics">
    SetHandler modelgate-metrics
    Require all granted
</Location>
"""
LARGE = {"model": "mock-large", "messages": [{"role": "user", "content": "hi"}]}


def scrape(gw, requests=None, timeout=10.0):
    """A scrape; with `requests`, the first one whose modelgate_requests_total
    adds up to it: a request is counted in log_transaction, after its
    answer went out, so a scrape can come before the last one is."""
    deadline = time.monotonic() + timeout
    while True:
        resp = gw.get("/metrics")
        assert resp.status == 200
        at, samples = time.time(), render.parse_scrape(resp.body.decode())
        seen = sum(v for n, _, v in samples if n == "modelgate_requests_total")
        if requests is None or seen >= requests or time.monotonic() > deadline:
            return at, samples
        time.sleep(0.05)


def traffic(gw):
    assert [gw.chat(PRO_KEY, body=LARGE).status for _ in range(6)] == [200] * 6
    assert [gw.chat(DEMO_KEY, body=LARGE).status for _ in range(2)] == [200] * 2
    assert gw.chat(DEMO_KEY, body=LARGE).header("x-modelgate-degraded") == "fallback"
    assert [gw.chat(DEMO_KEY, body=LARGE).status for _ in range(2)] == [429] * 2


def test_mg_033_01_dashboard_queries_meet_a_real_scrape(gateways, backend, backend2, redis):
    backend.reset()
    backend2.reset()
    gw = gateways("dashboard", backend_port=backend.port)
    conf = harness.two_models(
        backend, backend2,
        HEAD.format(redis_module=harness.REDIS_MODULE, otlp_module=OTLP_MODULE,
                    redis_port=redis.port, closed=harness.free_port()),
        extra=METRICS)
    conf = conf.replace("ModelGateModel mock-small small",
                        "ModelGateModel mock-small small price=0.15/0.60")
    conf = conf.replace("ModelGateModel mock-large big",
                        "ModelGateModel mock-large big price=2.50/10.00")
    gw.write_conf(conf)
    gw.start()
    traffic(gw)
    first = scrape(gw, requests=11)
    traffic_more = [gw.chat(PRO_KEY, body=LARGE).status for _ in range(4)]
    assert traffic_more == [200] * 4
    assert gw.chat(DEMO_KEY, body=LARGE).status == 429
    time.sleep(1.0)                     # rates need time between scrapes
    last = scrape(gw, requests=16)
    names = {n for n, _, _ in last[1]}

    with open(DASHBOARD) as f:
        dash = json.load(f)
    assert dash["uid"] == "modelgate"
    titles = [p["title"] for p in dash["panels"] if p["type"] != "row"]
    for wanted in ("Requests by tier", "Rejections by limit", "Degradations by action",
                   "Upstream error share (health window)", "Tokens by model and kind",
                   "Spend by tier (currency units per second)"):
        assert wanted in titles
    queries = render.dashboard_queries(DASHBOARD)
    assert len(queries) >= 19
    used = set()
    for title, expr, _ in queries:
        used |= render.metric_names(expr)
    missing = sorted(n for n in used if n not in names)
    assert not missing, "metrics the dashboard uses that a scrape lacks: %s" % missing
    # and each panel has data: every query evaluated over the two scrapes
    empty = [(title, expr) for title, expr, _ in queries
             if not render.series(expr, [first, last])]
    assert not empty, empty
    # spot checks of what the evaluator makes of them
    by_tier = render.series(
        "sum by (tier) (rate(modelgate_requests_total[$__rate_interval]))", [first, last])
    assert {dict(k)["tier"] for k in by_tier} == {"free", "pro"}
    rejected = render.series(
        "sum by (limit) (rate(modelgate_rejections_total[$__rate_interval]))", [first, last])
    assert [dict(k)["limit"] for k in rejected] == ["free-large"]
    # one rejection between the scrapes
    (_, rate), = rejected[(("limit", "free-large"),)]
    assert abs(rate * (last[0] - first[0]) - 1.0) < 1e-6
