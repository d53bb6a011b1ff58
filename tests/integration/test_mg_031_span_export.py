"""OTLP/HTTP span export with tail sampling (issue 14, plugins/otlp): a
collector on loopback receives exactly the spans of every refused request
of a scripted mix, and of the admitted ones none at sample=0, all at
sample=1; a collector that is down costs the requests nothing and shows as
dropped spans in the metrics."""
import http.server
import json
import os
import re
import threading
import time

import pytest

import harness
from harness import DEMO_KEY, PRO_KEY, QUICKSTART_KEYS
from test_mg_026_observability import promtool_check

OTLP_MODULE = os.path.join(os.path.dirname(harness.MODULE), "mod_modelgate_otlp.so")

pytestmark = pytest.mark.skipif(not os.path.exists(OTLP_MODULE),
                                reason="mod_modelgate_otlp.so not built (no libcurl)")

FREE_QUOTA = 5
CONF = """
LoadModule modelgate_otlp_module "{otlp}"
ModelGateTier free {quota}/min
ModelGateTier pro  1000/min tokens=100000/min
ModelGateKeyFile "{keys}"
ModelGateUpstream small http://127.0.0.1:{backend}
ModelGateModel mock-small small
ModelGateTraceExport http://127.0.0.1:{collector}/v1/traces {opts}
<Location "/v1/">
    Require all granted
    ModelGate On
    ModelGateRoute small
</Location>
<Location "/metrics">
    SetHandler modelgate-metrics
    Require all granted
</Location>
"""

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric(gw, name, **want):
    resp = gw.get("/metrics")
    assert resp.status == 200
    value = 0.0
    for line in resp.body.decode().splitlines():
        m = SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        labels = dict(LABEL.findall(m.group(3) or ""))
        if all(labels.get(k) == v for k, v in want.items()):
            value += float(m.group(4))
    return value


def wait_metric(gw, name, expected, timeout=20.0, **want):
    """The metric once it reaches `expected` (spans are decided after the
    answer, in log_transaction, and sent by a thread)."""
    deadline = time.monotonic() + timeout
    while True:
        value = metric(gw, name, **want)
        if value >= expected or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


class Collector:
    """An OTLP/HTTP collector on loopback: keeps every span it is sent."""

    def __init__(self):
        self.spans = []
        self.headers = []
        self.posts = 0
        self.bad = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    doc = json.loads(body)
                    spans = [s for rs in doc["resourceSpans"]
                             for ss in rs["scopeSpans"] for s in ss["spans"]]
                    with outer.lock:
                        outer.posts += 1
                        outer.spans.extend(spans)
                        outer.headers.append(dict(self.headers.items()))
                    if self.path != "/v1/traces" or \
                            self.headers["Content-Type"] != "application/json":
                        outer.bad.append((self.path, self.headers["Content-Type"]))
                except Exception as e:  # pragma: no cover - reported below
                    outer.bad.append(repr(e))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def count(self):
        with self.lock:
            return len(self.spans)


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.stop()


def gateway(gateways, backend, collector_port, opts, mpm="event"):
    backend.reset()
    gw = gateways("otlp-" + mpm, backend_port=backend.port, mpm=mpm)
    gw.write_conf(CONF.format(otlp=OTLP_MODULE, quota=FREE_QUOTA, keys=QUICKSTART_KEYS,
                              backend=backend.port, collector=collector_port, opts=opts))
    return gw.start()


def run_mix(gw, admitted_pro=8, free=12):
    """`free` requests of the free key (FREE_QUOTA admitted, the rest
    429) and `admitted_pro` of the pro key; returns the trace ids of the
    200s and of the 429s (from their error bodies)."""
    ok, refused = [], []
    for key, n in ((DEMO_KEY, free), (PRO_KEY, admitted_pro)):
        for _ in range(n):
            resp = gw.chat(key, body=harness.CHAT)
            if resp.status == 429:
                refused.append(resp.json["error"]["trace_id"])
            else:
                assert resp.status == 200, resp
                ok.append(key)
    assert len(refused) == free - FREE_QUOTA
    assert len(ok) == FREE_QUOTA + admitted_pro
    return ok, refused


def attrs(span):
    out = {}
    for a in span["attributes"]:
        v = a["value"]
        out[a["key"]] = v.get("stringValue", v.get("intValue"))
    return out


def test_mg_031_01_sample_0_exports_every_429_and_no_200(gateways, backend, collector):
    gw = gateway(gateways, backend, collector.port,
                              "sample=0 interval=100 timeout=2000")
    ok, refused = run_mix(gw)
    decided = len(ok) + len(refused)
    # every request decided, the 429s sent
    assert wait_metric(gw, "modelgate_otlp_spans_total", decided) == decided
    assert wait_metric(gw, "modelgate_otlp_spans_exported_total", len(refused)) == len(refused)
    assert metric(gw, "modelgate_otlp_spans_total", sampling="kept") == len(refused)
    assert metric(gw, "modelgate_otlp_spans_total", sampling="not_sampled") == len(ok)
    assert metric(gw, "modelgate_otlp_spans_total", sampling="sampled") == 0
    assert metric(gw, "modelgate_otlp_spans_dropped_total") == 0
    assert collector.count() == len(refused)
    assert not collector.bad
    spans = collector.spans
    assert sorted(s["traceId"] for s in spans) == sorted(refused)
    for s in spans:
        a = attrs(s)
        assert a["http.response.status_code"] == "429"
        assert a["modelgate.decision"] == "rejected"
        assert a["modelgate.limit"] == "free"
        assert a["modelgate.tier"] == "free"
        assert a["modelgate.tenant"] == "acme"
        assert a["modelgate.route"] == "small"
        assert a["modelgate.sampling"] == "kept"
        assert "modelgate.upstream.status_code" not in a
        assert re.fullmatch(r"[0-9a-f]{16}", s["spanId"])
        assert "parentSpanId" not in s
        assert s["kind"] == 2
        assert int(s["endTimeUnixNano"]) >= int(s["startTimeUnixNano"]) > 0


def test_mg_031_02_sample_1_exports_all(gateways, backend, collector):
    gw = gateway(gateways, backend, collector.port,
                 'sample=1 interval=100 batch=4 "header=X-Collector-Key: s3cret"')
    parent = "00f067aa0ba902b7"
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    ok, refused = run_mix(gw)
    # one more with the client's trace: the span continues it
    resp = gw.chat(PRO_KEY, body=harness.CHAT,
                   extra={"traceparent": "00-%s-%s-01" % (trace, parent)})
    assert resp.status == 200
    total = len(ok) + len(refused) + 1
    assert wait_metric(gw, "modelgate_otlp_spans_exported_total", total) == total
    assert metric(gw, "modelgate_otlp_spans_total", sampling="kept") == len(refused)
    assert metric(gw, "modelgate_otlp_spans_total", sampling="sampled") == total - len(refused)
    assert metric(gw, "modelgate_otlp_spans_total", sampling="not_sampled") == 0
    # batches of at most 4
    assert metric(gw, "modelgate_otlp_export_requests_total", result="ok") >= total / 4
    assert collector.count() == total
    # every batch carried the configured header; it is never logged
    assert collector.headers and all(h.get("X-Collector-Key") == "s3cret"
                                     for h in collector.headers)
    assert "s3cret" not in gw.read_log()
    promtool_check(gw.get("/metrics").body.decode(), None)
    by_status = {}
    for s in collector.spans:
        a = attrs(s)
        by_status.setdefault(a["http.response.status_code"], []).append((s, a))
    assert len(by_status["429"]) == len(refused)
    assert len(by_status["200"]) == total - len(refused)
    for s, a in by_status["200"]:
        assert a["modelgate.decision"] == "allowed"
        assert a["modelgate.upstream.status_code"] == "200"
        assert a["modelgate.model"] == "mock-small"
        assert a["modelgate.sampling"] == "sampled"
    pro = [(s, a) for s, a in by_status["200"] if a["modelgate.tier"] == "pro"]
    assert len(pro) == 9
    # the pro tier has a token layer: the answer's usage is on its spans
    for s, a in pro:
        assert int(a["gen_ai.usage.input_tokens"]) > 0
        assert int(a["gen_ai.usage.output_tokens"]) > 0
    continued = [s for s in collector.spans if s["traceId"] == trace]
    assert len(continued) == 1
    assert continued[0]["parentSpanId"] == parent
    assert continued[0]["spanId"] != parent
    # the model server saw the gateway's span as its parent
    seen = [r["headers"].get("traceparent")
            for r in backend.requests()]
    assert "00-%s-%s-01" % (trace, continued[0]["spanId"]) in seen


def test_mg_031_03_collector_down_costs_nothing(gateways, backend):
    closed = harness.free_port()        # nothing listens there
    gw = gateway(gateways, backend, closed, "sample=1 interval=50 timeout=500",
                 mpm="prefork")
    ok, refused = run_mix(gw, admitted_pro=20, free=10)
    total = len(ok) + len(refused)
    # every request answered (run_mix checked each status); each span
    # decided, and lost at the collector, counted
    assert wait_metric(gw, "modelgate_otlp_spans_dropped_total", total,
                       reason="export_failed") == total
    assert metric(gw, "modelgate_otlp_spans_exported_total") == 0
    assert metric(gw, "modelgate_otlp_spans_dropped_total", reason="queue_full") == 0
    assert metric(gw, "modelgate_otlp_export_requests_total", result="error") >= 1
    assert re.search(r"MGO00004: span export to http://127\.0\.0\.1:%d/v1/traces failed"
                     % closed, gw.read_log())


def test_mg_031_04_config_errors(gateways, backend):
    bad = [
        ("ModelGateTraceExport ftp://x/v1/traces", "is not an http:// or https:// URL"),
        ("ModelGateTraceExport http://x/ sample=2", "sample=2: a share from 0 to 1"),
        ("ModelGateTraceExport http://x/ queue=0", "queue=0: out of range"),
        ("ModelGateTraceExport http://x/ colour=red", "unknown option 'colour'"),
        ("ModelGateTraceExport http://x/ header=novalue", "header= must be NAME:VALUE"),
        ("ModelGateTraceExport http://x/ header=:v", "header= must be NAME:VALUE"),
    ]
    harness.assert_config_errors(
        gateways, [('LoadModule modelgate_otlp_module "%s"\n%s\n' % (OTLP_MODULE, line),
                    message) for line, message in bad], name="otlp-conf")


def test_mg_031_05_observability_example_exports(gateways, backend, backend2, collector):
    """conf-examples/observability.conf with -D MG_OTLP: the degraded, the
    429 and the 401 are sent whatever the rate; of the others, the share
    sample=0.1 picks by trace id (counted, not guessed)."""
    backend.reset()
    backend2.reset()
    gw = gateways("observability-otlp", backend_port=backend.port)
    gw.backend2_port = backend2.port
    env = gw.env
    gw.env = lambda: dict(env(), MG_OTLP_MODULE=OTLP_MODULE,
                          MG_OTLP_URL="http://127.0.0.1:%d/v1/traces" % collector.port)
    gw.defines = lambda: ["-D", "MG_OTLP"]
    gw.use_conf(os.path.join(harness.CONF_EXAMPLES, "observability.conf"))
    gw.start()
    large = {"model": "large-model", "messages": [{"role": "user", "content": "hi"}]}
    # 0xce929d0e0e4736 / 2^56 is about 0.81: above 0.1, never sampled
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    tp = {"traceparent": "00-%s-00f067aa0ba902b7-01" % trace}
    assert gw.chat(PRO_KEY, body=large, extra=tp).status == 200
    assert [gw.chat(DEMO_KEY, body=large).status for _ in range(3)] == [200] * 3
    assert gw.chat(DEMO_KEY, body=large).header("x-modelgate-degraded") == "fallback"
    assert gw.chat(DEMO_KEY, body=large).status == 429
    assert gw.chat(body=large).status == 401
    assert wait_metric(gw, "modelgate_otlp_spans_total", 7) == 7
    assert metric(gw, "modelgate_otlp_spans_total", sampling="kept") == 3
    sampled = metric(gw, "modelgate_otlp_spans_total", sampling="sampled")
    assert wait_metric(gw, "modelgate_otlp_spans_exported_total", 3 + sampled) == 3 + sampled
    assert collector.count() == 3 + sampled
    kept = sorted(attrs(s)["modelgate.decision"] for s in collector.spans
                  if attrs(s)["modelgate.sampling"] == "kept")
    assert kept == ["degraded", "rejected", "unauthenticated"]
    assert trace not in [s["traceId"] for s in collector.spans]
    degraded = [attrs(s) for s in collector.spans
                if attrs(s)["modelgate.decision"] == "degraded"][0]
    assert degraded["modelgate.degrade_action"] == "fallback"
    assert degraded["modelgate.model"] == "small-model"
    assert degraded["modelgate.route"] == "small"
    assert degraded["modelgate.upstream.status_code"] == "200"


def test_mg_031_06_graceful_restart_keeps_exporting_and_counting(gateways, backend,
                                                                 collector):
    gw = gateway(gateways, backend, collector.port, "sample=0 interval=50", mpm="prefork")
    ok, refused = run_mix(gw, admitted_pro=2, free=7)
    assert wait_metric(gw, "modelgate_otlp_spans_exported_total", 2) == 2
    gw.graceful()
    # new children, new exporter threads; the counters are kept
    resp = [gw.chat(DEMO_KEY, body=harness.CHAT).status for _ in range(3)]
    assert resp == [429] * 3
    assert wait_metric(gw, "modelgate_otlp_spans_exported_total", 5) == 5
    assert metric(gw, "modelgate_otlp_spans_total", sampling="kept") == 5
    assert metric(gw, "modelgate_otlp_spans_total", sampling="not_sampled") == 7
    assert collector.count() == 5
