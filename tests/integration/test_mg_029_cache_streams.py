"""The response cache, continued (issue 12): streamed answers captured and
replayed byte for byte, identical requests in flight answered by one
forward (ModelGateCacheLock), stale-if-error on an upstream's 5xx, purge by
model.  Helpers from test_mg_024_cache."""
import http.client
import json
import re
import socket
import threading
import time

import pytest

import harness
from harness import DEMO_KEY, OTHER_KEY
import test_mg_024_cache as base
from test_mg_024_cache import body, chat, conf


@pytest.fixture
def cached(gateways, backend, backend2):
    backend.reset()
    backend2.reset()

    def start(text):
        gw = gateways("cache", backend_port=backend.port)
        gw.write_conf(text)
        return gw.start()
    return start


def sse_events(data):
    """The events of an SSE body; every one ends with a blank line."""
    assert data.endswith(b"\n\n")
    return data[:-2].split(b"\n\n")


def test_mg_029_01_stream_replayed_byte_for_byte(cached, backend, backend2):
    gw = cached(conf(backend, backend2))
    streamed = body("tell me a story", stream=True)
    first = chat(gw, streamed)
    assert first.status == 200
    assert first.header("content-type").startswith("text/event-stream")
    # the stream went out as it came: its Cache-Status left before the end
    assert first.header("cache-status") == "modelgate; fwd=miss"
    events = sse_events(first.body)
    assert events[-1] == b"data: [DONE]" and len(events) >= 3
    again = chat(gw, streamed)
    assert again.status == 200
    assert re.fullmatch(r"modelgate; hit; ttl=\d+", again.header("cache-status"))
    assert again.header("content-type") == first.header("content-type")
    assert again.body == first.body            # byte for byte, same ids
    assert again.header("x-mock-server") is None
    assert backend.count() == 1
    assert base.notes(gw, 2) == ["hit", "stored"]


def test_mg_029_02_stream_and_json_never_share_an_entry(cached, backend, backend2):
    """`stream` is a part of the key: a JSON request for a stream-cached
    answer misses, and the other way round (no conversion)."""
    gw = cached(conf(backend, backend2))
    assert chat(gw, body("a", stream=True)).header("cache-status") == "modelgate; fwd=miss"
    r = chat(gw, body("a"))
    assert r.header("cache-status") == "modelgate; fwd=miss; stored"
    assert r.header("content-type") == "application/json"
    assert chat(gw, body("b")).header("cache-status") == "modelgate; fwd=miss; stored"
    r = chat(gw, body("b", stream=True))
    assert r.header("cache-status") == "modelgate; fwd=miss"
    assert r.header("content-type").startswith("text/event-stream")
    # each is a hit for its own kind
    for data, ctype in ((body("a", stream=True), "text/event-stream"),
                        (body("a"), "application/json"),
                        (body("b", stream=True), "text/event-stream"),
                        (body("b"), "application/json")):
        r = chat(gw, data)
        assert r.header("cache-status").startswith("modelgate; hit"), data
        assert r.header("content-type").startswith(ctype)
    assert backend.count() == 4


def test_mg_029_03_stream_over_the_object_limit(cached, backend, backend2):
    """A stream longer than ModelGateCacheMaxObject reaches its client whole
    and is not stored."""
    gw = cached(conf(backend, backend2, server="ModelGateCache shmcb\n"
                                               "ModelGateCacheMaxObject 200"))
    streamed = body("a long story " * 20, stream=True)
    for _ in range(2):
        r = chat(gw, streamed)
        assert r.status == 200 and len(r.body) > 200
        assert sse_events(r.body)[-1] == b"data: [DONE]"
        assert r.header("cache-status") == "modelgate; fwd=miss"
    assert backend.count() == 2
    assert base.notes(gw, 2) == ["miss", "miss"]
    assert len(re.findall(r"\[modelgate_cache:debug\].*over ModelGateCacheMaxObject",
                          gw.read_log())) == 2


def concurrently(gw, n, data):
    """n identical requests at once; their answers."""
    out = [None] * n
    go = threading.Barrier(n)

    def one(i):
        go.wait()
        out[i] = chat(gw, data)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


N = 6


def test_mg_029_04_identical_requests_in_flight_collapse(cached, backend, backend2):
    """ModelGateCacheLock: N identical requests at once to a slow model
    server: it sees exactly one, the others wait and get its answer."""
    gw = cached(conf(backend, backend2, "ModelGateCacheLock On\n"
                     "ModelGateCacheLockWait 30000"))
    backend.mode(mode="slow", delay_ms=1500)
    answers = concurrently(gw, N, body("slow question"))
    assert [r.status for r in answers] == [200] * N
    statuses = sorted(r.header("cache-status") for r in answers)
    assert statuses[0] == "modelgate; fwd=miss; stored", statuses
    for s in statuses[1:]:
        assert re.fullmatch(r"modelgate; hit; ttl=\d+(; collapsed)?", s), statuses
    assert len({r.body for r in answers}) == 1
    assert backend.count() == 1
    # nothing left behind: the next one is a plain hit, the lock free
    assert chat(gw, body("slow question")).header("cache-status").startswith(
        "modelgate; hit")
    backend.mode()
    # a streamed one too
    backend.mode(stream_chunk_delay_ms=300)
    answers = concurrently(gw, N, body("slow stream", stream=True))
    assert [r.status for r in answers] == [200] * N
    assert len({r.body for r in answers}) == 1
    assert backend.count() == 2
    backend.reset()


def test_mg_029_05_without_the_lock_each_forwards(cached, backend, backend2):
    """The same burst without ModelGateCacheLock: every request reaches the
    model server (the lock is off by default)."""
    gw = cached(conf(backend, backend2))
    backend.mode(mode="slow", delay_ms=1500)
    answers = concurrently(gw, N, body("slow question"))
    assert [r.status for r in answers] == [200] * N
    assert backend.count() == N
    backend.reset()


def test_mg_029_06_the_wait_is_bounded(cached, backend, backend2):
    """Past ModelGateCacheLockWait a waiting request forwards itself."""
    gw = cached(conf(backend, backend2, "ModelGateCacheLock On\n"
                     "ModelGateCacheLockWait 50"))
    backend.mode(mode="slow", delay_ms=2000)
    answers = concurrently(gw, 3, body("slow question"))
    assert [r.status for r in answers] == [200] * 3
    assert [r.header("cache-status") for r in answers] == \
        ["modelgate; fwd=miss; stored"] * 3
    assert backend.count() == 3
    backend.reset()


def test_mg_029_07_stale_if_error_on_an_upstream_5xx(cached, backend, backend2):
    """An expired entry within ModelGateCacheStaleIfError answers in place
    of the upstream's 5xx (Cache-Status: fwd=miss; fwd-status=500, a
    negative ttl); the upstream's health still sees the 500s: after two in
    a row its breaker opens and the next request never reaches it."""
    gw = cached(conf(backend, backend2, "ModelGateCacheTTL 1\n"
                     "ModelGateCacheStaleIfError 60",
                     big_opts="breaker=off breaker_consecutive=2 open=60s"))
    large = body("kept", model="mock-large")
    first = chat(gw, large)
    assert first.header("cache-status") == "modelgate; fwd=miss; stored"
    backend2.mode(mode="error", status=500)
    r = chat(gw, large)
    while r.header("cache-status").startswith("modelgate; hit; ttl="):
        time.sleep(0.1)
        r = chat(gw, large)
    assert backend2.count() == 2
    for i in range(2):
        assert r.status == 200, r.body
        assert re.fullmatch(r"modelgate; fwd=miss; fwd-status=500; ttl=-\d+",
                            r.header("cache-status"))
        assert r.header("x-modelgate-degraded") == "stale"
        assert r.header("content-type") == "application/json"
        assert r.body == first.body
        assert r.header("x-mock-server") is None     # nothing of the 500's
        assert int(r.header("age")) >= 1
        if i == 0:
            r = chat(gw, large)
    assert backend2.count() == 3
    # two 500s in a row: the breaker is open, the stale answer without it
    r = chat(gw, large)
    assert r.status == 200 and r.header("cache-status") == "modelgate; hit; stale"
    assert backend2.count() == 3
    # a request without a stale entry: the open breaker's 503
    assert chat(gw, body("never stored", model="mock-large")).status == 503
    assert len(re.findall(r"MGC00017: upstream answered 500: a stale answer",
                          gw.read_log())) == 2
    backend2.reset()


def test_mg_029_08_stale_if_error_off_keeps_the_5xx(cached, backend, backend2):
    gw = cached(conf(backend, backend2, "ModelGateCacheTTL 1"))
    assert chat(gw, body()).header("cache-status") == "modelgate; fwd=miss; stored"
    backend.mode(mode="error", status=502)
    r = chat(gw, body())
    while r.status == 200:
        time.sleep(0.1)
        r = chat(gw, body())
    assert r.status == 502
    assert r.header("cache-status") == "modelgate; fwd=miss"
    assert r.header("x-modelgate-degraded") is None
    backend.reset()


def test_mg_029_09_purge_a_model(cached, backend, backend2):
    """DELETE ?model=NAME: that model's answers miss for every tenant, the
    other model's still hit."""
    gw = cached(conf(backend, backend2, server="ModelGateCache shmcb\n" + base.STATUS))
    asked = [(key, model) for key in (DEMO_KEY, OTHER_KEY)
             for model in ("mock-small", "mock-large")]
    for key, model in asked:
        assert chat(gw, body(model=model), key=key).header("cache-status") == \
            "modelgate; fwd=miss; stored"
        assert chat(gw, body(model=model), key=key).header("cache-status").startswith(
            "modelgate; hit")
    r = base.status(gw, "DELETE", "?model=mock-small")
    assert r.status == 200 and r.body.decode().startswith("Purged: model mock-small\n")
    for key, model in asked:
        want = "modelgate; fwd=miss; stored" if model == "mock-small" else "modelgate; hit"
        assert chat(gw, body(model=model), key=key).header("cache-status").startswith(want)
    assert backend.count() == 4 and backend2.count() == 2
    assert base.stats(gw)["Purges"] == "1"
    assert base.status(gw, "DELETE", "?model=").status == 400


def test_mg_029_10_lock_config_errors(gateways, backend, backend2):
    harness.assert_config_errors(gateways, [
        (conf(backend, backend2, "ModelGateCacheLockWait 0"),
         "ModelGateCacheLockWait: '0' must be a number of milliseconds from 1 to 600000"),
        (conf(backend, backend2, "ModelGateCacheLockPath /tmp"),
         "ModelGateCacheLockPath not allowed in <Location> context"),
    ])


def test_mg_029_11_stale_if_error_on_mod_proxys_own_failure(cached, backend, backend2):
    """mod_proxy gives up (ProxyTimeout: the core's 504) and httpd answers
    with its error response: the stale answer takes its place too, with
    the gate's own headers kept; the core's error log line stays."""
    gw = cached(conf(backend, backend2, "ModelGateCacheTTL 1\n"
                     "ModelGateCacheStaleIfError 60",
                     server="ModelGateCache shmcb\nProxyTimeout 1\n"))
    gw.allow_errors(r"AH01102", r"AH00898", r"AH01110")   # mod_proxy's timeout
    first = chat(gw, body())
    assert first.header("cache-status") == "modelgate; fwd=miss; stored"
    backend.mode(mode="slow", delay_ms=2500)
    r = chat(gw, body())
    while r.header("cache-status").startswith("modelgate; hit; ttl="):
        time.sleep(0.1)
        r = chat(gw, body())
    assert r.status == 200
    assert re.fullmatch(r"modelgate; fwd=miss; fwd-status=504; ttl=-\d+",
                        r.header("cache-status"))
    assert r.header("x-modelgate-degraded") == "stale"
    assert r.header("content-type") == "application/json"
    assert r.body == first.body
    assert r.header("x-ratelimit-remaining") is not None    # the gate's
    # without a stale entry: the 504 as before
    r = chat(gw, body("never stored"))
    assert r.status == 504 and r.json["error"]["code"] == "upstream_timeout"
    assert backend.count() == 3
    backend.reset()


def test_mg_029_12_purge_reaches_threads_that_remember_the_generation(
        cached, backend, backend2):
    """Each thread keeps the last tenant's and model's purge generation it
    read; a purge on this host must reach every one of them at once: after
    many hits of one tenant and model (threads remember them), the first
    request after a purge of either is a miss."""
    gw = cached(conf(backend, backend2, server="ModelGateCache shmcb\n" + base.STATUS))
    for purge in ("?tenant=acme", "?model=mock-small"):
        assert chat(gw, body(purge)).header("cache-status") == "modelgate; fwd=miss; stored"
        for _ in range(30):
            assert chat(gw, body(purge)).header("cache-status").startswith("modelgate; hit")
        assert base.status(gw, "DELETE", purge).status == 200
        assert chat(gw, body(purge)).header("cache-status") == "modelgate; fwd=miss; stored"
    assert backend.count() == 4


def test_mg_029_13_a_stream_is_never_held_back(cached, backend, backend2):
    """A miss's stream reaches its client as it comes: the mock sends its
    events a second apart (four of them here, [DONE] 3 s or more after the
    first), and the client gets the first one at least a second before
    [DONE] -- a cache that held the stream back to store it would write it
    all at once, at the end.  (One-sided: a loaded machine only widens the
    gap.)  Then it is stored whole."""
    gw = cached(conf(backend, backend2))
    backend.mode(stream_chunk_delay_ms=1000)
    streamed = body("three words here", stream=True, max_tokens=3)
    first_at = done_at = None
    got = b""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=60) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"X-API-Key: " + DEMO_KEY.encode() + b"\r\n"
                  b"Content-Type: application/json\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(streamed) + streamed)
        while True:
            data = s.recv(65536)
            if not data:
                break
            got += data
            if first_at is None and b"data: {" in got:
                first_at = time.monotonic()
            if done_at is None and b"data: [DONE]" in got:
                done_at = time.monotonic()
    assert got.startswith(b"HTTP/1.1 200 ")
    assert b"data: [DONE]\n\n" in got
    assert done_at - first_at >= 1.0
    backend.mode()
    again = chat(gw, streamed)
    assert again.header("cache-status").startswith("modelgate; hit")
    assert again.body.endswith(b"data: [DONE]\n\n")
    assert got.replace(b"\r\n", b"").count(b"data: ") == again.body.count(b"data: ")
    assert backend.count() == 1


class BrokenUpstream:
    """A model server that answers 200 and closes its connection before
    the answer's end: mid-body (a JSON answer shorter than its
    Content-Length) or mid-stream (chunked events without the last
    chunk).  What mod_proxy makes of it is an error bucket and EOS."""

    def __init__(self, stream):
        self.stream = stream
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def one(self, c):
        data = b""
        while b"\r\n\r\n" not in data:
            more = c.recv(65536)
            if not more:
                c.close()
                return
            data += more
        head, rest = data.split(b"\r\n\r\n", 1)
        n = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        while len(rest) < n:
            rest += c.recv(65536)
        self.hits += 1
        if self.stream:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            ev = b'data: {"id":"x","choices":[{"delta":{"content":"half"}}]}\n\n'
            c.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
            time.sleep(0.2)
        else:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 400\r\n\r\n" + b'{"id":"x","choices":[')
            time.sleep(0.2)
        c.close()

    def stop(self):
        self.sock.close()


def read_broken(gw, data):
    """POST; the status and what arrived (an answer cut short raises in
    http.client: what came before is kept)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request("POST", "/v1/chat/completions", body=data, headers={
            "X-API-Key": DEMO_KEY, "Content-Type": "application/json"})
        resp = conn.getresponse()
        try:
            got = resp.read()
        except http.client.IncompleteRead as e:
            got = e.partial
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), got
    finally:
        conn.close()


@pytest.mark.parametrize("stream", [False, True])
def test_mg_029_14_an_answer_cut_short_is_never_stored(cached, backend, backend2, stream):
    """The model server closes its connection mid-answer: mod_proxy ends
    the client's answer with an error (the client sees it cut short).
    That half answer must not be stored: the next identical request goes
    to the model server again, never gets the half as a complete hit."""
    up = BrokenUpstream(stream)
    try:
        gw = cached(conf(up, backend2))
        gw.allow_errors(r"AH01110", r"AH01102", r"AH00130", r"AH02609")
        data = body("cut short", stream=True) if stream else body("cut short")
        for _ in range(2):
            status, headers, got = read_broken(gw, data)
            assert not (headers.get("cache-status") or "").startswith("modelgate; hit"), \
                (status, headers, got)
        assert up.hits == 2
        assert base.notes(gw, 2) == ["miss", "miss"]
    finally:
        up.stop()


def test_mg_029_15_include_usage_the_gateway_added_is_not_the_clients(
        cached, backend, backend2):
    """With token limits the gateway adds stream_options.include_usage to a
    stream's body and takes the usage-only event out of what the client
    gets.  A client that asked for include_usage itself sends the very
    body the gateway made of the other's: it must get its usage event,
    never the other's answer without it -- nor the other way round."""
    gw = cached(conf(backend, backend2, tiers="""
        ModelGateTier free 100/min tokens=100000/min
        ModelGateTier pro  100/min tokens=100000/min
        """))
    plain = body("usage please", stream=True)
    asks = body("usage please", stream=True, stream_options={"include_usage": True})
    a = chat(gw, plain)
    assert a.status == 200 and b'"usage"' not in a.body
    b = chat(gw, asks)
    assert b.status == 200
    assert b'"usage": {' in b.body or b'"usage":{' in b.body, b.body
    # each is a hit for its own kind, byte for byte
    assert chat(gw, plain).body == a.body
    assert chat(gw, asks).body == b.body
    # and the other order
    plain2 = body("usage again", stream=True)
    asks2 = body("usage again", stream=True, stream_options={"include_usage": True})
    b2 = chat(gw, asks2)
    assert b'"usage"' in b2.body
    a2 = chat(gw, plain2)
    assert b'"usage"' not in a2.body, a2.body
    assert backend.count() == 4
