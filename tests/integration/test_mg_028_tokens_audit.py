"""Issue 11's remaining edges: how many limit layers a configuration can
put on one request (a tier's tokens= layer counts), a stream with one
10 MB event, and a client that leaves mid-stream."""
import json
import os
import socket
import time

import pytest

import harness
from harness import DEMO_KEY, PRO_KEY, QUICKSTART_KEYS


# ---- at most MG_LIMIT_MAX_LAYERS (7) layers a request ---------------------------

def limits(prefix, n, extra=""):
    return "".join("ModelGateLimit %s%d key %d/min%s\n" % (prefix, i, 1000 + i, extra)
                   for i in range(n))


def location(path, body):
    return '<Location "%s">\n%s</Location>\n' % (path, body)


ROUTED = """
ModelGateKeyFile "%s"
ModelGateUpstream model http://127.0.0.1:9
""" % QUICKSTART_KEYS

TOKENS_TIER = "ModelGateTier free 1000/min tokens=100000/min\nModelGateTier pro 1000/min\n"
PLAIN_TIERS = "ModelGateTier free 1000/min\nModelGateTier pro 1000/min\n"


def test_mg_028_01_a_tiers_tokens_layer_counts(gateways):
    """free meets its tier, its tokens= layer, 4 server-wide and 2 of the
    location's: 8.  The location comes first in the file, where a check
    made while reading it would not see the server-wide limits yet."""
    text = (location("/v1/", "ModelGate On\n" + limits("loc", 2)) + ROUTED
            + TOKENS_TIER + limits("srv", 4))
    harness.assert_config_errors(gateways, [(
        text, "ModelGateLimit: a request of tier 'free' at <Location /v1/> "
              "meets 8 limit layers (the tier's 2, 4 server-wide, 2 of its "
              "sections); at most 7 apply to a request")])
    # One fewer is the most there may be: accepted.
    gw = gateways("seven")
    gw.write_conf(location("/v1/", "ModelGate On\n" + limits("loc", 1)) + ROUTED
                  + TOKENS_TIER + limits("srv", 4))
    code, out = gw.check_syntax()
    assert code == 0 and "Syntax OK" in out, out


def test_mg_028_02_server_wide_limits_alone(gateways):
    harness.assert_config_errors(gateways, [(
        ROUTED + TOKENS_TIER + limits("srv", 6),
        "ModelGateLimit: a request of tier 'free' meets 8 limit layers "
        "(the tier's 2, 6 server-wide, 0 of its sections)")])


def test_mg_028_03_stacked_locations_and_matches_add_up(gateways):
    """A request for /v1/chat/completions merges <Location /v1/>, <Location
    /v1/chat> and a <LocationMatch> that matches that path."""
    text = (ROUTED + TOKENS_TIER
            + location("/v1/", "ModelGate On\n" + limits("a", 2))
            + location("/v1/chat", limits("b", 2))
            + '<LocationMatch "^/v1/ch">\n%s</LocationMatch>\n' % limits("c", 2)
            + location("/other/", limits("d", 4)))
    harness.assert_config_errors(gateways, [(
        text, "a request of tier 'free' at <Location /v1/chat> meets 8 limit "
              "layers (the tier's 2, 0 server-wide, 6 of its sections)")])


def test_mg_028_04_tiers_and_models_narrow_the_worst_case(gateways, backend, backend2):
    """Limits for other tiers or other models never meet on one request:
    8 written, 7 at most for any request; the count is exact, not a
    guess, and a request meeting all 7 is served."""
    backend.reset()
    per_tier = limits("pro", 3, " tiers=pro")
    per_model = ("ModelGateLimit small-only key 500/min models=mock-small\n"
                 "ModelGateLimit large-only key 500/min models=mock-large\n")
    gw = gateways("narrow", backend_port=backend.port)
    # free: tier + tokens + free-only + small-only + 3 location = 7;
    # pro: tier + 3 pro-only + small-only + 3 location = 8 -> refused
    text = harness.two_models(backend, backend2, TOKENS_TIER + per_tier + per_model
                              + "ModelGateLimit f key 900/min tiers=free\n",
                              extra=location("/v1/", limits("loc", 3)))
    gw.write_conf(text)
    code, out = gw.check_syntax()
    assert code != 0
    assert ("a request of tier 'pro' for model 'mock-small' at <Location /v1/> "
            "meets 8 limit layers (the tier's 1, 4 server-wide, 3 of its sections)") in out
    text = text.replace("ModelGateLimit pro2 key 1002/min tiers=pro\n", "")
    gw.write_conf(text)
    code, out = gw.check_syntax()
    assert code == 0, out
    gw.start()
    resp = gw.chat(DEMO_KEY, body={"model": "mock-small", "max_tokens": 4,
                                   "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status == 200, resp
    # the tier's, its tokens, f, small-only and the location's three
    assert resp.header("ratelimit-policy").count(";q=") == 7
    assert gw.chat(PRO_KEY, body={"model": "mock-large", "max_tokens": 4, "messages": [
        {"role": "user", "content": "hi"}]}).status == 200


def test_mg_028_11_a_directory_counts_with_every_location(gateways):
    """Which URLs map into a <Directory> is not known at start-up
    (DocumentRoot, Alias, RewriteRule): its limits count with every
    <Location>'s, and the message says so.  7 is accepted and a request
    that merges both sections meets all 7."""
    gw = gateways("dirloc")
    docroot = os.path.join(gw.rundir, "htdocs")

    def text(n):
        return (ROUTED + TOKENS_TIER
                + '<Directory "%s">\nRequire all granted\n%s</Directory>\n'
                % (docroot, limits("d", 3))
                + location("/v1/", "ModelGate On\n" + limits("loc", n)))
    gw.write_conf(text(3))
    code, out = gw.check_syntax()
    assert code != 0
    assert ("a request of tier 'free' at <Location /v1/> and <Directory %s/> "
            "meets 8 limit layers (the tier's 2, 0 server-wide, 6 of its "
            "sections); a <Directory>'s limits are counted with every "
            "<Location>'s, as which URLs map into a directory is not known "
            "at start-up; at most 7 apply" % docroot) in out, out
    gw.write_conf(text(2))
    code, out = gw.check_syntax()
    assert code == 0, out
    gw.start()
    # Not routed: mapped to a file under the DocumentRoot, which is not there.
    resp = gw.chat(DEMO_KEY)
    assert resp.status == 404, resp
    assert resp.header("ratelimit-policy").count(";q=") == 7


def test_mg_028_12_pattern_sections_count_by_their_literal_prefix(gateways):
    """A <LocationMatch> or a wildcard <Location> applies only below the
    literal path its pattern starts with: it counts with the sections
    above and below that path, not with its siblings; one with no such
    path counts with every section."""
    harness.assert_config_errors(gateways, [
        (ROUTED + TOKENS_TIER + location("/v1/", "ModelGate On\n" + limits("a", 3))
         + '<LocationMatch "^/v1/chat/completions$">\n%s</LocationMatch>\n'
         % limits("b", 3),
         "a request of tier 'free' at <LocationMatch ^/v1/chat/completions$> "
         "meets 8 limit layers (the tier's 2, 0 server-wide, 6 of its "
         "sections); at most 7 apply"),
        (ROUTED + TOKENS_TIER + location("/v1/", "ModelGate On\n" + limits("a", 3))
         + '<LocationMatch "/completions$">\n%s</LocationMatch>\n' % limits("b", 3),
         "a request of tier 'free' at <Location /v1/> meets 8 limit layers "
         "(the tier's 2, 0 server-wide, 6 of its sections); a pattern section "
         "that does not start with ^ and a literal path is counted with every "
         "section of its kind; at most 7 apply"),
        (ROUTED + TOKENS_TIER + location("/v2/", "ModelGate On\n" + limits("a", 3))
         + location("/v2/*/completions", limits("b", 3)),
         "a request of tier 'free' at <Location /v2/> meets 8 "
         "limit layers (the tier's 2, 0 server-wide, 6 of its sections)")])
    # Siblings never meet on one URL: 2 + 2 + 3 at most, accepted.
    gw = gateways("siblings")
    gw.write_conf(ROUTED + TOKENS_TIER + location("/v1/", "ModelGate On\n" + limits("a", 2))
                  + '<LocationMatch "^/v1/chat/">\n%s</LocationMatch>\n' % limits("b", 3)
                  + '<LocationMatch "^/v1/embeddings">\n%s</LocationMatch>\n' % limits("c", 3)
                  + location("/v1/models/*", limits("d", 3)))
    code, out = gw.check_syntax()
    assert code == 0, out


ONE_CHILD = ("ServerLimit 1\nStartServers 1\nMinSpareThreads 1\n"
             "MaxSpareThreads 25\nMaxRequestWorkers 25\n")


def test_mg_028_13_what_startup_cannot_count_names_itself_once(gateways):
    """A .htaccess is read per request, after the start-up check: 3 limits
    in it, 3 in its <Directory> and a tier with tokens= make 8 at run
    time.  Every such request is refused with 500 JSON saying the
    configuration must change, and the error log names the layers once,
    not once per request (one child: its table is per child)."""
    gw = gateways("htaccess")
    docroot = os.path.join(gw.rundir, "htdocs")
    gw.write_conf(ROUTED + TOKENS_TIER + ONE_CHILD
                  + '<Directory "%s">\nAllowOverride AuthConfig\n'
                    'Require all granted\n%s</Directory>\n' % (docroot, limits("d", 3))
                  + location("/v1/", "ModelGate On\n"))
    with open(os.path.join(docroot, ".htaccess"), "w") as f:
        f.write(limits("h", 3))
    os.chmod(os.path.join(docroot, ".htaccess"), 0o644)
    gw.allow_errors("MG00202")
    gw.start()
    for _ in range(4):
        resp = gw.chat(DEMO_KEY)
        assert resp.status == 500, resp
        assert resp.json["error"]["code"] == "gateway_error"
        assert "its configuration must change" in resp.json["error"]["message"]
    lines = [l for l in gw.read_log().splitlines() if "MG00202" in l]
    assert len(lines) == 1, lines
    assert ("a request of tier 'free' to /v1/chat/completions meets 8 limit "
            "layers, more than the 7") in lines[0]
    assert "h2 (%s line 3)" % os.path.join(docroot, ".htaccess") in lines[0]


# ---- a stream with one 10 MB event ------------------------------------------------

CONF = """
LogFormat "%{{modelgate-usage}}n %{{modelgate-prompt-tokens}}n %{{modelgate-completion-tokens}}n %{{modelgate-total-tokens}}n %{{modelgate-reserved-tokens}}n %>s" tokens
CustomLog "{run}/tokens.log" tokens
ModelGateTier free 1000/min max_tokens=4
ModelGateTier pro  1000/min
ModelGateLimit daily-tokens key 1000/day unit=tokens algorithm=fixed_window tiers=free
"""

BIG = 10 * 1024 * 1024


@pytest.fixture
def gw(gateways, backend):
    backend.reset()
    g = gateways("tokens", backend_port=backend.port)
    g.write_conf(CONF.format(run=g.rundir) + harness.routed_v1(QUICKSTART_KEYS, backend.port))
    return g.start()


def body(stream=False, include_usage=None):
    b = {"model": "mock-small", "max_tokens": 4,
         "messages": [{"role": "user", "content": "one two three"}]}
    if stream:
        b["stream"] = True
    if include_usage is not None:
        b["stream_options"] = {"include_usage": include_usage}
    return b


def reservation(b):
    """What the gateway reserves for this body: a token per four bytes of
    it, plus max_tokens."""
    return (len(json.dumps(b).encode()) + 3) // 4 + b["max_tokens"]


def token_lines(g, count):
    deadline = time.monotonic() + 10
    while True:
        lines = g.read_log("tokens.log").splitlines()
        if len(lines) >= count or time.monotonic() > deadline:
            return [l.split() for l in lines]
        time.sleep(0.02)


def remaining(g):
    """What was left of daily-tokens before a probe: a non-streaming
    request's 'r=' plus its own reservation (the probe itself then uses
    7 tokens, settled before the answer ends)."""
    b = body()
    resp = g.chat(DEMO_KEY, body=b)
    assert resp.status == 200
    left = resp.header("ratelimit").split(";r=")[1].split(";")[0]
    return int(left) + reservation(b)


def children(g):
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == g.proc.pid:
                        pids.append(int(name))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def high_water_kb(pids):
    """The peak resident set of each process, in kB."""
    peaks = {}
    for pid in pids:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peaks[pid] = int(line.split()[1])
    return peaks


def normalised(data):
    import re
    return re.sub(rb'"(id|created)": ?("[^"]*"|[0-9]+)', b"", data)


@pytest.mark.parametrize("include_usage", [True, None])
def test_mg_028_05_a_ten_megabyte_event(gw, backend, include_usage):
    """The client gets the stream it asked for, byte for byte (ids and
    times aside): the backend's own when it asked for usage, without the
    usage-only event when the gateway asked for it.  No child's peak
    memory grows by anything near the event's size, the log says what
    passed, and the usage is settled: 7 tokens used, the rest refunded."""
    assert remaining(gw) == 1000
    before = high_water_kb(children(gw))
    backend.mode(first_word_bytes=BIG)
    sent = body(stream=True, include_usage=include_usage)
    resp = gw.chat(DEMO_KEY, body=sent)
    assert resp.status == 200
    assert len(resp.body) > BIG
    direct = harness.request(backend.port, "POST", "/v1/chat/completions", body=sent)
    assert normalised(resp.body) == normalised(direct.body)
    assert (b'"usage"' in resp.body) == bool(include_usage)
    forwarded = json.loads(backend.requests()[-2]["body"])
    assert forwarded["stream_options"] == {"include_usage": True}
    backend.mode(mode="normal")
    after = high_water_kb(children(gw))
    # The highest peak of any child against the highest before: a child
    # serving its first request grows ~1.5 MB by itself, to about where
    # the child that served the probe already is; a child started
    # meanwhile (the MPM keeps spare threads) counts too.
    growth = max(after.values()) - max(before.values())
    assert growth < BIG // 1024 // 4, (before, after)
    log = gw.read_log()
    import re
    size = re.search(r"MG00507: the stream had an event of (\d+) bytes: passed on as it "
                     r"came and scanned without holding it; usage found", log)
    assert size and BIG < int(size.group(1)) < BIG + 1000, log[-2000:]
    assert token_lines(gw, 2)[1][:4] == ["usage", "3", "4", "7"]
    assert remaining(gw) == 1000 - 7 - 7       # the first probe's and the stream's


def test_mg_028_06_a_ten_megabyte_event_and_no_usage(gw, backend):
    """The same event from a server that reports no usage: the documented
    fallback, the reservation stays charged (logged), nothing refunded."""
    assert remaining(gw) == 1000
    backend.mode(first_word_bytes=BIG, usage="omit")
    sent = body(stream=True, include_usage=True)
    resp = gw.chat(DEMO_KEY, body=sent)
    backend.mode(mode="normal")
    assert resp.status == 200 and len(resp.body) > BIG
    assert b'"usage"' not in resp.body.replace(b'"usage":null', b"")
    # the probe's line and this one's, in whichever order they were written
    assert sorted(l[0] for l in token_lines(gw, 2)) == ["absent", "usage"]
    log = gw.read_log()
    assert "usage not found" in log and "MG00502" in log
    assert remaining(gw) == 1000 - 7 - reservation(sent)


# ---- a client that leaves mid-stream ------------------------------------------------

def test_mg_028_07_a_client_gone_mid_stream_is_settled(gw, backend):
    """The client reads the first bytes and closes: the gateway learns it
    when a later event cannot be written, and the settle still runs at the
    end of the request -- the reservation stays charged, exactly, since no
    usage came (the stream's usage is its last event)."""
    assert remaining(gw) == 1000
    backend.mode(stream_chunk_delay_ms=200)
    sent = body(stream=True)
    sent["max_tokens"] = 4
    data = json.dumps(sent).encode()
    head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: %s\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (DEMO_KEY, len(data))).encode()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
        s.sendall(head + data)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    lines = token_lines(gw, 2)
    backend.mode(mode="normal")
    assert sorted(l[0] for l in lines) == ["aborted", "usage"], lines
    assert "MG00502" in gw.read_log()
    assert remaining(gw) == 1000 - 7 - reservation(sent)


# ---- line ends ----------------------------------------------------------------------

@pytest.mark.parametrize("line_end", ["\r\n", "\r"])
@pytest.mark.parametrize("include_usage", [True, None])
def test_mg_028_08_streams_with_crlf_and_cr_line_ends(gw, backend, line_end, include_usage):
    """The filter passes a stream event by event and reads only the events
    that may carry a usage; with CR line ends an event ends only when the
    byte after its blank line is seen.  The client still gets the stream
    it asked for, byte for byte, and the usage is settled."""
    backend.mode(line_end=line_end)
    sent = body(stream=True, include_usage=include_usage)
    resp = gw.chat(DEMO_KEY, body=sent)
    direct = harness.request(backend.port, "POST", "/v1/chat/completions", body=sent)
    backend.mode(mode="normal")
    assert resp.status == 200
    assert normalised(resp.body) == normalised(direct.body)
    assert resp.body.endswith(("data: [DONE]" + line_end * 2).encode())
    assert (b'"usage"' in resp.body) == bool(include_usage)
    assert token_lines(gw, 1)[0][:4] == ["usage", "3", "4", "7"]


# ---- an answer compressed anyway -------------------------------------------------------

def test_mg_028_09_an_answer_compressed_anyway_is_not_read(gw, backend):
    """The gateway asks for identity encoding; a server that compresses
    anyway is not read (MG00501): the reservation stays charged."""
    assert remaining(gw) == 1000
    backend.mode(headers={"Content-Encoding": "gzip"})
    sent = body()
    assert gw.chat(DEMO_KEY, body=sent).status == 200
    backend.mode(mode="normal")
    assert sorted(l[0] for l in token_lines(gw, 2)) == ["absent", "usage"]
    log = gw.read_log()
    assert "MG00501" in log and "gzip-encoded" in log
    assert remaining(gw) == 1000 - 7 - reservation(sent)


# ---- Redis in local-sync mode -----------------------------------------------------------

@pytest.fixture
def redis(tmp_path):
    server = harness.RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def test_mg_028_10_local_sync_settles_the_usage(gateways, backend, redis):
    """Redis in local-sync mode decides in shared memory: the settle goes
    to that table, so one gateway admits exactly as the shm store does --
    as many requests as 7 used tokens each allow, with room for one more
    reservation."""
    backend.reset()
    g = gateways("sync", backend_port=backend.port)
    g.write_conf(CONF.format(run=g.rundir).replace(
        "ModelGateTier free",
        'LoadModule modelgate_redis_module "%s"\n'
        "ModelGateStore redis 127.0.0.1:%d mode=local-sync interval=100\n"
        "ModelGateTier free" % (harness.REDIS_MODULE, redis.port), 1)
        .replace("daily-tokens key 1000/day", "daily-tokens key 100/day")
        + harness.routed_v1(QUICKSTART_KEYS, backend.port))
    g.start()
    b = body()
    expect = (100 - reservation(b)) // 7 + 1
    statuses = []
    for i in range(expect + 2):
        statuses.append(g.chat(DEMO_KEY, body=b).status)
        token_lines(g, i + 1)           # settled before the next
    assert statuses == [200] * expect + [429] * 2
    assert backend.count() == expect
    assert token_lines(g, expect)[0][:4] == ["usage", "3", "4", "7"]
    g.stop()                            # before its Redis goes


@pytest.mark.parametrize("include_usage", [True, None])
def test_mg_028_14_a_cr_ended_event_goes_on_at_once(gw, backend, include_usage):
    """With CR line ends an event's blank line is known to have ended only
    when the next byte comes (an LF would belong to it); the filter must not
    wait for that byte, which a model server sends a decoding step later.
    The mock sends three words a second apart, then the finish chunk a
    second later and [DONE] at once: the first word reaches the client 3 s
    before [DONE].  A filter that waits for the next byte delivers it with
    the second, 2 s before.  (One-sided: a loaded machine delays the first
    and narrows the gap, it cannot widen a waiting filter's.)"""
    backend.mode(line_end="\r", stream_chunk_delay_ms=1000)
    sent = dict(body(stream=True, include_usage=include_usage), max_tokens=3)
    raw = json.dumps(sent).encode()
    head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: %s\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n"
            "Connection: close\r\n\r\n" % (DEMO_KEY, len(raw))).encode()
    got = b""
    first_at = done_at = None
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
        s.sendall(head + raw)
        while True:
            data = s.recv(65536)
            if not data:
                break
            got += data
            if first_at is None and b'"content":"This"' in got:
                first_at = time.monotonic()
            if done_at is None and b"data: [DONE]\r\r" in got:
                done_at = time.monotonic()
    backend.mode(mode="normal")
    assert first_at is not None and done_at is not None, got
    assert done_at - first_at >= 2.5, done_at - first_at
    assert (b'"usage"' in got) == bool(include_usage)
