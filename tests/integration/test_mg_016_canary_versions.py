"""Weighted targets for a model (a canary) and routes by X-API-Version."""
import collections
import os

import pytest

import harness
from harness import DEMO_KEY

KEYS = harness.QUICKSTART_KEYS
SMALL = b'{"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]}'
ONE_CHILD = ("ServerLimit 1\nStartServers 1\nMinSpareThreads 1\n"
             "MaxSpareThreads 25\nMaxRequestWorkers 25\n")


def chat(gw, headers=None, body=SMALL):
    h = {"X-API-Key": DEMO_KEY, "Content-Type": "application/json"}
    h.update(headers or {})
    return harness.request(gw.port, "POST", "/v1/chat/completions", body=body, headers=h)


def test_mg_016_01_weighted_targets_in_exact_proportion(gateways, backend, backend2):
    backend.reset()
    backend2.reset()
    gw = gateways("canary", backend_port=backend.port)
    gw.write_conf("""
        ModelGateTier free 1000/min
        ModelGateTier pro  1000/min
        ModelGateKeyFile "%s"
        ModelGateUpstream stable http://127.0.0.1:%d
        ModelGateUpstream canary http://127.0.0.1:%d
        ModelGateModel mock-small stable:3,canary:1
        <Location "/v1/">
            Require all granted
            ModelGate On
        </Location>
        """ % (KEYS, backend.port, backend2.port) + ONE_CHILD)
    gw.start()
    served = collections.Counter(chat(gw).header("x-mock-server") for _ in range(40))
    # one process: every run of 4 requests sends 3 to stable, 1 to canary
    assert served == {"primary": 30, "secondary": 10}
    # interleaved, not in blocks: no 3 canary requests in any 4
    backend2.reset()
    seq = [chat(gw).header("x-mock-server") for _ in range(8)]
    assert seq.count("secondary") == 2
    assert all(seq[i:i + 4].count("secondary") <= 1 for i in range(5))


@pytest.fixture
def versioned(gateways, backend, backend2):
    backend.reset()
    backend2.reset()
    gw = gateways("versions", backend_port=backend.port)
    gw.write_conf("""
        ModelGateTier free 1000/min
        ModelGateTier pro  1000/min
        ModelGateKeyFile "%s"
        ModelGateUpstream v1 http://127.0.0.1:%d
        ModelGateUpstream v2 http://127.0.0.1:%d
        <Location "/v1/">
            Require all granted
            ModelGate On
            ModelGateRoute v1
            ModelGateVersionRoute 2024-10 v2
        </Location>
        """ % (KEYS, backend.port, backend2.port))
    return gw.start()


def test_mg_016_02_version_header_routes(versioned, backend, backend2):
    assert chat(versioned).header("x-mock-server") == "primary"
    resp = chat(versioned, {"X-API-Version": "2024-10"})
    assert resp.status == 200
    assert resp.header("x-mock-server") == "secondary"
    assert versioned.get("/v1/models", headers={"X-API-Key": DEMO_KEY,
                                                "X-API-Version": "2024-10"}
                         ).header("x-mock-server") == "secondary"
    assert (backend.count(), backend2.count()) == (1, 2)


def test_mg_016_03_unknown_version_is_400(versioned, backend, backend2):
    resp = chat(versioned, {"X-API-Version": "1999-01"})
    assert resp.status == 400
    assert resp.header("content-type") == "application/json"
    assert resp.json["error"]["code"] == "unknown_api_version"
    assert resp.json["error"]["message"] == \
        "This endpoint has no API version '1999-01' (X-API-Version)."
    assert backend.count() + backend2.count() == 0
    # who is asking comes first
    assert harness.request(versioned.port, "POST", "/v1/chat/completions", body=SMALL,
                           headers={"X-API-Version": "1999-01"}).status == 401


def test_mg_016_04_htaccess_version_route_only_to_declared(gateways, backend, backend2):
    backend.reset()
    backend2.reset()
    gw = gateways("htversion", backend_port=backend.port)
    gw.write_conf("""
        ModelGateTier free 10/min
        ModelGateTier pro  100/min
        ModelGateKeyFile "%s"
        ModelGateUpstream primary   http://127.0.0.1:%d
        ModelGateUpstream secondary http://127.0.0.1:%d
        <Directory "%s/htdocs">
            AllowOverride AuthConfig
            Require all granted
        </Directory>
        <Location "/v1/">
            ModelGate On
        </Location>
        """ % (KEYS, backend.port, backend2.port, gw.rundir))
    os.makedirs(os.path.join(gw.rundir, "htdocs", "v1"), exist_ok=True)
    path = os.path.join(gw.rundir, "htdocs", "v1", ".htaccess")
    with open(path, "w") as f:
        f.write("ModelGateRoute primary\nModelGateVersionRoute beta secondary\n")
    gw.start()
    assert chat(gw).header("x-mock-server") == "primary"
    assert chat(gw, {"X-API-Version": "beta"}).header("x-mock-server") == "secondary"
    with open(path, "w") as f:
        f.write("ModelGateVersionRoute beta http://127.0.0.1:1/\n")
    gw.allow_errors(r"ModelGateVersionRoute: 'http://127.0.0.1:1/' is not an upstream name")
    assert chat(gw, {"X-API-Version": "beta"}).status == 500
    assert backend.count() + backend2.count() == 2


def test_mg_016_05_config_errors(gateways):
    harness.assert_config_errors(gateways, [
        ("ModelGateUpstream a http://127.0.0.1:9\nModelGateModel m a:0\n",
         "a weight is a whole number from 1 to 1000"),
        ("ModelGateUpstream a http://127.0.0.1:9\nModelGateModel m a:5,b:5\n",
         "names the unknown upstream 'b'"),
        ("<Location /x>\nModelGateVersionRoute 'v 1' a\n</Location>\n", "is not a version"),
        ("<Location /x>\nModelGateVersionRoute v1 nowhere\n</Location>\n",
         "unknown upstream 'nowhere'"),
    ])
