"""Reading JSON request bodies and routing by their model: each declared
model goes to its upstream, under the name that upstream knows it by, with
its own limits; the body reaches the model server byte for byte unless the
model had to be renamed, and then only the model changes.  Bad bodies get
400/404/413 JSON before any limit is charged."""
import hashlib
import http.client
import json

import pytest

import harness
from harness import DEMO_KEY, OTHER_KEY

KEYS = harness.QUICKSTART_KEYS


@pytest.fixture
def gw(gateways, backend, backend2):
    backend.reset()
    backend2.reset()
    g = gateways("models", backend_port=backend.port)
    g.write_conf("""
        ModelGateTier free 100/min
        ModelGateTier pro  100/min
        ModelGateKeyFile "%s"
        ModelGateUpstream small http://127.0.0.1:%d
        ModelGateUpstream big   http://127.0.0.1:%d
        ModelGateModel mock-small small alias=small,cheap
        ModelGateModel mock-large big served_as=mock-large-v2
        ModelGateLimit large-daily model 3/day models=mock-large
        <Location "/v1/">
            Require all granted
            ModelGate On
            ModelGateRoute small
            ModelGateBodyLimit 64K
        </Location>
        """ % (KEYS, backend.port, backend2.port))
    return g.start()


def post_raw(gw, body, content_type="application/json", key=DEMO_KEY,
             path="/v1/chat/completions", chunked=False):
    """POST exactly these bytes; chunked sends them in three chunks."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    headers = {"X-API-Key": key}
    if content_type:
        headers["Content-Type"] = content_type
    try:
        if chunked:
            third = max(1, len(body) // 3)
            parts = [body[:third], body[third:2 * third], body[2 * third:]]
            conn.request("POST", path, body=iter(parts), headers=headers,
                         encode_chunked=True)
        else:
            conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        return harness.Response(resp.status, hdrs, data)
    finally:
        conn.close()


def last_body(mock):
    rec = mock.requests()[-1]
    return rec["body"], rec["body_sha256"], rec["headers"]


BODY = (b'{ "temperature": 0.7,\n  "model": "%s",\n'
        b'  "messages": [{"role": "user", "content": "caf\\u00e9 \xc3\xa9 is good?"}],'
        b' "n": 1e0 }')


def test_mg_013_01_model_picks_its_upstream_body_unchanged(gw, backend, backend2):
    body = BODY % b"mock-small"
    resp = post_raw(gw, body)
    assert resp.status == 200, resp.body
    assert resp.header("x-modelgate-model") == "mock-small"
    assert backend.count() == 1 and backend2.count() == 0
    text, sha, headers = last_body(backend)
    assert sha == hashlib.sha256(body).hexdigest()
    assert headers["content-length"] == str(len(body))


def test_mg_013_02_served_as_renames_only_the_model(gw, backend, backend2):
    body = BODY % b"mock-large"
    resp = post_raw(gw, body)
    assert resp.status == 200, resp.body
    assert resp.json["model"] == "mock-large-v2"      # what the server saw
    assert resp.header("x-modelgate-model") == "mock-large"
    assert backend.count() == 0 and backend2.count() == 1
    text, sha, headers = last_body(backend2)
    expected = BODY % b"mock-large-v2"
    assert sha == hashlib.sha256(expected).hexdigest()
    assert headers["content-length"] == str(len(expected))


def test_mg_013_03_alias_is_sent_under_the_model_name(gw, backend):
    resp = post_raw(gw, BODY % b"cheap")
    assert resp.status == 200
    assert resp.header("x-modelgate-model") == "mock-small"
    assert last_body(backend)[1] == hashlib.sha256(BODY % b"mock-small").hexdigest()


def test_mg_013_04_unknown_model_is_404_and_charges_nothing(gw, backend, backend2):
    first = post_raw(gw, BODY % b"mock-small")
    remaining = int(first.header("x-ratelimit-remaining"))
    resp = post_raw(gw, BODY % b"gpt-17")
    assert resp.status == 404
    assert resp.header("content-type") == "application/json"
    err = resp.json["error"]
    assert err["code"] == "model_not_found"
    assert err["message"] == ("The model 'gpt-17' does not exist or you do "
                              "not have access to it.")
    assert backend.count() + backend2.count() == 1
    after = post_raw(gw, BODY % b"mock-small")
    assert int(after.header("x-ratelimit-remaining")) == remaining - 1


@pytest.mark.parametrize("body,code,message", [
    (b'{"model": "mock-small",', "invalid_json", "The request body is not valid JSON"),
    (b'{"model": "a", "model": "mock-large"}', "invalid_json", "duplicate"),
    (b'["mock-small"]', "invalid_body", "The request body must be a JSON object."),
    (b'{"model": 7}', "invalid_body", "'model' must be a non-empty string"),
    (b'{"model": "mock-small", "stream": "yes"}', "invalid_body", "'stream' must be true or false."),
    (b'{"model": "mock-small", "max_tokens": -5}', "invalid_body", "whole numbers"),
], ids=["truncated", "duplicate", "array", "model-type", "stream-type", "max-tokens"])
def test_mg_013_05_bad_bodies_are_400_json(gw, backend, body, code, message):
    resp = post_raw(gw, body)
    assert resp.status == 400
    assert resp.header("content-type") == "application/json"
    assert resp.json["error"]["code"] == code
    assert resp.json["error"]["type"] == "invalid_request_error"
    assert message in resp.json["error"]["message"]
    assert backend.count() == 0


@pytest.mark.parametrize("chunked", [False, True], ids=["length-0", "chunked"])
def test_mg_013_13_an_empty_json_body_is_400_and_charges_nothing(gw, backend, backend2,
                                                                  chunked):
    """Content-Length: 0 is no body to httpd, but a JSON request without its
    JSON: refused like one cut short, before any limit is charged, as an
    empty chunked body is."""
    first = post_raw(gw, BODY % b"mock-small")
    remaining = int(first.header("x-ratelimit-remaining"))
    resp = post_raw(gw, b"", chunked=chunked)
    assert resp.status == 400
    assert resp.header("content-type") == "application/json"
    assert resp.json["error"]["code"] == "invalid_json"
    assert resp.json["error"]["message"] == ("The request body is empty: a "
                                             "JSON object is expected.")
    assert backend.count() + backend2.count() == 1
    after = post_raw(gw, BODY % b"mock-small")
    assert int(after.header("x-ratelimit-remaining")) == remaining - 1


def test_mg_013_06_too_large_is_413(gw, backend):
    big = b'{"model":"mock-small","input":"' + b"x" * (64 * 1024) + b'"}'
    for chunked in (False, True):
        resp = post_raw(gw, big, path="/v1/embeddings", chunked=chunked)
        assert resp.status == 413, chunked
        assert resp.header("content-type") == "application/json"
        assert resp.json["error"]["code"] == "request_too_large"
        assert resp.json["error"]["message"] == (
            "The request body is larger than the 65536 bytes this endpoint accepts.")
    assert backend.count() == 0
    # exactly at the limit is fine
    body = b'{"model":"mock-small","input":"'
    body += b"y" * (64 * 1024 - len(body) - 2) + b'"}'
    assert len(body) == 64 * 1024
    resp = post_raw(gw, body, path="/v1/embeddings")
    assert resp.status == 200
    assert last_body(backend)[1] == hashlib.sha256(body).hexdigest()


def test_mg_013_07_chunked_body_is_replayed(gw, backend, backend2):
    body = BODY % b"mock-small"
    resp = post_raw(gw, body, chunked=True)
    assert resp.status == 200
    assert last_body(backend)[1] == hashlib.sha256(body).hexdigest()
    # and renamed when it must be
    resp = post_raw(gw, BODY % b"mock-large", chunked=True)
    assert resp.status == 200
    text, sha, headers = last_body(backend2)
    assert sha == hashlib.sha256(BODY % b"mock-large-v2").hexdigest()
    assert "chunked" not in headers.get("transfer-encoding", "")


def test_mg_013_08_bodies_it_cannot_read_are_refused(gw, backend):
    """Where models are declared, a body the gateway cannot read could
    name any model: 415 (issue 9; more cases in test_mg_021)."""
    before = backend.count()
    body = b"\x00\x01 not json at all {"
    resp = post_raw(gw, body, content_type="application/octet-stream",
                    path="/v1/audio/transcriptions")
    assert resp.status == 415
    assert resp.json["error"]["code"] == "unsupported_media_type"
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    conn.request("POST", "/v1/embeddings", body=b"\x1f\x8b garbage",
                 headers={"X-API-Key": DEMO_KEY, "Content-Type": "application/json",
                          "Content-Encoding": "gzip"})
    resp = conn.getresponse()
    assert resp.status == 415
    assert b'"unsupported_encoding"' in resp.read()
    conn.close()
    assert backend.count() == before


def test_mg_013_09_per_model_limit(gw, backend, backend2):
    statuses = [post_raw(gw, BODY % b"mock-large").status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    resp = post_raw(gw, BODY % b"mock-large")
    assert resp.json["error"]["code"] == "rate_limit_exceeded"
    assert "large-daily" in resp.header("ratelimit-policy")
    # per model, not per caller: another key meets the same counter
    assert post_raw(gw, BODY % b"mock-large", key=OTHER_KEY).status == 429
    # other models are not limited by it
    ok = post_raw(gw, BODY % b"small")
    assert ok.status == 200
    assert "large-daily" not in ok.header("ratelimit-policy")
    assert backend2.count() == 3


def test_mg_013_10_no_model_takes_the_route(gw, backend, backend2):
    resp = post_raw(gw, b'{"input": "hello"}', path="/v1/embeddings")
    assert resp.status == 200
    assert resp.header("x-modelgate-model") is None
    assert backend.count() == 1 and backend2.count() == 0
    assert gw.get("/v1/models", headers={"X-API-Key": DEMO_KEY}).status == 200


def test_mg_013_11_expect_100_continue(gw, backend2):
    """A client that waits for 100 Continue before sending its body."""
    import socket
    body = BODY % b"mock-large"
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"X-API-Key: " + DEMO_KEY.encode() + b"\r\n"
                  b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                  b"Connection: close\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        interim = s.recv(1024)
        assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
        s.sendall(body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]
    assert backend2.requests()[-1]["body_sha256"] == \
        hashlib.sha256(BODY % b"mock-large-v2").hexdigest()


def test_mg_013_12_config_errors(gateways):
    harness.assert_config_errors(gateways, [
        ("ModelGateModel m nowhere\n", "model 'm' names the unknown upstream 'nowhere'"),
        ("ModelGateModel 'a b' up\n", "'a b' is not a model name"),
        ("ModelGateUpstream up http://127.0.0.1:9\nModelGateModel m up\n"
         "ModelGateModel n up alias=m\n", "'m' already names the model 'm'"),
        ("ModelGateUpstream up http://127.0.0.1:9\nModelGateModel m up color=red\n",
         "unknown option 'color=red'"),
        ("<Location /x>\nModelGateBodyLimit 100M\n</Location>\n", "must be from 1 byte to 64 MiB"),
        ("<Location /x>\nModelGateBodyLimit lots\n</Location>\n", "'lots' is not a size"),
        ("ModelGateLimit x model 1/s models=a,,b c\n", "unknown option 'c'"),
    ])
