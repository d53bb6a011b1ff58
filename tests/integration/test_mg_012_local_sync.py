"""The redis store's local-sync mode: each gateway decides in its own shared
memory and reconciles with the others through Redis every interval.  Two
gateways share one limit within the bound of mod_modelgate/mg_sync.h; a
Redis outage leaves each enforcing its own allowance and loses no units.

The waits are on counts, not on time: Redis holds each gateway's exchange
counter ({mg}s:gw:NAME, bumped in the same script as the totals), so a test
knows when a gateway has pulled the totals it needs."""
import os
import time

import pytest

import harness
from harness import DEMO_KEY, OTHER_KEY
from test_mg_011_redis import redis, split_hammer  # noqa: F401 (fixture)

KEYS = harness.QUICKSTART_KEYS
INTERVAL_MS = 50


def sync_gateway(gateways, backend, redis, name, tier, failure="closed", extra=""):
    gw = gateways(name, backend_port=backend.port)
    gw.write_conf("""
        LoadModule modelgate_redis_module "%s"
        ModelGateStore redis 127.0.0.1:%d mode=local-sync interval=%d name=%s %s
        ModelGateStoreFailure %s
        ModelGateTier free %s
        ModelGateTier pro  100/min
        """ % (harness.REDIS_MODULE, redis.port, INTERVAL_MS, name, extra,
               failure, tier)
                  + harness.routed_v1(KEYS, backend.port))
    return gw


def resp_values(raw):
    """The strings and integers of a RESP reply (flat)."""
    out = []
    lines = raw.split("\r\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$") and line != "$-1":
            out.append(lines[i + 1])
            i += 2
            continue
        if line.startswith(":"):
            out.append(line[1:])
        i += 1
    return out


def totals(redis):
    """Sum of every counter's epoch total in Redis (heartbeats excluded)."""
    keys = [k for k in resp_values(redis.command("KEYS", "{mg}s:*"))
            if not k.startswith("{mg}s:gw:")]
    return sum(int(resp_values(redis.command("GET", k))[0]) for k in keys)


def exchanges(redis, name):
    values = resp_values(redis.command("GET", "{mg}s:gw:" + name))
    return int(values[0]) if values else 0


def wait_for(what, predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def wait_pulled(redis, names):
    """Until every named gateway has run two more exchanges: the first one
    after now saw every total as it is now, and its answer was applied
    before the second one was collected."""
    start = {n: exchanges(redis, n) for n in names}
    for n in names:
        wait_for("%s to exchange" % n, lambda n=n: exchanges(redis, n) >= start[n] + 2)


@pytest.mark.parametrize("tier", ["20/day", "20/day algorithm=gcra",
                                  "20/day algorithm=fixed_window",
                                  "20/day algorithm=sliding_window",
                                  "20/day algorithm=sliding_log",
                                  "20/day algorithm=leaky_bucket"],
                         ids=["token_bucket", "gcra", "fixed_window",
                              "sliding_window", "sliding_log", "leaky"])
def test_mg_012_01_two_gateways_converge_on_one_limit(redis, gateways, backend, tier):
    """Half the quota through each gateway: together they used all of it,
    and once each has pulled the other's units both refuse."""
    backend.reset()
    gw1 = sync_gateway(gateways, backend, redis, "gw1", tier).start()
    gw2 = sync_gateway(gateways, backend, redis, "gw2", tier).start()
    assert [gw1.chat(DEMO_KEY).status for _ in range(10)] == [200] * 10
    assert [gw2.chat(DEMO_KEY).status for _ in range(10)] == [200] * 10
    wait_for("both gateways to push", lambda: totals(redis) == 20)
    wait_pulled(redis, ["gw1", "gw2"])
    r1, r2 = gw1.chat(DEMO_KEY), gw2.chat(DEMO_KEY)
    assert (r1.status, r2.status) == (429, 429)
    assert r1.header("x-ratelimit-remaining") == "0"
    assert r1.json["error"]["code"] == "rate_limit_exceeded"
    # another key's counter is its own
    assert gw1.chat(OTHER_KEY).status == 200
    assert backend.count() == 21


def test_mg_012_02_burst_within_the_bound(redis, gateways, backend):
    """32 clients at once, 16 to each gateway, quota 20: each gateway alone
    would admit all 16, so a burst inside one interval may get 32 -- within
    G * Q = 40 (mg_sync.h) -- and never fewer than the quota.  Once both
    have pulled the other's units, both refuse: what each admitted alone
    leaves room locally, so only the sync can make them refuse."""
    backend.reset()
    gw1 = sync_gateway(gateways, backend, redis, "b1", "20/day").start()
    gw2 = sync_gateway(gateways, backend, redis, "b2", "20/day").start()
    results = split_hammer([gw1, gw2], DEMO_KEY, clients=32, per_client=1)
    assert set(results) <= {200, 429}, results
    admitted = results[200]
    assert 20 <= admitted <= 32
    assert backend.count() == admitted
    wait_for("both gateways to push", lambda: totals(redis) == admitted)
    wait_pulled(redis, ["b1", "b2"])
    assert [gw.chat(DEMO_KEY).status for gw in (gw1, gw2, gw1, gw2)] == [429] * 4


def test_mg_012_03_redis_down_each_gateway_enforces_its_own_allowance(
        redis, gateways, backend):
    """No 503 and no wait while Redis is away: this host's counters decide.
    The units admitted meanwhile reach Redis when it is back."""
    backend.reset()
    gw = sync_gateway(gateways, backend, redis, "down", "5/day").start()
    gw.allow_errors(r"MGR00003")
    assert gw.chat(DEMO_KEY).status == 200
    wait_for("the first push", lambda: totals(redis) == 1)
    port = redis.port
    redis.stop()
    statuses = [gw.chat(DEMO_KEY).status for _ in range(6)]
    assert statuses == [200] * 4 + [429] * 2
    assert gw.chat(OTHER_KEY).status == 200
    wait_for("the outage to be logged", lambda: "MGR00003" in gw.read_log())
    # Redis comes back empty (no persistence): the units pushed before are
    # gone, the ones admitted while it was away are pushed now: 4 of the
    # demo key, 1 of the other
    redis.port = port
    redis.start()
    wait_for("the pending units to be pushed", lambda: totals(redis) == 5)
    # the breaker's recovery is logged too
    wait_for("the recovery to be logged", lambda: "MGR00002" in gw.read_log())


def test_mg_012_04_prefork_one_exchange_per_interval(redis, gateways, backend):
    """Several processes, one gateway: they share the counters and the
    exchange clock, so the gateway exchanges about once per interval, not
    once per process."""
    backend.reset()
    gw = gateways("prefork", backend_port=backend.port, mpm="prefork")
    gw.write_conf("""
        LoadModule modelgate_redis_module "%s"
        ModelGateStore redis 127.0.0.1:%d mode=local-sync interval=%d name=pf
        ModelGateTier free 30/day
        ModelGateTier pro  100/min
        """ % (harness.REDIS_MODULE, redis.port, INTERVAL_MS)
                  + harness.routed_v1(KEYS, backend.port))
    gw.start()
    results = split_hammer([gw], DEMO_KEY, clients=16, per_client=3)
    assert results == {200: 30, 429: 18}
    wait_for("the push", lambda: totals(redis) == 30)
    before = exchanges(redis, "pf")
    t0 = time.monotonic()
    wait_for("ten exchanges", lambda: exchanges(redis, "pf") >= before + 10)
    elapsed = time.monotonic() - t0
    # ten exchanges take at least nine intervals, whatever the process count
    assert elapsed >= 9 * INTERVAL_MS / 1000.0


@pytest.mark.parametrize("args,message", [
    ("mode=fast", "'mode=fast': mode=exact"),
    ("interval=5 mode=local-sync", "'interval=5': a sync interval of at least 10 ms"),
    ("capacity=1000", "belong to mode=local-sync"),
    ("mode=local-sync capacity=3", "capacity must be a number of counters"),
    ("mode=local-sync lock=maybe", "unknown argument 'lock=maybe'"),
], ids=["mode", "interval", "exact-capacity", "small-capacity", "lock"])
def test_mg_012_05_argument_errors(gateways, args, message):
    gw = gateways("syncargs")
    gw.write_conf('LoadModule modelgate_redis_module "%s"\n'
                  'ModelGateStore redis 127.0.0.1:6379 %s\n'
                  % (harness.REDIS_MODULE, args))
    code, out = gw.check_syntax()
    assert code != 0
    assert message in out, out


def test_mg_012_06_local_sync_example(redis, gateways, backend):
    """conf-examples/redis-local-sync.conf on two gateways: 20 a minute in
    all (per hour) once they have exchanged, each gateway named host:pid in Redis."""
    backend.reset()
    gws = []
    for name in ("ls1", "ls2"):
        gw = gateways(name, backend_port=backend.port)
        gw.redis_port = redis.port
        gw.use_conf(os.path.join(harness.CONF_EXAMPLES, "redis-local-sync.conf"))
        gws.append(gw.start())
    # 10 through each: all admitted, whatever either has learnt meanwhile
    statuses = [gws[i % 2].chat(DEMO_KEY).status for i in range(20)]
    assert statuses == [200] * 20
    wait_for("both gateways to push", lambda: totals(redis) == 20)
    names = [k[len("{mg}s:gw:"):] for k in resp_values(redis.command("KEYS", "{mg}s:gw:*"))]
    assert len(names) == 2
    assert all(":" in n for n in names)
    wait_pulled(redis, names)
    assert [gw.chat(DEMO_KEY).status for gw in gws] == [429, 429]
    resp = gws[0].chat(DEMO_KEY)
    assert resp.header("ratelimit-policy") == '"free";q=20;w=3600'
    # a Pro key has its own limit
    assert gws[1].chat(harness.PRO_KEY).status == 200
