"""The response cache (plugins/cache, mod_modelgate_cache.so on ap_socache):
deterministic POST JSON answers kept per tenant and answered without the
model server; on_limit=cache serving them to a caller over its quota."""
import json
import os
import re
import signal
import time

import pytest

import harness
from harness import DEMO_KEY, OTHER_KEY, PRO_KEY

LOG = "cache.log"


def conf(backend, backend2, loc="", server="ModelGateCache shmcb",
         tiers="ModelGateTier free 100/min\nModelGateTier pro 100/min\n",
         cache_module=True, big_opts=""):
    """two_models' gateway, the cache plugin loaded and /v1/ cacheable;
    an access log of its own with the cache's note."""
    return """
LoadModule socache_shmcb_module %s/mod_socache_shmcb.so
%s
LogLevel modelgate_cache:debug
LogFormat "%%{MODELGATE_KEY_ID}e %%>s %%{modelgate-decision}n %%{modelgate-cache}n %%{modelgate-usage}n" cache
CustomLog "${MG_RUN}/%s" cache
%s
""" % (harness.HTTPD_MODDIR,
       'LoadModule modelgate_cache_module "%s"' % harness.CACHE_MODULE if cache_module else "",
       LOG, server) + harness.two_models(backend, backend2, tiers, big_opts=big_opts) + """
<Location "/v1/">
    ModelGateCacheable On
    %s
</Location>
""" % loc


def body(content="is this good?", model="mock-small", **extra):
    b = {"model": model, "temperature": 0,
         "messages": [{"role": "user", "content": content}]}
    b.update(extra)
    return json.dumps(b).encode()


def chat(gw, data, key=DEMO_KEY, headers=None):
    h = {"X-API-Key": key, "Content-Type": "application/json"}
    h.update(headers or {})
    return harness.request(gw.port, "POST", "/v1/chat/completions", body=data, headers=h)


def notes(gw, n):
    """The cache notes of n requests (access log), sorted: httpd logs a
    request after its answer went out, so a client's next request may be
    logged first."""
    lines = gw.access_lines(n)          # the shared log, written after ours
    deadline = time.monotonic() + 10
    while True:
        ours = gw.read_log(LOG).splitlines()
        if len(ours) >= n or time.monotonic() > deadline:
            return sorted(l.split()[3] for l in ours[:n])
        time.sleep(0.02)


@pytest.fixture
def cached(gateways, backend, backend2):
    """A gateway in front of both mock servers, whose config the test
    gives."""
    backend.reset()
    backend2.reset()

    def start(text):
        gw = gateways("cache", backend_port=backend.port)
        gw.write_conf(text)
        return gw.start()
    return start


def test_mg_024_01_hit_and_miss(cached, backend, backend2):
    gw = cached(conf(backend, backend2, "ModelGateCacheTTL 60"))
    first = chat(gw, body())
    assert first.status == 200
    assert first.header("cache-status") == "modelgate; fwd=miss; stored"
    assert first.header("age") is None
    second = chat(gw, body())
    assert second.status == 200
    assert second.body == first.body           # the same answer, same id
    assert second.header("content-type") == "application/json"
    assert re.fullmatch(r"modelgate; hit; ttl=(59|60)", second.header("cache-status"))
    assert second.header("age") in ("0", "1")
    assert second.header("x-mock-server") is None    # never reached it
    # nothing names the key: only these cache headers
    assert not [h for h in second.headers if "cache" in h and h != "cache-status"]
    assert backend.count() == 1 and backend2.count() == 0
    assert notes(gw, 2) == ["hit", "stored"]
    # a hit is admitted and its unit given back (ModelGateCacheHitCost 0,
    # the default): its limit headers say what remains after that
    assert second.header("x-ratelimit-remaining") == "99"


def test_mg_024_02_bypass_what_is_not_deterministic(cached, backend, backend2):
    gw = cached(conf(backend, backend2))
    sampled = json.dumps({"model": "mock-small", "messages": [
        {"role": "user", "content": "hi"}]}).encode()          # no temperature
    warm = body(temperature=0.7)
    for data in (sampled, sampled, warm, warm):
        r = chat(gw, data)
        assert r.status == 200
        assert r.header("cache-status") == "modelgate; fwd=bypass"
    assert backend.count() == 4
    # the client opts in: a cached answer up to 60 s old will do
    optin = {"Cache-Control": "max-age=60"}
    assert chat(gw, warm, headers=optin).header("cache-status") == \
        "modelgate; fwd=miss; stored"
    assert chat(gw, warm, headers=optin).header("cache-status").startswith("modelgate; hit")
    # ... but not without saying so
    assert chat(gw, warm).header("cache-status") == "modelgate; fwd=bypass"
    assert backend.count() == 6
    assert notes(gw, 7) == ["bypass"] * 5 + ["hit", "stored"]


def test_mg_024_03_client_no_store_and_no_cache(cached, backend, backend2):
    gw = cached(conf(backend, backend2))
    r = chat(gw, body(), headers={"Cache-Control": "no-store"})
    assert r.header("cache-status") == "modelgate; fwd=miss"
    r = chat(gw, body())                       # nothing was stored
    assert r.header("cache-status") == "modelgate; fwd=miss; stored"
    r = chat(gw, body(), headers={"Cache-Control": "no-cache"})
    assert r.header("cache-status") == "modelgate; fwd=request; stored"
    assert chat(gw, body(), headers={"Pragma": "no-cache"}).header(
        "cache-status") == "modelgate; fwd=request; stored"
    assert chat(gw, body()).header("cache-status").startswith("modelgate; hit")
    assert backend.count() == 4
    assert notes(gw, 5) == ["hit", "miss", "stored", "stored", "stored"]


def test_mg_024_04_ttl_expiry(cached, backend, backend2):
    gw = cached(conf(backend, backend2, "ModelGateCacheTTL 1"))
    stored_at = time.monotonic()
    assert chat(gw, body()).header("cache-status") == "modelgate; fwd=miss; stored"
    hits = 0
    deadline = stored_at + 10
    while time.monotonic() < deadline:
        r = chat(gw, body())
        if not r.header("cache-status").startswith("modelgate; hit"):
            break
        hits += 1
        time.sleep(0.05)
    assert r.header("cache-status") == "modelgate; fwd=miss; stored"
    assert time.monotonic() - stored_at >= 1.0
    assert hits >= 1
    assert backend.count() == 2


def test_mg_024_05_canonical_bodies(cached, backend, backend2):
    gw = cached(conf(backend, backend2))
    assert chat(gw, body()).status == 200
    same = ('{ "messages" : [ { "content": "is this good?", "role": "user" } ],\n'
            '  "user": "someone-else", "metadata": {"trace": "x"},'
            ' "temperature": 0, "model": "mock-small" }').encode()
    assert chat(gw, same).header("cache-status").startswith("modelgate; hit")
    other = chat(gw, body("is this bad?"))
    assert other.header("cache-status") == "modelgate; fwd=miss; stored"
    # another model is another answer
    assert chat(gw, body(model="mock-large")).header("cache-status") == \
        "modelgate; fwd=miss; stored"
    assert backend.count() == 2 and backend2.count() == 1


def test_mg_024_06_tenants_isolated(cached, backend, backend2):
    gw = cached(conf(backend, backend2))
    a = chat(gw, body(), key=DEMO_KEY)           # acme
    b = chat(gw, body(), key=OTHER_KEY)          # globex: its own miss
    assert a.header("cache-status") == b.header("cache-status") == \
        "modelgate; fwd=miss; stored"
    assert a.body != b.body
    c = chat(gw, body(), key=PRO_KEY)            # acme again: shared
    assert c.header("cache-status").startswith("modelgate; hit")
    assert c.body == a.body
    assert backend.count() == 2


def test_mg_024_07_scope_key_and_global(cached, backend, backend2):
    gw = cached(conf(backend, backend2, """
        ModelGateCacheScope key
    </Location>
    <Location "/v1/chat/completions">
        ModelGateCacheScope global
    </Location>
    <Location "/v1/completions">
        ModelGateCacheScope key"""))
    # chat: global, one answer for everybody
    assert chat(gw, body(), key=DEMO_KEY).status == 200
    assert chat(gw, body(), key=OTHER_KEY).header("cache-status").startswith("modelgate; hit")
    assert backend.count() == 1
    # completions: per key, even within a tenant
    prompt = json.dumps({"model": "mock-small", "prompt": "hi", "temperature": 0}).encode()
    for key in (DEMO_KEY, PRO_KEY, DEMO_KEY):
        r = harness.request(gw.port, "POST", "/v1/completions", body=prompt,
                            headers={"X-API-Key": key, "Content-Type": "application/json"})
        assert r.status == 200
    assert r.header("cache-status").startswith("modelgate; hit")
    assert backend.count() == 3


def test_mg_024_08_unstorable_answers(cached, backend, backend2):
    gw = cached(conf(backend, backend2))
    backend.mode(mode="error", status=500)
    assert chat(gw, body()).status == 500
    backend.mode(mode="error", status=400)
    assert chat(gw, body()).status == 400
    backend.mode(headers={"Set-Cookie": "session=abc"})
    r = chat(gw, body())
    assert r.status == 200 and r.header("set-cookie") == "session=abc"
    assert r.header("cache-status") == "modelgate; fwd=miss"
    for cc in ("no-store", "private", "max-age=60, private=\"x\""):
        backend.mode(headers={"Cache-Control": cc})
        r = chat(gw, body())
        assert r.status == 200 and r.header("cache-status") == "modelgate; fwd=miss", cc
    backend.mode()
    assert chat(gw, body()).header("cache-status") == "modelgate; fwd=miss; stored"
    assert chat(gw, body()).header("cache-status").startswith("modelgate; hit")
    assert backend.count() == 7
    assert notes(gw, 8) == ["hit"] + ["miss"] * 6 + ["stored"]


def test_mg_024_09_over_the_object_limit(cached, backend, backend2):
    gw = cached(conf(backend, backend2, server="ModelGateCache shmcb\n"
                                               "ModelGateCacheMaxObject 100"))
    for _ in range(2):
        r = chat(gw, body())
        assert r.status == 200 and len(r.body) > 100
        assert r.header("cache-status") == "modelgate; fwd=miss"
    assert backend.count() == 2
    assert notes(gw, 2) == ["miss", "miss"]
    assert len(re.findall(r"\[modelgate_cache:debug\].*answer not stored: size",
                          gw.read_log())) == 2


def test_mg_024_10_on_limit_cache(cached, backend, backend2):
    gw = cached(conf(backend, backend2, "ModelGateCacheHitCost 1", tiers="""
        ModelGateTier free 2/min on_limit=cache
        ModelGateTier pro  100/min
        """))
    first = chat(gw, body())
    assert first.header("cache-status") == "modelgate; fwd=miss; stored"
    assert chat(gw, body()).header("cache-status").startswith("modelgate; hit")
    # the quota is spent (a hit counts as a request): the cache answers
    over = chat(gw, body())
    assert over.status == 200
    assert over.body == first.body
    assert over.header("x-modelgate-degraded") == "cache"
    assert over.header("cache-status").startswith("modelgate; hit")
    assert over.header("x-ratelimit-remaining") == "0"
    # nothing cached for this one: on to the next action, here 429
    miss = chat(gw, body("something new"))
    assert miss.status == 429
    assert miss.header("x-modelgate-degraded") is None
    assert miss.header("cache-status") is None
    assert backend.count() == 1
    assert sorted(l.split()[1:4] for l in notes_lines(gw, 4)) == [
        ["200", "allowed", "hit"], ["200", "allowed", "stored"],
        ["200", "cache", "hit"], ["429", "rejected", "miss"]]


def notes_lines(gw, n):
    notes(gw, n)
    return gw.read_log(LOG).splitlines()[:n]


def test_mg_024_11_hit_gives_tokens_back(cached, backend, backend2):
    gw = cached(conf(backend, backend2, tiers="""
        ModelGateTier free 100/min tokens=1000/min
        ModelGateTier pro  100/min
        """))
    a = chat(gw, body())
    b = chat(gw, body())
    assert b.header("cache-status").startswith("modelgate; hit")
    assert sorted(l.split()[4] for l in notes_lines(gw, 2)) == ["cached", "usage"]
    assert backend.count() == 1


def test_mg_024_12_config_errors(gateways, backend, backend2):
    harness.assert_config_errors(gateways, [
        ("LoadModule modelgate_cache_module \"%s\"\nModelGateCache nosuch\n"
         % harness.CACHE_MODULE,
         "unknown socache provider 'nosuch': load mod_socache_nosuch"),
        ("LoadModule modelgate_cache_module \"%s\"\n<Location />\nModelGateCacheable On\n"
         "</Location>\n" % harness.CACHE_MODULE,
         "ModelGateCacheable On needs a cache: load mod_socache_shmcb"),
        (conf(backend, backend2, "ModelGateCacheTTL 0"),
         "ModelGateCacheTTL: '0' must be a number of seconds from 1 to 86400"),
        (conf(backend, backend2, "ModelGateCacheStaleIfError 86401"),
         "ModelGateCacheStaleIfError: '86401' must be a number of seconds from 0 (off) "
         "to 86400"),
        (conf(backend, backend2, "ModelGateCacheStaleIfError -1"),
         "ModelGateCacheStaleIfError: '-1' must be a number of seconds"),
        (conf(backend, backend2, "ModelGateCacheScope user"),
         "'user' is not a scope (tenant, key or global)"),
        (conf(backend, backend2, server="ModelGateCacheMaxObject -1"),
         "ModelGateCacheMaxObject: '-1' must be a number of bytes"),
        (conf(backend, backend2, server="ModelGateCache shmcb lock=pthread"),
         "ModelGateCache: unknown option 'lock=pthread' (lock=shared or lock=httpd)"),
    ])


DEGRADE_FREE = "mg-tiers-free-key"


def test_mg_024_13_degrade_example_serves_free_from_cache(gateways, backend, backend2):
    """conf-examples/degrade.conf: Free over its share of the large model
    gets the cached answer to the same request before any fallback."""
    backend.reset()
    backend2.reset()
    gw = gateways("degrade", backend_port=backend.port)
    gw.backend2_port = backend2.port
    gw.use_conf(os.path.join(harness.CONF_EXAMPLES, "degrade.conf"))
    gw.start()
    asked = body("summarise this", model="llama-70b")
    first = [chat(gw, asked, key=DEGRADE_FREE) for _ in range(5)]
    assert [r.header("cache-status").split(";")[1].strip() for r in first] == \
        ["fwd=miss"] + ["hit"] * 4
    # hits cost nothing (ModelGateCacheHitCost 0): four more questions
    # spend the rest of free-large's 5/min
    for i in range(4):
        assert chat(gw, body("question %d" % i, model="llama-70b"),
                    key=DEGRADE_FREE).header("x-modelgate-degraded") is None
    over = chat(gw, asked, key=DEGRADE_FREE)       # past free-large's 5/min
    assert over.status == 200
    assert over.header("x-modelgate-degraded") == "cache"
    assert over.body == first[0].body
    assert json.loads(over.body)["model"] == "mock-large"
    # a request never answered before falls back to the small model
    other = chat(gw, body("something else", model="llama-70b"), key=DEGRADE_FREE)
    assert other.status == 200
    assert other.header("x-modelgate-degraded") == "fallback"
    assert backend.count() == 5 and backend2.count() == 1


@pytest.mark.parametrize("lock", ["", " lock=shared", " lock=httpd"])
def test_mg_024_14_prefork_children_share_the_cache(gateways, backend, backend2, lock):
    """shmcb with its lock across processes (the futex in the cache's
    shared segment, or httpd's Mutex): answers stored by one child are hits
    in the others (prefork: one request per process at a time)."""
    backend.reset()
    backend2.reset()
    gw = gateways("prefork", backend_port=backend.port, mpm="prefork")
    gw.write_conf(conf(backend, backend2, server="ModelGateCache shmcb" + lock))
    gw.start()
    statuses = [chat(gw, body(str(i % 4))).header("cache-status") for i in range(40)]
    assert sum(s == "modelgate; fwd=miss; stored" for s in statuses) == 4
    assert sum(s.startswith("modelgate; hit") for s in statuses) == 36
    assert backend.count() == 4


@pytest.mark.parametrize("lock", ["lock=httpd", "lock=shared"])
def test_mg_024_14b_which_lock_serialises_shmcb(cached, backend, backend2, tmp_path, lock):
    """lock=httpd takes httpd's Mutex for the modelgate-cache type (here
    flock, whose file appears in the directory Mutex names); the
    default futex in the plugin's shared memory makes no file, and the
    Mutex line is accepted and has no effect."""
    locks = tmp_path / "locks"
    locks.mkdir()
    os.chmod(str(locks), 0o777)
    gw = cached(conf(backend, backend2, server="Mutex flock:%s modelgate-cache\n"
                     "ModelGateCache shmcb %s" % (locks, lock)))
    assert chat(gw, body()).header("cache-status") == "modelgate; fwd=miss; stored"
    assert chat(gw, body()).header("cache-status").startswith("modelgate; hit")
    made = [f for f in os.listdir(str(locks)) if "modelgate-cache" in f]
    assert bool(made) == (lock == "lock=httpd"), made


def test_mg_024_15_a_full_cache_evicts_without_errors(cached, backend, backend2, tmp_path):
    """shmcb at its smallest (8192 bytes: a handful of entries): storing many
    answers scrolls the oldest out; every request is answered, the error
    log stays clean (the fixture checks), and the newest answer hits."""
    gw = cached(conf(backend, backend2,
                     server='ModelGateCache "shmcb:%s/small(8192)"' % tmp_path))
    for i in range(30):
        r = chat(gw, body("question %d" % i))
        assert r.status == 200
        assert r.header("cache-status") == "modelgate; fwd=miss; stored"
    assert chat(gw, body("question 29")).header("cache-status").startswith("modelgate; hit")
    assert chat(gw, body("question 0")).header("cache-status") == "modelgate; fwd=miss; stored"
    assert backend.count() == 31


@pytest.fixture
def redis(tmp_path):
    server = harness.RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def test_mg_024_16_redis_socache_shared_by_two_gateways(gateways, backend, backend2, redis):
    """Debian's mod_socache_redis: an answer stored through one gateway is
    a hit on the other; with Redis gone, both still answer (misses)."""
    backend.reset()
    backend2.reset()
    gws = []
    for name in ("gw1", "gw2"):
        gw = gateways(name, backend_port=backend.port)
        gw.write_conf(conf(backend, backend2, server="""
            LoadModule socache_redis_module %s/mod_socache_redis.so
            ModelGateCache redis:127.0.0.1:%d
            """ % (harness.HTTPD_MODDIR, redis.port)))
        gws.append(gw.start())
    first = chat(gws[0], body())
    assert first.header("cache-status") == "modelgate; fwd=miss; stored"
    other = chat(gws[1], body())
    assert other.header("cache-status").startswith("modelgate; hit")
    assert other.body == first.body
    assert backend.count() == 1
    redis.stop()
    # past each thread's memo of the purge generations (a second)
    time.sleep(1.2)
    for gw in gws:
        # mod_socache_redis logs its own connection failures
        gw.allow_errors(r"socache_redis:error", r"AH034\d\d")
        for data in (body(), body("new")):
            r = chat(gw, data)
            assert r.status == 200
            # held until stored: the header says it was not
            assert r.header("cache-status") == "modelgate; fwd=miss"
    assert backend.count() == 5
    # A request whose purge generations could not be read is neither looked
    # up nor stored (MGC00022): a purged answer must not come back through
    # a lookup that works a moment later, under generation 0.  The first
    # request of each child after the outage meets the error; apr_redis then
    # marks the server dead and answers "not found" for a while, which is
    # a miss like any other (looked up, store failed).
    log = gws[0].read_log()
    skipped = len(re.findall(r"\[modelgate_cache:debug\].*MGC00022", log))
    failed = len(re.findall(r"\[modelgate_cache:debug\].*not stored by socache 'redis:",
                            log))
    assert skipped >= 1 and skipped + failed == 2, (skipped, failed)


def test_mg_024_17_answers_at_and_over_the_object_limit(gateways, backend, backend2):
    """An answer of exactly ModelGateCacheMaxObject bytes is stored; one
    byte more is not.  The mock's answers differ only in their id, whose
    length the test accounts for."""
    backend.reset()
    backend2.reset()

    def start(name, limit):
        gw = gateways(name, backend_port=backend.port)
        gw.write_conf(conf(backend, backend2, server="ModelGateCache shmcb\n"
                           "ModelGateCacheMaxObject %d" % limit))
        return gw.start()

    probe = start("probe", 65536)
    first = chat(probe, body("measure"))
    probe.stop()
    n = int(json.loads(first.body)["id"].split("-")[1])

    def length(k):      # of the k-th answer after the first
        return len(first.body) + len(str(n + k)) - len(str(n))

    at = start("at", length(1))
    r = chat(at, body("measure"))            # another gateway: an empty cache
    assert len(r.body) == length(1)
    assert r.header("cache-status") == "modelgate; fwd=miss; stored"
    assert chat(at, body("measure")).header("cache-status").startswith("modelgate; hit")
    at.stop()
    over = start("over", length(2) - 1)
    r = chat(over, body("measure"))
    assert len(r.body) == length(2)
    assert r.header("cache-status") == "modelgate; fwd=miss"
    assert chat(over, body("measure")).header("cache-status") == "modelgate; fwd=miss"
    assert backend.count() == 4


def test_mg_024_18_restarts(cached, backend, backend2):
    """A restart makes shmcb and its mutex anew: after SIGHUP (every child
    replaced at once) the cache is empty, stores and hits again; a graceful
    restart answers throughout; nothing is logged as an error."""
    gw = cached(conf(backend, backend2))
    assert chat(gw, body()).header("cache-status") == "modelgate; fwd=miss; stored"
    assert chat(gw, body()).header("cache-status").startswith("modelgate; hit")
    before = gw.read_log().count("resuming normal operations")
    gw.signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while gw.read_log().count("resuming normal operations") == before:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert harness.wait_port(gw.port)
    assert chat(gw, body()).header("cache-status") == "modelgate; fwd=miss; stored"
    assert chat(gw, body()).header("cache-status").startswith("modelgate; hit")
    assert backend.count() == 2
    gw.graceful()
    # an old child may still take a request: only the outcome is certain
    for _ in range(3):
        r = chat(gw, body("after the graceful restart"))
        assert r.status == 200 and r.header("cache-status").startswith("modelgate; ")


def test_mg_024_19_stale_if_error_while_the_breaker_is_open(cached, backend, backend2):
    """ModelGateCacheStaleIfError: an expired entry is kept for the grace
    and served only while its upstream's breaker is open (not while the
    upstream answers); beyond the grace the breaker's 503 as before.  A
    fresh entry answers during the breaker too (before, the 503 came
    first)."""
    gw = cached(conf(backend, backend2, "ModelGateCacheTTL 3\n"
                     "ModelGateCacheStaleIfError 3",
                     big_opts="breaker=50% breaker_min=4 open=60s"))
    gw.allow_errors(r"AH01102", r"AH00898")     # mod_proxy on a failing upstream
    large = body("kept", model="mock-large")
    assert chat(gw, large).header("cache-status") == "modelgate; fwd=miss; stored"
    # expired, the upstream healthy: forwarded, stored again
    while True:
        r = chat(gw, large)
        if not r.header("cache-status").startswith("modelgate; hit"):
            break
        time.sleep(0.1)
    assert r.header("cache-status") == "modelgate; fwd=miss; stored"
    assert r.header("x-modelgate-degraded") is None
    assert backend2.count() == 2
    # the breaker opens on two errors (2 of 4 answers in its window; not
    # stored)
    backend2.mode(mode="error", status=500)
    for i in range(2):
        r = chat(gw, body("fail %d" % i, model="mock-large"))
        assert r.status == 500 and r.header("cache-status") == "modelgate; fwd=miss"
    assert backend2.count() == 4
    assert chat(gw, body("never stored", model="mock-large")).status == 503
    # fresh: a plain hit, though the upstream is refused
    r = chat(gw, large)
    assert r.status == 200
    assert re.fullmatch(r"modelgate; hit; ttl=[0-3]", r.header("cache-status"))
    # expired, within the grace: served stale
    while r.header("cache-status").startswith("modelgate; hit; ttl="):
        time.sleep(0.1)
        r = chat(gw, large)
    assert r.status == 200
    assert r.header("cache-status") == "modelgate; hit; stale"
    assert r.header("x-modelgate-degraded") == "stale"
    assert int(r.header("age")) >= 3
    assert r.json["model"] == "mock-large"
    # beyond the grace: the breaker's 503
    while r.status == 200:
        assert r.header("cache-status") == "modelgate; hit; stale"
        time.sleep(0.1)
        r = chat(gw, large)
    assert r.status == 503
    assert r.json["error"]["code"] == "upstream_unavailable"
    assert r.header("cache-status") is None
    assert r.header("x-modelgate-degraded") is None
    assert backend2.count() == 4
    backend2.reset()


def test_mg_024_20_stale_if_error_is_off_by_default(cached, backend, backend2):
    """Without ModelGateCacheStaleIfError an expired entry is gone: the
    open breaker's 503."""
    gw = cached(conf(backend, backend2, "ModelGateCacheTTL 1",
                     big_opts="breaker=50% breaker_min=4 open=60s"))
    gw.allow_errors(r"AH01102", r"AH00898")
    large = body("kept", model="mock-large")
    assert chat(gw, large).header("cache-status") == "modelgate; fwd=miss; stored"
    backend2.mode(mode="error", status=500)
    for i in range(3):      # 3 of 4 answers in the window: open
        assert chat(gw, body("fail %d" % i, model="mock-large")).status == 500
    assert chat(gw, body("fail 3", model="mock-large")).status == 503
    r = chat(gw, large)
    while r.status == 200:
        assert r.header("cache-status").startswith("modelgate; hit; ttl=")
        time.sleep(0.1)
        r = chat(gw, large)
    assert r.status == 503
    assert r.json["error"]["code"] == "upstream_unavailable"
    assert backend2.count() == 4
    backend2.reset()


STATUS = """
<Location "/cache-status">
    SetHandler modelgate-cache-status
    ModelGateCacheAdmin On
    Require all granted
</Location>
<Location "/cache-status-denied">
    SetHandler modelgate-cache-status
    Require all denied
</Location>
"""


def status(gw, method="GET", query=""):
    return harness.request(gw.port, method, "/cache-status" + query)


def stats(gw):
    r = status(gw, query="?auto")
    assert r.status == 200 and r.header("content-type").startswith("text/plain")
    return dict(l.split(": ", 1) for l in r.body.decode().splitlines())


def test_mg_024_21_statistics(cached, backend, backend2, tmp_path):
    """SetHandler modelgate-cache-status: lookups, hits, misses, stores,
    store failures and bytes stored, exact over every process after a
    scripted mix."""
    gw = cached(conf(backend, backend2, server='ModelGateCache "shmcb:%s/small(8192)"\n'
                     'ModelGateCacheMaxObject 65536\n' % tmp_path + STATUS))
    gw.allow_errors(r"AH00\d\d\d.*shmcb", r"socache_shmcb:error")
    gw.allow_errors(r"AH01630")         # the denied location
    assert stats(gw) == {"Cache": "shmcb:%s/small(8192)" % tmp_path, "Lookups": "0",
                         "Hits": "0", "StaleHits": "0", "Misses": "0", "Stores": "0",
                         "StoreFailures": "0", "BytesStored": "0", "Purges": "0",
                         "Evicted": "0"}
    first = chat(gw, body())                                  # lookup, miss, store
    assert first.header("cache-status") == "modelgate; fwd=miss; stored"
    assert chat(gw, body()).header("cache-status").startswith("modelgate; hit")
    again = chat(gw, body(), headers={"Cache-Control": "no-cache"})   # no lookup, store
    assert again.header("cache-status") == "modelgate; fwd=request; stored"
    assert chat(gw, body("b"), headers={"Cache-Control": "no-store"}).header(
        "cache-status") == "modelgate; fwd=miss"             # lookup, miss
    sampled = json.dumps({"model": "mock-small", "messages": []}).encode()
    assert chat(gw, sampled).header("cache-status") == "modelgate; fwd=bypass"
    # the mock echoes 8 words: an answer over shmcb's one subcache
    big = chat(gw, body(" ".join(["w" * 1200] * 8)))          # lookup, miss, refused
    assert big.status == 200 and len(big.body) > 8192
    assert big.header("cache-status") == "modelgate; fwd=miss"
    s = stats(gw)
    assert s == {"Cache": "shmcb:%s/small(8192)" % tmp_path, "Lookups": "4",
                 "Hits": "1", "StaleHits": "0", "Misses": "3", "Stores": "2",
                 "StoreFailures": "1",
                 "BytesStored": str(len(first.body) + len(again.body)),
                 "Purges": "0", "Evicted": "0"}
    assert backend.count() == 5
    assert status(gw, "POST").status == 405
    assert harness.request(gw.port, "GET", "/cache-status-denied").status == 403


def test_mg_024_22_purge_a_tenant(cached, backend, backend2):
    """DELETE ?tenant=NAME on the status handler: that tenant's answers
    (every key of it) miss once, another tenant's still hit; the handler's
    Require holds for DELETE too."""
    gw = cached(conf(backend, backend2, server="ModelGateCache shmcb\n" + STATUS))
    gw.allow_errors(r"AH01630")         # the denied location
    for key in (DEMO_KEY, OTHER_KEY):                         # acme, globex
        assert chat(gw, body(), key=key).header("cache-status") == "modelgate; fwd=miss; stored"
        assert chat(gw, body(), key=key).header("cache-status").startswith("modelgate; hit")
    assert backend.count() == 2
    # refused: no tenant, or not allowed here
    assert status(gw, "DELETE").status == 400
    assert harness.request(gw.port, "DELETE", "/cache-status-denied?tenant=acme").status == 403
    assert chat(gw, body(), key=PRO_KEY).header("cache-status").startswith("modelgate; hit")
    r = status(gw, "DELETE", "?tenant=acme")
    assert r.status == 200 and r.body.decode().startswith("Purged: tenant acme\n")
    # acme's answers are gone, for its other key too; globex's are not
    assert chat(gw, body(), key=PRO_KEY).header("cache-status") == "modelgate; fwd=miss; stored"
    assert chat(gw, body(), key=DEMO_KEY).header("cache-status").startswith("modelgate; hit")
    assert chat(gw, body(), key=OTHER_KEY).header("cache-status").startswith("modelgate; hit")
    assert backend.count() == 3
    # a second purge gets a new generation again
    assert status(gw, "DELETE", "?tenant=acme").status == 200
    assert chat(gw, body(), key=DEMO_KEY).header("cache-status") == "modelgate; fwd=miss; stored"
    assert backend.count() == 4
    assert stats(gw)["Purges"] == "2"
    assert len(re.findall(r"MGC00011: response cache: tenant 'acme' purged",
                          gw.read_log())) == 2
