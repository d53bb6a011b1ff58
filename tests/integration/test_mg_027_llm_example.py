"""conf-examples/llm-tokens.conf: request quotas per tier, completion
ceilings, a token limit on the expensive model and a monthly budget per
tenant, all in front of two mock model servers."""
import json
import os
import time

import pytest

import harness

FREE, PRO, ENT = "mg-tiers-free-key", "mg-tiers-pro-key", "mg-tiers-enterprise-key"


def chat(gw, key, model="gpt-small", **extra):
    b = {"model": model, "messages": [{"role": "user", "content": "summarise this"}]}
    b.update(extra)
    return gw.chat(key, body=b)


@pytest.fixture
def llm(gateways, backend, backend2):
    backend.reset()
    backend2.reset()
    gw = gateways("llm", backend_port=backend.port)
    gw.backend2_port = backend2.port
    gw.use_conf(os.path.join(harness.CONF_EXAMPLES, "llm-tokens.conf"))
    return gw.start()


def log_fields(gw, count):
    deadline = time.monotonic() + 10
    while True:
        lines = gw.read_log("access.log").splitlines()
        if len(lines) >= count or time.monotonic() > deadline:
            return lines


def test_mg_027_01_free_tier(llm, backend, backend2):
    # None asked: 256 is sent, and that is what was reserved.
    resp = chat(llm, FREE)
    assert resp.status == 200
    assert json.loads(backend2.requests()[-1]["body"])["max_tokens"] == 256
    policy = resp.header("ratelimit-policy")
    for item in ('"free";q=10;w=60', '"free-daily";q=1000;w=86400',
                 '"tenant-month";q=20000000000;'):
        assert item in policy
    big = chat(llm, FREE, max_tokens=1000)
    assert big.status == 400 and big.json["error"]["param"] == "max_tokens"
    statuses = [chat(llm, FREE).status for _ in range(10)]
    assert statuses == [200] * 9 + [429]
    line = log_fields(llm, 1)[0].split()
    # key, tier, "request line" (3 words), status, decision, model, usage,
    # prompt, completion, reserved, spend, max-tokens
    assert line[:2] == ["free-1", "free"] and line[5:8] == ["200", "allowed", "gpt-small"]
    # usage: 2 prompt words, 10 completion words (the mock's reply), spent
    # at 0.15 and 0.60 a million: 6.3 millionths of the currency
    assert line[8:11] == ["usage", "2", "10"]
    assert line[12] == "0.000006300" and line[13] == "added"


def test_mg_027_02_pro_is_clamped_and_the_large_model_counts_tokens(llm, backend, backend2):
    resp = chat(llm, PRO, model="gpt-large", max_tokens=10000)
    assert resp.status == 200
    assert json.loads(backend.requests()[-1]["body"])["max_tokens"] == 4096
    policy = resp.header("ratelimit-policy")
    assert '"large-tpm";q=20000;w=60' in policy
    assert '"pro-daily";q=50000;w=86400' in policy
    line = log_fields(llm, 1)[0].split()
    assert line[8] == "usage" and line[13] == "clamped"
    # The large model's tokens a minute: four reservations of 4,096 and
    # change fit in 20,000 only because each settles to what it used.
    statuses = [chat(llm, PRO, model="gpt-large", max_tokens=4096).status for _ in range(8)]
    assert statuses == [200] * 8
    # Requests that name no model go to the small server and spend nothing.
    models = llm.get("/v1/models", headers={"X-API-Key": ENT})
    assert models.status == 200 and models.header("x-mock-server") == "secondary"
