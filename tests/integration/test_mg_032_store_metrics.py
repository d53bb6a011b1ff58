"""The counter store's figures in the metrics (issue 14): the Redis store's
round trips, errors, fast failures and outages summed over every process,
each live process's breaker state, and the local-sync lag and exchanges
(mg_store_info, version 7)."""
import os
import time

import pytest

import harness
from harness import DEMO_KEY, PRO_KEY, QUICKSTART_KEYS
from test_mg_011_redis import redis  # noqa: F401 (fixture)
from test_mg_026_observability import promtool_check
from test_mg_031_span_export import metric

pytestmark = pytest.mark.skipif(not os.path.exists(harness.REDIS_MODULE),
                                reason="mod_modelgate_redis.so not built (no hiredis)")

METRICS = """
<Location "/metrics">
    SetHandler modelgate-metrics
    Require all granted
</Location>
"""


def redis_gateway(gateways, backend, redis, args="", mpm="prefork", rate="1000/min"):
    backend.reset()
    gw = gateways("store-metrics-" + mpm, backend_port=backend.port, mpm=mpm)
    gw.write_conf("""
        LoadModule modelgate_redis_module "%s"
        ModelGateStore redis 127.0.0.1:%d %s
        ModelGateStoreFailure closed
        ModelGateTier free %s
        ModelGateTier pro  %s
        """ % (harness.REDIS_MODULE, redis.port, args, rate, rate)
                  + harness.routed_v1(QUICKSTART_KEYS, backend.port) + METRICS)
    return gw.start()


def store(gw, name, **labels):
    return metric(gw, name, store="redis", role="primary", **labels)


def children(gw):
    """The live processes with a breaker: every child, whatever its state."""
    return sum(store(gw, "modelgate_store_breaker_processes", state=s)
               for s in ("closed", "open", "half_open"))


def test_mg_032_01_round_trips_and_outage(gateways, backend, redis):
    gw = redis_gateway(gateways, backend, redis, "timeout=200")
    gw.allow_errors(r"MGR00003")
    # on several children: prefork serves each connection in one of them
    ok = [gw.chat(DEMO_KEY if i % 2 else PRO_KEY).status for i in range(20)]
    assert ok == [200] * 20
    # one decision script a request, every one through the breaker
    assert store(gw, "modelgate_store_round_trips_total") == 20
    assert store(gw, "modelgate_store_errors_total") == 0
    assert store(gw, "modelgate_store_fast_failures_total") == 0
    assert store(gw, "modelgate_store_breaker_opened_total") == 0
    assert store(gw, "modelgate_store_breaker_processes", state="open") == 0
    assert store(gw, "modelgate_store_breaker_processes", state="closed") >= 1
    assert store(gw, "modelgate_store_sync_lag_seconds") == 0
    # the shm store has none of these
    assert metric(gw, "modelgate_store_round_trips_total", store="shm") == 0

    redis.stop()
    # one connection: one child, whose breaker opens on the first failure
    # and fails the others fast
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    down = [harness.request(gw.port, "POST", "/v1/chat/completions",
                            body=harness.CHAT, conn=conn,
                            headers={"X-API-Key": PRO_KEY}).status
            for _ in range(10)]
    conn.close()
    assert down == [503] * 10
    trips = store(gw, "modelgate_store_round_trips_total")
    errors = store(gw, "modelgate_store_errors_total")
    fast = store(gw, "modelgate_store_fast_failures_total")
    # every decision either went to Redis or was failed fast; every one
    # that went since the outage failed
    assert trips + fast == 30
    assert errors == trips - 20
    assert errors >= 1 and fast >= 1
    assert store(gw, "modelgate_store_breaker_opened_total") >= 1
    assert store(gw, "modelgate_store_breaker_processes", state="open") \
        + store(gw, "modelgate_store_breaker_processes", state="half_open") >= 1
    assert children(gw) >= 1
    promtool_check(gw.get("/metrics").body.decode(), None)


def test_mg_032_02_local_sync_lag_and_exchanges(gateways, backend, redis):
    gw = redis_gateway(gateways, backend, redis,
                       "mode=local-sync interval=100 name=gw-a timeout=200",
                       mpm="event",
                       # a bucket that stays below full for the whole test:
                       # at 1000/min five units come back in 0.3 s, and a
                       # full bucket is no longer listed for the exchange
                       rate="1000/day")
    gw.allow_errors(r"MGR00003")
    assert [gw.chat(DEMO_KEY).status for _ in range(5)] == [200] * 5
    # the exchanges run; the lag stays within a few intervals
    deadline = time.monotonic() + 20
    while store(gw, "modelgate_store_sync_exchanges_total") < 3 \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store(gw, "modelgate_store_sync_exchanges_total") >= 3
    assert store(gw, "modelgate_store_sync_listed_counters") >= 1
    assert store(gw, "modelgate_store_round_trips_total") >= 1
    # (2 s: room for a syncer thread held up on a loaded machine)
    assert store(gw, "modelgate_store_sync_lag_seconds") < 2.0
    # Redis away: the counters stay listed (their window lives), so the
    # lag grows with the outage; every decision is still answered here
    redis.stop()
    stopped = time.monotonic()
    assert [gw.chat(DEMO_KEY).status for _ in range(3)] == [200] * 3
    time.sleep(max(0.0, 3.0 - (time.monotonic() - stopped)))
    assert store(gw, "modelgate_store_sync_lag_seconds") >= 2.5
    deadline = time.monotonic() + 20
    while store(gw, "modelgate_store_sync_failures_total") < 1 \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store(gw, "modelgate_store_sync_failures_total") >= 1
    assert store(gw, "modelgate_store_errors_total") >= 1
    # back: in step again once the breaker's probe (1 s at most) succeeds
    redis.start()
    deadline = time.monotonic() + 20
    while store(gw, "modelgate_store_sync_lag_seconds") >= 2.0 \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store(gw, "modelgate_store_sync_lag_seconds") < 2.0


def test_mg_032_03_server_status_shows_the_store(gateways, backend, redis):
    backend.reset()
    gw = gateways("store-status", backend_port=backend.port)
    gw.write_conf("""
        LoadModule modelgate_redis_module "%s"
        LoadModule status_module %s/mod_status.so
        ModelGateStore redis 127.0.0.1:%d
        ModelGateTier free 1000/min
        ModelGateTier pro  1000/min
        <Location "/server-status">
            SetHandler server-status
            Require all granted
        </Location>
        """ % (harness.REDIS_MODULE, harness.HTTPD_MODDIR, redis.port)
                  + harness.routed_v1(QUICKSTART_KEYS, backend.port))
    gw.start()
    assert [gw.chat(PRO_KEY).status for _ in range(7)] == [200] * 7
    auto = gw.get("/server-status?auto")
    assert auto.status == 200
    lines = dict(line.split(": ", 1) for line in auto.body.decode().splitlines()
                 if line.startswith("ModelGateStore"))
    assert lines["ModelGateStore"] == "redis"
    assert lines["ModelGateStoreRoundTrips"] == "7"
    assert lines["ModelGateStoreErrors"] == "0"
    assert lines["ModelGateStoreFastFailures"] == "0"
    assert lines["ModelGateStoreBreakersOpen"] == "0"
    page = gw.get("/server-status").body.decode()
    assert "Counter store <b>redis</b>" in page
    assert "7 round trips, 0 errors, 0 failed fast" in page
