"""Token limits on the redis store in exact mode: reservations settled in
Redis, one script per answer, on Redis's clock -- by one gateway, by two
sharing a tenant's limit, given back when the upstream fails, and with
Redis gone between admission and settle.  Then the settle script itself,
run against a real redis-server, algorithm by algorithm."""
import json
import math
import os
import re
import threading
import time

import pytest

import harness
from harness import DEMO_KEY, PRO_KEY, QUICKSTART_KEYS

ALGOS = ["token_bucket", "leaky_bucket", "gcra", "fixed_window", "sliding_window"]

CONF = """
LogFormat "%{{modelgate-usage}}n %{{modelgate-total-tokens}}n %{{modelgate-reserved-tokens}}n %>s" tokens
CustomLog "{run}/tokens.log" tokens
LoadModule modelgate_redis_module "{module}"
ModelGateStore redis 127.0.0.1:{port} timeout=200
ModelGateStoreFailure closed
ModelGateTier free 1000/min max_tokens=4
ModelGateTier pro  1000/min max_tokens=4
ModelGateLimit tenant-tokens tenant 100/day unit=tokens algorithm={algo}
"""

BODY = {"model": "mock-small", "max_tokens": 4,
        "messages": [{"role": "user", "content": "one two three"}]}
# About a token per four bytes of the body, plus the completion cap; the
# mock backend answers 3 prompt and 4 completion tokens.
RESERVED = math.ceil(len(json.dumps(BODY).encode()) / 4) + 4
USED = 7
# With settled usage: as many as 7 each allows, with room for one more
# reservation; keeping the reservations would admit 100 // RESERVED.
EXPECT = (100 - RESERVED) // USED + 1


@pytest.fixture
def redis(tmp_path):
    server = harness.RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def gateway(gateways, backend, redis, name, algo="fixed_window"):
    g = gateways(name, backend_port=backend.port)
    g.write_conf(CONF.format(run=g.rundir, module=harness.REDIS_MODULE,
                             port=redis.port, algo=algo)
                 + harness.routed_v1(QUICKSTART_KEYS, backend.port))
    return g.start()


def log_lines(g, count, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        lines = g.read_log("tokens.log").splitlines()
        if len(lines) >= count or time.monotonic() > deadline:
            return [l.split() for l in lines]
        time.sleep(0.02)


def chat_settled(g, key, seen):
    """One request, and its log line: the line is written after the settle
    (log_transaction runs it first), so the next request sees its effect
    however the machine schedules the two."""
    status = g.chat(key, body=BODY).status
    seen[g] = seen.get(g, 0) + 1
    assert len(log_lines(g, seen[g])) == seen[g]
    return status


def test_mg_023_00_the_numbers():
    assert RESERVED > 20 and 4 * RESERVED > 100 and EXPECT > 100 // RESERVED


@pytest.mark.parametrize("algo", ALGOS)
def test_mg_023_01_settled_usage_not_the_reservation_is_counted(gateways, backend, redis,
                                                                algo):
    backend.reset()
    gw = gateway(gateways, backend, redis, "one", algo)
    seen = {}
    statuses = [chat_settled(gw, DEMO_KEY, seen) for _ in range(EXPECT + 2)]
    assert statuses == [200] * EXPECT + [429] * 2
    assert backend.count() == EXPECT
    assert log_lines(gw, 1)[0] == ["usage", "7", str(RESERVED), "200"]
    refused = gw.chat(DEMO_KEY, body=BODY)
    assert refused.header("ratelimit").startswith(
        '"tenant-tokens";r=%d;' % (100 - USED * EXPECT))


@pytest.mark.parametrize("algo", ALGOS)
def test_mg_023_02_two_gateways_share_a_tenants_tokens(gateways, backend, redis, algo):
    """Two gateways, two keys of tenant acme, one Redis: requests alternate
    between them and exactly as many are admitted as one gateway admits."""
    backend.reset()
    gws = [gateway(gateways, backend, redis, "gw1", algo),
           gateway(gateways, backend, redis, "gw2", algo)]
    keys = [DEMO_KEY, PRO_KEY]
    seen = {}
    statuses = [chat_settled(gws[i % 2], keys[(i // 2) % 2], seen)
                for i in range(EXPECT + 3)]
    assert statuses == [200] * EXPECT + [429] * 3
    assert backend.count() == EXPECT
    assert all(l[0] == "usage" for g in gws for l in log_lines(g, seen[g])
               if l[-1] == "200")


@pytest.mark.parametrize("algo", ALGOS)
def test_mg_023_03_failed_answers_give_the_reservation_back(gateways, backend, redis, algo):
    backend.reset()
    gw = gateway(gateways, backend, redis, "refund", algo)
    seen = {}
    backend.mode(mode="error", status=500)
    # Four: the upstream's breaker opens at the fifth failure in a row.
    assert [chat_settled(gw, DEMO_KEY, seen) for _ in range(4)] == [500] * 4
    backend.mode(mode="normal")
    assert [l[0] for l in log_lines(gw, 4)] == ["refunded"] * 4
    # Kept, four reservations would have taken more than the 100; given
    # back, the whole allowance is there again.
    statuses = [chat_settled(gw, DEMO_KEY, seen) for _ in range(EXPECT + 1)]
    assert statuses == [200] * EXPECT + [429]


def test_mg_023_04_redis_gone_before_the_settle(gateways, backend, redis):
    """Admitted with Redis up; Redis stops while the backend answers: the
    answer still reaches the client, the failed settle is logged once,
    the outage once, and nothing crashes."""
    backend.reset()
    gw = gateway(gateways, backend, redis, "gone")
    gw.allow_errors(r"MGR00003")
    backend.mode(mode="slow", delay_ms=1500)
    result = {}
    client = threading.Thread(target=lambda: result.update(
        resp=gw.chat(DEMO_KEY, body=BODY)))
    client.start()
    deadline = time.monotonic() + 10
    while backend.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert backend.count() == 1           # admitted, in flight
    redis.stop()
    client.join(30)
    assert result["resp"].status == 200
    assert result["resp"].json["usage"]["total_tokens"] == USED
    assert log_lines(gw, 1)[0][0] == "usage"
    log = gw.wait_log(r"MG00503")
    assert log.count("MG00503") == 1
    assert log.count("MGR00003") == 1
    # The store is down: the next request gets the failure policy's answer.
    backend.mode(mode="normal")
    resp = gw.chat(DEMO_KEY, body=BODY)
    assert resp.status == 503 and resp.json["error"]["code"] == "gateway_error"
    assert "exit signal" not in gw.read_log()
    assert gw.read_log().count("MG00503") == 1


# ---- the settle script itself, against a real redis-server ---------------------

SCRIPT_H = os.path.join(os.path.dirname(__file__), "..", "..", "plugins", "redis",
                        "mg_redis_script.h")


def lua(name):
    """The text of script `name` from mg_redis_script.h (a C literal)."""
    with open(SCRIPT_H) as f:
        src = f.read()
    body = src.split("static const char %s[] =" % name, 1)[1].split(";\n", 1)[0]
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', body)
    return "".join(parts).replace("\\n", "\n").replace("\\'", "'").replace('\\"', '"')


def reply(raw):
    """A RESP reply as Python: integers, strings, arrays, None; errors raise."""
    def parse(i):
        kind, end = raw[i], raw.index("\r\n", i)
        line = raw[i + 1:end]
        if kind == ":":
            return int(line), end + 2
        if kind == "+":
            return line, end + 2
        if kind == "-":
            raise AssertionError(line)
        if kind == "$":
            n = int(line)
            if n < 0:
                return None, end + 2
            return raw[end + 2:end + 2 + n], end + 4 + n
        if kind == "*":
            out, j = [], end + 2
            for _ in range(int(line)):
                v, j = parse(j)
                out.append(v)
            return out, j
        raise AssertionError(raw)
    return parse(0)[0]


US = 1000000
MIN, DAY = 60 * US, 86400 * US
ALGO_NUM = {"token_bucket": 1, "leaky_bucket": 2, "fixed_window": 3,
            "sliding_window": 5, "gcra": 6}


def redis_now(redis):
    s, us = reply(redis.command("TIME"))
    return int(s) * US + int(us)


def settle(redis, key, algo, q, w, delta, then_start=0):
    return reply(redis.command("EVAL", lua("mg_redis_settle_lua"), 1, key,
                               ALGO_NUM[algo], q, w, q, delta, then_start, 0, 0, 0, 0))


def decide(redis, key, algo, q, w, cost):
    """(allowed, remaining, retry-after us) from the decide script."""
    out = reply(redis.command("EVAL", lua("mg_redis_decide_lua"), 1, key,
                              ALGO_NUM[algo], q, w, q, cost, 0, 0, 0, 0, 0, 0))
    return out[2], out[3], out[5]


@pytest.mark.parametrize("algo", ["token_bucket", "gcra", "leaky_bucket"])
def test_mg_023_05_buckets_debt_capped_and_paid_first(redis, algo):
    """As test_refund.c's: 90 used of 60 a minute is 30 in debt (one token
    a second); refunds pay it off first, and a bucket is never more than
    full.  A charge leaves at most one bucket of debt."""
    assert settle(redis, "k", algo, 60, MIN, 90) == 1
    allowed, _, retry = decide(redis, "k", algo, 60, MIN, 1)
    assert allowed == 0 and 30 * US < retry <= 31 * US
    settle(redis, "k", algo, 60, MIN, -20)
    allowed, _, retry = decide(redis, "k", algo, 60, MIN, 1)
    assert allowed == 0 and 10 * US < retry <= 11 * US
    settle(redis, "k", algo, 60, MIN, -15)
    assert decide(redis, "k", algo, 60, MIN, 6)[0] == 0
    assert decide(redis, "k", algo, 60, MIN, 5)[:2] == (1, 0)
    # Given back more than was ever taken: a full bucket, the key gone.
    settle(redis, "k", algo, 60, MIN, -10 ** 12)
    assert reply(redis.command("EXISTS", "k")) == 0
    assert decide(redis, "k", algo, 60, MIN, 61)[0] == 0
    assert decide(redis, "k", algo, 60, MIN, 60)[:2] == (1, 0)
    # Debt of at most one bucket, however much more was used.
    settle(redis, "k", algo, 60, MIN, 10 ** 12)
    allowed, _, retry = decide(redis, "k", algo, 60, MIN, 1)
    assert allowed == 0 and 60 * US < retry <= 61 * US
    # A refund for a counter Redis no longer holds writes nothing.
    assert settle(redis, "gone", algo, 60, MIN, -5) == 0
    assert reply(redis.command("EXISTS", "gone")) == 0


def test_mg_023_06_fixed_window_refunds_only_while_it_counts(redis):
    now = redis_now(redis)
    start = now - now % DAY
    assert decide(redis, "k", "fixed_window", 100, DAY, 80)[:2] == (1, 20)
    # Charged in an earlier window: this one does not count it.
    assert settle(redis, "k", "fixed_window", 100, DAY, -50, start - DAY) == 0
    assert decide(redis, "k", "fixed_window", 100, DAY, 0)[1] == 20
    # Charged in this one: it comes off, never below nothing.
    settle(redis, "k", "fixed_window", 100, DAY, -50, start)
    assert decide(redis, "k", "fixed_window", 100, DAY, 0)[1] == 70
    settle(redis, "k", "fixed_window", 100, DAY, -500, start)
    assert decide(redis, "k", "fixed_window", 100, DAY, 0)[1] == 100
    # A charge fills the window up to its quota, and no further.
    settle(redis, "k", "fixed_window", 100, DAY, 30, start)
    assert decide(redis, "k", "fixed_window", 100, DAY, 0)[1] == 70
    settle(redis, "k", "fixed_window", 100, DAY, 500, start)
    assert decide(redis, "k", "fixed_window", 100, DAY, 0)[1] == 0
    state = reply(redis.command("GET", "k"))
    assert state == "%d:%d:100" % (start, start + DAY)


def test_mg_023_07_sliding_window_refunds_the_previous_count_too(redis):
    w = DAY        # the previous window's weight moves by 1e-9 a millisecond
    now = redis_now(redis)
    start = now - now % w
    # 10 this window, 90 the previous one (still weighing).
    redis.command("SET", "k", "%d:10:90" % start)
    settle(redis, "k", "sliding_window", 100, w, -50, start - w)
    assert reply(redis.command("GET", "k")) == "%d:10:40" % start
    settle(redis, "k", "sliding_window", 100, w, -50, start)
    assert reply(redis.command("GET", "k")) == "%d:0:40" % start
    # Two windows back: nothing of it weighs, nothing to give back.
    assert settle(redis, "k", "sliding_window", 100, w, -40, start - 2 * w) == 0
    assert reply(redis.command("GET", "k")) == "%d:0:40" % start
    # A charge takes what is left of the weighted allowance, no more.
    settle(redis, "k", "sliding_window", 100, w, 10 ** 6, start)
    assert decide(redis, "k", "sliding_window", 100, w, 0)[1] == 0
    assert decide(redis, "k", "sliding_window", 100, w, 1)[0] == 0
