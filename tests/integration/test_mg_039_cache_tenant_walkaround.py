"""The response cache keys an answer on the caller's tenant as the gate
found it.  An .htaccess author allowed FileInfo may rewrite environment
variables in fixups (mod_rewrite's [E=]), the phase in which the cache
looks answers up: rewriting MODELGATE_TENANT (or MODELGATE_KEY_ID) must
not let one tenant read another's answers."""
import json

import pytest

import harness
from harness import DEMO_KEY, OTHER_KEY

MODS = harness.HTTPD_MODDIR

SERVER = """
LoadModule rewrite_module {mods}/mod_rewrite.so
LoadModule socache_shmcb_module {mods}/mod_socache_shmcb.so
LoadModule modelgate_cache_module "{cache}"
ModelGateCache shmcb
"""

HTACCESS = """ModelGateRoute model
RewriteEngine On
RewriteRule ^ - [E=MODELGATE_TENANT:acme,E=MODELGATE_KEY_ID:demo]
"""


def body(content):
    return json.dumps({"model": "mock-small", "temperature": 0,
                       "messages": [{"role": "user", "content": content}]}).encode()


def chat(gw, key, data):
    return harness.request(gw.port, "POST", "/v1/chat/completions", body=data,
                           headers={"X-API-Key": key, "Content-Type": "application/json"})


@pytest.mark.parametrize("scope", ["tenant", "key"])
def test_mg_039_01_rewritten_env_does_not_cross_tenants(gateways, backend, scope):
    gw = harness.htaccess_site(
        gateways, backend, {"v1/.htaccess": HTACCESS},
        dir_extra="AllowOverride AuthConfig FileInfo\n"
                  "ModelGateCacheable On\nModelGateCacheScope " + scope,
        server_extra=SERVER.format(mods=MODS, cache=harness.CACHE_MODULE),
        name="cachewalk-" + scope)
    # demo (tenant acme) stores an answer ...
    first = chat(gw, DEMO_KEY, body("what did acme ask?"))
    assert first.status == 200
    assert first.header("cache-status") == "modelgate; fwd=miss; stored"
    assert chat(gw, DEMO_KEY, body("what did acme ask?")).header(
        "cache-status").startswith("modelgate; hit")
    # ... other (tenant globex), whose env the .htaccess rewrites to acme's,
    # must not get it: its own miss, forwarded to the model server
    other = chat(gw, OTHER_KEY, body("what did acme ask?"))
    assert other.status == 200
    assert other.header("cache-status") == "modelgate; fwd=miss; stored"
    assert backend.count() == 2


def test_mg_039_02_key_scope_is_the_key_of_its_tenant(gateways, backend):
    """ModelGateCacheScope key: a JWT's subject is its key id, and nothing
    makes it differ from an API key's id or another tenant's subject: a
    token of tenant globex whose subject is "demo" (acme's API key id)
    must not read acme's answers."""
    import jwt_mint as jm
    import test_mg_025_jwt as jt
    backend.reset()
    gw = gateways("jwtcache", backend_port=backend.port)
    gw.write_conf(jt.conf(gw, backend, extra=SERVER.format(
        mods=MODS, cache=harness.CACHE_MODULE), loc="""
<Location "/v1/">
    ModelGateCacheable On
    ModelGateCacheScope key
</Location>
"""))
    gw.start()
    secret = body("acme's secret question")
    first = chat(gw, DEMO_KEY, secret)
    assert first.status == 200
    assert first.header("cache-status") == "modelgate; fwd=miss; stored"
    assert chat(gw, DEMO_KEY, secret).header("cache-status").startswith("modelgate; hit")
    token = jt.token(sub="demo", tenant="globex", plan="pro")
    r = harness.request(gw.port, "POST", "/v1/chat/completions", body=secret,
                        headers={"Authorization": "Bearer " + token,
                                 "Content-Type": "application/json"})
    assert r.status == 200
    assert not r.header("cache-status").startswith("modelgate; hit"), r.header("cache-status")
    assert backend.count() == 2
