"""The redis counter store (plugins/redis): two gateways share one limit
exactly; Redis down, restarted, without its script, or refusing the
password; each with a defined answer and no 500."""
import os
import threading
import collections

import pytest

import harness
from harness import DEMO_KEY, OTHER_KEY

KEYS = harness.QUICKSTART_KEYS


@pytest.fixture
def redis(tmp_path):
    server = harness.RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def gateway(gateways, backend, redis, name, tier="48/day", store_args="",
            failure="closed", pro="100/min", extra=""):
    gw = gateways(name, backend_port=backend.port)
    gw.write_conf(extra + """
        LoadModule modelgate_redis_module "%s"
        ModelGateStore redis 127.0.0.1:%d timeout=200 %s
        ModelGateStoreFailure %s
        ModelGateTier free %s
        ModelGateTier pro  %s
        """ % (harness.REDIS_MODULE, redis.port, store_args, failure, tier, pro)
                  + harness.routed_v1(KEYS, backend.port))
    return gw


def split_hammer(gws, key, clients=64, per_client=2):
    """clients threads, alternating between the gateways, released together."""
    results = collections.Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(i):
        barrier.wait()
        for _ in range(per_client):
            try:
                status = gws[i % len(gws)].chat(key).status
            except Exception as e:
                status = repr(e)
            with lock:
                results[status] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


@pytest.mark.parametrize("tier", ["48/day", "48/day algorithm=gcra",
                                  "48/day algorithm=fixed_window",
                                  "48/day algorithm=fixed_window zone=Europe/Berlin",
                                  "48/month algorithm=fixed_window",
                                  "48/day algorithm=sliding_window",
                                  "48/day algorithm=sliding_log",
                                  "48/day algorithm=leaky_bucket"],
                         ids=["token_bucket", "gcra", "fixed_window", "calendar_day",
                              "calendar_month", "sliding_window", "sliding_log", "leaky"])
def test_mg_011_01_two_gateways_share_one_limit(gateways, backend, redis, tier):
    backend.reset()
    gw1 = gateway(gateways, backend, redis, "gw1", tier).start()
    gw2 = gateway(gateways, backend, redis, "gw2", tier).start()
    results = split_hammer([gw1, gw2], DEMO_KEY)
    assert results == {200: 48, 429: 64 * 2 - 48}
    assert backend.count() == 48
    # one hash-tagged key per counter, with an expiry
    keys = redis.command("KEYS", "*")
    assert "{mg}" in keys
    ttl = redis.command("PTTL", keys.split("\r\n")[-2])
    assert int(ttl.strip()[1:]) > 0


def test_mg_011_02_headers_come_from_redis(gateways, backend, redis):
    gw = gateway(gateways, backend, redis, "hdr", "10/min").start()
    results = [gw.chat(OTHER_KEY) for _ in range(11)]
    assert [r.status for r in results] == [200] * 10 + [429]
    assert [r.header("x-ratelimit-remaining") for r in results[:10]] == [str(9 - i) for i in range(10)]
    assert results[-1].header("ratelimit-policy") == '"free";q=10;w=60'
    assert 0 < int(results[-1].header("retry-after")) <= 6


def test_mg_011_03_redis_down_closed_is_503(gateways, backend, redis):
    gw = gateway(gateways, backend, redis, "closed", "10/min").start()
    gw.allow_errors(r"MGR00003")
    assert gw.chat(DEMO_KEY).status == 200
    redis.stop()
    for _ in range(5):
        resp = gw.chat(DEMO_KEY)
        assert resp.status == 503
        assert resp.header("content-type") == "application/json"
        assert resp.json["error"]["code"] == "gateway_error"
        assert resp.header("retry-after") == "1"
    # the outage is logged once per child process (each keeps its own
    # breaker; the test configuration runs two), not once per request
    assert 1 <= gw.read_log().count("MGR00003") <= 2


def test_mg_011_04_redis_down_open_admits_and_says_so(gateways, backend, redis):
    gw = gateway(gateways, backend, redis, "open", "2/min", failure="open").start()
    gw.allow_errors(r"MGR00003")
    redis.stop()
    results = [gw.chat(DEMO_KEY) for _ in range(4)]
    assert [r.status for r in results] == [200] * 4
    assert all(r.header("x-modelgate-limits") == "unenforced" for r in results)
    assert all(r.header("ratelimit") is None for r in results)


def test_mg_011_05_redis_restarted_resumes_without_reload(gateways, backend, redis):
    gw = gateway(gateways, backend, redis, "restart", "3/min").start()
    gw.allow_errors(r"MGR00003")
    assert gw.chat(DEMO_KEY).status == 200
    port = redis.port
    redis.stop()
    assert gw.chat(DEMO_KEY).status == 503
    redis.port = port
    redis.start()
    # the breaker lets a probe through after its back-off (250 ms at first)
    import time
    deadline = time.monotonic() + 10
    statuses = []
    while time.monotonic() < deadline:
        status = gw.chat(DEMO_KEY).status
        if status != 503:
            statuses.append(status)
            if len(statuses) == 4:
                break
        else:
            time.sleep(0.1)
    # Redis lost its counters and its script: limits start afresh, exactly
    assert statuses == [200, 200, 200, 429]


def test_mg_011_06_script_flushed_is_reloaded(gateways, backend, redis):
    gw = gateway(gateways, backend, redis, "flush", "5/min").start()
    assert gw.chat(DEMO_KEY).status == 200
    assert "+OK" in redis.command("SCRIPT", "FLUSH")
    assert [gw.chat(DEMO_KEY).status for _ in range(5)] == [200] * 4 + [429]


def test_mg_011_07_wrong_password(gateways, backend, tmp_path):
    server = harness.RedisServer(tmp_path / "authredis", password="s3cret").start()
    try:
        gw = gateway(gateways, backend, server, "auth", "5/min", "password=Xq7-not-it")
        gw.allow_errors(r"MGR00001", r"MGR00003")
        gw.start()
        resp = gw.chat(DEMO_KEY)
        assert resp.status == 503
        log = gw.read_log()
        assert "AUTH refused" in log
        assert "Xq7-not-it" not in log     # the secret is never logged
        gw.stop()
        gw2 = gateway(gateways, backend, server, "auth-ok", "5/min", "password=s3cret").start()
        assert gw2.chat(DEMO_KEY).status == 200
    finally:
        server.stop()


def test_mg_011_08_leaky_queue_in_redis(gateways, backend, redis):
    """delay= works on the Redis store too: of five requests arriving
    together at 1/s with room for 5 but no wait over 2.5 s, three are held
    (0, ~1, ~2 s) and two refused, across two gateways."""
    backend.reset()
    tier = "1/s algorithm=leaky_bucket burst=5 delay=2500"
    gws = [gateway(gateways, backend, redis, n, tier).start() for n in ("lq1", "lq2")]
    results = split_hammer(gws, DEMO_KEY, clients=5, per_client=1)
    assert results == {200: 3, 429: 2}


def test_mg_011_09_store_without_plugin_says_which_module(gateways):
    gw = gateways("noplugin")
    gw.write_conf("ModelGateStore redis 127.0.0.1:6379\n")
    code, out = gw.check_syntax()
    assert code != 0
    assert "LoadModule modelgate_redis_module" in out


def test_mg_011_10_redis_down_local_counts_on_this_host(gateways, backend, redis):
    gw = gateway(gateways, backend, redis, "local", "3/min", failure="local").start()
    gw.allow_errors(r"MGR00003")
    assert gw.chat(DEMO_KEY).status == 200
    redis.stop()
    # the host's own counters take over (afresh): 3, then refused
    assert [gw.chat(DEMO_KEY).status for _ in range(4)] == [200, 200, 200, 429]


def test_mg_011_11_slow_redis_times_out_then_fails_fast(gateways, backend, redis):
    """A Redis that stops answering (SIGSTOP) costs the command timeout
    once per child; with the breaker open, requests stop paying it."""
    import signal
    import time
    gw = gateway(gateways, backend, redis, "slow", "100/min", failure="open").start()
    gw.allow_errors(r"MGR00003")
    assert gw.chat(DEMO_KEY).status == 200
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        took = []
        for _ in range(8):
            start = time.monotonic()
            resp = gw.chat(DEMO_KEY)
            took.append(time.monotonic() - start)
            assert resp.status == 200
            assert resp.header("x-modelgate-limits") == "unenforced"
        # at most one timeout (200 ms) per child; the rest fail fast
        assert sum(t > 0.15 for t in took) <= 2, took
        assert max(took) < 2.0, took
    finally:
        redis.proc.send_signal(signal.SIGCONT)


def test_mg_011_13_failure_policy_per_tier(gateways, backend, redis):
    """Free is refused while Redis is down (the server's policy, closed);
    Pro's tier says open and keeps being served; Enterprise-like local
    counting is per tier too."""
    from harness import PRO_KEY
    gw = gateway(gateways, backend, redis, "pertier", "10/min",
                 pro="100/min on_store_failure=open").start()
    gw.allow_errors(r"MGR00003")
    redis.stop()
    assert gw.chat(DEMO_KEY).status == 503
    resp = gw.chat(PRO_KEY)
    assert resp.status == 200
    assert resp.header("x-modelgate-limits") == "unenforced"


def test_mg_011_14_failure_policy_errors(gateways):
    gw = gateways("badpolicy")
    gw.write_conf("ModelGateStoreFailure sometimes\n")
    code, out = gw.check_syntax()
    assert code != 0 and "'sometimes' is not a failure policy" in out
    gw.write_conf("ModelGateLimit x key 1/min on_store_failure=open\n")
    code, out = gw.check_syntax()
    assert code != 0 and "degraded_cost=, tokens= and max_tokens= are a tier's" in out


def test_mg_011_12_redis_shared_example(gateways, backend, redis):
    """conf-examples/redis-shared.conf on two gateways: one limit."""
    backend.reset()
    gws = []
    for name in ("ex1", "ex2"):
        gw = gateways(name, backend_port=backend.port)
        gw.redis_port = redis.port
        gw.use_conf(os.path.join(harness.CONF_EXAMPLES, "redis-shared.conf"))
        gws.append(gw.start())
    statuses = [gws[i % 2].chat(DEMO_KEY).status for i in range(12)]
    assert statuses == [200] * 10 + [429, 429]
    resp = gws[0].chat(DEMO_KEY)
    assert resp.header("ratelimit-policy") == '"free";q=10;w=60, "gateway";q=6000;w=60'


def test_mg_011_15_acl_user_and_database(gateways, backend, redis):
    """AUTH with an ACL user and password, and SELECT of a database."""
    assert "+OK" in redis.command("ACL", "SETUSER", "gateway", "on", ">gw-pass-9",
                                  "~*", "+@all")
    gw = gateway(gateways, backend, redis, "acl", "5/min",
                 "user=gateway password=gw-pass-9 db=3").start()
    assert [gw.chat(DEMO_KEY).status for _ in range(6)] == [200] * 5 + [429]
    keyspace = redis.command("INFO", "keyspace")
    assert "db3:keys=1" in keyspace
    assert "db0:" not in keyspace


def test_mg_011_16_redis_killed_mid_load(gateways, backend, redis):
    """Redis dies while 32 clients are sending: every answer is a 200, a
    429 or a 503 in JSON (closed policy); no 500, no crash."""
    gw = gateway(gateways, backend, redis, "midload", "1000/min").start()
    gw.allow_errors(r"MGR00003")
    results = collections.Counter()
    done = threading.Event()

    def client():
        while not done.is_set():
            try:
                results[gw.chat(OTHER_KEY).status] += 1
            except Exception as e:
                results[repr(e)] += 1

    threads = [threading.Thread(target=client) for _ in range(32)]
    for t in threads:
        t.start()
    import time
    time.sleep(0.5)
    redis.stop()
    time.sleep(1.0)
    done.set()
    for t in threads:
        t.join(30)
    assert set(results) <= {200, 429, 503}, results
    assert results[200] > 0 and results[503] > 0, results
    # the server still answers, and says why it refuses
    resp = gw.chat(OTHER_KEY)
    assert resp.status == 503 and resp.json["error"]["code"] == "gateway_error"


@pytest.mark.parametrize("args,message", [
    ("", "expected HOST:PORT"),
    ("localhost", "'localhost' is not HOST:PORT"),
    ("127.0.0.1:70000", "'127.0.0.1:70000' is not HOST:PORT"),
    ("127.0.0.1:6379 timeout=0", "'timeout=0': milliseconds from 1 to 60000"),
    ("127.0.0.1:6379 db=x", "'db=x': a database number"),
    ("127.0.0.1:6379 pasword=Zz-secret-1", "unknown argument"),
], ids=["none", "noport", "badport", "timeout", "db", "typo"])
def test_mg_011_17_store_argument_errors(gateways, args, message):
    gw = gateways("storeargs")
    gw.write_conf('LoadModule modelgate_redis_module "%s"\nModelGateStore redis %s\n'
                  % (harness.REDIS_MODULE, args))
    code, out = gw.check_syntax()
    assert code != 0
    assert message in out, out
    assert "Zz-secret-1" not in out      # a mistyped secret is not echoed


# One child process of 25 threads: the breaker and the pool are per child,
# so with one child every request meets the same ones and what the tests
# count does not depend on how the kernel spreads connections over children.
ONE_CHILD = """
StartServers 1
MinSpareThreads 1
MaxSpareThreads 25
MaxRequestWorkers 25
"""


def keep_alive_hammer(gw, key, clients, done):
    """`clients` threads, each on one keep-alive connection, until `done`
    is set; returns the Counter of statuses they saw (filled as they go)."""
    import http.client
    results = collections.Counter()
    lock = threading.Lock()

    def client():
        conn = None
        while not done.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
                status = harness.request(gw.port, "POST", "/v1/chat/completions",
                                         headers={"X-API-Key": key}, body=harness.CHAT,
                                         conn=conn).status
            except Exception as e:
                status = repr(e)
                conn = None
            with lock:
                results[status] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    return results, threads


def poll_until_consecutive(gw, key, wanted, count=20, deadline=10.0):
    """Requests on fresh connections (so every child is asked) until
    `count` in a row answer `wanted`; returns every status seen before
    that, or None if the deadline passed first."""
    import time
    seen = []
    run = 0
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        resp = gw.chat(key)
        status = (resp.status, resp.header("x-modelgate-limits"))
        if status == wanted:
            run += 1
            if run == count:
                return seen
        else:
            seen.extend([wanted] * run)
            seen.append(status)
            run = 0
            time.sleep(0.02)
    return None


def test_mg_011_18_stall_under_load_recovers_within_a_probe(gateways, backend, redis):
    """Redis stalls (SIGSTOP) for 300 ms under 16 keep-alive clients: every
    request in flight fails, but only a failed probe lengthens the breaker's
    open time, so once Redis answers again each child is back on it after
    one probe interval (at most 1 s), not after 30 s (issue 10, 1)."""
    import signal
    import time
    gw = gateway(gateways, backend, redis, "stall", "1000000/min", "timeout=50",
                 extra=ONE_CHILD).start()
    gw.allow_errors(r"MGR00003")
    done = threading.Event()
    results, threads = keep_alive_hammer(gw, OTHER_KEY, 16, done)
    try:
        deadline = time.monotonic() + 30
        while sum(results.values()) < 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert results[200] >= 200, results
        redis.proc.send_signal(signal.SIGSTOP)
        time.sleep(0.3)
        redis.proc.send_signal(signal.SIGCONT)
        # the stall was seen: requests in flight failed (closed: 503)
        deadline = time.monotonic() + 30
        while results[503] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert results[503] > 0, results
        before = poll_until_consecutive(gw, OTHER_KEY, (200, None))
        assert before is not None, "still refusing 10 s after Redis came back: %r" % results
    finally:
        done.set()
        for t in threads:
            t.join(30)
    assert set(results) <= {200, 503}, results


@pytest.mark.parametrize("failure,down", [("closed", (503, None)),
                                          ("local", (200, None)),
                                          ("open", (200, "unenforced"))])
def test_mg_011_19_restart_with_a_pool_of_stale_connections(gateways, backend, redis,
                                                            failure, down):
    """Redis restarts while each child keeps several idle connections: the
    breaker drops them when it opens, so the next probe connects afresh and
    every child decides in Redis again after one probe, not after one
    doubling back-off per stale connection (issue 10, 2).  Redis comes back
    with the key's counter exhausted, so an answer decided in Redis is a
    429 and any other (503 closed, 200 local or open) is the failure
    policy's."""
    import time
    gw = gateway(gateways, backend, redis, "pool-" + failure, "1000/min",
                 "timeout=3000", failure=failure, extra=ONE_CHILD).start()
    gw.allow_errors(r"MGR00003")
    # 16 requests at once while Redis holds every command: each needs a
    # connection of its own, and they all go back to the pools idle
    assert "+OK" in redis.command("CLIENT", "PAUSE", "1000")
    results = split_hammer([gw], DEMO_KEY, clients=16, per_client=1)
    assert results == {200: 16}, results
    info = redis.command("INFO", "clients")
    clients = int(info.split("connected_clients:")[1].split("\r\n")[0])
    assert clients >= 9, info       # 8 or more pooled, and this one
    keys = [k for k in redis.command("KEYS", "{mg}*").split("\r\n") if k.startswith("{mg}")]
    assert len(keys) == 1, keys
    port = redis.port
    redis.stop()
    redis.port = port
    redis.start()
    # a token bucket an hour in debt: Redis refuses this key from now on
    tat = int(time.time() * 1e6) + 3600 * 1000000
    assert "+OK" in redis.command("SET", keys[0], str(tat))
    before = poll_until_consecutive(gw, DEMO_KEY, (429, None))
    assert before is not None, "not back on Redis within 10 s (%s)" % failure
    assert set(before) <= {down, (429, None)}, before
    # about one back-off's worth (250 ms at ~50 a second), far from the
    # minutes of one doubling per stale connection
    assert len(before) <= 100, before


class FakeRedis:
    """A RESP server that answers EVALSHA with `reply` (bytes), SCRIPT LOAD
    with a SHA and anything else with +OK: Redis answering what the decide
    script never would."""

    def __init__(self, reply):
        import socketserver
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                while True:
                    line = self.rfile.readline()
                    if not line.startswith(b"*"):
                        return
                    args = []
                    for _ in range(int(line[1:])):
                        size = int(self.rfile.readline()[1:])
                        args.append(self.rfile.read(size + 2)[:-2])
                    name = args[0].upper()
                    if name == b"EVALSHA":
                        fake.evalsha += 1
                        self.wfile.write(reply)
                    elif name == b"SCRIPT":
                        self.wfile.write(b"$40\r\n" + b"a" * 40 + b"\r\n")
                    else:
                        self.wfile.write(b"+OK\r\n")
                    self.wfile.flush()

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.evalsha = 0
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


ONE = b":1\r\n"


@pytest.mark.parametrize("reply,why", [
    (b"*7\r\n" + b"$1\r\n1\r\n" * 7, "element 0 is a string, not an integer"),
    (b"*7\r\n" + ONE * 2 + b"$-1\r\n" + ONE * 4, "element 2 is nil, not an integer"),
    (b"*7\r\n" + ONE * 3 + b"*1\r\n:5\r\n" + ONE * 3, "element 3 is an array, not an integer"),
    (b"*7\r\n" + ONE * 6 + b"+OK\r\n", "element 6 is a status, not an integer"),
    (b"*3\r\n" + ONE * 3, "3 elements, not 7"),
    (b"+OK\r\n", "a status, not an array"),
], ids=["strings", "nil", "nested", "status-element", "short", "status"])
def test_mg_011_20_unexpected_reply_types_are_a_store_failure(gateways, backend, reply, why):
    """Every element of the decide script's answer is checked to be an
    integer before it is read (issue 9, 10): hiredis reads 0 from any
    other type, which was taken for "refused".  An answer of the wrong
    shape is a failure of the store: the failure policy (closed: 503) and
    a log line that says what was wrong."""
    fake = FakeRedis(reply)
    try:
        gw = gateway(gateways, backend, fake, "badreply", "10/min")
        gw.allow_errors(r"MGR00003", r"MGR00006")
        gw.start()
        resp = gw.chat(DEMO_KEY)
        assert resp.status == 503, resp
        assert resp.json["error"]["code"] == "gateway_error"
        assert fake.evalsha == 1
        log = gw.read_log()
        assert "MGR00006" in log and "unexpected reply to the decide script: " + why in log, log
    finally:
        fake.stop()


def test_mg_011_21_a_store_that_cannot_be_used_is_said_at_start(gateways, backend, redis,
                                                                tmp_path):
    """A wrong address, password or database shows in the error log when
    the server starts (MGR00012, a warning: Redis may come up later), not
    only with the first request's 503; a Redis that answers says nothing."""
    gw = gateway(gateways, backend, redis, "answers", "5/min").start()
    assert gw.chat(DEMO_KEY).status == 200
    assert "MGR00012" not in gw.read_log()
    gw.stop()
    nowhere = harness.RedisServer(tmp_path / "nowhere")    # never started
    gw = gateway(gateways, backend, nowhere, "nowhere", "5/min").start()
    log = gw.wait_log(r"MGR00012")
    line = [l for l in log.splitlines() if "MGR00012" in l][0]
    assert ":warn]" in line
    assert "127.0.0.1:%d cannot be used now" % nowhere.port in line
    assert "refused" in line.lower()
    gw.stop()
    server = harness.RedisServer(tmp_path / "authredis", password="s3cret").start()
    try:
        gw = gateway(gateways, backend, server, "badauth", "5/min", "password=Xq7-not-it").start()
        log = gw.wait_log(r"MGR00012")
        assert "AUTH refused" in [l for l in log.splitlines() if "MGR00012" in l][0]
        assert "Xq7-not-it" not in log
        gw.stop()
        gw = gateway(gateways, backend, server, "baddb", "5/min",
                     "password=s3cret db=99").start()
        log = gw.wait_log(r"MGR00012")
        assert "SELECT 99 refused" in log
    finally:
        server.stop()
