"""JWT identity (plugins/jwt, mod_modelgate_jwt.so) and per-route
authorization (`Require modelgate-scope`, `Require modelgate-tier`).

Tokens are minted here with python3-cryptography (jwt_mint.py); the JWKS
and the HMAC secret are files the gateway reads at start.  A JWT caller
is limited, announced and logged as an API key's caller is."""
import concurrent.futures
import http.server
import threading
import json
import os
import re
import time

import pytest

import harness
from harness import DEMO_KEY, OTHER_KEY, PRO_KEY
import jwt_mint as jm

ISS = "https://idp.test/"
KEYS = jm.Keys("t")
INVALID = 'Bearer realm="modelgate", error="invalid_token", error_description="%s"'


def conf(gw, backend, identity="key jwt", issuer_opts="", extra="", loc=""):
    with open(os.path.join(gw.rundir, "idp.jwks"), "w") as f:
        json.dump(KEYS.jwks(), f)
    with open(os.path.join(gw.rundir, "hmac.secret"), "wb") as f:
        f.write(jm.SECRET + b"\n")
    return """
LoadModule modelgate_jwt_module "%s"
LogLevel warn modelgate:info modelgate_jwt:debug
ModelGateTier free 5/min
ModelGateTier pro  100/min
ModelGateTier enterprise 1000/min
ModelGateKeyFile "%s"
ModelGateIdentity %s
ModelGateJWTIssuer %s jwks=idp.jwks secret=hmac.secret audience=modelgate \\
    algs=%s tier=plan %s
ModelGateUpstream model http://127.0.0.1:%d
%s
<Location "/v1/">
    Require all granted
    ModelGate On
    ModelGateRoute model
</Location>
<Location "/v1/embeddings">
    Require modelgate-scope embeddings
</Location>
<Location "/v1/pro/">
    Require modelgate-tier pro enterprise
</Location>
%s
""" % (harness.JWT_MODULE, harness.QUICKSTART_KEYS, identity, ISS, ",".join(jm.ALGS),
       issuer_opts, backend.port, extra, loc)


@pytest.fixture
def jwtgw(gateways, backend):
    backend.reset()

    def start(**kw):
        gw = gateways("jwt", backend_port=backend.port)
        # mod_authz_core logs each refusal of a Require rule at error level
        gw.allow_errors(r"AH01630")
        gw.write_conf(conf(gw, backend, **kw))
        return gw.start()
    return start


def bearer(gw, token, path="/v1/chat/completions", conn=None):
    return harness.request(gw.port, "POST", path, body=harness.CHAT,
                           headers={"Authorization": "Bearer " + token}, conn=conn)


def forwarded(resp):
    """The gateway let it through: the mock model server answered (with
    404 for paths only the tests' routes have, 400 for a chat body sent to
    /v1/embeddings)."""
    return resp.header("server") == "mock-model/1.0"


def token(alg="ES256", **c):
    c.setdefault("aud", "modelgate")
    return KEYS.token(alg, jm.claims(**c))


@pytest.mark.parametrize("alg", jm.ALGS)
def test_mg_025_01_each_algorithm(jwtgw, backend, alg):
    gw = jwtgw()
    resp = bearer(gw, token(alg, sub="alice", tenant="acme", plan="pro"))
    assert resp.status == 200, resp
    assert resp.header("ratelimit").startswith('"pro";r=99;')
    seen = backend.requests()[-1]["headers"]
    assert (seen["x-modelgate-key-id"], seen["x-modelgate-tenant"],
            seen["x-modelgate-tier"]) == ("alice", "acme", "pro")
    # the token never travels upstream
    assert "authorization" not in seen
    assert not any("eyJ" in v for v in seen.values())


def _mangled_b64():
    t = token()
    return t[:5] + "*" + t[6:]


def _bad_json():
    return jm.b64(b'{"alg":"ES256"') + "." + jm.b64(b'{"iss":"x"}') + "." + jm.b64(b"sig")


def _bad_signature():
    head, body, sig = token().split(".")
    other = token(sub="mallory").split(".")[1]
    return ".".join([head, other, sig])


@pytest.mark.parametrize("make,why", [
    (lambda: token(lifetime=-3600), "token expired"),
    (lambda: token(nbf=int(__import__("time").time()) + 3600), "token not yet valid"),
    (lambda: token(aud="someone-else"), "audience not accepted"),
    (lambda: token(iss="https://evil.test/"), "issuer not trusted"),
    (_bad_signature, "signature mismatch"),
    (lambda: jm.unsigned(jm.claims(aud="modelgate")), "algorithm not accepted"),
    (lambda: KEYS.token("HS256", jm.claims(aud="modelgate"), secret=KEYS.rsa_public_pem()),
     "signature mismatch"),
    (_mangled_b64, "malformed base64url"),
    (_bad_json, "malformed JSON"),
    (lambda: token(pad="x" * 5500), "token too large"),
], ids=["expired", "not-yet-valid", "wrong-aud", "wrong-iss", "bad-signature", "alg-none",
        "hs256-with-rsa-public-key", "malformed-base64", "malformed-json", "oversized"])
def test_mg_025_02_refused_tokens(jwtgw, backend, make, why):
    gw = jwtgw()
    resp = bearer(gw, make())
    assert resp.status == 401, resp
    assert resp.header("content-type") == "application/json"
    assert resp.json["error"]["code"] == "invalid_token"
    assert resp.header("www-authenticate") == INVALID % why
    assert resp.header("ratelimit") is None
    assert backend.count() == 0


def test_mg_025_03_tiers_from_claims(jwtgw, backend):
    gw = jwtgw(issuer_opts="default_tier=free")
    resp = bearer(gw, token(plan="platinum"))
    assert resp.status == 403
    assert resp.json["error"]["code"] == "unknown_tier"
    # no tier claim: the issuer's default
    resp = bearer(gw, token(sub="nobody-special"))
    assert resp.status == 200
    assert resp.header("ratelimit").startswith('"free";r=4;')
    assert backend.count() == 1


def test_mg_025_04_no_tier_and_no_default(jwtgw, backend):
    gw = jwtgw()
    resp = bearer(gw, token())
    assert resp.status == 403
    assert resp.json["error"]["code"] == "unknown_tier"
    assert backend.count() == 0


def test_mg_025_05_limits_keyed_on_subject_and_tenant(jwtgw, backend):
    gw = jwtgw(loc="""
<Location "/v1/chat/">
    ModelGateLimit acme-chat tenant 7/min
</Location>
""")
    # the free tier: 5 a minute per caller; a fresh token of the same
    # subject is the same caller
    statuses = [bearer(gw, token(sub="bob", tenant="acme", plan="free", jti=str(i))).status
                for i in range(6)]
    assert statuses == [200] * 5 + [429]
    # another subject of the same tenant has its own 5, but the tenant's
    # 7 are shared -- with the tenant's API keys too (demo is acme's)
    statuses = [bearer(gw, token(sub="carol", tenant="acme", plan="free")).status
                for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert gw.chat(DEMO_KEY).status == 429
    # globex is untouched
    assert gw.chat(OTHER_KEY).status == 200
    assert backend.count() == 8


def test_mg_025_06_scopes_and_tiers_per_route(jwtgw, backend):
    gw = jwtgw()
    emb = "/v1/embeddings"
    # API keys: their scopes column (demo: chat,embeddings; other: chat)
    assert forwarded(harness.request(gw.port, "POST", emb, body=harness.CHAT,
                                     headers={"X-API-Key": DEMO_KEY}))
    resp = harness.request(gw.port, "POST", emb, body=harness.CHAT,
                           headers={"X-API-Key": OTHER_KEY})
    assert resp.status == 403
    assert resp.header("content-type") == "application/json"
    assert resp.json["error"]["code"] == "insufficient_scope"
    assert resp.header("www-authenticate") == (
        'Bearer realm="modelgate", error="insufficient_scope", scope="embeddings"')
    # tokens: scope as a space-separated string or an array
    assert forwarded(bearer(gw, token(plan="pro", scope="chat embeddings"), emb))
    assert forwarded(bearer(gw, token(plan="pro", scope=["embeddings"]), emb))
    resp = bearer(gw, token(plan="pro", scope="chat"), emb)
    assert resp.status == 403
    assert resp.json["error"]["code"] == "insufficient_scope"
    # tiers
    pro = "/v1/pro/chat"
    assert forwarded(harness.request(gw.port, "POST", pro, body=harness.CHAT,
                                     headers={"X-API-Key": PRO_KEY}))
    resp = harness.request(gw.port, "POST", pro, body=harness.CHAT,
                           headers={"X-API-Key": DEMO_KEY})
    assert resp.status == 403
    assert resp.json["error"]["code"] == "insufficient_tier"
    assert forwarded(bearer(gw, token(plan="pro"), pro))
    assert bearer(gw, token(plan="free"), pro).status == 403
    # an allowed answer carries no challenge
    assert bearer(gw, token(plan="pro"), pro).header("www-authenticate") is None
    assert backend.count() == 6


def test_mg_025_07_default_is_key_only(jwtgw, backend):
    # without jwt among the identity providers a token is an unknown key
    gw = jwtgw(identity="key")
    resp = bearer(gw, token(plan="pro"))
    assert resp.status == 401
    assert resp.json["error"]["code"] == "invalid_api_key"
    assert gw.chat(DEMO_KEY).status == 200


def test_mg_025_08_token_only_as_bearer(jwtgw, backend):
    gw = jwtgw()
    # a JWT in X-API-Key is not a JWT credential, and not a key
    resp = gw.chat(token(plan="pro"))
    assert resp.status == 401
    assert resp.json["error"]["code"] == "invalid_api_key"
    # API keys still work as bearer tokens alongside JWTs
    assert gw.chat(DEMO_KEY, header="Authorization").status == 200
    assert backend.count() == 1


def test_mg_025_09_verified_tokens_are_cached(jwtgw, backend):
    gw = jwtgw()
    tok = token(sub="dave", plan="pro")
    conn = __import__("http.client").client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        for _ in range(4):
            assert bearer(gw, tok, conn=conn).status == 200
    finally:
        conn.close()
    log = gw.wait_log(r"MGJ00002")
    # one connection, one child: verified once, then found by its digest
    assert len(re.findall(r"MGJ00002: bearer token of 'dave' verified", log)) == 1


def test_mg_025_10_htaccess_adds_but_cannot_weaken(gateways, backend):
    backend.reset()
    gw = gateways("jwtht", backend_port=backend.port)
    gw.allow_errors(r"AH01630")
    text = conf(gw, backend, loc="""
<Directory "%s/htdocs">
    AllowOverride AuthConfig
    Require all granted
</Directory>
<Location "/v1/tiered/">
    Require modelgate-tier pro
</Location>
""" % gw.rundir)
    # .htaccess routes apply under a <Location> without a route; its
    # Require rules where the server's are in <Directory> (a <Location> is
    # merged after .htaccess, and its Require replaces theirs)
    gw.write_conf(text.replace("    Require all granted\n    ModelGate On\n    ModelGateRoute model\n",
                               "    ModelGate On\n"))
    for d, rules in [("v1", "ModelGateRoute model\n"),
                     ("v1/scoped", "ModelGateRoute model\nRequire modelgate-scope embeddings\n"),
                     ("v1/open", "ModelGateRoute model\n<RequireAny>\nRequire all granted\n"
                                 "Require modelgate-tier pro\n</RequireAny>\n"),
                     ("v1/tiered", "ModelGateRoute model\nRequire all granted\n")]:
        os.makedirs(os.path.join(gw.rundir, "htdocs", d), exist_ok=True)
        with open(os.path.join(gw.rundir, "htdocs", d, ".htaccess"), "w") as f:
            f.write(rules)
    gw.start()

    def post(path, headers):
        return harness.request(gw.port, "POST", path, body=harness.CHAT, headers=headers)
    # added: a scope the server did not ask for
    assert forwarded(post("/v1/scoped/x", {"X-API-Key": DEMO_KEY}))
    assert post("/v1/scoped/x", {"X-API-Key": OTHER_KEY}).status == 403
    assert post("/v1/scoped/x", {"Authorization": "Bearer " + token(plan="free")}).status == 403
    # RequireAny granting everybody does not bypass the gate
    assert post("/v1/open/x", {}).status == 401
    assert post("/v1/open/x", {"Authorization": "Bearer " + token(lifetime=-3600)}).status == 401
    assert forwarded(post("/v1/open/x", {"X-API-Key": DEMO_KEY}))
    # the server's Require (a <Location>, merged after .htaccess) holds
    assert post("/v1/tiered/x", {"X-API-Key": DEMO_KEY}).status == 403
    assert forwarded(post("/v1/tiered/x", {"X-API-Key": PRO_KEY}))
    assert backend.count() == 3


def test_mg_025_14_require_without_the_gate(gateways, backend):
    # Require modelgate-* where ModelGate is not on: no caller, 403 JSON
    # (not httpd's 500 for a user-based rule without an AuthType)
    gw = gateways("nogate", backend_port=backend.port)
    gw.allow_errors(r"AH01630")
    gw.write_conf("""
ModelGateTier free 5/min
ModelGateTier pro 5/min
ModelGateKeyFile "%s"
<Location "/plain/">
    Require modelgate-scope chat
</Location>
<Location "/tiered/">
    Require modelgate-tier pro
</Location>
""" % harness.QUICKSTART_KEYS)
    gw.start()
    for path in ("/plain/x", "/tiered/x"):
        resp = gw.get(path, headers={"X-API-Key": DEMO_KEY})
        assert resp.status == 403
        assert resp.header("content-type") == "application/json"
        assert resp.json["error"]["code"] == "insufficient_scope"
        assert resp.header("www-authenticate") == (
            'Bearer realm="modelgate", error="insufficient_scope"')


def test_mg_025_11_config_errors(gateways, backend):
    base = """
ModelGateTier free 5/min
ModelGateKeyFile "%s"
""" % harness.QUICKSTART_KEYS
    load = 'LoadModule modelgate_jwt_module "%s"\n' % harness.JWT_MODULE
    harness.assert_config_errors(gateways, [
        (base + "ModelGateIdentity key jwt\n", "load mod_modelgate_jwt.so"),
        (base + "ModelGateIdentity key nosuch\n", "no identity provider 'nosuch'"),
        (base + "ModelGateIdentity key key\n", "'key' named twice"),
        (load + base + "ModelGateIdentity jwt\n", "no ModelGateJWTIssuer is configured"),
        (load + base + "ModelGateJWTIssuer x jwks=/nonexistent\n", "algs= is required"),
        (load + base + "ModelGateJWTIssuer x algs=none\n", "refused algorithm 'none'"),
        (load + base + "ModelGateJWTIssuer x algs=HS256\n", "needs secret=FILE"),
        (load + base + "ModelGateJWTIssuer x algs=ES256\n", "needs jwks=FILE or jwks_url=URL"),
        (load + base + "ModelGateJWTIssuer x algs=ES256 jwks_url=http://idp.example/k\n",
         "an https:// URL (http:// only to the loopback)"),
        (load + base + "ModelGateJWTIssuer x algs=ES256 jwks_url=https://idp.example/k "
         "jwks_min_interval=2 jwks_timeout=2000\n", "must be below jwks_min_interval"),
        (load + base + "ModelGateJWTIssuer x algs=ES256 jwks=/nonexistent\n", "cannot read"),
        (load + base + "ModelGateJWTRevoked /nonexistent/revoked\n",
         "ModelGateJWTRevoked: cannot read '/nonexistent/revoked'"),
    ])


# ---- revocation by jti -------------------------------------------------------

def _write_revoked(gw, *jtis):
    """Replace the list the way an operator's tool should: a new file
    renamed over the old one, so no process reads half of it."""
    path = os.path.join(gw.rundir, "revoked.jtis")
    with open(path + ".new", "w") as f:
        f.write("# revoked token ids\n" + "".join(j + "\n" for j in jtis))
    os.replace(path + ".new", path)
    return path


def _burst(gw, tok, n=24):
    """n requests, each on its own connection, 8 at a time: they land in
    several processes (and threads)."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: bearer(gw, tok), range(n)))


def _pids(gw, since, pattern):
    with open(gw.error_log(), "rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    return [m for m in re.findall(r"\[pid (\d+)[^\]]*\][^\n]*" + pattern, text)]


@pytest.mark.parametrize("mpm", ["prefork", "event"])
def test_mg_025_15_revoked_jti(gateways, backend, mpm):
    backend.reset()
    gw = gateways("jwtrev", backend_port=backend.port, mpm=mpm)
    gw.allow_errors(r"AH01630", r"MGJ00003: ModelGateJWTRevoked: cannot read")
    path = _write_revoked(gw, "long-gone")
    gw.write_conf(conf(gw, backend, extra='ModelGateJWTRevoked "%s"' % path))
    gw.start()
    eve = token(sub="eve", plan="pro", jti="jti-eve-1")
    frank = token(sub="frank", plan="pro", jti="jti-frank-1")
    # listed at start
    resp = bearer(gw, token(sub="gina", plan="pro", jti="long-gone"))
    assert resp.status == 401
    assert resp.json["error"]["code"] == "invalid_token"
    assert resp.header("www-authenticate") == INVALID % "token revoked"
    # eve's token verified, and cached, in several processes
    assert [r.status for r in _burst(gw, eve)] == [200] * 24
    if mpm == "prefork":
        assert len(set(_pids(gw, 0, r"MGJ00002: bearer token of 'eve'"))) >= 2
    # revoked while the gateway runs
    since = os.path.getsize(gw.error_log())
    written = time.monotonic()
    _write_revoked(gw, "long-gone", "jti-eve-1")
    polls = 0
    while bearer(gw, eve).status != 401:
        polls += 1
        assert time.monotonic() < written + 3.0, "not revoked after %d polls" % polls
        time.sleep(0.05)
    # a second after the change every process has looked at the file:
    # no process, and no cached verification, lets the token through
    time.sleep(max(0.0, written + 1.2 - time.monotonic()))
    refused = _burst(gw, eve)
    assert [r.status for r in refused] == [401] * 24
    assert {r.header("www-authenticate") for r in refused} == {INVALID % "token revoked"}
    if mpm == "prefork":
        assert len(set(_pids(gw, since, r"MGJ00001: bearer token refused: token revoked"))) >= 2
    # an unrevoked token of the same issuer still works
    assert [r.status for r in _burst(gw, frank)] == [200] * 24
    assert backend.count() == 48 + polls   # polls: answered 200 until refused

    # the file gone: logged (once per process), the last list stays
    since = os.path.getsize(gw.error_log())
    os.remove(path)
    gone = time.monotonic()
    time.sleep(1.2)
    while not _pids(gw, since, "MGJ00003"):
        assert time.monotonic() < gone + 4.0
        bearer(gw, frank)
        time.sleep(0.05)
    assert [r.status for r in _burst(gw, eve, 8)] == [401] * 8
    # back, without eve: her token works again
    written = time.monotonic()
    _write_revoked(gw, "long-gone")
    time.sleep(max(0.0, written + 1.2 - time.monotonic()))
    assert [r.status for r in _burst(gw, eve, 8)] == [200] * 8


# ---- keys from a URL ------------------------------------------------------------

class JwksServer:
    """The identity provider's JWKS endpoint on loopback: serves `jwks`
    (or `status`), after `delay` seconds, and counts the fetches."""

    def __init__(self, jwks):
        self.jwks, self.status, self.delay, self.fetches = jwks, 200, 0.0, 0
        self.lock = threading.Lock()
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with srv.lock:
                    srv.fetches += 1
                    body, status, delay = json.dumps(srv.jwks).encode(), srv.status, srv.delay
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d/jwks.json" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return self.fetches

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


KEYS_B = jm.Keys("b")       # the identity provider's next keys
FORGED = jm.Keys("x")       # kids nobody publishes


@pytest.fixture
def jwks_server():
    made = []

    def make(jwks):
        made.append(JwksServer(jwks))
        return made[-1]
    yield make
    for srv in made:
        srv.stop()


def start_url_gw(gateways, backend, srv, opts, mpm="event"):
    backend.reset()
    gw = gateways("jwturl", backend_port=backend.port, mpm=mpm)
    gw.allow_errors(r"AH01630", r"MGJ00005")
    text = conf(gw, backend).replace("jwks=idp.jwks", "jwks_url=%s %s" % (srv.url, opts))
    gw.write_conf(text)
    gw.start()
    return gw


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_mg_025_16_jwks_url_rotation(gateways, backend, jwks_server, mpm):
    srv = jwks_server(KEYS.jwks())
    gw = start_url_gw(gateways, backend, srv, "jwks_min_interval=2 jwks_timeout=1500", mpm=mpm)
    # the first set is fetched once for all processes
    assert bearer(gw, token(sub="a1", plan="pro")).status == 200
    assert srv.count() == 1
    # rotation: the provider publishes b's keys and retires t's; a token
    # with the new kid makes the gateway fetch (once the interval passed)
    srv.jwks = KEYS_B.jwks()
    time.sleep(2.2)
    resp = bearer(gw, KEYS_B.token("ES256", jm.claims(sub="b1", plan="pro", aud="modelgate")))
    assert resp.status == 200, resp
    assert srv.count() == 2
    # the retired key: a token not seen before is refused at once, no fetch
    resp = bearer(gw, token(sub="a2", plan="pro"))
    assert resp.status == 401
    assert resp.header("www-authenticate") == INVALID % "no key of the issuer fits"
    # every algorithm of the new set, in every process
    statuses = [r.status for r in _burst(gw, KEYS_B.token(
        "EdDSA", jm.claims(sub="b2", plan="pro", aud="modelgate")), 16)]
    assert statuses == [200] * 16
    assert srv.count() == 2
    assert backend.count() == 18


def test_mg_025_17_jwks_url_kid_flood(gateways, backend, jwks_server):
    srv = jwks_server(KEYS.jwks())
    started = time.monotonic()
    gw = start_url_gw(gateways, backend, srv,
                      "jwks_min_interval=3 jwks_refresh=3600 jwks_timeout=2000")
    assert bearer(gw, token(sub="a1", plan="pro")).status == 200
    assert srv.count() == 1

    def forged(i):
        return FORGED.token("ES256", jm.claims(sub="m%d" % i, plan="pro", aud="modelgate"))
    # inside the interval: forged kids fetch nothing (1 fetch, unless this
    # machine took longer than the interval since the start)
    refused = [bearer(gw, forged(i)).status for i in range(20)]
    assert refused == [401] * 20
    assert srv.count() <= 1 + int((time.monotonic() - started) // 3)
    # after it: a flood of them costs one fetch per interval
    time.sleep(3.2)
    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = [r.status for r in pool.map(lambda i: bearer(gw, forged(i)), range(40))]
    elapsed = time.monotonic() - began
    assert statuses == [401] * 40
    assert 2 <= srv.count() <= 2 + int(elapsed // 3)
    assert backend.count() == 1


def test_mg_025_18_jwks_url_down(gateways, backend, jwks_server):
    srv = jwks_server(KEYS.jwks())
    gw = start_url_gw(gateways, backend, srv, "jwks_min_interval=1 jwks_timeout=500")
    assert bearer(gw, token(sub="a1", plan="pro")).status == 200
    since = os.path.getsize(gw.error_log())
    # the provider fails: the last good keys stay in use, logged once
    srv.status = 503
    time.sleep(1.2)
    assert bearer(gw, FORGED.token("ES256", jm.claims(plan="pro", aud="modelgate"))).status == 401
    assert srv.count() == 2
    log = gw.wait_log(r"MGJ00005", since=since)
    assert len(re.findall(r"MGJ00005: JWKS of issuer https://idp.test/: the server "
                          r"answered HTTP 503; the last good keys stay in use", log)) == 1
    assert bearer(gw, token(sub="a2", plan="pro")).status == 200
    # the provider hangs: a request waits at most the timeout (500 ms)
    srv.status, srv.delay = 200, 5.0
    time.sleep(1.2)
    began = time.monotonic()
    resp = bearer(gw, FORGED.token("ES256", jm.claims(sub="m2", plan="pro", aud="modelgate")))
    assert resp.status == 401
    assert time.monotonic() - began < 3.0
    assert bearer(gw, token(sub="a3", plan="pro")).status == 200
    assert backend.count() == 3


def test_mg_025_19_jwks_url_graceful_restart(gateways, backend, jwks_server):
    srv = jwks_server(KEYS.jwks())
    gw = start_url_gw(gateways, backend, srv, "jwks_min_interval=2 jwks_timeout=1500")
    assert bearer(gw, token(sub="a1", plan="pro")).status == 200
    assert srv.count() == 1
    # a new generation: new shared memory, one fetch for its processes;
    # the old ones stop their fetcher threads and exit cleanly
    gw.graceful()
    assert [r.status for r in _burst(gw, token(sub="a2", plan="pro"), 8)] == [200] * 8
    assert srv.count() == 2
    assert backend.count() == 9


def test_mg_025_20_jwks_url_slow_first_fetch(gateways, backend, jwks_server):
    """Requests of a new generation that come while its first fetch is
    under way all wait for it, also when another thread of their process
    takes the new set up first (they used to wait out the timeout: 401)."""
    srv = jwks_server(KEYS.jwks())
    gw = start_url_gw(gateways, backend, srv, "jwks_min_interval=5 jwks_timeout=4000")
    assert bearer(gw, token(sub="a1", plan="pro")).status == 200
    srv.delay = 1.0
    gw.graceful()
    # a waiter that missed the set would wait out the timeout: 401
    statuses = [r.status for r in _burst(gw, token(sub="a2", plan="pro"), 16)]
    assert statuses == [200] * 16
    assert srv.count() == 2
    assert backend.count() == 17


# ---- conf-examples/jwt-tiers.conf -------------------------------------------

DEMO_ISS = "https://idp.example.test/realms/ai"


def demo_token(sub, plan=None, scope="chat", org="acme", lifetime=600):
    """A token of the example's demo identity provider."""
    from cryptography.hazmat.primitives import serialization
    with open(os.path.join(harness.CONF_EXAMPLES, "keys", "jwt-demo-es256.pem"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    org_claim = {"id": org}
    if plan:
        org_claim["plan"] = plan
    signer = jm.Keys.__new__(jm.Keys)     # only the ES256 key is needed
    signer.ec = {"ES256": key}
    signer.prefix = "demo"
    return signer.token("ES256", jm.claims(iss=DEMO_ISS, sub=sub, lifetime=lifetime,
                                           aud="modelgate", org=org_claim, scope=scope),
                        header={"kid": "demo-es256"})


@pytest.fixture
def jwt_example(gateways, backend):
    backend.reset()
    gw = gateways("jwtex", backend_port=backend.port)
    gw.allow_errors(r"AH01630")
    gw.use_conf(os.path.join(harness.CONF_EXAMPLES, "jwt-tiers.conf"))
    return gw.start()


def test_mg_025_12_example_tiers_from_a_claim(jwt_example, backend):
    gw = jwt_example
    # no plan claim: free, 10 a minute
    free = [bearer(gw, demo_token("alice")) for _ in range(11)]
    assert [r.status for r in free] == [200] * 10 + [429]
    assert free[0].header("ratelimit-policy") == '"free";q=10;w=60, "tenant-cap";q=3000;w=60'
    # pro and enterprise from org.plan
    resp = bearer(gw, demo_token("bob", plan="pro"))
    assert resp.status == 200
    assert resp.header("ratelimit").startswith('"pro";r=19;')
    resp = bearer(gw, demo_token("carol", plan="enterprise"))
    assert resp.header("ratelimit").startswith('"enterprise";r=99;')
    seen = backend.requests()[-1]["headers"]
    assert (seen["x-modelgate-key-id"], seen["x-modelgate-tenant"],
            seen["x-modelgate-tier"]) == ("carol", "acme", "enterprise")
    # a plan the gateway does not sell
    assert bearer(gw, demo_token("dave", plan="platinum")).status == 403
    assert backend.count() == 12


def test_mg_025_13_example_routes_by_scope_and_tier(jwt_example, backend):
    gw = jwt_example
    emb = "/v1/embeddings"
    assert bearer(gw, demo_token("alice", scope="chat"), emb).status == 403
    assert forwarded(bearer(gw, demo_token("alice", scope="chat embeddings"), emb))
    ft = "/v1/fine_tuning/jobs"
    assert bearer(gw, demo_token("bob", plan="pro"), ft).status == 403
    assert forwarded(bearer(gw, demo_token("carol", plan="enterprise"), ft))
    # API keys beside the tokens: demo (free, chat,embeddings)
    assert forwarded(harness.request(gw.port, "POST", emb, body=harness.CHAT,
                                     headers={"X-API-Key": DEMO_KEY}))
    assert harness.request(gw.port, "POST", ft, body=harness.CHAT,
                           headers={"X-API-Key": PRO_KEY}).status == 403
    # expired tokens are refused
    resp = bearer(gw, demo_token("alice", lifetime=-60))
    assert resp.status == 401
    assert resp.header("www-authenticate") == INVALID % "token expired"
    assert backend.count() == 3


def test_mg_025_20_quota_endpoint_for_a_token(jwtgw, backend):
    """SetHandler modelgate-quota asks the same identity providers as the
    gate: a JWT caller reads its own layers, spends nothing, and sees what
    its next request's RateLimit header shows; a bad token is 401 there too."""
    gw = jwtgw(loc="""
<Location "/v1/modelgate/quota">
    ModelGate Off
    SetHandler modelgate-quota
</Location>
""")
    tok = token(sub="erin", tenant="acme", plan="free")
    for _ in range(2):
        assert bearer(gw, tok).status == 200
    for _ in range(10):
        resp = gw.get("/v1/modelgate/quota", headers={"Authorization": "Bearer " + tok})
        assert resp.status == 200, resp
    assert resp.json["key_id"] == "erin" and resp.json["tier"] == "free"
    free = [x for x in resp.json["limits"] if x["name"] == "free"][0]
    assert (free["quota"], free["remaining"]) == (5, 3)
    nxt = bearer(gw, tok)
    assert nxt.header("ratelimit").startswith('"free";r=2;')
    bad = gw.get("/v1/modelgate/quota", headers={"Authorization": "Bearer " + tok[:-4] + "AAAA"})
    assert bad.status == 401
    assert bad.header("www-authenticate").startswith('Bearer realm="modelgate", error="invalid_token"')
    assert backend.count() == 3


# The head of a configuration checked with apache2 -t: the issuer line is
# each test's.
JWT_ONLY = """
LoadModule modelgate_jwt_module "%s"
ModelGateTier free 5/min
ModelGateTier pro 5/min
ModelGateKeyFile "%s"
ModelGateIdentity jwt
""" % (harness.JWT_MODULE, harness.QUICKSTART_KEYS)


def test_mg_025_30_a_jwks_that_cannot_verify_the_pinned_algorithms(gateways):
    """algs= pins what an issuer signs with; a local JWKS with no key that
    fits any of them (kty, curve, the JWK's own alg) would refuse every
    token: a configuration error.  One that fits only some is a warning
    (MGJ00014) naming the others: the rest may come with a rotation."""
    gw = gateways("jwks-fit")
    ec_only = {"keys": [k for k in KEYS.jwks()["keys"] if k["kty"] == "EC"]}
    with open(os.path.join(gw.rundir, "ec.jwks"), "w") as f:
        json.dump(ec_only, f)
    base = JWT_ONLY
    gw.write_conf(base + "ModelGateJWTIssuer x algs=RS256,PS256 jwks=ec.jwks\n")
    code, out = gw.check_syntax()
    assert code != 0
    assert "jwks=ec.jwks holds no key for algs=RS256,PS256" in out
    gw.write_conf(base + "ModelGateJWTIssuer x algs=ES256,RS256 jwks=ec.jwks\n")
    code, out = gw.check_syntax()
    assert code == 0, out
    assert "MGJ00014" in out and "holds no key for RS256:" in out
    gw.write_conf(base + "ModelGateJWTIssuer x algs=ES256,ES384 jwks=ec.jwks\n")
    code, out = gw.check_syntax()
    assert code == 0 and "MGJ00014" not in out, out


def test_mg_025_31_a_subject_alike_an_api_keys_id_has_its_own_counter(jwtgw, backend):
    """A JWT caller's key id is its subject: tenant globex's token with
    sub=demo and tenant acme's API key `demo` are two callers and must not
    share the per-key counter of tier free (5/min here): exhausting one
    leaves the other whole.  (Found by the cache review, where the same
    collision let one read the other's answers.)"""
    gw = jwtgw()
    assert [gw.chat(harness.DEMO_KEY).status for _ in range(6)] == [200] * 5 + [429]
    tok = token(sub="demo", tenant="globex", plan="free")
    first = bearer(gw, tok)
    assert first.status == 200, first
    assert first.header("ratelimit").startswith('"free";r=4;')
    seen = backend.requests()[-1]["headers"]
    assert (seen["x-modelgate-key-id"], seen["x-modelgate-tenant"]) == ("demo", "globex")
    # nor within one tenant: acme's user demo is not acme's API key demo
    same = bearer(gw, token(sub="demo", tenant="acme", plan="free"))
    assert same.status == 200, same
    assert same.header("ratelimit").startswith('"free";r=4;')


def test_mg_025_40_cached_token_expires_on_every_connection(jwtgw, backend):
    """A token is good until exp + leeway, whether this request verified
    it, found it in the process's cache or in its connection's memo.  A
    connection that found it in the cache must not remember it for longer
    (the cache's deadline taken for exp, the leeway added twice)."""
    import http.client
    gw = jwtgw(issuer_opts="leeway=2")
    t0 = int(time.time())
    tok = token(sub="erin", plan="pro", now=t0, lifetime=1)    # good until t0 + 3
    conns = [http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30) for _ in range(8)]
    try:
        for c in conns:
            assert bearer(gw, tok, conn=c).status == 200
        assert time.time() < t0 + 2.5, "too slow to test the deadline"
        log = gw.wait_log(r"MGJ00002")
        # two children, eight connections: some found it in the cache
        assert len(re.findall(r"MGJ00002: bearer token of 'erin'", log)) < len(conns)
        time.sleep(max(0, t0 + 3.3 - time.time()))
        after = [bearer(gw, tok, conn=c) for c in conns]
        assert [r.status for r in after] == [401] * len(conns), after
        assert all(r.header("www-authenticate") == INVALID % "token expired" for r in after)
    finally:
        for c in conns:
            c.close()


def test_mg_025_41_jwks_url_plain_http_only_to_the_loopback(gateways):
    """http:// is allowed to the loopback only: a host name that merely
    begins with "localhost" or "127.0.0.1", or a loopback name given as
    user info before another host, is a remote server and its keys over
    plain HTTP could be anybody's."""
    base = JWT_ONLY
    refused = "an https:// URL (http:// only to the loopback)"
    harness.assert_config_errors(gateways, [
        (base + "ModelGateJWTIssuer x algs=ES256 jwks_url=%s\n" % url, refused)
        for url in ("http://localhost.evil.example/jwks",
                    "http://127.0.0.1.evil.example/jwks",
                    "http://127.0.0.1@evil.example/jwks",
                    "http://localhost:80@evil.example/jwks",
                    "http://[::1].evil.example/jwks",
                    "HTTP://evil.example/jwks")])
    for url in ("http://127.0.0.1:8080/jwks", "http://localhost/jwks",
                "http://[::1]:9/k", "http://127.0.0.1", "https://idp.example/k"):
        gw = gateways("loopback-ok")
        gw.write_conf(base + "ModelGateJWTIssuer x algs=ES256 jwks_url=%s\n" % url)
        code, out = gw.check_syntax()
        assert code == 0, (url, out)
