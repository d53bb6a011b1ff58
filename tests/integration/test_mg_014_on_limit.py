"""What a tier's callers get when a limit refuses them (on_limit=): a
cheaper model (fallback), a bounded wait (queue), or 429 once every
candidate has refused."""
import hashlib
import threading
import time

import pytest

import harness
from harness import DEMO_KEY, PRO_KEY

KEYS = harness.QUICKSTART_KEYS


def conf(backend, backend2, tiers, extra=""):
    return harness.two_models(backend, backend2, tiers, extra=extra,
                              large_as="mock-large-v2")


@pytest.fixture
def degrading(gateways, backend, backend2):
    backend.reset()
    backend2.reset()
    g = gateways("degrade", backend_port=backend.port)
    g.write_conf(conf(backend, backend2, """
        ModelGateTier free 100/min on_limit=fallback:mock-small,queue:1500,reject
        ModelGateTier pro  100/min
        """, """
        ModelGateLimit free-large key 2/day tiers=free models=mock-large
        ModelGateLimit free-small key 1/day tiers=free models=mock-small
        """))
    return g.start()


BODY = b'{"model": "mock-large", "temperature": 0.7, "messages": [{"role": "user", "content": "hi"}]}'


SMALL = b'{"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]}'


def chat(gw, key=DEMO_KEY, body=BODY):
    return harness.request(gw.port, "POST", "/v1/chat/completions", body=body,
                           headers={"X-API-Key": key, "Content-Type": "application/json"})


def test_mg_014_01_fallback_serves_the_cheaper_model(degrading, backend, backend2):
    assert [chat(degrading).status for _ in range(2)] == [200, 200]
    assert backend2.count() == 2
    resp = chat(degrading)
    assert resp.status == 200
    assert resp.header("x-modelgate-degraded") == "fallback"
    assert resp.header("x-modelgate-model") == "mock-small"
    assert resp.header("x-modelgate-requested-model") == "mock-large"
    assert resp.json["model"] == "mock-small"
    # the cheaper server sees the body with only the model changed
    rec = backend.requests()[-1]
    assert rec["body_sha256"] == hashlib.sha256(
        BODY.replace(b'"mock-large"', b'"mock-small"')).hexdigest()
    assert backend.count() == 1 and backend2.count() == 2
    # the served model's limits were charged and are shown
    assert "free-small" in resp.header("ratelimit-policy")
    assert resp.header("x-ratelimit-remaining") == "0"


def test_mg_014_02_other_tiers_are_not_degraded(degrading, backend2):
    statuses = [chat(degrading, key=PRO_KEY) for _ in range(4)]
    assert [r.status for r in statuses] == [200] * 4
    assert all(r.header("x-modelgate-degraded") is None for r in statuses)
    assert backend2.count() == 4


def test_mg_014_03_refused_only_when_every_candidate_is(degrading, backend, backend2):
    for _ in range(3):
        chat(degrading)                  # 2 large, then 1 small by fallback
    t0 = time.monotonic()
    resp = chat(degrading)
    waited = time.monotonic() - t0
    assert resp.status == 429
    assert resp.json["error"]["code"] == "rate_limit_exceeded"
    # neither model has room before the day ends: far past the queue's
    # 1.5 s, so it is refused at once rather than held for nothing (the
    # header says it; held, it would have taken the whole 1.5 s)
    assert resp.header("x-modelgate-queued-ms") is None
    assert waited < 1.5
    # the refusal names the requested model's limit
    assert "free-large" in resp.header("ratelimit-policy")
    assert resp.header("x-modelgate-degraded") is None
    assert backend.count() == 1 and backend2.count() == 2


def test_mg_014_04_fallback_needs_a_body_and_its_own_room(gateways, backend, backend2):
    """A fallback helps only when the refusing limit does not apply to the
    fallback model: the tier's own limit refuses both.  A request without a
    JSON body has no model to change and goes to the next action."""
    backend.reset()
    backend2.reset()
    gw = gateways("nobody", backend_port=backend.port)
    gw.write_conf(conf(backend, backend2, """
        ModelGateTier free 1/min on_limit=fallback:mock-small,reject
        ModelGateTier pro  100/min
        """))
    gw.start()
    assert gw.get("/v1/models", headers={"X-API-Key": DEMO_KEY}).status == 200
    assert gw.get("/v1/models", headers={"X-API-Key": DEMO_KEY}).status == 429
    resp = chat(gw)
    assert resp.status == 429
    assert resp.header("x-modelgate-degraded") is None
    assert backend2.count() == 0


def test_mg_014_05_queue_admits_after_refill(gateways, backend, backend2):
    gw = gateways("queue", backend_port=backend.port)
    gw.write_conf(conf(backend, backend2, """
        ModelGateTier free 2/s on_limit=queue:5000
        ModelGateTier pro  100/min
        """))
    gw.start()
    first = [chat(gw, body=SMALL) for _ in range(2)]
    assert [r.status for r in first] == [200, 200]
    resp = chat(gw, body=SMALL)
    assert resp.status == 200
    assert resp.header("x-modelgate-degraded") == "queued"
    # one unit refills in 500 ms
    assert 400 <= int(resp.header("x-modelgate-queued-ms")) <= 5000


def test_mg_014_06_queue_cap_keeps_workers_free(gateways, backend, backend2):
    """ModelGateQueueLimit 1: of two refused requests at once, one waits and
    the other is refused at once.  30/min: a unit every 2 s, within the
    queue's 3 s."""
    gw = gateways("queuecap", backend_port=backend.port)
    gw.write_conf(conf(backend, backend2, """
        ModelGateTier free 30/min burst=1 on_limit=queue:3000
        ModelGateTier pro  100/min
        ModelGateQueueLimit 1
        """) + "\nServerLimit 1\nStartServers 1\nMinSpareThreads 1\n"
                 "MaxSpareThreads 25\nMaxRequestWorkers 25\n")
    gw.start()
    assert chat(gw, body=SMALL).status == 200
    results = []
    lock = threading.Lock()

    def client():
        t0 = time.monotonic()
        r = chat(gw, body=SMALL)
        with lock:
            results.append((time.monotonic() - t0, r.status))

    threads = [threading.Thread(target=client) for _ in range(2)]
    threads[0].start()
    time.sleep(0.3)
    threads[1].start()
    for t in threads:
        t.join(30)
    results.sort()
    # the first to finish was refused without waiting (the queue was full);
    # the other waited for its unit and was admitted
    assert [status for _, status in results] == [429, 200]
    assert results[0][0] < results[1][0]
    assert results[1][0] >= 1.0


def test_mg_014_07_queue_off(gateways, backend, backend2):
    gw = gateways("queueoff", backend_port=backend.port)
    gw.write_conf(conf(backend, backend2, """
        ModelGateTier free 6/min burst=1 on_limit=queue:10000
        ModelGateTier pro  100/min
        ModelGateQueueLimit 0
        """))
    gw.start()
    assert chat(gw, body=SMALL).status == 200
    t0 = time.monotonic()
    assert chat(gw, body=SMALL).status == 429
    assert time.monotonic() - t0 < 5         # not the 10 s queue


def test_mg_014_08_config_errors(gateways):
    harness.assert_config_errors(gateways, [
        ("ModelGateTier free 1/s on_limit=fallback:nowhere\n",
         "ModelGateTier free: on_limit=fallback: names the unknown model 'nowhere'"),
        ("ModelGateTier free 1/s on_limit=cache\n",
         "on_limit=cache needs the response cache: load mod_modelgate_cache.so"),
        ("ModelGateTier free 1/s on_limit=queue:99999\n", "queue:MS waits from 1 to 60000"),
        ("ModelGateLimit x key 1/s on_limit=reject\n", "are a tier's options"),
        ("ModelGateQueueLimit many\n", "'many' must be a number of requests"),
    ])
