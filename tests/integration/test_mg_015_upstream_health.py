"""Upstream health from the answers the gateway forwards: a breaker per
upstream that opens on errors or on the upstream's own 429/503 Retry-After
and closes after a good probe; lower tiers shed first when an upstream is
full; limits that shrink while an upstream is slow; SSE unbuffered."""
import http.client
import re
import socket
import threading
import time

import pytest

import harness
from harness import DEMO_KEY, PRO_KEY

KEYS = harness.QUICKSTART_KEYS
LARGE = b'{"model": "mock-large", "messages": [{"role": "user", "content": "hi there"}]}'


def conf(backend, backend2, big_opts, tiers):
    return harness.two_models(backend, backend2, tiers, big_opts=big_opts)


@pytest.fixture
def mocks(backend, backend2):
    backend.reset()
    backend2.reset()
    yield backend, backend2
    backend.reset()
    backend2.reset()


def chat(gw, key, body=LARGE, timeout=30):
    return harness.request(gw.port, "POST", "/v1/chat/completions", body=body,
                           headers={"X-API-Key": key, "Content-Type": "application/json"},
                           timeout=timeout)


def until(what, predicate, timeout=20.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting for " + what)


def test_mg_015_01_breaker_opens_on_errors_and_closes_after_a_probe(gateways, mocks):
    backend, backend2 = mocks
    gw = gateways("breaker", backend_port=backend.port)
    gw.write_conf(conf(backend, backend2, "breaker=50% breaker_min=4 open=1s", """
        ModelGateTier free 1000/min on_limit=fallback:mock-small
        ModelGateTier pro  1000/min
        """))
    gw.start()
    gw.allow_errors(r"AH01102", r"AH00898")     # mod_proxy on a failing upstream
    backend2.mode(mode="error", status=500)
    assert [chat(gw, PRO_KEY).status for _ in range(4)] == [500] * 4
    assert backend2.count() == 4
    # open: answered by the gateway, the upstream is spared
    resp = chat(gw, PRO_KEY)
    assert resp.status == 503
    assert resp.json["error"]["code"] == "upstream_unavailable"
    assert resp.header("content-type") == "application/json"
    assert 1 <= int(resp.header("retry-after")) <= 1
    assert backend2.count() == 4
    # a tier with a fallback is served by the other model meanwhile
    resp = chat(gw, DEMO_KEY)
    assert resp.status == 200
    assert resp.header("x-modelgate-degraded") == "fallback"
    assert resp.json["model"] == "mock-small"
    # recovery: after `open`, one probe goes through and closes it
    backend2.mode(mode="normal")
    first = until("the probe", lambda: (lambda r: r if r.status == 200 else None)(chat(gw, PRO_KEY)))
    assert first.status == 200
    assert backend2.count() == 5
    assert [chat(gw, PRO_KEY).status for _ in range(3)] == [200] * 3
    assert backend2.count() == 8
    # the module's own lines: one per change of the breaker, with its counts
    log = gw.read_log()
    opened = [l for l in log.splitlines() if "MG00404" in l]
    assert len(opened) == 1
    assert ("upstream 'big': breaker open for 1000 ms: 4 of 4 answers in the "
            "window failed (the last: 500)") in opened[0]
    closed = [l for l in log.splitlines() if "MG00406" in l]
    assert len(closed) == 1
    assert re.search(r"upstream 'big': the probe got 200; breaker closed "
                     r"\(\d+ requests refused while it was not\)", closed[0])


def test_mg_015_02_failed_probe_opens_again(gateways, mocks):
    backend, backend2 = mocks
    gw = gateways("reopen", backend_port=backend.port)
    gw.write_conf(conf(backend, backend2, "breaker=50% breaker_min=2 open=500ms", """
        ModelGateTier free 1000/min
        ModelGateTier pro  1000/min
        """))
    gw.start()
    gw.allow_errors(r"AH01102", r"AH00898")
    backend2.mode(mode="error", status=502)
    assert [chat(gw, PRO_KEY).status for _ in range(2)] == [502, 502]
    assert chat(gw, PRO_KEY).status == 503
    # the probe after 500 ms fails too: open again, for 1 s this time
    until("the probe to reach the upstream", lambda: chat(gw, PRO_KEY) and backend2.count() == 3)
    resp = chat(gw, PRO_KEY)
    assert resp.status == 503
    assert backend2.count() == 3
    reopened = [l for l in gw.read_log().splitlines() if "MG00405" in l]
    assert len(reopened) == 1
    assert "upstream 'big': the probe got 502; breaker open again for 1000 ms" in reopened[0]


def test_mg_015_03_upstream_retry_after_pauses_it(gateways, mocks):
    backend, backend2 = mocks
    gw = gateways("pause", backend_port=backend.port)
    gw.write_conf(conf(backend, backend2, "", """
        ModelGateTier free 1000/min on_limit=fallback:mock-small
        ModelGateTier pro  1000/min
        """))
    gw.start()
    backend2.mode(mode="ratelimit", retry_after=30)
    resp = chat(gw, PRO_KEY)
    assert resp.status == 429                  # the upstream's own answer
    assert resp.header("retry-after") == "30"
    resp = chat(gw, PRO_KEY)
    assert resp.status == 503                  # the gateway holds back
    assert 29 <= int(resp.header("retry-after")) <= 30
    assert backend2.count() == 1
    assert chat(gw, DEMO_KEY).header("x-modelgate-degraded") == "fallback"


def test_mg_015_04_lower_tiers_are_shed_first(gateways, mocks):
    """max_inflight=2 and free's share=50: with one request in flight, free
    callers get 503 upstream_saturated and pro callers still get through."""
    backend, backend2 = mocks
    gw = gateways("shed", backend_port=backend.port)
    gw.write_conf(conf(backend, backend2, "max_inflight=2", """
        ModelGateTier free 1000/min share=50
        ModelGateTier pro  1000/min
        """))
    gw.start()
    backend2.mode(mode="slow", delay_ms=2000)
    slow = []
    t = threading.Thread(target=lambda: slow.append(chat(gw, PRO_KEY)))
    t.start()
    until("the slow request to arrive", lambda: backend2.count() == 1)
    resp = chat(gw, DEMO_KEY)
    assert resp.status == 503
    assert resp.json["error"]["code"] == "upstream_saturated"
    assert resp.header("retry-after") == "1"
    # shed before any limit was charged
    assert resp.header("x-ratelimit-remaining") is None
    # pro may fill the whole cap: one more goes through
    assert chat(gw, PRO_KEY).status == 200
    t.join(30)
    assert slow[0].status == 200
    # nothing in flight: free is served again
    backend2.mode(mode="normal")
    assert chat(gw, DEMO_KEY).status == 200


def test_mg_015_05_limits_shrink_while_the_upstream_is_slow(gateways, mocks):
    backend, backend2 = mocks
    gw = gateways("adapt", backend_port=backend.port)
    gw.write_conf(conf(backend, backend2,
                       "breaker_min=3 degrade_p95=200ms window=2s", """
        ModelGateTier free 1000/min degraded_cost=4
        ModelGateTier pro  1000/min
        """))
    gw.start()
    before = chat(gw, DEMO_KEY)
    assert before.header("x-modelgate-cost-factor") is None
    backend2.mode(mode="slow", delay_ms=300)
    for _ in range(3):
        assert chat(gw, PRO_KEY).status == 200
    backend2.mode(mode="normal")
    a = chat(gw, DEMO_KEY)
    b = chat(gw, DEMO_KEY)
    assert a.header("x-modelgate-cost-factor") == "4"
    assert int(a.header("x-ratelimit-remaining")) - int(b.header("x-ratelimit-remaining")) == 4
    # pro is not adapted
    assert chat(gw, PRO_KEY).header("x-modelgate-cost-factor") is None
    # the slow answers leave the 2 s window: limits are whole again
    time.sleep(2.5)
    c = chat(gw, DEMO_KEY)
    assert c.header("x-modelgate-cost-factor") is None
    d = chat(gw, DEMO_KEY)
    assert int(c.header("x-ratelimit-remaining")) - int(d.header("x-ratelimit-remaining")) == 1


def test_mg_015_06_sse_is_not_buffered(gateways, mocks):
    backend, backend2 = mocks
    gw = gateways("sse", backend_port=backend.port)
    gw.write_conf(conf(backend, backend2, "", """
        ModelGateTier free 1000/min
        ModelGateTier pro  1000/min
        """))
    gw.start()
    backend.mode(stream_chunk_delay_ms=250)
    body = b'{"model": "mock-small", "stream": true, "messages": [{"role": "user", "content": "one two three four five six seven eight"}]}'
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
    t0 = time.monotonic()
    conn.request("POST", "/v1/chat/completions", body=body,
                 headers={"X-API-Key": DEMO_KEY, "Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("content-type").startswith("text/event-stream")
    first = resp.readline()
    t_first = time.monotonic() - t0
    rest = resp.read()
    t_all = time.monotonic() - t0
    conn.close()
    assert first.startswith(b"data: ")
    assert rest.rstrip().endswith(b"data: [DONE]")
    events = (first + rest).count(b"data: ")
    assert events >= 10
    # ten events 250 ms apart: the first arrives long before the last
    assert t_all >= 2.0
    assert t_first < t_all / 2


def test_mg_015_07_option_errors(gateways):
    harness.assert_config_errors(gateways, [
        ("ModelGateUpstream up http://127.0.0.1:9 %s\n" % opts, message)
        for opts, message in [
            ("breaker=150%", "'breaker=150%': a percentage from 0 to 100"),
            ("open=soon", "'open=soon': a duration"),
            ("max_inflight=0", "'max_inflight=0': a number of requests"),
            ("breaker_consecutive=0", "'breaker_consecutive=0': a number of failures in a row"),
            ("colour=red", "unknown option 'colour=red'"),
        ]] + [("ModelGateTier free 1/s share=0\n", "share=P is a percentage from 1 to 100")])


# mod_proxy's lines for a forward to a closed port, and for a backend that
# is slow or hangs up.
CONNECT_REFUSED = (r"AH00957", r"AH01114")
READ_FAILED = (r"AH01102", r"AH00898")


def test_mg_015_08_dead_upstream_opens_after_five_failures(gateways, backend):
    """Issue 10: `breaker=50% breaker_min=10` with a window full of
    successes let 7,320 forwards reach a dead server (two error lines
    each) before the share reached 50 %.  Five failures in a row (the
    default breaker_consecutive) open it now: exactly five forwards reach
    the dead port, whatever the window holds -- the health is in shared
    memory, so five for the whole server, not per process.  Without the
    run, this window needs 20 failures."""
    doomed = harness.MockBackend("doomed")
    try:
        gw = gateways("dead", backend_port=backend.port)
        gw.write_conf(conf(backend, doomed, "breaker=50% breaker_min=10", """
            ModelGateTier free 1000/min
            ModelGateTier pro  1000/min
            """))
        gw.start()
        gw.allow_errors(*CONNECT_REFUSED)
        assert [chat(gw, PRO_KEY).status for _ in range(20)] == [200] * 20
    finally:
        doomed.stop()
    answers = [chat(gw, PRO_KEY) for _ in range(10)]
    # mod_proxy's own 503 for a refused connection, five times ...
    for resp in answers[:5]:
        assert resp.status == 503
        assert resp.json["error"]["code"] == "upstream_unavailable"
        assert resp.header("retry-after") is None
    # ... then the gateway's, with Retry-After: the dead port is spared
    for resp in answers[5:]:
        assert resp.status == 503
        assert resp.json["error"]["code"] == "upstream_unavailable"
        assert resp.header("retry-after") == "10"
    log = gw.read_log()
    assert log.count("AH00957") == 5
    assert log.count("AH01114") == 5
    # one line of the module's own for the whole outage, with the counts
    opened = [l for l in log.splitlines() if "MG00404" in l]
    assert len(opened) == 1
    assert ("upstream 'big': breaker open for 10000 ms after 5 failures in a "
            "row (the last: 503); 5 of 25 answers in the window failed") in opened[0]


def test_mg_015_09_breaker_consecutive_option(gateways, backend):
    """breaker_consecutive=N sets the run; breaker=off turns it off with
    the share unless breaker_consecutive= is given too."""
    doomed = harness.MockBackend("doomed")
    doomed.stop()
    for i, (opts, forwarded) in enumerate([
            ("breaker_consecutive=2", 2),
            ("breaker=off breaker_consecutive=3", 3),
            ("breaker=off", 8),
            ("breaker_consecutive=off breaker_min=100", 8)]):
        gw = gateways("opt%d" % i, backend_port=backend.port)
        gw.write_conf(conf(backend, doomed, opts, """
            ModelGateTier free 1000/min
            ModelGateTier pro  1000/min
            """))
        gw.start()
        gw.allow_errors(*CONNECT_REFUSED)
        answers = [chat(gw, PRO_KEY) for _ in range(8)]
        gw.stop()
        assert [r.header("retry-after") is None for r in answers] == \
            [True] * forwarded + [False] * (8 - forwarded), opts
        assert gw.read_log().count("AH00957") == forwarded, opts


class HangUp:
    """A backend that reads the request and closes the connection without
    an answer: mod_proxy's 502 that is no timeout."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                conn.shutdown(socket.SHUT_RDWR)

    def stop(self):
        self.sock.close()


def test_mg_015_10_slow_upstream_is_504_timeout(gateways, mocks):
    """Issue 10: a backend slower than ProxyTimeout got 502
    upstream_unavailable (mod_proxy_http's status for a read timeout);
    README and ARCHITECTURE promise 504 upstream_timeout.  A connection the
    backend breaks stays 502, a refused one stays mod_proxy's 503."""
    backend, backend2 = mocks
    gw = gateways("timeout", backend_port=backend.port)
    gw.write_conf(conf(backend, backend2, "", """
        ModelGateTier free 1000/min
        ModelGateTier pro  1000/min
        """) + "ProxyTimeout 1\n")
    gw.start()
    gw.allow_errors(*READ_FAILED)
    backend2.mode(mode="slow", delay_ms=3000)
    resp = chat(gw, PRO_KEY)
    assert resp.status == 504
    assert resp.header("content-type") == "application/json"
    error = dict(resp.json["error"])
    assert len(error.pop("trace_id")) == 32         # issue 14: the request's trace
    assert error == {"message": "The model server did not answer in time.",
                     "type": "server_error", "param": None,
                     "code": "upstream_timeout"}
    assert backend2.count() == 1
    # the access log says 504 too
    assert gw.access_lines(1)[-1].split('"')[2].split()[0] == "504"

    hangup = HangUp()
    try:
        gw2 = gateways("hangup", backend_port=backend.port)
        dead = harness.free_port()
        gw2.write_conf(harness.two_models(backend, hangup, """
            ModelGateTier free 1000/min
            ModelGateTier pro  1000/min
            """, extra="ModelGateUpstream dead http://127.0.0.1:%d\n"
                       "ModelGateModel mock-dead dead\nProxyTimeout 1\n" % dead))
        gw2.start()
        gw2.allow_errors(*READ_FAILED, *CONNECT_REFUSED)
        resp = chat(gw2, PRO_KEY)
        assert resp.status == 502
        assert resp.json["error"]["code"] == "upstream_unavailable"
        resp = chat(gw2, PRO_KEY, body=LARGE.replace(b"mock-large", b"mock-dead"))
        assert resp.status == 503
        assert resp.json["error"]["code"] == "upstream_unavailable"
    finally:
        hangup.stop()
