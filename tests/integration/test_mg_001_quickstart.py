"""The beginner scenario on conf-examples/quickstart.conf: every API key may
make 10 requests a minute; the 11th is a 429 a client can act on."""
import math
import re

from harness import CHAT, DEMO_KEY, OTHER_KEY, PRO_KEY

RATELIMIT = re.compile(r'^"free";r=(\d+);t=(\d+)$')


def assert_rejection(resp, policy="free", quota=10, window=60):
    assert resp.status == 429
    assert resp.header("content-type") == "application/json"
    err = resp.json["error"]
    assert err["code"] == "rate_limit_exceeded"
    assert err["type"] == "requests"
    assert err["param"] is None
    assert DEMO_KEY not in resp.body.decode()
    assert resp.header("ratelimit-policy") == '"%s";q=%d;w=%d' % (policy, quota, window)
    retry = int(resp.header("retry-after"))
    retry_ms = int(resp.header("retry-after-ms"))
    # 10/min refills one request every 6 s: the wait is at most that, and
    # Retry-After is retry-after-ms rounded up to whole seconds.
    assert 0 < retry_ms <= 6000
    assert retry == math.ceil(retry_ms / 1000)
    assert resp.header("ratelimit") == '"%s";r=0;t=%d' % (policy, retry)
    assert resp.header("x-ratelimit-limit") == str(quota)
    assert resp.header("x-ratelimit-remaining") == "0"
    assert resp.header("x-ratelimit-reset") == str(retry)
    assert resp.header("x-should-retry") == "true"


def test_mg_001_01_eleventh_request_is_429(quickstart, backend):
    statuses = [quickstart.chat(DEMO_KEY).status for _ in range(11)]
    assert statuses == [200] * 10 + [429]
    assert backend.count() == 10


def test_mg_001_02_429_headers_and_body(quickstart):
    for _ in range(10):
        assert quickstart.chat(DEMO_KEY).status == 200
    assert_rejection(quickstart.chat(DEMO_KEY))


def test_mg_001_03_allowed_responses_count_down(quickstart):
    remaining = []
    for _ in range(10):
        resp = quickstart.chat(DEMO_KEY)
        assert resp.status == 200
        assert resp.header("ratelimit-policy") == '"free";q=10;w=60'
        m = RATELIMIT.match(resp.header("ratelimit"))
        assert m, resp.header("ratelimit")
        assert resp.header("x-ratelimit-remaining") == m.group(1)
        assert resp.header("x-ratelimit-limit") == "10"
        assert resp.header("retry-after") is None
        remaining.append(int(m.group(1)))
    assert remaining == list(range(9, -1, -1))


def test_mg_001_04_keys_are_isolated(quickstart):
    for _ in range(10):
        assert quickstart.chat(DEMO_KEY).status == 200
    assert quickstart.chat(DEMO_KEY).status == 429
    resp = quickstart.chat(OTHER_KEY)
    assert resp.status == 200
    assert resp.header("ratelimit").startswith('"free";r=9;')
    assert quickstart.chat(DEMO_KEY).status == 429


def test_mg_001_05_bearer_and_x_api_key_are_one_caller(quickstart):
    for i in range(10):
        header = "X-API-Key" if i % 2 else "Authorization"
        assert quickstart.chat(DEMO_KEY, header=header).status == 200
    assert quickstart.chat(DEMO_KEY, header="Authorization").status == 429


def test_mg_001_06_tiers_have_their_own_limits(quickstart):
    # pro: 100/min with a burst of 20.
    statuses = [quickstart.chat(PRO_KEY).status for _ in range(21)]
    assert statuses == [200] * 20 + [429]
    resp = quickstart.chat(PRO_KEY)
    assert resp.header("ratelimit-policy") == '"pro";q=100;w=60'
    # one request every 0.6 s
    assert 0 < int(resp.header("retry-after-ms")) <= 600
    assert resp.header("retry-after") == "1"


def test_mg_001_07_rejected_requests_are_not_forwarded(quickstart, backend):
    for _ in range(15):
        quickstart.chat(DEMO_KEY)
    assert backend.count() == 10
    log = quickstart.access_lines(15)
    assert sum(" 429 rejected " in line for line in log) == 5
    assert sum(" 200 allowed sentiment " in line for line in log) == 10
    assert all(" demo free " in line for line in log)


def test_mg_001_08_backend_sees_identity_not_credentials(quickstart, backend):
    resp = quickstart.chat(PRO_KEY, header="Authorization")
    assert resp.status == 200
    seen = backend.requests()[-1]["headers"]
    assert "authorization" not in seen
    assert "x-api-key" not in seen
    assert seen["x-modelgate-tenant"] == "acme"
    assert seen["x-modelgate-tier"] == "pro"
    assert seen["x-modelgate-key-id"] == "pro-1"
    assert quickstart.chat(DEMO_KEY).status == 200
    seen = backend.requests()[-1]["headers"]
    assert "x-api-key" not in seen
    assert (seen["x-modelgate-tenant"], seen["x-modelgate-tier"], seen["x-modelgate-key-id"]) \
        == ("acme", "free", "demo")


def test_mg_001_09_spoofed_identity_headers_are_dropped(quickstart, backend):
    spoof = {"X-Modelgate-Tenant": "evil", "X-Modelgate-Tier": "enterprise",
             "X-Modelgate-Key-Id": "admin", "X-MODELGATE-Bypass": "1",
             "Authorization": "Basic c2VjcmV0OnNlY3JldA=="}
    resp = quickstart.chat(OTHER_KEY, extra=spoof)
    assert resp.status == 200
    seen = backend.requests()[-1]["headers"]
    assert seen["x-modelgate-tenant"] == "globex"
    assert seen["x-modelgate-tier"] == "free"
    assert seen["x-modelgate-key-id"] == "other"
    assert "x-modelgate-bypass" not in seen
    assert "authorization" not in seen


def test_mg_001_10_request_forwarded_byte_identical(quickstart, backend):
    body = b'{"model":"mock-small","messages":[{"role":"user","content":"caf\xc3\xa9 \\u00e9 %20"}]}'
    resp = quickstart.post("/v1/chat/completions?api-version=2024-01-01&x=a%20b",
                           body=body, headers={"X-API-Key": DEMO_KEY,
                                               "Content-Type": "application/json"})
    assert resp.status == 200
    rec = backend.requests()[-1]
    assert rec["method"] == "POST"
    assert rec["path"] == "/v1/chat/completions"
    assert rec["query"] == "api-version=2024-01-01&x=a%20b"
    import hashlib
    assert rec["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert resp.json["usage"]["prompt_tokens"] == 3


def test_mg_001_11_upstream_answer_passes_through(quickstart):
    resp = quickstart.chat(DEMO_KEY, body={"model": "mock-large", "messages": [
        {"role": "user", "content": "one two three"}], "max_tokens": 4})
    assert resp.status == 200
    assert resp.header("x-mock-server") == "primary"
    data = resp.json
    assert data["model"] == "mock-large"
    assert data["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert data["choices"][0]["finish_reason"] == "length"
    # the gateway's headers survive mod_proxy replacing headers_out
    assert resp.header("ratelimit").startswith('"free";r=9;')


def test_mg_001_12_outside_the_gateway_is_denied(quickstart, backend):
    quickstart.allow_errors(r"AH01630: client denied by server configuration")
    resp = quickstart.get("/admin", headers={"X-API-Key": DEMO_KEY})
    assert resp.status == 403
    assert backend.count() == 0
