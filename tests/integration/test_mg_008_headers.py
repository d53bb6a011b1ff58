"""Rate-limit headers for long windows, and the installed layout."""
import os
import subprocess

import harness
from harness import DEMO_KEY, OTHER_KEY

TIERS = """
ModelGateTier free 1/day
ModelGateTier pro  2/h burst=1
"""


def start(gateways, backend):
    backend.reset()
    gw = gateways("daily", backend_port=backend.port)
    gw.write_conf(TIERS + harness.routed_v1(harness.QUICKSTART_KEYS, backend.port))
    return gw.start()


def test_mg_008_01_day_quota_says_do_not_retry(gateways, backend):
    gw = start(gateways, backend)
    ok = gw.chat(DEMO_KEY)
    assert ok.status == 200
    assert ok.header("ratelimit-policy") == '"free";q=1;w=86400'
    assert ok.header("ratelimit") == '"free";r=0;t=86400'
    resp = gw.chat(DEMO_KEY)
    assert resp.status == 429
    retry = int(resp.header("retry-after"))
    assert 86390 < retry <= 86400
    assert resp.header("ratelimit") == '"free";r=0;t=%d' % retry
    assert resp.header("x-should-retry") == "false"
    assert resp.header("x-ratelimit-reset") == str(retry)


def test_mg_008_02_hour_quota_with_small_burst(gateways, backend):
    gw = start(gateways, backend)
    # pro-1 key: 2 per hour, burst 1 -> one now, the next in 30 minutes
    resp = gw.chat(harness.PRO_KEY)
    assert resp.status == 200
    assert resp.header("ratelimit-policy") == '"pro";q=2;w=3600'
    resp = gw.chat(harness.PRO_KEY)
    assert resp.status == 429
    assert 1790 < int(resp.header("retry-after")) <= 1800
    assert resp.header("x-should-retry") == "false"
    assert gw.chat(OTHER_KEY).status == 200


def test_mg_008_03_make_install_follows_apxs(tmp_path):
    dest = tmp_path / "root"
    subprocess.run(["make", "-C", harness.G.get("builddir", harness.SRCDIR), "install",
                    "DESTDIR=%s" % dest], check=True, capture_output=True)
    moddir = harness.HTTPD_MODDIR.lstrip("/")
    installed = sorted(os.listdir(dest / moddir))
    plugins = ["mod_modelgate_redis.so"] if os.path.exists(harness.REDIS_MODULE) else []
    # span export needs libcurl: built and installed when configure found it
    otlp = os.path.join(os.path.dirname(harness.MODULE), "mod_modelgate_otlp.so")
    plugins += ["mod_modelgate_otlp.so"] if os.path.exists(otlp) else []
    # the response cache and JWT identity need only httpd, OpenSSL and
    # jansson: always built and installed
    assert installed == sorted(["mod_modelgate.so", "mod_modelgate_cache.so",
                                "mod_modelgate_jwt.so"] + plugins)
    bins = [f for root, _, files in os.walk(dest) for f in files if f == "modelgate-key"]
    assert bins == ["modelgate-key"]
