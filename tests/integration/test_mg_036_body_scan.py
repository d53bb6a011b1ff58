"""Reading JSON request bodies without a tree (mg_json_scan): the gateway
accepts and refuses what jansson did, with the two documented differences
(mg_json_scan.h): a member named twice in a NESTED object passes (the root's
duplicates are still refused), and a NUL byte right after a number, which
jansson silently dropped, is refused.  Member names and the model are read
with their escapes decoded, as the model server reads them."""
import hashlib

import pytest

from test_mg_013_body_routing import gw, post_raw  # noqa: F401 (fixture)


def test_mg_036_01_escaped_model_routes_as_decoded(gw, backend, backend2):
    body = (b'{"mod\\u0065l": "mock\\u002dlarge", "messages": '
            b'[{"role": "user", "content": "hi"}]}')
    resp = post_raw(gw, body)
    assert resp.status == 200, resp.body
    assert resp.header("x-modelgate-model") == "mock-large"
    assert backend.count() == 0 and backend2.count() == 1
    # served_as renamed it: the escaped member's value, and only it
    assert backend2.requests()[-1]["body"] == (
        '{"mod\\u0065l": "mock-large-v2", "messages": '
        '[{"role": "user", "content": "hi"}]}')


def test_mg_036_02_nested_duplicate_passes_byte_for_byte(gw, backend):
    # jansson (JSON_REJECT_DUPLICATES) refused this with 400 invalid_json.
    body = (b'{"model": "mock-small", "messages": [{"role": "user", '
            b'"role": "user", "content": "hi"}]}')
    resp = post_raw(gw, body)
    assert resp.status == 200, resp.body
    assert resp.header("x-modelgate-model") == "mock-small"
    assert backend.count() == 1
    assert backend.requests()[-1]["body_sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("body,code,message", [
    # the root's duplicates, however spelt
    (b'{"model": "mock-small", "mod\\u0065l": "mock-large"}', "invalid_json",
     "duplicate object key (line 1, column 25)"),
    (b'{"stream": false,\n "stream": true, "model": "mock-small"}', "invalid_json",
     "duplicate object key (line 2, column 2)"),
    # jansson dropped this NUL and read max_tokens 5
    (b'{"model": "mock-small", "max_tokens": 5\x00}', "invalid_json",
     "The request body is not valid JSON"),
    (b'{"model": "mock-small", "x": "\xc0\xaf"}', "invalid_json", "invalid UTF-8"),
    (b'{"model": "mock-small", "x": "\\ud800"}', "invalid_json", "invalid Unicode"),
    (b'{"model": "mock\\u0000"}', "invalid_json", "\\u0000 is not allowed"),
    (b'{"model": "mock-small", "max_tokens": 9223372036854775808}', "invalid_json",
     "too big integer"),
    (b'{"model": "mock-small", "t": 1e400}', "invalid_json", "real number overflow"),
    (b'{"model": "mock-small", "x": ' + b"[" * 2048 + b"]" * 2048 + b"}",
     "invalid_json", "maximum parsing depth reached"),
    (b'{"model": "mock-small", "max_tokens": 1e2}', "invalid_body", "whole numbers"),
    (b'{"model": "mock-small", "max_tokens": 01}', "invalid_json", "leading zero"),
], ids=["root-dup-escaped", "root-dup-line", "nul-after-number", "overlong-utf8",
        "lone-surrogate", "nul-escape", "big-integer", "real-overflow", "too-deep",
        "real-max-tokens", "leading-zero"])
def test_mg_036_03_refused_as_400_json(gw, backend, body, code, message):
    resp = post_raw(gw, body)
    assert resp.status == 400, resp.body
    assert resp.json["error"]["code"] == code
    assert message in resp.json["error"]["message"], resp.json
    assert backend.count() == 0


def test_mg_036_04_deepest_accepted_nesting_is_forwarded(gw, backend):
    # the root at depth 1, then 2047 arrays: jansson's limit of 2048
    body = (b'{"model": "mock-small", "messages": [{"role": "user", '
            b'"content": "hi"}], "x": ' + b"[" * 2047 + b"]" * 2047 + b"}")
    post_raw(gw, body)
    # Forwarded as sent: what the model server says of it (Python's json
    # gives up at ~1000 levels) is its business.
    assert backend.count() == 1
    assert backend.requests()[-1]["body_sha256"] == hashlib.sha256(body).hexdigest()
