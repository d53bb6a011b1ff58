"""The ways around the gate an attacker or a careless operator would try
(issue 9): Satisfy Any, internal redirects, Content-Type and encoding games,
hop-by-hop and underscore header tricks, .htaccess lowering costs or
loading time zones, echoed client text, slow bodies, header logging and
encoded slashes.  Each test failed on the main before the fixes.

The rule they all check: no request reaches the model server without a
valid key and a charge."""
import os
import socket
import time

import pytest

import harness
from harness import DEMO_KEY, OTHER_KEY, QUICKSTART_KEYS

MODS = harness.HTTPD_MODDIR

# mod_access_compat (Satisfy), mod_rewrite and ErrorDocument all loaded and
# in use, next to a ProxyPass that forwards /v1/ by itself.
OPEN_DOORS = """
LoadModule access_compat_module {mods}/mod_access_compat.so
LoadModule rewrite_module {mods}/mod_rewrite.so
ModelGateTier free 10/min
ModelGateTier pro  100/min
ModelGateKeyFile "{keys}"
ModelGateUpstream model http://127.0.0.1:{port}
ErrorDocument 404 /v1/chat/completions
<Directory "{run}/htdocs">
    AllowOverride AuthConfig
    Options FollowSymLinks
    Require all granted
    RewriteEngine On
    RewriteRule ^r/(.*) /v1/$1
</Directory>
<Location "/v1/">
    ModelGate On
    ModelGateRoute model
    ProxyPass http://127.0.0.1:{port}/v1/
    ProxyErrorOverride On 404
    Satisfy Any
    Require all granted
</Location>
"""


def open_doors(gateways, backend, name="doors"):
    backend.reset()
    gw = gateways(name, backend_port=backend.port)
    gw.write_conf(OPEN_DOORS.format(mods=MODS, keys=QUICKSTART_KEYS, port=backend.port,
                                    run=gw.rundir))
    os.makedirs(os.path.join(gw.rundir, "htdocs", "r"), exist_ok=True)
    return gw.start()


def test_mg_021_01_satisfy_any_in_location(gateways, backend):
    gw = open_doors(gateways, backend)
    statuses = [gw.chat(DEMO_KEY).status for _ in range(15)]
    assert statuses == [200] * 10 + [429] * 5
    missing = gw.chat(None)
    assert missing.status == 401
    assert missing.json["error"]["code"] == "missing_api_key"
    assert missing.header("content-type") == "application/json"
    assert gw.chat("not-a-key").status == 401
    assert backend.count() == 10


def test_mg_021_05b_no_way_in_without_a_key_and_a_charge(gateways, backend):
    """Every path, method and spelling an attacker would try, against a
    configuration with mod_access_compat, mod_rewrite and ErrorDocument in
    use: without a valid key nothing reaches the model server; with one,
    whatever reaches it was charged."""
    gw = open_doors(gateways, backend)
    paths = ["/v1/chat/completions", "/r/chat/completions", "/nothing-here",
             "/v1/../v1/chat/completions", "//v1/chat/completions", "/v1//chat/completions",
             "/v1/./chat/completions", "/%761/chat/completions", "/r/../v1/chat/completions",
             "/v1/chat/completions?x=1", "/V1/chat/completions", "/v1"]
    methods = ["GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE"]
    bad_credentials = [{}, {"X-API-Key": "wrong"}, {"X_API_Key": harness.PRO_KEY},
                       {"Authorization": "Basic " + harness.PRO_KEY},
                       {"Authorization": "Bearer"}, {"X-API-Key": ""}]
    for path in paths:
        for method in methods:
            for creds in bad_credentials:
                body = harness.CHAT if method in ("POST", "PUT") else None
                harness.request(gw.port, method, path, headers=dict(creds), body=body)
    assert backend.count() == 0
    sent = 0
    for path in paths:
        for method in methods:
            body = harness.CHAT if method in ("POST", "PUT") else None
            harness.request(gw.port, method, path, headers={"X-API-Key": harness.PRO_KEY},
                            body=body)
            sent += 1
    last = gw.chat(harness.PRO_KEY)
    assert last.status == 200
    remaining = int(last.header("ratelimit").split(";r=")[1].split(";")[0])
    charged = 100 - remaining - 1
    assert 0 < charged <= sent
    assert backend.count() - 1 <= charged


def test_mg_021_02_satisfy_any_in_htaccess(gateways, backend):
    gw = harness.htaccess_site(gateways, backend, {
        "v1/.htaccess": "ModelGateRoute model\nSatisfy Any\nRequire all granted\n"})
    statuses = [gw.chat(DEMO_KEY).status for _ in range(15)]
    assert statuses == [200] * 10 + [429] * 5
    assert gw.chat(None).status == 401
    assert backend.count() == 10


def test_mg_021_03_error_document_into_a_gated_path(gateways, backend):
    gw = open_doors(gateways, backend)
    # Without a key: the redirect to /v1/chat/completions is gated too.
    for _ in range(3):
        resp = gw.get("/nothing-here")
        assert resp.status == 404
    assert backend.count() == 0
    # With a key: counted like any other request, and refused past the limit.
    for _ in range(12):
        gw.get("/nothing-here", headers={"X-API-Key": DEMO_KEY})
    assert backend.count() == 10
    assert gw.chat(DEMO_KEY).status == 429


def test_mg_021_04_rewrite_into_a_gated_path(gateways, backend):
    gw = open_doors(gateways, backend)
    resp = gw.post("/r/chat/completions", body=harness.CHAT)
    assert resp.status == 401
    assert resp.json["error"]["code"] == "missing_api_key"
    assert backend.count() == 0
    statuses = [gw.post("/r/chat/completions", body=harness.CHAT,
                        headers={"X-API-Key": DEMO_KEY}).status for _ in range(12)]
    assert statuses == [200] * 10 + [429] * 2
    assert backend.count() == 10
    assert backend.requests()[-1]["path"] == "/v1/chat/completions"


def test_mg_021_05_a_request_that_passed_is_not_charged_twice(gateways, backend):
    """The redirect of a request that passed the gate goes on unchecked."""
    gw = open_doors(gateways, backend)
    # The mock's 404 for an unknown path is the upstream's answer; the
    # ErrorDocument's redirect after it is not a second charge.
    gw.post("/v1/unknown-endpoint", body=harness.CHAT, headers={"X-API-Key": OTHER_KEY})
    resp = gw.chat(OTHER_KEY)
    assert resp.status == 200
    assert resp.header("ratelimit").startswith('"free";r=8;')


# ---- bodies the gateway cannot read ----------------------------------------

MODELS = """
ModelGateTier free 10/min
ModelGateTier pro  100/min
ModelGateLimit large-only key 2/min models=mock-large
"""


def models_gateway(gateways, backend, backend2):
    backend.reset()
    backend2.reset()
    gw = gateways("models", backend_port=backend.port)
    gw.write_conf(harness.two_models(backend, backend2, MODELS))
    return gw.start()


def raw_post(gw, body, headers):
    return harness.request(gw.port, "POST", "/v1/chat/completions", body=body,
                           headers=dict(headers, **{"X-API-Key": DEMO_KEY}))


LARGE = b'{"model": "mock-large", "messages": [{"role": "user", "content": "hi"}]}'
UNKNOWN = b'{"model": "gpt-unknown", "messages": []}'


@pytest.mark.parametrize("headers", [
    {}, {"Content-Type": "text/plain"}, {"Content-Type": "text/plain; charset=utf-8"},
    {"Content-Type": "application/json", "Content-Encoding": "identity, identity"},
], ids=["no-type", "text", "text-charset", "identity-twice"])
def test_mg_021_06_json_without_a_json_type_is_read(gateways, backend, backend2, headers):
    gw = models_gateway(gateways, backend, backend2)
    resp = raw_post(gw, UNKNOWN, headers)
    assert resp.status == 404
    assert resp.json["error"]["code"] == "model_not_found"
    # Routed by its model, and its per-model limit applies.
    statuses = [raw_post(gw, LARGE, headers).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert (backend.count(), backend2.count()) == (0, 2)
    bad = raw_post(gw, b'{"model": "mock-small", "model": "mock-large"}', headers)
    assert bad.status == 400 and bad.json["error"]["code"] == "invalid_json"


def test_mg_021_07_text_that_is_not_json_goes_by_the_route(gateways, backend, backend2):
    gw = models_gateway(gateways, backend, backend2)
    resp = raw_post(gw, b"this movie was great", {"Content-Type": "text/plain"})
    # Admitted, charged and forwarded: what the model server makes of it is
    # its own answer (the mock wants JSON).
    assert resp.header("server").startswith("mock-model")
    assert resp.header("ratelimit").startswith('"free";r=9;')
    assert (backend.count(), backend2.count()) == (1, 0)
    assert backend.requests()[-1]["body"] == "this movie was great"


@pytest.mark.parametrize("headers,status,code", [
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
    ({"Content-Type": "multipart/form-data; boundary=x"}, 415, "unsupported_media_type"),
    ({"Content-Type": "application/octet-stream"}, 415, "unsupported_media_type"),
    ({"Content-Type": "application/json", "Content-Encoding": "br"}, 415, "unsupported_encoding"),
    ({"Content-Type": "application/json", "Content-Encoding": "identity, gzip"}, 415,
     "unsupported_encoding"),
], ids=["form", "multipart", "octets", "br", "identity-gzip"])
def test_mg_021_08_bodies_it_cannot_read_are_refused(gateways, backend, backend2, headers,
                                                     status, code):
    gw = models_gateway(gateways, backend, backend2)
    resp = raw_post(gw, LARGE, headers)
    assert resp.status == status
    assert resp.json["error"]["code"] == code
    assert resp.header("content-type") == "application/json"
    assert (backend.count(), backend2.count()) == (0, 0)
    # Nothing was charged.
    ok = gw.chat(DEMO_KEY)
    assert ok.status == 200
    assert ok.header("ratelimit").startswith('"free";r=9;')


def test_mg_021_08b_opaque_bodies_only_where_the_server_says(gateways, backend, backend2):
    """Multipart uploads (audio transcriptions) can be let through unread
    where the server configuration says so -- never from .htaccess."""
    backend.reset()
    backend2.reset()
    gw = gateways("opaque", backend_port=backend.port)
    gw.write_conf(harness.two_models(backend, backend2, MODELS, extra="""
<Location "/v1/audio/">
    ModelGateOpaqueBodies On
</Location>
"""))
    gw.start()
    form = b'--x\r\nContent-Disposition: form-data; name="model"\r\n\r\nmock-large\r\n--x--\r\n'
    resp = harness.request(gw.port, "POST", "/v1/audio/transcriptions", body=form,
                           headers={"X-API-Key": DEMO_KEY,
                                    "Content-Type": "multipart/form-data; boundary=x"})
    assert resp.header("server").startswith("mock-model")
    assert backend.count() == 1
    assert backend.requests()[-1]["body"] == form.decode()
    refused = harness.request(gw.port, "POST", "/v1/chat/completions", body=form,
                              headers={"X-API-Key": DEMO_KEY,
                                       "Content-Type": "multipart/form-data; boundary=x"})
    assert refused.status == 415


def test_mg_021_08c_htaccess_cannot_let_bodies_through(gateways, backend):
    gw = harness.htaccess_site(gateways, backend, {
        "v1/.htaccess": "ModelGateRoute model\nModelGateOpaqueBodies On\n"})
    gw.allow_errors(r"\.htaccess: ")
    assert gw.chat(DEMO_KEY).status == 500
    assert "ModelGateOpaqueBodies not allowed here" in gw.read_log()
    assert backend.count() == 0


def chunked_with(gw, te, key=DEMO_KEY):
    body = LARGE
    head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "X-API-Key: %s\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: %s\r\nConnection: close\r\n\r\n" % (key, te)).encode()
    data = head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    return out


def test_mg_021_09_transfer_codings_before_chunked_are_refused_uncharged(gateways, backend,
                                                                         backend2):
    gw = models_gateway(gateways, backend, backend2)
    out = chunked_with(gw, "gzip, chunked")
    assert out.startswith(b"HTTP/1.1 501 ")
    assert b'"code":"unsupported_encoding"' in out.replace(b" ", b"")
    assert (backend.count(), backend2.count()) == (0, 0)
    ok = gw.chat(DEMO_KEY)
    assert ok.header("ratelimit").startswith('"free";r=9;')
    # Plain chunked is fine.
    assert chunked_with(gw, "chunked").startswith(b"HTTP/1.1 200 ")
    assert backend2.count() == 1


def test_mg_021_10_without_models_other_bodies_pass_untouched(gateways, backend):
    """Where no model is declared the body is not the gateway's business;
    only a transfer coding mod_proxy cannot forward is refused."""
    backend.reset()
    gw = gateways("plain", backend_port=backend.port)
    gw.write_conf("ModelGateTier free 10/min\nModelGateTier pro 100/min\n"
                  + harness.routed_v1(QUICKSTART_KEYS, backend.port))
    gw.start()
    resp = raw_post(gw, b"a=1&b=2", {"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.header("server").startswith("mock-model")
    assert backend.requests()[-1]["body"] == "a=1&b=2"
    assert chunked_with(gw, "gzip, chunked").startswith(b"HTTP/1.1 501 ")
    assert backend.count() == 1


# ---- headers ---------------------------------------------------------------------

def test_mg_021_11_identity_headers_cannot_be_stripped_or_spoofed(gateways, backend):
    gw = open_doors(gateways, backend)
    resp = gw.chat(DEMO_KEY, extra={
        "Connection": "keep-alive, X-Modelgate-Tenant, x_modelgate_tier, X-Modelgate-Key-Id",
        "X_Modelgate_Tenant": "evil",
        "X-Modelgate_Tier": "enterprise",
        "X_API_Key": "mg-quickstart-pro-key",
    })
    assert resp.status == 200
    seen = backend.requests()[-1]["headers"]
    assert seen["x-modelgate-tenant"] == "acme"
    assert seen["x-modelgate-tier"] == "free"
    assert seen["x-modelgate-key-id"] == "demo"
    for name in seen:
        norm = name.replace("_", "-")
        assert not (norm.startswith("x-modelgate-") and name != norm), seen
        assert norm != "x-api-key", seen
    assert "mg-quickstart" not in repr(seen)


def test_mg_021_12_an_underscore_key_is_not_a_credential(gateways, backend):
    gw = open_doors(gateways, backend)
    resp = gw.post("/v1/chat/completions", body=harness.CHAT,
                   headers={"X_API_Key": DEMO_KEY})
    assert resp.status == 401
    assert backend.count() == 0


# ---- .htaccess ---------------------------------------------------------------

@pytest.mark.parametrize("layout", ["directory", "parent-htaccess"])
def test_mg_021_13_htaccess_cannot_lower_a_cost(gateways, backend, layout):
    if layout == "directory":
        gw = harness.htaccess_site(gateways, backend,
                           {"v1/.htaccess": "ModelGateRoute model\nModelGateCost 1\n"},
                           dir_extra="ModelGateCost 5")
    else:
        gw = harness.htaccess_site(gateways, backend, {
            ".htaccess": "ModelGateCost 5\n",
            "v1/.htaccess": "ModelGateRoute model\nModelGateCost 1\n"})
    statuses = [gw.chat(DEMO_KEY).status for _ in range(6)]
    assert statuses == [200, 200, 429, 429, 429, 429]
    assert backend.count() == 2


def test_mg_021_14_htaccess_may_raise_a_cost(gateways, backend):
    gw = harness.htaccess_site(gateways, backend,
                       {"v1/.htaccess": "ModelGateRoute model\nModelGateCost 5\n"},
                       dir_extra="ModelGateCost 2")
    statuses = [gw.chat(DEMO_KEY).status for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_mg_021_15_htaccess_loads_no_time_zone(gateways, backend):
    daily = "ModelGateLimit daily key 5/day algorithm=fixed_window zone=%s\n"
    gw = harness.htaccess_site(gateways, backend, {
        "v1/.htaccess": "ModelGateRoute model\n" + daily % "Asia/Tokyo"},
        server_extra="ModelGateLimit berlin-day key 1000/day algorithm=fixed_window "
                     "zone=Europe/Berlin\n")
    gw.allow_errors(r"\.htaccess: ")
    resp = gw.chat(DEMO_KEY)
    assert resp.status == 500
    assert backend.count() == 0
    assert "zone 'Asia/Tokyo' is not one the server configuration uses" in gw.read_log()
    # A zone the server configuration loaded is usable.
    with open(os.path.join(gw.rundir, "htdocs", "v1", ".htaccess"), "w") as f:
        f.write("ModelGateRoute model\n" + daily % "Europe/Berlin")
    resp = gw.chat(DEMO_KEY)
    assert resp.status == 200
    assert '"daily";q=5;w=86400' in resp.header("ratelimit-policy")


# ---- echoed text ------------------------------------------------------------------

def test_mg_021_16_requested_model_echoes_declared_names_only(gateways, backend):
    backend.reset()
    gw = gateways("echo", backend_port=backend.port)
    gw.write_conf("ModelGateTier free 1/s on_limit=queue:3000\nModelGateTier pro 100/min\n"
                  + harness.routed_v1(QUICKSTART_KEYS, backend.port))
    gw.start()
    body = {"model": "x\r\nX-Injected: 1", "messages": [{"role": "user", "content": "hi"}]}
    first = gw.chat(DEMO_KEY, body=body)
    assert first.status == 200
    queued = gw.chat(DEMO_KEY, body=body)
    assert queued.status == 200
    assert queued.header("x-modelgate-degraded") == "queued"
    assert queued.header("x-modelgate-requested-model") is None
    assert queued.header("x-injected") is None


# ---- slow clients -------------------------------------------------------------------

def test_mg_021_17_a_trickled_body_is_cut_off(gateways, backend):
    backend.reset()
    gw = gateways("slow", backend_port=backend.port)
    gw.write_conf("LoadModule reqtimeout_module %s/mod_reqtimeout.so\n"
                  "RequestReadTimeout header=5 body=1,MinRate=100000\n"
                  "ModelGateTier free 10/min\nModelGateTier pro 100/min\n" % MODS
                  + harness.routed_v1(QUICKSTART_KEYS, backend.port))
    gw.start()
    head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "X-API-Key: %s\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n{\"model\": " % DEMO_KEY).encode()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as s:
        s.sendall(head)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    assert out.startswith(b"HTTP/1.1 408 "), out[:200]
    assert b'"request_timeout"' in out
    assert backend.count() == 0
    assert gw.chat(DEMO_KEY).header("ratelimit").startswith('"free";r=9;')


def test_mg_021_18_every_example_cuts_off_slow_clients():
    examples = [f for f in sorted(os.listdir(harness.CONF_EXAMPLES))
                if f.endswith(".conf") and f != "modelgate.conf"]
    assert len(examples) >= 7
    for name in examples + ["modelgate.conf"]:
        with open(os.path.join(harness.CONF_EXAMPLES, name)) as f:
            text = f.read()
        assert "RequestReadTimeout " in text, name
        if name != "modelgate.conf":
            assert "mod_reqtimeout.so" in text, name
    with open(os.path.join(harness.CONF_EXAMPLES, "modelgate.load")) as f:
        assert "reqtimeout" in f.readline()


# ---- logs ------------------------------------------------------------------------------

@pytest.mark.parametrize("level,warned", [("warn http:trace4", True),
                                          ("warn core:trace5", True),
                                          ("warn modelgate:trace8", False)])
def test_mg_021_19_header_logging_levels_are_warned_of(gateways, backend, level, warned):
    backend.reset()
    gw = gateways("loglevel", backend_port=backend.port)
    gw.write_conf("LogLevel %s\nModelGateTier free 10/min\nModelGateTier pro 100/min\n"
                  % level + harness.routed_v1(QUICKSTART_KEYS, backend.port))
    gw.start()
    assert gw.chat(DEMO_KEY).status == 200
    gw.stop()
    assert ("MG00007" in gw.read_log()) == warned


# ---- encoded slashes --------------------------------------------------------------------

def test_mg_021_20_encoded_slash_reaches_the_upstream_once_encoded(gateways, backend):
    backend.reset()
    gw = gateways("slash", backend_port=backend.port)
    gw.write_conf("AllowEncodedSlashes NoDecode\nModelGateTier free 10/min\n"
                  "ModelGateTier pro 100/min\n"
                  + harness.routed_v1(QUICKSTART_KEYS, backend.port))
    gw.start()
    gw.get("/v1/models/org%2Fmodel%20x", headers={"X-API-Key": DEMO_KEY})
    seen = backend.requests()[-1]
    assert seen["path"] == "/v1/models/org%2Fmodel%20x"
