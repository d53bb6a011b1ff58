"""Forwarding through mod_proxy: what the client sees when the model server
is down, failing or limiting, streaming, and that connections are reused."""
import http.client
import os

import harness
from harness import DEMO_KEY, OTHER_KEY

PROXY_CONNECT_ERRORS = (r"AH00957", r"AH01114", r"AH00959", r"AH00940", r"AH00898",
                        r"AH01102", r"AH01084")


def test_mg_003_01_upstream_down_is_json(gateways):
    gw = gateways("down", backend_port=harness.free_port())
    gw.use_conf(os.path.join(harness.CONF_EXAMPLES, "quickstart.conf"))
    gw.allow_errors(*PROXY_CONNECT_ERRORS)
    gw.start()
    for _ in range(2):      # the first finds the port closed, the second
        resp = gw.chat(DEMO_KEY)  # finds mod_proxy's worker in error state
        assert resp.status in (502, 503), resp
        assert resp.header("content-type") == "application/json"
        err = resp.json["error"]
        assert err["code"] == "upstream_unavailable"
        assert err["type"] == "server_error"
        # the limit still counted the request, and says so
        assert resp.header("ratelimit-policy") == '"free";q=10;w=60'
    assert "<html" not in resp.body.decode().lower()


def test_mg_003_02_upstream_errors_pass_through(quickstart, backend):
    backend.mode(mode="error", status=500)
    resp = quickstart.chat(DEMO_KEY)
    assert resp.status == 500
    assert resp.header("x-mock-server") == "primary"     # the model server's own body
    assert resp.header("ratelimit").startswith('"free";r=9;')
    backend.mode(mode="normal")
    assert quickstart.chat(DEMO_KEY).status == 200


def test_mg_003_03_upstream_429_passes_through(quickstart, backend):
    backend.mode(mode="ratelimit", retry_after=7)
    resp = quickstart.chat(DEMO_KEY)
    assert resp.status == 429
    assert resp.header("x-mock-server") == "primary"
    assert resp.header("retry-after") == "7"
    assert resp.json["error"]["code"] == "rate_limit_exceeded"


def test_mg_003_04_streaming_passes_through(quickstart, backend):
    body = {"model": "mock-small", "stream": True,
            "messages": [{"role": "user", "content": "stream these words please"}]}
    resp = quickstart.chat(DEMO_KEY, body=body)
    assert resp.status == 200
    assert resp.header("content-type").startswith("text/event-stream")
    events = [l for l in resp.body.decode().split("\n\n") if l.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    # one event per reply word, then the finish chunk, then DONE
    assert len(events) == len("This is a mock reply from primary to: stream these words please".split()) + 2
    assert resp.header("ratelimit").startswith('"free";r=9;')


def test_mg_003_05_connections_to_upstream_are_reused(quickstart, backend):
    conn = http.client.HTTPConnection("127.0.0.1", quickstart.port, timeout=30)
    try:
        for _ in range(8):
            resp = harness.request(quickstart.port, "POST", "/v1/chat/completions",
                                   headers={"X-API-Key": OTHER_KEY}, body=harness.CHAT, conn=conn)
            assert resp.status == 200
    finally:
        conn.close()
    peers = {r["peer"] for r in backend.requests()}
    # mod_proxy's worker keeps the backend connection open: far fewer
    # connections than requests (one per gateway thread that served one).
    assert len(peers) < 8, peers


def test_mg_003_06_embeddings_and_models(quickstart, backend):
    resp = quickstart.post("/v1/embeddings", body={"model": "mock-small", "input": ["a b", "c"]},
                           headers={"X-API-Key": DEMO_KEY})
    assert resp.status == 200
    assert [d["index"] for d in resp.json["data"]] == [0, 1]
    assert resp.json["usage"]["prompt_tokens"] == 3
    resp = quickstart.get("/v1/models", headers={"X-API-Key": DEMO_KEY})
    assert resp.status == 200
    assert {m["id"] for m in resp.json["data"]} == {"mock-small", "mock-large"}
    assert backend.count() == 2
