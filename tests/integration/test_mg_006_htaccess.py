""".htaccess may pick among the upstreams the server declared, under
AllowOverride AuthConfig; it can neither name a new upstream, switch the
gateway off, nor define limits."""
import os

import pytest

import harness
from harness import DEMO_KEY

CONF = """
ModelGateTier free 10/min
ModelGateTier pro  100/min
ModelGateKeyFile "{keys}"
ModelGateUpstream primary   http://127.0.0.1:{p1}
ModelGateUpstream secondary http://127.0.0.1:{p2}
<Directory "{run}/htdocs">
    AllowOverride {override}
    Require all granted
</Directory>
<Location "/v1/">
    ModelGate On
    ModelGateRoute primary
</Location>
"""


def start(gateways, backend, backend2, htaccess, override="AuthConfig"):
    backend.reset()
    backend2.reset()
    gw = gateways("htaccess", backend_port=backend.port)
    gw.write_conf(CONF.format(keys=os.path.join(harness.CONF_EXAMPLES, "keys", "quickstart.keys"),
                              p1=backend.port, p2=backend2.port, run=gw.rundir,
                              override=override))
    os.makedirs(os.path.join(gw.rundir, "htdocs", "v1"), exist_ok=True)
    with open(os.path.join(gw.rundir, "htdocs", "v1", ".htaccess"), "w") as f:
        f.write(htaccess)
    # Routes from <Location> are handed to mod_proxy before the directory
    # walk; .htaccess routes apply under a <Location> without a route.
    with open(gw.conf) as f:
        text = f.read()
    with open(gw.conf, "w") as f:
        f.write(text.replace("    ModelGateRoute primary\n", ""))
    return gw.start()


def test_mg_006_01_htaccess_picks_a_declared_upstream(gateways, backend, backend2):
    gw = start(gateways, backend, backend2, "ModelGateRoute secondary\n")
    resp = gw.chat(DEMO_KEY)
    assert resp.status == 200
    assert resp.header("x-mock-server") == "secondary"
    assert (backend.count(), backend2.count()) == (0, 1)
    assert backend2.requests()[-1]["path"] == "/v1/chat/completions"
    assert resp.header("ratelimit").startswith('"free";r=9;')


@pytest.mark.parametrize("htaccess,message", [
    ("ModelGateRoute http://127.0.0.1:1/\n", "is not an upstream name"),
    ("ModelGateRoute elsewhere\n", "unknown upstream 'elsewhere'"),
    ("ModelGate Off\n", "ModelGate Off cannot be used in .htaccess"),
    ("ModelGateTier free 1000/min\n", "ModelGateTier not allowed here"),
    ("ModelGateUpstream evil http://127.0.0.1:1\n", "ModelGateUpstream not allowed here"),
    ("ModelGateKeyFile /etc/passwd\n", "ModelGateKeyFile not allowed here"),
], ids=["url", "unknown", "off", "tier", "upstream", "keyfile"])
def test_mg_006_02_htaccess_cannot_widen(gateways, backend, backend2, htaccess, message):
    gw = start(gateways, backend, backend2, "ModelGateRoute secondary\n" + htaccess)
    gw.allow_errors(r"\.htaccess: " + r".*")
    resp = gw.chat(DEMO_KEY)
    assert resp.status == 500
    assert (backend.count(), backend2.count()) == (0, 0)
    assert message in gw.read_log()


def test_mg_006_03_htaccess_ignored_without_override(gateways, backend, backend2):
    gw = start(gateways, backend, backend2, "ModelGateRoute secondary\n", override="None")
    resp = gw.chat(DEMO_KEY)
    # No route at all: the gateway admits and nothing serves the path.
    assert resp.status == 404
    assert (backend.count(), backend2.count()) == (0, 0)
    assert resp.header("ratelimit").startswith('"free";r=9;')
