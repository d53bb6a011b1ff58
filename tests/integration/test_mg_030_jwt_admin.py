"""JWT plugin (issue 13), what test_mg_025_jwt.py does not cover: the
revoked list's admin call (SetHandler modelgate-jwt-admin), one JWKS fetch
per interval for all processes, and forwarding the token to a trusted
upstream (ModelGateJWTForward)."""
import json
import os
import re
import time

import harness
import jwt_mint as jm
from harness import DEMO_KEY
import test_mg_025_jwt as t25
from test_mg_025_jwt import jwks_server  # noqa: F401 (a fixture)

ADMIN = """
LoadModule authz_host_module "%s/mod_authz_host.so"
ModelGateJWTRevoked "%s"
<Location "/jwt-admin">
    SetHandler modelgate-jwt-admin
    ModelGateJWTAdmin On
    Require ip 127.0.0.1
</Location>
<Location "/jwt-admin-closed">
    SetHandler modelgate-jwt-admin
    ModelGateJWTAdmin On
    Require ip 192.0.2.1
</Location>
"""
REVOKED = t25.INVALID % "token revoked"


def admin_gw(gateways, backend, mpm="prefork", jtis=("long-gone",), writable=True):
    backend.reset()
    gw = gateways("jwtadm", backend_port=backend.port, mpm=mpm)
    gw.allow_errors(r"AH01630", r"AH01797")
    path = t25._write_revoked(gw, *jtis)
    if writable:
        os.chmod(path, 0o666)       # the children (www-data) append to it
    gw.write_conf(t25.conf(gw, backend, extra=ADMIN % (harness.HTTPD_MODDIR, path)))
    gw.start()
    return gw, path


def admin(gw, method="POST", body=None, path="/jwt-admin"):
    headers = {}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = body.encode()
    return harness.request(gw.port, method, path, headers=headers, body=body)


def lines(path):
    with open(path) as f:
        return f.read().splitlines()


def cached_everywhere(gw, tok, who):
    """The token verified, and cached, in several processes: a revocation
    must reach the caches of all of them."""
    assert [r.status for r in t25._burst(gw, tok)] == [200] * 24
    assert len(set(t25._pids(gw, 0, r"MGJ00002: bearer token of '%s'" % who))) >= 2


def test_mg_030_01_admin_call_revokes_in_every_process(gateways, backend):
    gw, path = admin_gw(gateways, backend)
    eve = t25.token(sub="eve", plan="pro", jti="jti-eve-1")
    cached_everywhere(gw, eve, "eve")
    assert json.loads(admin(gw, "GET").body) == {"revoked": 1}
    # the operator's Require decides who may call it
    assert admin(gw, body="jti=jti-eve-1", path="/jwt-admin-closed").status == 403
    assert lines(path) == ["# revoked token ids", "long-gone"]
    since = os.path.getsize(gw.error_log())
    resp = admin(gw, body="jti=jti-eve-1&jti=jti-eve-1")
    assert resp.status == 200, resp
    assert resp.header("content-type") == "application/json"
    assert json.loads(resp.body) == {"revoked": 2, "added": 1}
    assert lines(path) == ["# revoked token ids", "long-gone", "jti-eve-1"]
    # right after the call, no process lets it through (no sleep: not the
    # second each process's own look at the file would take)
    refused = t25._burst(gw, eve)
    assert [r.status for r in refused] == [401] * 24
    assert {r.header("www-authenticate") for r in refused} == {REVOKED}
    assert len(set(t25._pids(gw, since, "MGJ00001: bearer token refused: token revoked"))) >= 2
    # again: nothing added twice
    assert json.loads(admin(gw, body="jti=jti-eve-1").body) == {"revoked": 2, "added": 0}
    assert lines(path) == ["# revoked token ids", "long-gone", "jti-eve-1"]
    frank = t25.token(sub="frank", plan="pro", jti="jti-frank-1")
    assert [r.status for r in t25._burst(gw, frank, 8)] == [200] * 8
    assert backend.count() == 24 + 8


def test_mg_030_02_admin_reload_sees_what_a_stat_cannot(gateways, backend):
    # an edit in place of the same size, its mtime kept: no process's
    # once-a-second stat sees it, the admin call's reload makes all re-read
    gw, path = admin_gw(gateways, backend, jtis=("long-gone", "jti-ann-0"))
    ann = t25.token(sub="ann", plan="pro", jti="jti-ann-1")
    cached_everywhere(gw, ann, "ann")
    st = os.stat(path)
    with open(path, "r+") as f:
        text = f.read()
        f.seek(0)
        f.write(text.replace("jti-ann-0", "jti-ann-1"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size
    time.sleep(1.2)
    assert [r.status for r in t25._burst(gw, ann, 8)] == [200] * 8
    resp = admin(gw)
    assert resp.status == 200, resp
    assert json.loads(resp.body) == {"revoked": 2, "added": 0}
    refused = t25._burst(gw, ann)
    assert [r.status for r in refused] == [401] * 24
    assert {r.header("www-authenticate") for r in refused} == {REVOKED}
    assert backend.count() == 24 + 8


def test_mg_030_03_admin_call_refusals(gateways, backend):
    gw, path = admin_gw(gateways, backend, mpm="event", writable=False)
    gw.allow_errors(r"MGJ00011")
    assert admin(gw, "PUT", body="jti=x").status == 405
    for body in ("jti=", "jti=two%20words", "jti=%23comment", "kid=x", "jti=" + "a" * 256):
        resp = admin(gw, body=body)
        assert resp.status == 400, body
        assert resp.json["error"]["code"] == "invalid_jti"
    # the file is root's and read-only to the children: said, not hidden
    resp = admin(gw, body="jti=jti-x-1")
    assert resp.status == 500
    assert resp.json["error"]["code"] == "revoked_list_unwritable"
    assert re.search(r"MGJ00011: ModelGateJWTRevoked .*revoked.jtis: cannot open it for "
                     r"writing: Permission denied", gw.wait_log("MGJ00011"))
    assert lines(path) == ["# revoked token ids", "long-gone"]
    # a reload needs only read access
    assert json.loads(admin(gw).body) == {"revoked": 1, "added": 0}
    gw.stop()
    # no list configured: nothing to administer
    backend.reset()
    gw = gateways("jwtadm2", backend_port=backend.port)
    gw.write_conf(t25.conf(gw, backend, extra="""
<Location "/jwt-admin">
    SetHandler modelgate-jwt-admin
    ModelGateJWTAdmin On
    Require all granted
</Location>"""))
    gw.start()
    resp = admin(gw, "GET")
    assert resp.status == 404
    assert resp.json["error"]["code"] == "not_configured"


def test_mg_030_11_admin_needs_the_server_configuration(gateways, backend):
    # SetHandler alone -- which an .htaccess may say -- is not enough:
    # ModelGateJWTAdmin On, server configuration only, must be there too
    backend.reset()
    gw = gateways("jwtadmht", backend_port=backend.port)
    gw.allow_errors(r"AH01630", r"ModelGateJWTAdmin not allowed here")
    path = t25._write_revoked(gw, "long-gone")
    os.chmod(path, 0o666)
    gw.write_conf(t25.conf(gw, backend, extra="""
ModelGateJWTRevoked "%s"
<Directory "%s/htdocs">
    AllowOverride All
    Require all granted
</Directory>
<Location "/bare-handler">
    SetHandler modelgate-jwt-admin
    Require all granted
</Location>
""" % (path, gw.rundir)))
    for d, text in [("users", "SetHandler modelgate-jwt-admin\n"),
                    ("sneaky", "SetHandler modelgate-jwt-admin\nModelGateJWTAdmin On\n")]:
        os.makedirs(os.path.join(gw.rundir, "htdocs", d), exist_ok=True)
        with open(os.path.join(gw.rundir, "htdocs", d, ".htaccess"), "w") as f:
            f.write(text)
    gw.start()
    for where in ("/users/x", "/bare-handler"):
        resp = admin(gw, body="jti=jti-victim-1", path=where)
        assert resp.status == 403, where
        assert resp.json["error"]["code"] == "admin_not_enabled"
    assert admin(gw, body="jti=jti-victim-1", path="/sneaky/x").status == 500
    assert "ModelGateJWTAdmin not allowed here" in gw.wait_log("not allowed here")
    assert lines(path) == ["# revoked token ids", "long-gone"]
    assert len(re.findall("MGJ00013", gw.read_log())) == 2


# ---- one fetch per interval, for all processes ----------------------------------

def test_mg_030_04_jwks_url_one_fetch_per_interval(gateways, backend, jwks_server):
    # eight prefork children, each with its fetcher thread awake once a
    # second: the identity provider sees one fetch per jwks_refresh, not
    # one per child
    srv = jwks_server(t25.KEYS.jwks())
    began = time.monotonic()
    gw = t25.start_url_gw(gateways, backend, srv,
                          "jwks_refresh=2 jwks_min_interval=1 jwks_timeout=500", mpm="prefork")
    deadline = time.monotonic() + 5.0
    tok = t25.token(sub="p1", plan="pro")
    served = 0
    while time.monotonic() < deadline:
        statuses = [r.status for r in t25._burst(gw, tok, 8)]
        assert statuses == [200] * 8
        served += 8
        time.sleep(1.0)      # 8 a second: below pro's 100 a minute
    fetched = srv.count()       # before the clock: no fetch after it counts
    elapsed = time.monotonic() - began
    assert 2 <= fetched <= 1 + int(elapsed // 2), (fetched, elapsed)
    # each set fetched once, and published to every process
    assert len(re.findall(r"MGJ00007: JWKS of issuer", gw.read_log())) == fetched
    assert backend.count() == served


# ---- ModelGateJWTForward ------------------------------------------------------------

def test_mg_030_05_forward_the_token_where_configured(gateways, backend):
    backend.reset()
    gw = gateways("jwtfwd", backend_port=backend.port)
    gw.allow_errors(r"AH01630")
    gw.write_conf(t25.conf(gw, backend, loc="""
<Location "/v1/trusted/">
    ModelGateJWTForward On
</Location>
<Location "/v1/trusted/not-here/">
    ModelGateJWTForward Off
</Location>
"""))
    gw.start()
    tok = t25.token(sub="gil", plan="pro")

    def upstream_auth(path, headers):
        n = backend.count()
        t25.forwarded(harness.request(gw.port, "POST", path, body=harness.CHAT,
                                      headers=headers))
        assert backend.count() == n + 1
        return backend.requests()[-1]["headers"].get("authorization")
    bearer = {"Authorization": "Bearer " + tok}
    # on: the verified token, as it came (the cached verification too)
    assert upstream_auth("/v1/trusted/chat", bearer) == "Bearer " + tok
    assert upstream_auth("/v1/trusted/chat", bearer) == "Bearer " + tok
    # off by default, and where a deeper section turns it off
    assert upstream_auth("/v1/chat/completions", bearer) is None
    assert upstream_auth("/v1/trusted/not-here/chat", bearer) is None
    # an API key is never forwarded, as a bearer or in X-API-Key
    assert upstream_auth("/v1/trusted/chat", {"Authorization": "Bearer " + DEMO_KEY}) is None
    seen = backend.requests()[-1]["headers"]
    assert "x-api-key" not in seen
    assert upstream_auth("/v1/trusted/chat", {"X-API-Key": DEMO_KEY}) is None
    # a refused token goes nowhere
    n = backend.count()
    assert t25.bearer(gw, t25.token(plan="pro", lifetime=-3600),
                      "/v1/trusted/chat").status == 401
    assert backend.count() == n


def test_mg_030_06_forward_not_in_htaccess(gateways, backend):
    backend.reset()
    gw = gateways("jwtfwdht", backend_port=backend.port)
    text = t25.conf(gw, backend, loc="""
<Directory "%s/htdocs">
    AllowOverride All
    Require all granted
</Directory>
""" % gw.rundir)
    gw.write_conf(text.replace("    Require all granted\n    ModelGate On\n    ModelGateRoute model\n",
                               "    ModelGate On\n"))
    os.makedirs(os.path.join(gw.rundir, "htdocs", "v1"), exist_ok=True)
    with open(os.path.join(gw.rundir, "htdocs", "v1", ".htaccess"), "w") as f:
        f.write("ModelGateRoute model\nModelGateJWTForward On\n")
    gw.allow_errors(r"ModelGateJWTForward not allowed here")
    gw.start()
    resp = t25.bearer(gw, t25.token(sub="hal", plan="pro"), "/v1/x")
    assert resp.status == 500
    assert backend.count() == 0
    assert "ModelGateJWTForward not allowed here" in gw.wait_log("not allowed here")


# ---- several issuers, pinned algorithms, leeway, logs ---------------------------------

OTHER_ISS = "https://other.test/"
OTHER_SECRET = b"another-secret-for-the-second-issuer-0123"


def test_mg_030_07_several_issuers_pinned_and_logged(gateways, backend):
    # the tests' issuer (every algorithm, leeway 60 s by default) beside a
    # second one that signs HS256 only, with its own secret, no leeway,
    # and its tenant in a nested claim
    backend.reset()
    gw = gateways("jwtiss", backend_port=backend.port)
    with open(os.path.join(gw.rundir, "other.secret"), "wb") as f:
        f.write(OTHER_SECRET)
    gw.write_conf(t25.conf(gw, backend, extra="""
ModelGateJWTIssuer %s secret=other.secret algs=HS256 leeway=0 audience=modelgate \\
    tier=plan tenant=org.id
""" % OTHER_ISS))
    gw.start()

    def other(alg="HS256", secret=OTHER_SECRET, **c):
        c.setdefault("aud", "modelgate")
        return t25.KEYS.token(alg, jm.claims(iss=OTHER_ISS, **c), secret=secret)
    ola = other(sub="ola", plan="pro", org={"id": "initech"})
    assert t25.bearer(gw, ola).status == 200
    seen = backend.requests()[-1]["headers"]
    assert (seen["x-modelgate-key-id"], seen["x-modelgate-tenant"],
            seen["x-modelgate-tier"]) == ("ola", "initech", "pro")
    assert t25.bearer(gw, t25.token(sub="tom", plan="pro")).status == 200
    refusals = [
        # pinned per issuer: the first one's algorithm, the second's issuer
        (other("ES256", sub="ola", plan="pro"), "algorithm not accepted"),
        # each issuer's secret is its own
        (other(secret=jm.SECRET, sub="ola", plan="pro"), "signature mismatch"),
        (t25.KEYS.token("HS256", jm.claims(sub="tom", plan="pro", aud="modelgate"),
                        secret=OTHER_SECRET), "signature mismatch"),
        # leeway per issuer: 30 s late is too late with none
        (other(sub="ola", plan="pro", lifetime=-30), "token expired"),
    ]
    for tok, why in refusals:
        resp = t25.bearer(gw, tok)
        assert resp.status == 401, why
        assert resp.header("www-authenticate") == t25.INVALID % why
    # ... and within the first issuer's 60 s
    assert t25.bearer(gw, t25.token(sub="tom", plan="pro", lifetime=-30)).status == 200
    assert backend.count() == 3
    # the callers are in the access log as API keys' are (in any order: a
    # line is written after its answer went out); no token is in any log
    # (the jwt plugin logs at debug here)
    lines = gw.access_lines(3 + len(refusals))
    assert sorted(ln.split()[1:3] for ln in lines) == sorted(
        [["ola", "pro"], ["tom", "pro"], ["tom", "pro"]] + [["-", "-"]] * len(refusals))
    for name in ("error.log", "access.log"):
        text = gw.read_log(name)
        assert "eyJ" not in text and ola.split(".")[2] not in text, name
    assert "MGJ00002: bearer token of 'ola' verified (issuer %s)" % OTHER_ISS in gw.read_log()


# ---- a JWKS over HTTPS ------------------------------------------------------------------

def _self_signed(rundir):
    """A certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    crt, pem = os.path.join(rundir, "idp-ca.pem"), os.path.join(rundir, "idp-key.pem")
    with open(crt, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(pem, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(crt, 0o644)        # the children read it at each fetch
    return crt, pem


def test_mg_030_08_jwks_over_https(gateways, backend, jwks_server, tmp_path):
    import ssl
    crt, pem = _self_signed(str(tmp_path))
    srv = jwks_server(t25.KEYS.jwks())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, pem)
    # TLS from the next connection on: the server thread accepts on this
    # socket, wrapped in place (same descriptor)
    srv.httpd.socket = ctx.wrap_socket(srv.httpd.socket, server_side=True)
    srv.url = srv.url.replace("http://", "https://")
    opts = "jwks_min_interval=2 jwks_timeout=1500"
    # the identity provider's CA named: keys fetched over TLS
    gw = t25.start_url_gw(gateways, backend, srv, opts + " jwks_ca=" + crt)
    assert t25.bearer(gw, t25.token(sub="tls", plan="pro")).status == 200
    assert srv.count() == 1
    gw.stop()
    # not named: the certificate is not trusted, so no keys, no callers
    gw = t25.start_url_gw(gateways, backend, srv, opts)
    resp = t25.bearer(gw, t25.token(sub="tls", plan="pro"))
    assert resp.status == 401
    assert resp.header("www-authenticate") == t25.INVALID % "no key of the issuer fits"
    log = gw.wait_log("MGJ00005")
    assert re.search(r"MGJ00005: JWKS of issuer https://idp.test/: fetch failed: SSL peer "
                     r"certificate or SSH remote key was not OK; the last good keys stay in use",
                     log), log[-2000:]
    assert srv.count() == 1     # the handshake failed before any request
    assert backend.count() == 0  # (start_url_gw reset it)


def test_mg_030_09_config_errors(gateways, backend):
    base = """
LoadModule modelgate_jwt_module "%s"
ModelGateTier free 5/min
ModelGateKeyFile "%s"
""" % (harness.JWT_MODULE, harness.QUICKSTART_KEYS)
    harness.assert_config_errors(gateways, [
        (base + "ModelGateJWTIssuer x algs=ES256 jwks=%s jwks_ca=/etc/hostname\n"
         % os.path.join(harness.CONF_EXAMPLES, "keys", "jwt-demo.jwks"),
         "ModelGateJWTIssuer x: jwks_ca= goes with jwks_url="),
        (base + "ModelGateJWTIssuer x algs=ES256 jwks_url=https://idp.example/k "
         "jwks_ca=/nonexistent/ca.pem\n",
         "ModelGateJWTIssuer x: jwks_ca=: cannot read '/nonexistent/ca.pem'"),
        (base + "ModelGateJWTForward maybe\n", "ModelGateJWTForward must be On or Off"),
    ])


# ---- the connection's memo of its last token ---------------------------------------

def _conn(gw):
    import http.client
    return http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)


def test_mg_030_10_memo_keeps_expiry_revocation_and_cache_off(gateways, backend):
    # a keep-alive client's token is remembered by its connection: still
    # refused the moment it expires or is revoked, and not remembered at
    # all with ModelGateJWTCache 0
    backend.reset()
    gw = gateways("jwtmemo", backend_port=backend.port)
    path = t25._write_revoked(gw, "long-gone")
    os.chmod(path, 0o666)
    gw.write_conf(t25.conf(gw, backend, issuer_opts="leeway=0", extra="""
LoadModule authz_host_module "%s/mod_authz_host.so"
ModelGateJWTRevoked "%s"
<Location "/jwt-admin">
    SetHandler modelgate-jwt-admin
    ModelGateJWTAdmin On
    Require ip 127.0.0.1
</Location>
""" % (harness.HTTPD_MODDIR, path)))
    gw.start()
    conn = _conn(gw)
    try:
        ivy = t25.token(sub="ivy", plan="pro", jti="jti-ivy-1")
        assert [t25.bearer(gw, ivy, conn=conn).status for _ in range(3)] == [200] * 3
        assert admin(gw, body="jti=jti-ivy-1").status == 200
        resp = t25.bearer(gw, ivy, conn=conn)
        assert (resp.status, resp.header("www-authenticate")) == (401, REVOKED)
        # expiry, with no leeway: remembered at 200, refused once past exp
        jan = t25.token(sub="jan", plan="pro", lifetime=3)
        assert t25.bearer(gw, jan, conn=conn).status == 200
        assert t25.bearer(gw, jan, conn=conn).status == 200
        time.sleep(4.1)
        resp = t25.bearer(gw, jan, conn=conn)
        assert (resp.status, resp.header("www-authenticate")) == (
            401, t25.INVALID % "token expired")
    finally:
        conn.close()
    assert backend.count() == 5
    assert len(re.findall(r"MGJ00002: bearer token of 'ivy'", gw.read_log())) == 1
    gw.stop()

    # ModelGateJWTCache 0: every request verified, on one connection too
    backend.reset()
    gw = gateways("jwtmemo0", backend_port=backend.port)
    gw.write_conf(t25.conf(gw, backend, extra="ModelGateJWTCache 0"))
    gw.start()
    conn = _conn(gw)
    try:
        kim = t25.token(sub="kim", plan="pro")
        assert [t25.bearer(gw, kim, conn=conn).status for _ in range(3)] == [200] * 3
    finally:
        conn.close()
    assert len(re.findall(r"MGJ00002: bearer token of 'kim'",
                          gw.wait_log(r"(?s)(MGJ00002: bearer token of 'kim'.*){3}"))) == 3
