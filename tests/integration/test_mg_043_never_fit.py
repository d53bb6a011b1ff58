"""Requests no wait can admit, and waits a queue cannot hold (issue 43).

A request whose cost is above what a limit can ever hold (its burst, a
window's quota) is refused as final: that limit is named, no Retry-After,
x-should-retry: false, a message saying how to shrink it, and no queueing.
A queue action refuses at once when the wait is longer than it may hold a
request.  And an admitted request's RateLimit names the layer nearest to
running out of what it can hold, not of its quota."""
import json
import math
import threading
import time

import harness
from harness import DEMO_KEY, PRO_KEY, QUICKSTART_KEYS

IMAGES = """
<Location "/v1/images/">
    ModelGateCost 10
</Location>
"""
IMG = {"model": "mock-small", "prompt": "a cat"}


def images(gw, key=DEMO_KEY):
    return gw.post("/v1/images/generations", body=IMG, headers={"X-API-Key": key})


def assert_final(resp, policy):
    assert resp.status == 429
    assert resp.header("x-should-retry") == "false"
    assert resp.header("retry-after") is None
    assert resp.header("retry-after-ms") is None
    assert resp.header("ratelimit").startswith('"%s";' % policy)
    err = resp.json["error"]
    # what OpenAI answers a request above the TPM limit: 429
    # rate_limit_exceeded, "Request too large"; final by x-should-retry
    assert err["code"] == "rate_limit_exceeded"
    assert err["message"].startswith("Request too large")
    assert "can never be admitted" in err["message"]
    return err


def test_mg_043_01_cost_above_the_burst_is_final(gateways, backend):
    backend.reset()
    gw = gateways("cost", backend_port=backend.port)
    gw.write_conf("ModelGateTier free 5/min\nModelGateTier pro 100/min\n"
                  + harness.routed_v1(QUICKSTART_KEYS, backend.port) + IMAGES)
    code, out = gw.check_syntax()
    assert code == 0, out
    # warned, naming the section and the tier; pro's 100 holds 10
    assert "ModelGateCost 10 at <Location /v1/images/>" in out
    assert "limit 'free' can ever hold: requests there of tier 'free'" in out
    assert "tier 'pro'" not in out
    gw.start()
    resp = images(gw)
    err = assert_final(resp, "free")
    assert resp.header("ratelimit") == '"free";r=5;t=0'    # a full bucket
    assert err["type"] == "requests"
    assert "needs 10 request units but limit 'free' holds at most 5" in err["message"]
    # nothing was charged: the bucket is full for the next chat
    assert [gw.chat(DEMO_KEY).status for _ in range(5)] == [200] * 5
    # pro's 100 holds the cost (the mock answers 404 for images)
    assert images(gw, PRO_KEY).status == 404


def test_mg_043_02_not_queued(gateways, backend):
    """on_limit=queue: no wait admits it, so it is refused at once."""
    backend.reset()
    gw = gateways("costq", backend_port=backend.port)
    gw.write_conf("ModelGateTier free 5/min on_limit=queue:3000\n"
                  "ModelGateTier pro 100/min\n"
                  + harness.routed_v1(QUICKSTART_KEYS, backend.port) + IMAGES)
    gw.start()
    t0 = time.monotonic()
    resp = images(gw)
    # the queue held such a request its whole 3 s before; a loaded machine
    # does not take 2 s over a refusal
    assert time.monotonic() - t0 < 2.0
    assert_final(resp, "free")
    assert resp.header("x-modelgate-queued-ms") is None


def reservation(b):
    """What the gateway reserves (test_mg_022): about a token per four
    bytes of the body, plus the completion cap."""
    return math.ceil(len(json.dumps(b).encode()) / 4) + b.get("max_tokens", 0)


def large(max_tokens, model="mock-large"):
    return {"model": model, "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": max_tokens}


def test_mg_043_03_reservation_names_the_smallest_limit(gateways, backend, backend2):
    backend.reset()
    backend2.reset()
    gw = gateways("tpm", backend_port=backend.port)
    gw.write_conf(harness.two_models(backend, backend2, """
        ModelGateTier free 5/min
        ModelGateTier pro  100/min tokens=600/min
        """, extra="ModelGateLimit large-tpm key 300/min unit=tokens models=mock-large"))
    gw.start()
    b = large(595)
    assert 600 < reservation(b) < 700
    resp = gw.chat(PRO_KEY, body=b)
    err = assert_final(resp, "large-tpm")
    assert resp.header("ratelimit") == '"large-tpm";r=300;t=0'
    assert resp.header("x-ratelimit-limit-tokens") == "300"
    assert err["type"] == "tokens"
    assert ("needs %d tokens but limit 'large-tpm' holds at most 300"
            % reservation(b)) in err["message"]
    assert "lower max_tokens" in err["message"]
    # above large-tpm only: still final, still large-tpm
    b = large(400)
    assert 300 < reservation(b) < 600
    assert_final(gw.chat(PRO_KEY, body=b), "large-tpm")
    # the same for the small model, where large-tpm does not apply: admitted
    assert gw.chat(PRO_KEY, body=large(400, "mock-small")).status == 200
    assert backend2.count() == 0


def test_mg_043_04_queue_refuses_a_wait_it_cannot_hold(gateways, backend):
    """2/min: the next unit is 30 s away, longer than queue:3000 may hold a
    request; every such request is refused at once, holding no worker."""
    backend.reset()
    gw = gateways("queue", backend_port=backend.port)
    gw.write_conf("ModelGateTier free 2/min on_limit=queue:3000\n"
                  "ModelGateTier pro 100/min\n"
                  + harness.routed_v1(QUICKSTART_KEYS, backend.port))
    gw.start()
    assert [gw.chat(DEMO_KEY).status for _ in range(2)] == [200, 200]
    results = []
    lock = threading.Lock()

    def client():
        t0 = time.monotonic()
        r = gw.chat(DEMO_KEY)
        with lock:
            results.append((time.monotonic() - t0, r))

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 6
    for took, r in results:
        assert r.status == 429
        assert took < 2.5, took           # not the 3 s queue
        assert r.header("x-modelgate-queued-ms") is None
        assert 20 <= int(r.header("retry-after")) <= 30
        assert r.header("x-should-retry") == "true"


def test_mg_043_05_ratelimit_names_the_layer_nearest_its_burst(gateways, backend, backend2):
    backend.reset()
    backend2.reset()
    gw = gateways("burst", backend_port=backend.port)
    gw.write_conf(harness.two_models(backend, backend2, """
        ModelGateTier free 10/min
        ModelGateTier pro  120/min burst=20
        """, extra="ModelGateLimit large-daily key 2/day models=mock-large"))
    gw.start()
    body = {"model": "mock-large", "messages": [{"role": "user", "content": "hi"}]}
    first = gw.chat(PRO_KEY, body=body)
    assert first.status == 200
    # pro holds 19 of 20, large-daily 1 of 2: one more request only
    assert first.header("ratelimit").startswith('"large-daily";r=1;')
    second = gw.chat(PRO_KEY, body=body)
    assert second.status == 200
    assert second.header("ratelimit").startswith('"large-daily";r=0;')
    third = gw.chat(PRO_KEY, body=body)
    assert third.status == 429
    assert third.header("ratelimit").startswith('"large-daily";r=0;')


def test_mg_043_06_final_on_the_redis_store(gateways, backend, tmp_path):
    """The same final refusal when Redis decides (exact mode): the combine
    step that sees a cost no layer can hold is the store's too."""
    backend.reset()
    redis = harness.RedisServer(tmp_path / "redis").start()
    try:
        gw = gateways("costredis", backend_port=backend.port)
        gw.write_conf('LoadModule modelgate_redis_module "%s"\n'
                      "ModelGateStore redis 127.0.0.1:%d timeout=500\n"
                      "ModelGateTier free 5/min\nModelGateTier pro 100/min\n"
                      % (harness.REDIS_MODULE, redis.port)
                      + harness.routed_v1(QUICKSTART_KEYS, backend.port) + IMAGES)
        gw.start()
        resp = images(gw)
        err = assert_final(resp, "free")
        assert "needs 10 request units but limit 'free' holds at most 5" in err["message"]
        assert [gw.chat(DEMO_KEY).status for _ in range(6)] == [200] * 5 + [429]
        gw.stop()
    finally:
        redis.stop()
