"""conf-examples/health-adaptive.conf: the breaker, adaptive limits and
shedding by tier, as the gpu model server fails, slows and fills up."""
import os
import threading
import time

import pytest

import harness

FREE, PRO, ENT = "mg-tiers-free-key", "mg-tiers-pro-key", "mg-tiers-enterprise-key"
BODY = b'{"model": "llama-70b", "messages": [{"role": "user", "content": "explain"}]}'


def chat(gw, key):
    return harness.request(gw.port, "POST", "/v1/chat/completions", body=BODY,
                           headers={"X-API-Key": key, "Content-Type": "application/json"})


@pytest.fixture
def health(gateways, backend, backend2):
    backend.reset()
    backend2.reset()
    gw = gateways("health", backend_port=backend.port)
    gw.backend2_port = backend2.port
    gw.use_conf(os.path.join(harness.CONF_EXAMPLES, "health-adaptive.conf"))
    gw.start()
    yield gw
    backend.reset()


def test_mg_018_01_breaker(health, backend, backend2):
    backend.mode(mode="error", status=503, retry_after=0)
    assert [chat(health, PRO).status for _ in range(6)] == [503] * 6
    # five failures in a row open it (breaker_consecutive's default), before
    # the share of breaker_min=6 answers is judged: the sixth is the gateway's
    assert backend.count() == 5
    # open: Free is served by llama-8b, the others wait
    free = chat(health, FREE)
    assert free.status == 200 and free.header("x-modelgate-model") == "llama-8b"
    ent = chat(health, ENT)
    assert ent.status == 503 and ent.json["error"]["code"] == "upstream_unavailable"
    assert backend.count() == 5
    # gpu recovers; after 2 s a probe closes the breaker
    backend.mode(mode="normal")
    deadline = time.monotonic() + 20
    while chat(health, ENT).status != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert chat(health, FREE).header("x-modelgate-model") == "llama-70b"


def test_mg_018_02_slow_gpu_shrinks_free_and_pro_limits(health, backend):
    backend.mode(mode="slow", delay_ms=300)
    for _ in range(6):
        assert chat(health, ENT).status == 200
    backend.mode(mode="normal")
    f1, f2 = chat(health, FREE), chat(health, FREE)
    assert f1.header("x-modelgate-cost-factor") == "4"
    assert int(f1.header("x-ratelimit-remaining")) - int(f2.header("x-ratelimit-remaining")) == 4
    assert chat(health, PRO).header("x-modelgate-cost-factor") == "2"
    assert chat(health, ENT).header("x-modelgate-cost-factor") is None


def test_mg_018_03_free_is_shed_first(health, backend, backend2):
    backend.mode(mode="slow", delay_ms=3000)
    done = []
    threads = [threading.Thread(target=lambda: done.append(chat(health, ENT).status))
               for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while backend.count() < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # two in flight: Free's share (2 of 8) is full -- it goes to llama-8b
    free = chat(health, FREE)
    assert free.status == 200
    assert free.header("x-modelgate-model") == "llama-8b"
    assert free.header("x-modelgate-degraded") == "fallback"
    # Pro (6 of 8) still reaches gpu
    backend.mode(mode="normal")
    assert chat(health, PRO).header("x-modelgate-model") == "llama-70b"
    for t in threads:
        t.join(30)
    assert done == [200, 200]
