"""An upstream's response headers never contradict the gateway's own.

mod_proxy_http puts the upstream's headers in r->headers_out, the gateway
keeps its own in r->err_headers_out, and httpd sends both tables.  On a
gated request the client must get, of every header the gateway writes,
exactly the gateway's one value: an upstream's X-Modelgate-* (however
spelt) never passes, and of the rate limit families (RateLimit and the
X-RateLimit- three; OpenAI's -requests trio; its -tokens trio; Retry-After,
retry-after-ms and x-should-retry) the upstream's pass only where the
gateway sends nothing of that family on the response.  Its ordinary
headers pass as before.

The headers are read as the client gets them, one (name, value) per
field line: harness.request joins repeated fields, which would hide the
duplicates this is about."""
import http.client
import json

import pytest

import harness
from harness import DEMO_KEY, QUICKSTART_KEYS

# /v1/chat/ has a token layer (OpenAI's x-ratelimit-* six are sent there);
# /v1/completions has only the tier's request layer (none of the six).
CONF = """
ModelGateTier free 100/min
ModelGateTier pro  100/min
ModelGateKeyFile "{keys}"
ModelGateUpstream model http://127.0.0.1:{port}
ModelGateModel mock-small model
<Location "/v1/">
    Require all granted
    ModelGate On
    ModelGateRoute model
</Location>
<Location "/v1/chat/">
    ModelGateLimit tpm key 100000/min unit=tokens
</Location>
# gated, forwarded by the admin's own ProxyPass rather than a route
<Location "/pp/">
    Require all granted
    ModelGate On
    ProxyPass http://127.0.0.1:{port}/
</Location>
"""

SPOOF = {
    "X-Modelgate-Model": "evil",
    "X_Modelgate_Tenant": "evil",
    "x-modelgate-degraded": "fake",
    "RateLimit": '"up";r=1;t=1',
    "RateLimit-Policy": '"up";q=2;w=1',
    "X-RateLimit-Remaining": "999",
    "X_RateLimit_Limit": "1000",
}

# OpenAI's own, as api.openai.com sends them.
UPSTREAM_OPENAI = {
    "x-ratelimit-limit-requests": "5000",
    "x-ratelimit-remaining-requests": "4999",
    "x-ratelimit-reset-requests": "12ms",
    "x-ratelimit-limit-tokens": "800000",
    "x-ratelimit-remaining-tokens": "799000",
    "x-ratelimit-reset-tokens": "75ms",
}

GATEWAY_RATELIMIT = ["ratelimit-policy", "ratelimit", "x-ratelimit-limit",
                     "x-ratelimit-remaining", "x-ratelimit-reset"]


@pytest.fixture
def gw(gateways, backend):
    backend.reset()
    g = gateways("hdrs", backend_port=backend.port)
    g.write_conf(CONF.format(keys=QUICKSTART_KEYS, port=backend.port))
    return g.start()


def raw(gw, path, body, key=DEMO_KEY):
    """(status, [(lower-case name, value)] as sent, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(),
                     headers={"X-API-Key": key, "Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, [(k.lower(), v) for k, v in resp.getheaders()], data
    finally:
        conn.close()


def values(headers, name):
    return [v for k, v in headers if k == name]


def one(headers, name):
    got = values(headers, name)
    assert len(got) == 1, "%s: %r" % (name, got)
    return got[0]


def names_like(headers, prefix):
    return sorted(k for k, _ in headers if k.replace("_", "-").startswith(prefix))


def chat_body(stream=False):
    b = {"model": "mock-small", "max_tokens": 4,
         "messages": [{"role": "user", "content": "one two three"}]}
    if stream:
        b["stream"] = True
    return b


def completion_body(stream=False):
    b = {"model": "mock-small", "max_tokens": 4, "prompt": "one two three"}
    if stream:
        b["stream"] = True
    return b


def assert_gateways_own(headers):
    """The gateway's X-Modelgate-* and RateLimit family, once each, and
    nothing the upstream spoofed."""
    assert names_like(headers, "x-modelgate-") == ["x-modelgate-model"]
    assert one(headers, "x-modelgate-model") == "mock-small"
    assert one(headers, "ratelimit-policy").startswith('"free";q=100;w=60')
    assert one(headers, "ratelimit").startswith('"free";r=')
    assert one(headers, "x-ratelimit-limit") == "100"
    remaining = int(one(headers, "x-ratelimit-remaining"))
    assert remaining < 100
    assert one(headers, "ratelimit") == '"free";r=%d;t=%s' % (
        remaining, one(headers, "x-ratelimit-reset"))
    # the upstream's ordinary headers still pass
    assert one(headers, "x-mock-server") == "primary"


def test_mg_042_01_json_answer_without_token_layers(gw, backend):
    """No token layer: the gateway sends none of OpenAI's six, so the
    upstream's (its own limits) pass, once each."""
    backend.mode(headers=dict(SPOOF, **UPSTREAM_OPENAI))
    status, headers, body = raw(gw, "/v1/completions", completion_body())
    assert status == 200, body
    assert_gateways_own(headers)
    for name, value in UPSTREAM_OPENAI.items():
        assert values(headers, name) == [value]
    assert values(headers, "retry-after") == []


def test_mg_042_02_json_answer_with_token_layers(gw, backend):
    """A token layer: the gateway sends both of OpenAI's trios, and the
    upstream's are dropped."""
    backend.mode(headers=dict(SPOOF, **UPSTREAM_OPENAI))
    status, headers, body = raw(gw, "/v1/chat/completions", chat_body())
    assert status == 200, body
    assert_gateways_own(headers)
    assert one(headers, "x-ratelimit-limit-requests") == "100"
    assert int(one(headers, "x-ratelimit-remaining-requests")) < 100
    assert one(headers, "x-ratelimit-limit-tokens") == "100000"
    assert int(one(headers, "x-ratelimit-remaining-tokens")) < 100000
    for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
        assert one(headers, name) != UPSTREAM_OPENAI[name]


def test_mg_042_03_streams_alike(gw, backend):
    """A stream's headers pass the same way, with and without token layers."""
    backend.mode(headers=dict(SPOOF, **UPSTREAM_OPENAI))
    status, headers, body = raw(gw, "/v1/chat/completions", chat_body(stream=True))
    assert status == 200, body
    assert one(headers, "content-type").startswith("text/event-stream")
    assert body.rstrip().endswith(b"data: [DONE]")
    assert_gateways_own(headers)
    assert one(headers, "x-ratelimit-limit-tokens") == "100000"
    assert one(headers, "x-ratelimit-limit-requests") == "100"

    status, headers, body = raw(gw, "/v1/completions", completion_body(stream=True))
    assert status == 200, body
    assert one(headers, "content-type").startswith("text/event-stream")
    assert_gateways_own(headers)
    for name, value in UPSTREAM_OPENAI.items():
        assert values(headers, name) == [value]


def test_mg_042_04_ordinary_answer_unchanged(gw, backend):
    """Without anything to drop, the answer is the upstream's as before."""
    backend.mode(headers={"X-Upstream-Trace": "abc", "Retry-After": "5"})
    status, headers, body = raw(gw, "/v1/completions", completion_body())
    assert status == 200, body
    assert_gateways_own(headers)
    assert one(headers, "x-upstream-trace") == "abc"
    # the gateway sends no Retry-After on an admitted request: the
    # upstream's is its own business and passes
    assert one(headers, "retry-after") == "5"
    assert one(headers, "content-type") == "application/json"


def test_mg_042_05_upstream_429_keeps_its_retry_after(gw, backend):
    """The upstream's own 429 passes with its Retry-After (and the
    breaker still reads it: the next request is held back for as long)."""
    backend.mode(mode="ratelimit", retry_after=30,
                 headers=dict(SPOOF, **{"x-should-retry": "true",
                                        "retry-after-ms": "30000"}))
    status, headers, body = raw(gw, "/v1/completions", completion_body())
    assert status == 429, body
    assert json.loads(body)["error"]["code"] == "rate_limit_exceeded"
    assert_gateways_own(headers)
    assert one(headers, "retry-after") == "30"
    assert one(headers, "retry-after-ms") == "30000"
    assert one(headers, "x-should-retry") == "true"
    status, headers, body = raw(gw, "/v1/completions", completion_body())
    assert status == 503, body
    assert 29 <= int(one(headers, "retry-after")) <= 30
    assert backend.count() == 1


def test_mg_042_06_any_gated_answer_not_only_routed_ones(gw, backend):
    """A gated location forwarded by a ProxyPass of the admin's: the
    gateway wrote the RateLimit headers, so the upstream's go there too."""
    backend.mode(headers=SPOOF)
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request("GET", "/pp/v1/models", headers={"X-API-Key": DEMO_KEY})
        resp = conn.getresponse()
        resp.read()
        headers = [(k.lower(), v) for k, v in resp.getheaders()]
    finally:
        conn.close()
    assert resp.status == 200
    assert names_like(headers, "x-modelgate-") == []
    assert one(headers, "ratelimit").startswith('"free";r=')
    assert one(headers, "x-ratelimit-remaining") != "999"
    assert one(headers, "x-ratelimit-limit") == "100"
    assert one(headers, "x-mock-server") == "primary"
