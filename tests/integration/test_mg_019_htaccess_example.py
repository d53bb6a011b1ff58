"""conf-examples/htaccess-routes.conf with htaccess/v1.htaccess: a
directory picks among declared upstreams, adds a limit, lowers the body
limit; it cannot raise one or name a URL."""
import os
import shutil

import pytest

import harness
from harness import DEMO_KEY

SMALL = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'


@pytest.fixture
def site(gateways, backend, backend2):
    backend.reset()
    backend2.reset()
    gw = gateways("htex", backend_port=backend.port)
    gw.backend2_port = backend2.port
    gw.use_conf(os.path.join(harness.CONF_EXAMPLES, "htaccess-routes.conf"))
    os.makedirs(os.path.join(gw.rundir, "htdocs", "v1"), exist_ok=True)
    gw.htaccess = os.path.join(gw.rundir, "htdocs", "v1", ".htaccess")
    shutil.copy(os.path.join(harness.CONF_EXAMPLES, "htaccess", "v1.htaccess"), gw.htaccess)
    os.chmod(gw.htaccess, 0o644)
    return gw.start()


def post(gw, body=SMALL, headers=None):
    h = {"X-API-Key": DEMO_KEY, "Content-Type": "application/json"}
    h.update(headers or {})
    return harness.request(gw.port, "POST", "/v1/chat/completions", body=body, headers=h)


def test_mg_019_01_routes_versions_and_the_added_limit(site, backend, backend2):
    assert post(site).header("x-mock-server") == "primary"
    assert post(site, headers={"X-API-Version": "beta"}).header("x-mock-server") == "secondary"
    statuses = [post(site).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    resp = post(site)
    assert "v1-per-key" in resp.header("ratelimit-policy")
    assert (backend.count(), backend2.count()) == (4, 1)


def test_mg_019_02_body_limit_lowered(site, backend):
    big = b'{"model": "m", "input": "' + b"x" * (16 * 1024) + b'"}'
    resp = post(site, body=big)
    assert resp.status == 413
    assert "16384 bytes" in resp.json["error"]["message"]
    assert backend.count() == 0


def test_mg_019_03_cannot_raise_the_body_limit(site, backend):
    with open(site.htaccess, "a") as f:
        f.write("ModelGateBodyLimit 8M\n")
    big = b'{"model": "m", "input": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    resp = post(site, body=big)
    assert resp.status == 413
    assert "1048576 bytes" in resp.json["error"]["message"]


@pytest.mark.parametrize("line,message", [
    ("ModelGateRoute http://127.0.0.1:1/\n", "is not an upstream name"),
    ("ModelGateVersionRoute beta http://127.0.0.1:1/\n", "is not an upstream name"),
    ("ModelGateUpstream evil http://127.0.0.1:1\n", "not allowed here"),
    ("ModelGateModel m stable\n", "not allowed here"),
    ("ModelGateTier free 1000/min\n", "not allowed here"),
    ("ModelGateCost 0\n", "must be a whole number"),
], ids=["route-url", "version-url", "upstream", "model", "tier", "cost"])
def test_mg_019_04_cannot_widen(site, backend, backend2, line, message):
    with open(site.htaccess, "a") as f:
        f.write(line)
    site.allow_errors(r"\.htaccess: .*")
    assert post(site).status == 500
    assert backend.count() + backend2.count() == 0
    assert message in site.read_log()
