"""Every way a caller can fail to identify itself gets a 401 in JSON, with
a challenge, and never reaches the model server."""
import http.client

import pytest

from harness import DEMO_KEY

CHALLENGE = 'Bearer realm="modelgate"'
INVALID = 'Bearer realm="modelgate", error="invalid_token"'


def assert_401(resp, code):
    assert resp.status == 401
    assert resp.header("content-type") == "application/json"
    assert resp.json["error"]["code"] == code
    assert resp.json["error"]["type"] == "invalid_request_error"
    assert resp.header("www-authenticate") == (CHALLENGE if code == "missing_api_key" else INVALID)
    # no limit was consulted for an unknown caller
    assert resp.header("ratelimit") is None


@pytest.mark.parametrize("headers", [
    {},
    {"X-API-Key": ""},
    {"X-API-Key": "   "},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer    "},
    {"Authorization": "Basic ZGVtbzpkZW1v"},
    {"Authorization": "Bearerx " + DEMO_KEY},
], ids=["none", "empty-key", "blank-key", "bearer-no-token", "bearer-blank",
        "basic-scheme", "bearer-typo"])
def test_mg_002_01_missing_credential(quickstart, backend, headers):
    assert_401(quickstart.chat(extra=headers), "missing_api_key")
    assert backend.count() == 0


@pytest.mark.parametrize("key", [
    "mg-quickstart-demo-ke",           # a prefix of a real key
    DEMO_KEY + "x",                    # a real key and more
    DEMO_KEY.upper(),                  # keys are case-sensitive
    "sha256:0bdbe484889e04b81eac983c39d224ea9f13a53367312f5877ec037e1e4d77fb",  # its digest
    "k" * 513,                         # longer than any key is allowed to be
    "caf\u00e9".encode().decode("latin-1"),   # non-ASCII bytes
], ids=["prefix", "suffix", "case", "digest", "oversized", "non-ascii"])
def test_mg_002_02_unknown_key(quickstart, backend, key):
    assert_401(quickstart.chat(key), "invalid_api_key")
    assert_401(quickstart.chat(key, header="Authorization"), "invalid_api_key")
    assert backend.count() == 0


def test_mg_002_03_surrounding_whitespace_is_not_part_of_the_key(quickstart):
    assert quickstart.chat(extra={"X-API-Key": "  " + DEMO_KEY + "  "}).status == 200
    assert quickstart.chat(extra={"Authorization": "Bearer   " + DEMO_KEY}).status == 200


def test_mg_002_04_x_api_key_wins_over_authorization(quickstart, backend):
    resp = quickstart.chat(extra={"X-API-Key": DEMO_KEY, "Authorization": "Bearer wrong"})
    assert resp.status == 200
    assert backend.requests()[-1]["headers"]["x-modelgate-key-id"] == "demo"
    assert_401(quickstart.chat(extra={"X-API-Key": "wrong", "Authorization": "Bearer " + DEMO_KEY}),
               "invalid_api_key")


def test_mg_002_05_oversized_header_is_refused_by_httpd(quickstart, backend):
    # Past LimitRequestFieldSize (8190): httpd's own 400, the gateway never runs.
    quickstart.allow_errors(r"AH00561")
    resp = quickstart.chat("k" * 9000)
    assert resp.status == 400
    assert backend.count() == 0
    # and the server is still serving
    assert quickstart.chat(DEMO_KEY).status == 200


def test_mg_002_06_failed_auth_consumes_nothing(quickstart):
    for _ in range(20):
        assert quickstart.chat("wrong-key").status == 401
    resp = quickstart.chat(DEMO_KEY)
    assert resp.status == 200
    assert resp.header("ratelimit").startswith('"free";r=9;')


def test_mg_002_07_key_is_never_logged(quickstart):
    quickstart.chat(DEMO_KEY)
    quickstart.chat("wrong-key-value")
    for name in ("error.log", "access.log"):
        text = quickstart.read_log(name)
        assert DEMO_KEY not in text
        assert "wrong-key-value" not in text


def test_mg_002_08_one_connection_many_credentials(quickstart, backend):
    # A keep-alive connection remembers the credential that found a key
    # (it is not hashed again); the memo must answer only for those very
    # bytes.  Keys, wrong keys and no key take turns on one connection.
    from harness import OTHER_KEY, PRO_KEY, request
    conn = http.client.HTTPConnection("127.0.0.1", quickstart.port, timeout=30)
    near = DEMO_KEY[:-1] + "x"                     # same length, last byte off
    steps = [
        ({"X-API-Key": DEMO_KEY}, 200, "demo"),
        ({"X-API-Key": DEMO_KEY}, 200, "demo"),
        ({"X-API-Key": near}, 401, "invalid_api_key"),
        ({"X-API-Key": DEMO_KEY[:-1]}, 401, "invalid_api_key"),
        ({"X-API-Key": DEMO_KEY + "k"}, 401, "invalid_api_key"),
        ({}, 401, "missing_api_key"),
        ({"X-API-Key": OTHER_KEY}, 200, "other"),
        ({"Authorization": "Bearer " + DEMO_KEY}, 200, "demo"),
        ({"X-API-Key": near}, 401, "invalid_api_key"),
        ({"X-API-Key": PRO_KEY}, 200, "pro-1"),
        ({"X-API-Key": DEMO_KEY}, 200, "demo"),
    ]
    local = None
    for i, (headers, status, what) in enumerate(steps):
        resp = request(quickstart.port, "GET", "/v1/models", headers=headers, conn=conn)
        assert resp.status == status, (i, resp)
        if local is None:
            local = conn.sock.getsockname()
        assert conn.sock.getsockname() == local, "step %d: not the same connection" % i
        if status == 401:
            assert_401(resp, what)
        else:
            assert backend.requests()[-1]["headers"]["x-modelgate-key-id"] == what
    conn.close()
    # Each key was charged on its own counter: demo 4 of 10, other 1, pro 1.
    assert quickstart.chat(DEMO_KEY).header("ratelimit").startswith('"free";r=5;')
    assert quickstart.chat(OTHER_KEY).header("ratelimit").startswith('"free";r=8;')


def test_mg_002_09_gateway_identity_replaces_forged_variables(gateways, backend):
    # The identity variables are added without a table scan only while
    # subprocess_env is empty; SetEnvIf (post_read_request) can fill it
    # first, and then the gateway's values must still replace the forged
    # ones, in logs as well as in the headers sent upstream.
    import harness
    backend.reset()
    gw = gateways("forged", backend_port=backend.port)
    gw.write_conf("""
        LoadModule setenvif_module %s/mod_setenvif.so
        SetEnvIf Request_URI "^/v1/" MODELGATE_KEY_ID=forged MODELGATE_TIER=forged MODELGATE_TENANT=forged
        ModelGateTier free 10/min
        ModelGateTier pro 100/min
        %s
    """ % (harness.HTTPD_MODDIR, harness.routed_v1(harness.QUICKSTART_KEYS, backend.port)))
    gw.start()
    assert gw.chat(DEMO_KEY).status == 200
    line = gw.access_lines(1)[0]
    assert " demo free " in line and "forged" not in line
    seen = backend.requests()[-1]["headers"]
    assert (seen["x-modelgate-key-id"], seen["x-modelgate-tenant"]) == ("demo", "acme")
