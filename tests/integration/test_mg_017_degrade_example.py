"""conf-examples/degrade.conf: Free, Pro and Enterprise on two model
servers; Free falls back to the cheaper model, then queues, then 429."""
import hashlib
import os
import time

import pytest

import harness

FREE, PRO, ENT = "mg-tiers-free-key", "mg-tiers-pro-key", "mg-tiers-enterprise-key"


def body(model):
    return ('{"model": "%s", "messages": [{"role": "user", "content": "summarise this"}],'
            ' "temperature": 0.2}' % model).encode()


def chat(gw, key, model="llama-70b"):
    return harness.request(gw.port, "POST", "/v1/chat/completions", body=body(model),
                           headers={"X-API-Key": key, "Content-Type": "application/json"})


@pytest.fixture
def degrade(gateways, backend, backend2):
    backend.reset()
    backend2.reset()
    gw = gateways("degrade", backend_port=backend.port)
    gw.backend2_port = backend2.port
    gw.use_conf(os.path.join(harness.CONF_EXAMPLES, "degrade.conf"))
    return gw.start()


def test_mg_017_01_free_falls_back_then_queues_then_429(degrade, backend, backend2):
    first = [chat(degrade, FREE) for _ in range(5)]
    assert [r.status for r in first] == [200] * 5
    assert {r.header("x-mock-server") for r in first} == {"primary"}
    assert first[0].json["model"] == "mock-large"
    assert backend.requests()[-1]["body_sha256"] == \
        hashlib.sha256(body("mock-large")).hexdigest()
    resp = chat(degrade, FREE)
    assert resp.status == 200
    assert resp.header("x-mock-server") == "secondary"
    assert resp.header("x-modelgate-degraded") == "fallback"
    assert resp.header("x-modelgate-model") == "llama-8b"
    assert resp.header("x-modelgate-requested-model") == "llama-70b"
    assert backend2.requests()[-1]["body_sha256"] == \
        hashlib.sha256(body("mock-small")).hexdigest()
    # the small model's own 20/min for Free: 19 more by fallback
    more = [chat(degrade, FREE).status for _ in range(19)]
    assert more == [200] * 19
    t0 = time.monotonic()
    last = chat(degrade, FREE)
    assert last.status == 429
    # neither model frees a unit within the queue's 2 s (llama-8b's next is
    # ~3 s away): refused at once, not held for the 2 s
    assert last.header("x-modelgate-queued-ms") is None
    assert time.monotonic() - t0 < 2.0
    assert backend.count() == 5 and backend2.count() == 20
    lines = degrade.access_lines(26)
    assert sum(" fallback " in l for l in lines) == 20
    assert lines[-1].split()[6:8] == ["429", "rejected"]


def test_mg_017_02_pro_and_enterprise_are_not_degraded(degrade, backend):
    for key in (PRO, ENT):
        results = [chat(degrade, key, "large") for _ in range(8)]
        assert [r.status for r in results] == [200] * 8
        assert all(r.header("x-modelgate-degraded") is None for r in results)
        assert all(r.header("x-modelgate-model") == "llama-70b" for r in results)
    assert backend.count() == 16


def test_mg_017_03_no_model_goes_to_the_small_server(degrade, backend2):
    resp = degrade.get("/v1/models", headers={"X-API-Key": ENT})
    assert resp.status == 200
    assert resp.header("x-mock-server") == "secondary"
    resp = chat(degrade, ENT, "gpt-4")
    assert resp.status == 404
    assert resp.json["error"]["code"] == "model_not_found"
