"""Token limits (issue 11): a reservation at admission, settled to the
usage the model server reports -- in JSON answers and in streams, where
the gateway asks for the usage itself when the client did not -- and the
tier's max_tokens ceiling."""
import json
import math
import os

import pytest

import harness
from harness import DEMO_KEY, PRO_KEY, QUICKSTART_KEYS

CONF = """
LogFormat "%{{modelgate-usage}}n %{{modelgate-prompt-tokens}}n %{{modelgate-completion-tokens}}n %{{modelgate-total-tokens}}n %{{modelgate-reserved-tokens}}n %{{modelgate-max-tokens}}n %>s" tokens
CustomLog "{run}/tokens.log" tokens
ModelGateTier free 1000/min max_tokens=4
ModelGateTier pro  1000/min max_tokens=8,clamp tokens=100000/min
ModelGateLimit daily-tokens key 100/day unit=tokens algorithm=fixed_window tiers=free
ModelGateLimit completion-day key 12/day unit=tokens count=completion algorithm=fixed_window tiers=pro
"""


@pytest.fixture
def gw(gateways, backend):
    backend.reset()
    g = gateways("tokens", backend_port=backend.port)
    g.write_conf(CONF.format(run=g.rundir) + harness.routed_v1(QUICKSTART_KEYS, backend.port))
    return g.start()


def body(max_tokens=None, stream=False, include_usage=None, words="one two three"):
    b = {"model": "mock-small", "messages": [{"role": "user", "content": words}]}
    if max_tokens is not None:
        b["max_tokens"] = max_tokens
    if stream:
        b["stream"] = True
    if include_usage is not None:
        b["stream_options"] = {"include_usage": include_usage}
    return b


def token_lines(g, count):
    """The tokens.log once it holds `count` lines."""
    import time
    deadline = time.monotonic() + 10
    while True:
        lines = g.read_log("tokens.log").splitlines()
        if len(lines) >= count or time.monotonic() > deadline:
            return [l.split() for l in lines]
        time.sleep(0.02)


def reservation(b):
    """What the gateway reserves for this body: about a token per four
    bytes of it, plus the completion cap."""
    raw = json.dumps(b).encode()
    return math.ceil(len(raw) / 4) + b.get("max_tokens", 0)


def test_mg_022_01_settled_usage_not_the_reservation_is_counted(gw, backend):
    """100 tokens a day; each request reserves R but uses 7: as many are
    admitted as 7 per request allows, with room for one more R, where
    keeping the reservations would admit only 100 // R."""
    b = body(max_tokens=4)
    r = reservation(b)
    assert r > 20                         # the estimate is the larger
    expect = (100 - r) // 7 + 1
    statuses = [gw.chat(DEMO_KEY, body=b).status for _ in range(expect + 2)]
    assert statuses == [200] * expect + [429] * 2
    assert backend.count() == expect
    lines = token_lines(gw, expect)
    assert lines[0] == ["usage", "3", "4", "7", str(r), "-", "200"]
    refused = gw.chat(DEMO_KEY, body=b)
    assert refused.status == 429
    assert refused.json["error"]["code"] == "rate_limit_exceeded"
    assert '"daily-tokens";q=100;w=86400' in refused.header("ratelimit-policy")
    assert refused.header("ratelimit").startswith('"daily-tokens";r=%d;' % (100 - 7 * expect))


def test_mg_022_02_completion_tokens_exactly(gw, backend):
    """count=completion with the cap the client asks for: the reservation
    is what the answer uses, and the limit refuses exactly when the
    completion tokens the backend reported are used."""
    statuses = [gw.chat(PRO_KEY, body=body(max_tokens=4)).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert backend.count() == 3
    resp = gw.chat(PRO_KEY, body=body(max_tokens=4))
    assert resp.header("ratelimit").startswith('"completion-day";r=0;')


def test_mg_022_03_ceiling_refuses_clamps_or_adds(gw, backend):
    big = gw.chat(DEMO_KEY, body=body(max_tokens=10))
    assert big.status == 400
    err = big.json["error"]
    assert err["param"] == "max_tokens" and err["code"] == "max_tokens_exceeded"
    assert "at most 4 completion tokens" in err["message"]
    assert backend.count() == 0
    # None asked: the ceiling is added, so the answer uses no more.
    ok = gw.chat(DEMO_KEY, body=body())
    assert ok.status == 200
    assert json.loads(backend.requests()[-1]["body"])["max_tokens"] == 4
    assert ok.json["usage"]["completion_tokens"] == 4
    # pro clamps: 100 asked, 8 sent, only those bytes changed.
    sent = {"model": "mock-small", "max_completion_tokens": 100,
            "messages": [{"role": "user", "content": "x"}]}
    resp = gw.chat(PRO_KEY, body=sent)
    assert resp.status == 200
    forwarded = backend.requests()[-1]["body"]
    assert forwarded == json.dumps(sent).replace(": 100", ": 8")
    # three lines: the 400, the added cap, the clamp (the last is written
    # after its answer is sent: wait for it, not for any two)
    assert token_lines(gw, 3)[2][5] == "clamped"


def sse_events(data):
    return [e for e in data.decode().split("\n\n") if e]


def test_mg_022_04_stream_usage_asked_for_and_hidden(gw, backend):
    """The client streams without include_usage: the gateway asks for the
    usage, settles with it, and the client gets no usage-only event."""
    resp = gw.chat(DEMO_KEY, body=body(max_tokens=4, stream=True))
    assert resp.status == 200
    sent = json.loads(backend.requests()[-1]["body"])
    assert sent["stream_options"] == {"include_usage": True}
    events = sse_events(resp.body)
    assert events[-1] == "data: [DONE]"
    objs = [json.loads(e[6:]) for e in events[:-1]]
    assert all(o["choices"] for o in objs)          # no usage-only chunk
    assert len(objs) == 4 + 1
    assert token_lines(gw, 1)[0][:4] == ["usage", "3", "4", "7"]
    # Byte for byte the stream the client asked for: what the model server
    # sends without include_usage (ids and times aside).
    import re
    direct = harness.request(backend.port, "POST", "/v1/chat/completions",
                             body=body(max_tokens=4, stream=True))
    norm = lambda b: re.sub(rb'"(id|created)": ?("[^"]*"|[0-9]+)', b"", b)
    assert b'"usage"' not in resp.body
    assert norm(resp.body) == norm(direct.body)


def test_mg_022_05_stream_with_include_usage_passes_unchanged(gw, backend):
    b = body(max_tokens=4, stream=True, include_usage=True)
    resp = gw.chat(DEMO_KEY, body=b)
    assert resp.status == 200
    assert backend.requests()[-1]["body"] == json.dumps(b)
    objs = [json.loads(e[6:]) for e in sse_events(resp.body)[:-1]]
    assert objs[-1]["choices"] == [] and objs[-1]["usage"]["total_tokens"] == 7
    assert token_lines(gw, 1)[0][:4] == ["usage", "3", "4", "7"]


def test_mg_022_06_failed_answers_give_the_reservation_back(gw, backend):
    b = body(max_tokens=4)
    r = reservation(b)
    backend.mode(mode="error", status=500)
    # Four: the upstream's breaker opens at the fifth failure in a row.
    for _ in range(4):
        assert gw.chat(DEMO_KEY, body=b).status == 500
    backend.mode(mode="normal")
    assert [l[0] for l in token_lines(gw, 4)] == ["refunded"] * 4
    # Four reservations would be gone from 100 without the refunds.
    assert 4 * r > 100
    assert gw.chat(DEMO_KEY, body=b).status == 200


@pytest.mark.parametrize("usage,how", [
    ("omit", "absent"),
    ({"prompt_tokens": -5, "completion_tokens": 1}, "invalid"),
    ({"prompt_tokens": 1.5, "completion_tokens": 1}, "invalid"),
    ({"prompt_tokens": 10 ** 30, "completion_tokens": 1}, "invalid"),
])
def test_mg_022_07_no_usable_usage_keeps_the_reservation(gw, backend, usage, how):
    b = body(max_tokens=4)
    r = reservation(b)
    backend.mode(usage=usage)
    assert gw.chat(DEMO_KEY, body=b).status == 200
    backend.mode(mode="normal")
    assert token_lines(gw, 1)[0][0] == how
    assert "MG00502" in gw.read_log()
    resp = gw.chat(DEMO_KEY, body=b)
    assert resp.header("ratelimit").startswith('"daily-tokens";r=%d;' % (100 - r - r))


def test_mg_022_08_token_limits_that_cannot_settle_are_refused(gateways):
    # Every store settles now, Redis's exact mode too (test_mg_023).
    gw = gateways("redis-exact")
    gw.write_conf("LoadModule modelgate_redis_module \"%s\"\n"
                  "ModelGateStore redis 127.0.0.1:1\n"
                  "ModelGateTier free 10/min tokens=1000/min\n" % harness.REDIS_MODULE)
    code, out = gw.check_syntax()
    assert code == 0, out
    assert "Syntax OK" in out
    harness.assert_config_errors(gateways, [
        ("ModelGateLimit x key 10/min unit=tokens algorithm=sliding_log\n",
         "cannot give a reservation back"),
        ("ModelGateLimit x key 10/min tokens=5/min\n", "are a tier's options"),
    ])


# ---- budgets -------------------------------------------------------------------

BUDGET = """
LogFormat "%{{modelgate-usage}}n %{{modelgate-spend}}n %{{modelgate-upstream}}n %>s" spend
CustomLog "{run}/spend.log" spend
ModelGateTier free 1000/min max_tokens=4 {onlimit}
ModelGateTier pro  1000/min
ModelGateBudget acme-month tenant 0.05/month
"""


def budget_gateway(gateways, backend, backend2, onlimit=""):
    backend.reset()
    backend2.reset()
    g = gateways("budget", backend_port=backend.port)
    # mock-small: 1000 a million prompt tokens, 2000 a million completion
    # tokens (0.001 and 0.002 a token); mock-large is free here.
    conf = harness.two_models(backend, backend2,
                              BUDGET.format(run="%s", onlimit=onlimit))
    conf = conf.replace("ModelGateModel mock-small small",
                        "ModelGateModel mock-small small price=1000/2000")
    g.write_conf(conf.replace("%s", g.rundir, 1))
    return g.start()


def test_mg_022_09_budget_spent_then_insufficient_quota(gateways, backend, backend2):
    g = budget_gateway(gateways, backend, backend2)
    b = body(max_tokens=4)
    reserve = reservation(b) - 4        # the prompt's part
    r = reserve * 1000000 + 4 * 2000000
    spent = 3 * 1000000 + 4 * 2000000   # 3 prompt and 4 completion tokens
    expect = (50000000 - r) // spent + 1
    statuses = [g.chat(DEMO_KEY, body=b).status for _ in range(expect + 1)]
    assert statuses == [200] * expect + [429]
    refused = g.chat(DEMO_KEY, body=b)
    assert refused.json["error"]["code"] == "insufficient_quota"
    assert refused.json["error"]["type"] == "insufficient_quota"
    assert refused.header("x-should-retry") == "false"
    assert '"acme-month";q=50000000;' in refused.header("ratelimit-policy")
    lines = [l.split() for l in g.read_log("spend.log").splitlines()]
    assert lines[0][:2] == ["usage", "0.011000000"]
    assert backend.count() == expect
    # The tenant's other keys share its budget; another tenant has its own.
    assert g.chat(PRO_KEY, body=b).status == 429
    assert g.chat(harness.OTHER_KEY, body=b).status == 200


def test_mg_022_10_over_budget_falls_back_to_a_cheaper_model(gateways, backend, backend2):
    g = budget_gateway(gateways, backend, backend2, onlimit="on_limit=fallback:mock-large")
    b = body(max_tokens=4)
    statuses, degraded = [], []
    for _ in range(8):
        resp = g.chat(DEMO_KEY, body=b)
        statuses.append(resp.status)
        degraded.append(resp.header("x-modelgate-degraded"))
    assert statuses == [200] * 8
    first_fallback = degraded.index("fallback")
    assert first_fallback >= 1 and degraded[first_fallback:] == ["fallback"] * (8 - first_fallback)
    assert (backend.count(), backend2.count()) == (first_fallback, 8 - first_fallback)


def test_mg_022_11_budget_and_price_errors(gateways):
    harness.assert_config_errors(gateways, [
        ("ModelGateBudget b tenant 50.0000000001/month\n", "more than 9 decimals"),
        ("ModelGateBudget b tenant 50/month algorithm=token_bucket\n",
         "does not apply to a budget"),
        ("ModelGateBudget b tenant 0/month\n", "must be more than 0"),
        ("ModelGateBudget b tenant lots/month\n", "is not an amount"),
        ("ModelGateUpstream u http://127.0.0.1:9\nModelGateModel m u price=2.5\n",
         "IN/OUT per million"),
        ("ModelGateUpstream u http://127.0.0.1:9\nModelGateModel m u price=0.0001/1\n",
         "at most 3 decimals"),
    ])


def test_mg_022_12_a_client_gone_mid_stream_keeps_the_reservation(gw, backend):
    """The answer never ends for the client: the settle still runs (at the
    end of the request), and the reservation stays charged."""
    import socket
    backend.mode(stream_chunk_delay_ms=300)
    b = json.dumps(body(max_tokens=4, stream=True)).encode()
    head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: %s\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (DEMO_KEY, len(b))).encode()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
        s.sendall(head + b)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
    lines = token_lines(gw, 1)
    backend.mode(mode="normal")
    assert lines[0][0] in ("aborted", "absent")
    assert "MG00502" in gw.read_log()


def test_mg_022_13_the_answer_is_asked_for_uncompressed(gw, backend):
    gw.chat(DEMO_KEY, body=body(max_tokens=4),
            extra={"Accept-Encoding": "gzip, br"})
    assert backend.requests()[-1]["headers"]["accept-encoding"] == "identity"


def test_mg_022_14_openai_rate_limit_headers(gw, backend):
    """Where token layers apply, OpenAI's own x-ratelimit-* headers too."""
    resp = gw.chat(PRO_KEY, body=body(max_tokens=4))
    assert resp.status == 200
    # the request trio from the tier (1000/min, one used), the token trio
    # from the binding token layer: completion-day, 12 less the 4 reserved
    assert resp.header("x-ratelimit-limit-requests") == "1000"
    assert resp.header("x-ratelimit-remaining-requests") == "999"
    assert resp.header("x-ratelimit-reset-requests") == "60ms"
    assert resp.header("x-ratelimit-limit-tokens") == "12"
    assert resp.header("x-ratelimit-remaining-tokens") == "8"
    assert resp.header("x-ratelimit-reset-tokens").endswith("s")



def test_mg_022_15_no_openai_headers_without_token_layers(quickstart):
    resp = quickstart.chat(DEMO_KEY)
    assert resp.status == 200 and resp.header("ratelimit")
    assert resp.header("x-ratelimit-limit-requests") is None
    assert resp.header("x-ratelimit-limit-tokens") is None


def test_mg_022_16_parallel_requests_never_overshoot_completion_tokens(gw, backend):
    """Peers that count only after the fact let parallel requests spend
    several times a token limit.  Reserved at admission, 12 completion
    tokens a day admit exactly 3 requests of 4, however many arrive at
    once; what they used is what the limit says."""
    import threading
    backend.mode(delay_ms=300)          # all in flight together
    results = []
    lock = threading.Lock()

    def one():
        r = gw.chat(PRO_KEY, body=body(max_tokens=4))
        with lock:
            results.append(r.status)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    backend.mode(mode="normal")
    assert sorted(results) == [200] * 3 + [429] * 7
    assert backend.count() == 3
    assert sum(json.loads(r["body"])["max_tokens"] for r in backend.requests()) == 12


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_mg_022_17_a_usage_only_event_of_the_largest_held_size(gw, backend, eol):
    """A usage-only event exactly MG_USAGE_ONLY_MAX (16384) bytes long is
    held whole and dropped, whatever the line ends: with CR ones its blank
    line ends in CR and the filter must close it without counting a byte
    that is not there."""
    import re
    b = body(max_tokens=4, stream=True)
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7, "pad": ""}

    def usage_event(data):
        evs = [e for e in re.split(rb"(?<=%s%s)" % (re.escape(eol.encode()),
                                                    re.escape(eol.encode())), data) if e]
        return [e for e in evs if b'"choices":[]' in e][0]

    backend.mode(line_end=eol, usage=usage)
    probe = harness.request(backend.port, "POST", "/v1/chat/completions",
                            body=dict(b, stream_options={"include_usage": True}))
    ev = usage_event(probe.body)
    pid = int(re.search(rb'"chatcmpl-(\d+)"', ev).group(1))
    usage["pad"] = "x" * (16384 - len(ev) - (len(str(pid + 1)) - len(str(pid))))
    backend.mode(line_end=eol, usage=usage)
    probe = harness.request(backend.port, "POST", "/v1/chat/completions",
                            body=dict(b, stream_options={"include_usage": True}))
    resp = gw.chat(DEMO_KEY, body=b)
    backend.mode(mode="normal")
    assert resp.status == 200
    # the gateway's request got the next id: its usage event is as long
    assert len(usage_event(probe.body)) == 16384 + len(str(pid + 2)) - len(str(pid + 1))
    assert b'"choices":[]' not in resp.body
    assert b'"usage"' not in resp.body
    assert resp.body.endswith(("data: [DONE]" + eol + eol).encode())
    assert token_lines(gw, 1)[0][:4] == ["usage", "3", "4", "7"]


def test_mg_022_18_both_caps_are_held_to_the_ceiling(gw, backend):
    """A body with max_tokens and max_completion_tokens: the model server
    may read either (OpenAI and vLLM the newer, older servers only
    max_tokens), so the ceiling is checked on the larger, a clamp rewrites
    each that is over it, and the reservation is the larger."""
    msgs = [{"role": "user", "content": "one two three"}]
    # free (max_tokens=4, refuses): the larger is over, whichever name it has
    for caps in ({"max_tokens": 200, "max_completion_tokens": 2},
                 {"max_tokens": 2, "max_completion_tokens": 200}):
        big = gw.chat(DEMO_KEY, body=dict(caps, model="mock-small", messages=msgs))
        assert big.status == 400, big.body
        name = [k for k, v in caps.items() if v == 200][0]
        assert big.json["error"]["param"] == name
        assert big.json["error"]["code"] == "max_tokens_exceeded"
    assert backend.count() == 0
    # pro (max_tokens=8,clamp): both over -> both 8; one over -> that one.
    # One word an answer: pro's 12 completion tokens a day hold both.
    backend.mode(reply_words=1)
    sent = {"model": "mock-small", "max_tokens": 5000, "max_completion_tokens": 100,
            "messages": msgs}
    resp = gw.chat(PRO_KEY, body=sent)
    assert resp.status == 200
    forwarded = json.loads(backend.requests()[-1]["body"])
    assert (forwarded["max_tokens"], forwarded["max_completion_tokens"]) == (8, 8)
    sent = {"model": "mock-small", "max_tokens": 5000, "max_completion_tokens": 3,
            "messages": msgs}
    assert gw.chat(PRO_KEY, body=sent).status == 200
    backend.mode(mode="normal")
    forwarded = backend.requests()[-1]["body"]
    assert forwarded == json.dumps(sent).replace(": 5000", ": 8")
    # reserved: the prompt's estimate and the larger cap (8), not 3
    lines = token_lines(gw, 4)
    assert [l[5] for l in lines[2:]] == ["clamped", "clamped"]
    assert int(lines[3][4]) == math.ceil(len(forwarded) / 4) + 8
