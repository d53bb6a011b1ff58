"""What an answer from the response cache costs in the limit layers
(ModelGateCacheHitCost): by default nothing -- the gate admitted and
charged the request before the lookup, and the core gives the request
layers' units back (the counter store's settle) and writes the RateLimit
headers again from what remains after it; with 1, a request as any.
And the evictions the statistics can see: answers found missing before
their TTL."""
import pytest

import harness
from harness import DEMO_KEY
from test_mg_024_cache import STATUS, body, cached, chat, conf, stats  # noqa: F401

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
