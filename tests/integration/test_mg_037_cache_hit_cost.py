"""What an answer from the response cache costs in the limit layers
(ModelGateCacheHitCost): by default nothing -- the gate admitted and
charged the request before the lookup, and the core gives the request
layers' units back (the counter store's settle) and writes the RateLimit
headers again from what remains after it; with 1, a request as any.
And the evictions the statistics can see: answers found missing before
their TTL."""
import os

import pytest

import harness
from harness import DEMO_KEY
from test_mg_024_cache import STATUS, body, cached, chat, conf, stats  # noqa: F401
from test_mg_012_local_sync import totals, wait_for, wait_pulled

FREE_5 = """
    ModelGateTier free 5/min
    ModelGateTier pro  100/min
    """


def remaining(resp):
    """The remaining units every limit header shows, checked to agree."""
    rem = resp.header("x-ratelimit-remaining")
    assert rem is not None
    assert ";r=%s;" % rem in resp.header("ratelimit") + ";"
    return int(rem)


def test_mg_037_01_a_hit_costs_nothing_by_default(cached, backend, backend2):
    gw = cached(conf(backend, backend2, tiers=FREE_5))
    first = chat(gw, body("the question"))
    assert first.status == 200
    assert first.header("cache-status") == "modelgate; fwd=miss; stored"
    assert remaining(first) == 4
    # Six hits: each admitted (one unit charged), each given back -- the
    # headers say 4 remain, as they are once it is back.
    for _ in range(6):
        hit = chat(gw, body("the question"))
        assert hit.status == 200
        assert hit.header("cache-status").startswith("modelgate; hit")
        assert remaining(hit) == 4
    # Four more questions, forwarded: the quota's last four units.
    for left in (3, 2, 1, 0):
        miss = chat(gw, body("question %d" % left))
        assert miss.status == 200
        assert miss.header("cache-status") == "modelgate; fwd=miss; stored"
        assert remaining(miss) == left
    # Spent: the gate refuses before the cache is asked (no on_limit=cache),
    # a cached question as any other.
    assert chat(gw, body("one more")).status == 429
    refused = chat(gw, body("the question"))
    assert refused.status == 429
    assert refused.header("cache-status") is None
    assert backend.count() == 5


def test_mg_037_02_hit_cost_1_charges_a_request(cached, backend, backend2):
    gw = cached(conf(backend, backend2, "ModelGateCacheHitCost 1",
                     tiers=FREE_5))
    assert remaining(chat(gw, body("the question"))) == 4
    for left in (3, 2, 1, 0):
        hit = chat(gw, body("the question"))
        assert hit.header("cache-status").startswith("modelgate; hit")
        assert remaining(hit) == left
    assert chat(gw, body("a new one")).status == 429
    assert chat(gw, body("the question")).status == 429
    assert backend.count() == 1


def test_mg_037_03_per_location(cached, backend, backend2):
    """A location inside a free one may charge hits, and the other way."""
    gw = cached(conf(backend, backend2, "ModelGateCacheHitCost 1",
                     tiers=FREE_5) + """
<Location "/v1/chat/">
    ModelGateCacheHitCost 0
</Location>
""")
    assert remaining(chat(gw, body("q"))) == 4
    for _ in range(5):
        assert remaining(chat(gw, body("q"))) == 4
    assert backend.count() == 1


def test_mg_037_04_config_errors(gateways, backend, backend2):
    harness.assert_config_errors(gateways, [
        (conf(backend, backend2, "ModelGateCacheHitCost 2"),
         "ModelGateCacheHitCost: '2' must be 0 (a hit costs nothing in "
         "request layers) or 1"),
    ])


def test_mg_037_05_evictions_found_missing(cached, backend, backend2, tmp_path):
    """shmcb at its smallest scrolls old answers out as new ones come: each
    answer stored here and found missing before its TTL is an eviction,
    counted once; a question never stored is a plain miss."""
    gw = cached(conf(backend, backend2, "ModelGateCacheTTL 600",
                     server='ModelGateCache "shmcb:%s/small(8192)"\n' % tmp_path
                     + STATUS))
    gw.allow_errors(r"AH00\d\d\d.*shmcb", r"socache_shmcb:error")
    for i in range(30):
        assert chat(gw, body("question %d" % i)).header("cache-status") == \
            "modelgate; fwd=miss; stored"
    assert stats(gw)["Evicted"] == "0"
    again = [chat(gw, body("question %d" % i)).header("cache-status")
             for i in range(10)]
    gone = sum(s == "modelgate; fwd=miss; stored" for s in again)
    assert gone >= 1                      # question 0 is long scrolled out
    assert gone + sum(s.startswith("modelgate; hit") for s in again) == 10
    s = stats(gw)
    assert s["Evicted"] == str(gone)
    assert s["Misses"] == str(30 + gone)
    # never stored: a miss, not an eviction
    assert chat(gw, body("new")).header("cache-status") == \
        "modelgate; fwd=miss; stored"
    assert stats(gw)["Evicted"] == str(gone)


def test_mg_037_06_a_sliding_log_keeps_the_hit(cached, backend, backend2):
    """A sliding log keeps one timestamp per unit and cannot give one back:
    its layer keeps a hit charged, and the headers say so; the tier's token
    bucket beside it gets its unit back."""
    gw = cached(conf(backend, backend2, tiers="""
        ModelGateTier free 100/min
        ModelGateTier pro  100/min
        ModelGateLimit log key 5/min algorithm=sliding_log tiers=free
        """))
    assert remaining(chat(gw, body("q"))) == 4
    for left in (3, 2, 1, 0):
        hit = chat(gw, body("q"))
        assert hit.header("cache-status").startswith("modelgate; hit")
        assert remaining(hit) == left
    assert chat(gw, body("q")).status == 429
    assert backend.count() == 1


# ---- the same refund on the redis counter store -------------------------
#
# Exact mode gives a hit's unit back with the settle script in Redis;
# local-sync mode in this host's table, whose units the syncer pushes to
# the others.  A day's limit of 5, not a minute's: the numbers are the
# same, and a minute's bucket gives a unit back every 12 s, which a loaded
# machine can reach between two requests.

REDIS_ALGOS = ["token_bucket", "gcra", "fixed_window", "sliding_window"]
SYNC_INTERVAL_MS = 50


def redis_store(redis, mode="exact", name="gw"):
    """The redis counter store in `mode` (the test's `redis` fixture must
    come before the gateways', so Redis outlives them)."""
    text = 'LoadModule modelgate_redis_module "%s"\n' % harness.REDIS_MODULE
    text += "ModelGateStore redis 127.0.0.1:%d timeout=500 mode=%s" % (
        redis.port, mode)
    if mode == "local-sync":
        text += " interval=%d name=%s" % (SYNC_INTERVAL_MS, name)
    return text + "\nModelGateStoreFailure closed\n"


def redis_socache(redis):
    """conf()'s `server`: answers kept by mod_socache_redis in that Redis."""
    return ("LoadModule socache_redis_module %s/mod_socache_redis.so\n"
            "ModelGateCache redis:127.0.0.1:%d\n"
            % (harness.HTTPD_MODDIR, redis.port))


def free_5(algo):
    return """
    ModelGateTier free 5/day algorithm=%s
    ModelGateTier pro  100/min
    """ % algo


def hits_then_misses(gw, hit_cost):
    """One miss, four hits, then new questions until the 429: the numbers
    ModelGateCacheHitCost says.  Returns the backend's expected count."""
    assert remaining(chat(gw, body("the question"))) == 4
    left = 4
    for _ in range(4):
        hit = chat(gw, body("the question"))
        assert hit.status == 200
        assert hit.header("cache-status").startswith("modelgate; hit")
        left -= hit_cost
        assert remaining(hit) == left
    misses = 0
    while left > 0:
        left -= 1
        misses += 1
        miss = chat(gw, body("question %d" % left))
        assert miss.status == 200
        assert miss.header("cache-status") == "modelgate; fwd=miss; stored"
        assert remaining(miss) == left
    assert chat(gw, body("one more")).status == 429
    refused = chat(gw, body("the question"))
    assert refused.status == 429
    assert refused.header("cache-status") is None
    return 1 + misses


@pytest.fixture
def redis(tmp_path):
    server = harness.RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.mark.parametrize("algo", REDIS_ALGOS)
def test_mg_037_07_redis_exact_a_hit_costs_nothing(redis, cached, backend,
                                                   backend2, algo):
    """Exact mode: the hit's unit goes back through the settle script, so
    Redis's counter, not only the headers, has it again."""
    gw = cached(redis_store(redis) + conf(backend, backend2,
                                          tiers=free_5(algo)))
    assert hits_then_misses(gw, 0) == 5
    assert backend.count() == 5


def test_mg_037_08_redis_exact_hit_cost_1(redis, cached, backend, backend2):
    gw = cached(redis_store(redis) + conf(
        backend, backend2, "ModelGateCacheHitCost 1",
        tiers=free_5("token_bucket")))
    assert hits_then_misses(gw, 1) == 1
    assert backend.count() == 1


@pytest.mark.parametrize("algo", REDIS_ALGOS)
@pytest.mark.parametrize("hit_cost", [0, 1])
def test_mg_037_09_redis_local_sync(redis, cached, backend, backend2, algo,
                                    hit_cost):
    """Local-sync mode, one gateway: this host's table decides and takes
    the unit back; Redis's epoch total counts what was forwarded (and the
    hits only when they cost)."""
    gw = cached(redis_store(redis, "local-sync", "ls") + conf(
        backend, backend2, "ModelGateCacheHitCost %d" % hit_cost,
        tiers=free_5(algo)))
    forwarded = hits_then_misses(gw, hit_cost)
    assert backend.count() == forwarded
    wait_for("the gateway to push", lambda: totals(redis) == 5)
    wait_pulled(redis, ["ls"])
    assert totals(redis) == 5


@pytest.mark.parametrize("mode", ["exact", "local-sync"])
def test_mg_037_10_two_gateways_one_redis_one_socache(redis, gateways, backend,
                                                      backend2, mode):
    """Two gateways share the counters and, through mod_socache_redis, the
    answers: one stores, both hit, and neither gateway's hits cost the key
    a unit on either.  In local-sync mode the test waits for both to pull
    after each request, so each decides on everything the other did: a
    hit's unit must never reach the other (Redis's total counts the five
    forwarded requests, no more)."""
    if not os.path.exists(os.path.join(harness.HTTPD_MODDIR,
                                       "mod_socache_redis.so")):
        pytest.skip("Debian's mod_socache_redis is not installed")
    backend.reset()
    backend2.reset()
    gws = []
    for name in ("rc1", "rc2"):
        gw = gateways(name, backend_port=backend.port)
        gw.write_conf(redis_store(redis, mode, name)
                      + conf(backend, backend2, server=redis_socache(redis),
                             tiers=free_5("token_bucket")))
        gws.append(gw.start())

    def settled():
        if mode == "local-sync":
            wait_pulled(redis, ["rc1", "rc2"])

    assert remaining(chat(gws[0], body("first"))) == 4
    # In local-sync mode a gateway learns the others' units on a counter
    # only once it has one (mg_sync.h): rc2's first decision sees its own
    # full allowance.  From then on both know everything the other did.
    stored = chat(gws[1], body("the question"))
    assert stored.header("cache-status") == "modelgate; fwd=miss; stored"
    assert remaining(stored) == (3 if mode == "exact" else 4)
    settled()
    for gw in gws + gws:
        hit = chat(gw, body("the question"))
        assert hit.header("cache-status").startswith("modelgate; hit")
        assert remaining(hit) == 3
        settled()
    for left in (2, 1, 0):
        miss = chat(gws[left % 2], body("question %d" % left))
        assert miss.header("cache-status") == "modelgate; fwd=miss; stored"
        assert remaining(miss) == left
        settled()
    for gw in gws:
        assert chat(gw, body("one more")).status == 429
        assert chat(gw, body("the question")).status == 429
    assert backend.count() == 5
    if mode == "local-sync":
        assert totals(redis) == 5
