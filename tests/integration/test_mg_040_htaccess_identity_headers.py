"""What the model server is told about a caller (X-Modelgate-Tenant, -Tier,
-Key-Id) is the gate's, whatever runs after it.  mod_headers' RequestHeader
runs in fixups (APR_HOOK_LAST), after the gate announced the identity: an
.htaccess author allowed FileInfo could otherwise tell the model server a
request came from another tenant, tier or key, add X-Modelgate-* headers
of their own, or name the gate's in Connection so mod_proxy drops them."""
import json

import pytest

import harness
from harness import OTHER_KEY

MODS = harness.HTTPD_MODDIR

FORGERIES = {
    "set": "RequestHeader set X-Modelgate-Tenant acme\n"
           "RequestHeader set X-Modelgate-Key-Id demo\n"
           "RequestHeader set X-Modelgate-Tier enterprise\n",
    "add": "RequestHeader add X-Modelgate-Tenant acme\n"
           "RequestHeader add X_Modelgate_Tier enterprise\n",
    "append": "RequestHeader append X-Modelgate-Tenant acme\n",
    "unset": "RequestHeader unset X-Modelgate-Tenant\n",
    "extra": "RequestHeader set X-Modelgate-Admin 1\n",
    "connection": "RequestHeader set Connection X-Modelgate-Tenant\n",
}


def gateway(gateways, backend, name, forgery):
    return harness.htaccess_site(
        gateways, backend, {"v1/.htaccess": "ModelGateRoute model\n" + forgery},
        dir_extra="AllowOverride AuthConfig FileInfo",
        server_extra="LoadModule headers_module %s/mod_headers.so\n" % MODS,
        name="hdr-" + name)


def chat(gw):
    return harness.request(gw.port, "POST", "/v1/chat/completions",
                           body=json.dumps({"model": "mock-small", "messages": [
                               {"role": "user", "content": "hi"}]}).encode(),
                           headers={"X-API-Key": OTHER_KEY,
                                    "Content-Type": "application/json"})


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_mg_040_01_the_model_server_sees_the_gates_identity(gateways, backend, name):
    gw = gateway(gateways, backend, name, FORGERIES[name])
    assert chat(gw).status == 200
    seen = backend.requests()[-1]["headers"]
    ours = {k: v for k, v in seen.items() if k.replace("_", "-").startswith("x-modelgate-")}
    assert ours == {"x-modelgate-tenant": "globex", "x-modelgate-tier": "free",
                    "x-modelgate-key-id": "other"}
    assert "MG00208" in gw.wait_log("MG00208")


def test_mg_040_02_untouched_headers_are_not_redone(gateways, backend):
    """Without a RequestHeader the gate's headers pass as they were set,
    and nothing is logged."""
    gw = gateway(gateways, backend, "none", "")
    assert chat(gw).status == 200
    seen = backend.requests()[-1]["headers"]
    assert (seen["x-modelgate-tenant"], seen["x-modelgate-tier"],
            seen["x-modelgate-key-id"]) == ("globex", "free", "other")
    assert "MG00208" not in gw.read_log()
