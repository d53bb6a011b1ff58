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
