"""conf-examples/tiered-limits.conf: tiers, daily quotas, per-endpoint
limits, a global ceiling and a shadow tenant cap, together."""
import os

import pytest

import harness
from harness import DEMO_KEY, PRO_KEY


@pytest.fixture
def tiered(gateways, backend):
    backend.reset()
    gw = gateways("tiered", backend_port=backend.port)
    gw.use_conf(os.path.join(harness.CONF_EXAMPLES, "tiered-limits.conf"))
    return gw.start()


def test_mg_010_01_free_chat_meets_every_layer(tiered, backend):
    results = [tiered.chat(DEMO_KEY) for _ in range(11)]
    assert [r.status for r in results] == [200] * 10 + [429]
    assert results[0].header("ratelimit-policy") == (
        '"free";q=10;w=60, "free-daily";q=1000;w=86400, "gateway";q=6000;w=60, '
        '"tenant-cap";q=2000;w=60, "chat";q=50;w=60')
    assert results[-1].header("ratelimit").startswith('"free";r=0;')
    assert "policy 'free'" in results[-1].json["error"]["message"]
    assert backend.count() == 10


def test_mg_010_02_pro_has_its_own_layers(tiered):
    results = [tiered.chat(PRO_KEY) for _ in range(21)]
    assert [r.status for r in results] == [200] * 20 + [429]
    assert results[0].header("ratelimit-policy") == (
        '"pro";q=100;w=60, "pro-daily";q=50000;w=86400, "gateway";q=6000;w=60, '
        '"tenant-cap";q=2000;w=60, "chat";q=50;w=60')


def test_mg_010_03_images_cost_five(tiered):
    img = {"model": "mock-small", "prompt": "a cat"}
    statuses = [tiered.post("/v1/images/generations", body=img,
                            headers={"X-API-Key": PRO_KEY}).status for _ in range(3)]
    # 10 image units per minute at 5 units each: two images, then refused
    # (the mock answers 404 for an endpoint it does not serve: the gateway
    # admitted the request and forwarded it)
    assert statuses == [404, 404, 429]


def test_mg_010_04_endpoints_have_separate_per_key_limits(tiered):
    for _ in range(10):
        assert tiered.chat(DEMO_KEY).status == 200
    # the free tier's 10/min binds on every endpoint, chat or embeddings
    resp = tiered.post("/v1/embeddings", body={"model": "m", "input": "x"},
                       headers={"X-API-Key": DEMO_KEY})
    assert resp.status == 429
    assert resp.header("ratelimit-policy").endswith('"embeddings";q=1000;w=60')
