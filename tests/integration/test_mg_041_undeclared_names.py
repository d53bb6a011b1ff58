"""A directive that names a tier or a model nobody declares fails the
configuration check, wherever in the file the declarations are: a limit
restricted to a tier or model that does not exist never applies, and a
`Require modelgate-tier` for one refuses everybody, silently.  In
.htaccess, read when the server configuration is complete, such a name is
a parse error of that .htaccess (500, the reason in the error log).

Also: the configuration errors found after parsing (MG00008, MG00010)
give the file and line, as every configuration error does."""
import json
import os
import re

import pytest

import harness
from harness import DEMO_KEY, OTHER_KEY, PRO_KEY

MODS = harness.HTTPD_MODDIR

# Tiers free and pro, models mock-small (alias small) and mock-large.
BASE = """
ModelGateTier free 10/min
ModelGateTier pro  100/min
ModelGateKeyFile "{keys}"
ModelGateUpstream small http://127.0.0.1:9
ModelGateModel mock-small small alias=small
ModelGateModel mock-large small
<Location "/v1/">
    Require all granted
    ModelGate On
    ModelGateRoute small
</Location>
"""
DECLARED_TIERS = "(declared tiers: free, pro)"
DECLARED_MODELS = "(declared models: mock-large, mock-small)"


def write(gw, text):
    return gw.write_conf(text.replace("{keys}", harness.QUICKSTART_KEYS))


def refused(gateways, text, culprit):
    """apache2 -t fails; returns its output, checked to name the file and
    the line of the directive that holds `culprit`."""
    gw = gateways("conf")
    path = write(gw, text)
    code, out = gw.check_syntax()
    assert code != 0, out
    assert "Syntax OK" not in out, out
    assert "(%s line %d)" % (path, harness.line_of(path, culprit)) in out, out
    return out


CASES = {
    "limit-tier": (
        BASE + "ModelGateLimit x key 10/min tiers=gold\n",
        "tiers=gold",
        "ModelGateLimit x: tiers= names the unknown tier 'gold' " + DECLARED_TIERS),
    "limit-tier-case": (
        BASE + "ModelGateLimit x key 10/min tiers=pro,Free\n",
        "tiers=pro,Free",
        "ModelGateLimit x: tiers= names the unknown tier 'Free' (declared tiers: "
        "free, pro; names are case-sensitive: did you mean 'free'?)"),
    "limit-model": (
        BASE + "ModelGateLimit x key 10/min models=gpt\n",
        "models=gpt",
        "ModelGateLimit x: models= names the unknown model 'gpt' " + DECLARED_MODELS),
    "limit-alias": (
        BASE + "ModelGateLimit x key 10/min models=small\n",
        "models=small",
        "ModelGateLimit x: models= names 'small', an alias of the model 'mock-small'"),
    "location-limit": (
        BASE + '<Location "/v1/chat/">\n    ModelGateLimit y tenant 5/min tiers=gold\n'
        "</Location>\n",
        "tiers=gold",
        "ModelGateLimit y: tiers= names the unknown tier 'gold' " + DECLARED_TIERS),
    "budget-tier": (
        BASE + "ModelGateBudget b tenant 50.00/month tiers=gold\n",
        "tiers=gold",
        "ModelGateBudget b: tiers= names the unknown tier 'gold' " + DECLARED_TIERS),
    "budget-model": (
        BASE + "ModelGateBudget b tenant 50.00/month models=gpt\n",
        "models=gpt",
        "ModelGateBudget b: models= names the unknown model 'gpt' " + DECLARED_MODELS),
    "require": (
        BASE + '<Location "/v1/x">\n    Require modelgate-tier pro gold\n</Location>\n',
        "modelgate-tier",
        "Require modelgate-tier names the unknown tier 'gold' " + DECLARED_TIERS),
    "fallback": (
        BASE.replace("ModelGateTier free 10/min",
                     "ModelGateTier free 10/min on_limit=fallback:gpt"),
        "fallback:gpt",
        "ModelGateTier free: on_limit=fallback: names the unknown model 'gpt' "
        + DECLARED_MODELS),
    "no-tiers": (
        BASE.replace("ModelGateTier free 10/min\nModelGateTier pro  100/min\n", "")
        .replace('ModelGateKeyFile "{keys}"\n', "")
        + "ModelGateLimit x key 10/min tiers=free\n",
        "tiers=free",
        "ModelGateLimit x: tiers= names the unknown tier 'free' (no tier is "
        "declared: declare it with ModelGateTier)"),
    "no-models": (
        BASE.replace("ModelGateModel mock-small small alias=small\n", "")
        .replace("ModelGateModel mock-large small\n", "")
        + "ModelGateLimit x model 10/min models=gpt\n",
        "models=gpt",
        "ModelGateLimit x: models= names the unknown model 'gpt' (no model is "
        "declared: declare it with ModelGateModel)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_mg_041_01_undeclared_name_fails_the_check(gateways, case):
    text, culprit, message = CASES[case]
    out = refused(gateways, text, culprit)
    assert message in out, out


def test_mg_041_02_every_undeclared_name_is_reported(gateways):
    """One run names them all, each with its own line."""
    gw = gateways("conf")
    path = write(gw, BASE + "ModelGateLimit a key 1/min tiers=gold models=gpt\n"
                 "ModelGateLimit b key 1/min tiers=silver\n")
    code, out = gw.check_syntax()
    assert code != 0
    for what in ("tier 'gold'", "model 'gpt'", "tier 'silver'"):
        assert what in out, out
    assert out.count("(%s line %d)" % (path, harness.line_of(path, "tiers=gold"))) == 2, out
    assert "(%s line %d)" % (path, harness.line_of(path, "tiers=silver")) in out, out


def test_mg_041_03_start_up_fails_too(gateways):
    gw = gateways("start")
    write(gw, BASE + "ModelGateLimit x key 10/min tiers=gold\n")
    with pytest.raises(RuntimeError) as failed:
        gw.start()
    # said on stderr: the error log is not open yet
    assert "tiers= names the unknown tier 'gold'" in str(failed.value)


# Every kind of reference, each before its declaration in the file.
DECLARED_LATER = """
<Location "/v1/">
    Require all granted
    ModelGate On
    ModelGateRoute small
</Location>
ModelGateLimit   late-tier  key    3/min  tiers=late,free
ModelGateLimit   late-model key    10/min models=mock-late
ModelGateBudget  late-spend tenant 50.00/month tiers=late models=mock-late
ModelGateTier    free 10/min on_limit=fallback:late-alias,reject
<Location "/v1/late/">
    Require modelgate-tier late pro
</Location>
ModelGateTier    pro  100/min
ModelGateTier    late 5/min
ModelGateKeyFile "{keys}"
ModelGateUpstream small http://127.0.0.1:{port}
ModelGateModel   mock-small small
ModelGateModel   mock-late  small alias=late-alias price=1.00/2.00
"""


def test_mg_041_04_declared_later_still_starts(gateways, backend):
    """The positive control: declaration order does not matter, declared
    names still start, and the limits they name apply."""
    backend.reset()
    gw = gateways("later", backend_port=backend.port)
    write(gw, DECLARED_LATER.replace("{port}", str(backend.port)))
    code, out = gw.check_syntax()
    assert code == 0 and "Syntax OK" in out, out
    gw.start()
    gw.allow_errors(r"AH01630: client denied")
    resp = gw.chat(DEMO_KEY)
    assert resp.status == 200
    # late-tier (tiers=late,free), the tightest, counts this caller
    assert resp.header("ratelimit").startswith('"late-tier";r=2;'), resp.header("ratelimit")
    # Require modelgate-tier late pro: a free caller is refused, a pro one not
    assert gw.chat(OTHER_KEY, body=None).status == 200
    resp = harness.request(gw.port, "POST", "/v1/late/chat",
                           body=json.dumps(harness.CHAT).encode(),
                           headers={"X-API-Key": OTHER_KEY,
                                    "Content-Type": "application/json"})
    assert resp.status == 403
    resp = harness.request(gw.port, "POST", "/v1/late/chat",
                           body=json.dumps(harness.CHAT).encode(),
                           headers={"X-API-Key": PRO_KEY,
                                    "Content-Type": "application/json"})
    # past the rule, to the model server (which knows no such path)
    assert resp.status == 404 and resp.header("server") == "mock-model/1.0"


# ---- .htaccess -----------------------------------------------------------------

HTACCESS_MODELS = "ModelGateModel mock-small model alias=small\n"


@pytest.mark.parametrize("htaccess,message", [
    ("ModelGateLimit h key 5/min tiers=gold\n",
     "ModelGateLimit h: tiers= names the unknown tier 'gold' " + DECLARED_TIERS),
    ("ModelGateLimit h key 5/min tiers=Free\n", "did you mean 'free'?"),
    ("ModelGateLimit h key 5/min models=gpt\n",
     "ModelGateLimit h: models= names the unknown model 'gpt' "
     "(declared models: mock-small)"),
    ("ModelGateLimit h key 5/min models=small\n", "an alias of the model 'mock-small'"),
    ("ModelGateBudget h tenant 5.00/day tiers=gold\n",
     "ModelGateBudget h: tiers= names the unknown tier 'gold'"),
    ("Require modelgate-tier gold\n",
     "Require modelgate-tier names the unknown tier 'gold' " + DECLARED_TIERS),
], ids=["limit-tier", "limit-tier-case", "limit-model", "limit-alias", "budget", "require"])
def test_mg_041_05_htaccess_undeclared_name_is_a_parse_error(gateways, backend, htaccess,
                                                            message):
    gw = harness.htaccess_site(gateways, backend,
                               {"v1/.htaccess": "ModelGateRoute model\n" + htaccess},
                               server_extra=HTACCESS_MODELS, name="ht")
    gw.allow_errors(r"\.htaccess: ")
    resp = gw.chat(OTHER_KEY)
    assert resp.status == 500
    assert backend.count() == 0
    log = gw.wait_log(re.escape(message))
    assert re.search(r"/htdocs/v1/\.htaccess: .*" + re.escape(message), log), log


def test_mg_041_06_htaccess_declared_names_apply(gateways, backend):
    gw = harness.htaccess_site(gateways, backend, {
        "v1/.htaccess": "ModelGateRoute model\n"
                        "ModelGateLimit h key 5/min tiers=free models=mock-small\n"
                        "Require modelgate-tier free\n"},
        server_extra=HTACCESS_MODELS, name="ht")
    gw.allow_errors(r"AH01630: client denied")
    resp = gw.chat(OTHER_KEY)
    assert resp.status == 200, resp
    assert resp.header("ratelimit").startswith('"h";r=4;'), resp.header("ratelimit")
    assert gw.chat(PRO_KEY).status == 403       # not in tier free


# ---- file and line of errors found after parsing ---------------------------------

def test_mg_041_07_on_limit_cache_gives_file_and_line(gateways):
    """MG00008: the tier's file and line."""
    out = refused(gateways, BASE.replace("ModelGateTier pro  100/min",
                                         "ModelGateTier pro  100/min on_limit=cache"),
                  "on_limit=cache")
    assert "MG00008: ModelGateTier pro: on_limit=cache needs the response cache" in out, out


JWT = 'LoadModule modelgate_jwt_module "%s"\n' % harness.JWT_MODULE


def test_mg_041_08_identity_check_gives_file_and_line(gateways):
    """MG00010: where ModelGateIdentity names the provider, and for an
    issuer's default_tier the issuer's own file and line."""
    gw = gateways("conf")
    path = write(gw, JWT + BASE + "ModelGateIdentity key jwt\n")
    code, out = gw.check_syntax()
    assert code != 0
    assert ("MG00010: ModelGateIdentity jwt (%s line %d): ModelGateIdentity names jwt, "
            "but no ModelGateJWTIssuer is configured"
            % (path, harness.line_of(path, "ModelGateIdentity"))) in out, out

    with open(os.path.join(gw.rundir, "hmac.secret"), "w") as f:
        f.write("0123456789abcdef0123456789abcdef\n")
    path = write(gw, JWT + BASE + "ModelGateIdentity key jwt\n"
                 "ModelGateJWTIssuer https://idp.test/ algs=HS256 secret=hmac.secret "
                 "default_tier=Pro\n")
    code, out = gw.check_syntax()
    assert code != 0
    assert ("ModelGateJWTIssuer https://idp.test/ (%s line %d): default_tier= names the "
            "unknown tier 'Pro' (declared tiers: free, pro; names are case-sensitive: "
            "did you mean 'pro'?)" % (path, harness.line_of(path, "ModelGateJWTIssuer"))) in out, out
    assert "ModelGateIdentity jwt (%s line %d)" % (
        path, harness.line_of(path, "ModelGateIdentity")) in out, out


# ---- virtual hosts ------------------------------------------------------------------

VHOST = """
<VirtualHost 127.0.0.1:{port}>
    ServerName api.test
    <Location "/v1/">
        Require all granted
        ModelGate On
        ModelGateRoute {route}
        {limit}
    </Location>
</VirtualHost>
"""


@pytest.mark.parametrize("route,limit,culprit,message", [
    ("nosuch", "", "ModelGateRoute nosuch", "unknown upstream 'nosuch'"),
    ("small", "ModelGateLimit vh key 1/min tiers=gold", "tiers=gold", "the unknown tier 'gold'"),
    ("small", "ModelGateLimit vh key 1/min models=gpt", "models=gpt", "the unknown model 'gpt'"),
], ids=["route", "tier", "model"])
def test_mg_041_30_a_virtual_hosts_locations_are_checked(gateways, route, limit, culprit,
                                                         message):
    """httpd merges a virtual host's server configuration into the main
    server's before check_config; what its <Location>s name must be checked
    there as the main server's are, not dropped with the merge."""
    gw = gateways("conf")
    text = BASE + VHOST.format(port=gw.port, route=route, limit=limit)
    path = write(gw, text)
    code, out = gw.check_syntax()
    assert code != 0 and message in out, out
    assert "(%s line %d)" % (path, harness.line_of(path, culprit)) in out, out


def test_mg_041_31_a_virtual_host_gates_and_limits(gateways, backend):
    """The positive control: a gate and a limit in a virtual host's
    <Location> start and apply to requests for that host."""
    backend.reset()
    gw = gateways("vhost", backend_port=backend.port)
    text = (BASE.replace("http://127.0.0.1:9", "http://127.0.0.1:%d" % backend.port)
            + VHOST.format(port=gw.port, route="small",
                           limit="ModelGateLimit vh key 2/min tiers=free"))
    write(gw, text)
    gw.start()
    statuses = [gw.get("/v1/models", headers={"Host": "api.test", "X-API-Key": DEMO_KEY}).status
                for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert backend.count() == 2


def test_mg_041_32_an_empty_key_file_is_said_at_start(gateways):
    """A key file with no key is valid (keys are added, then a graceful
    restart), but a wrong path to an empty file looks the same: a warning
    at start (MG00013), and every API key is 401 as it says."""
    gw = gateways("emptykeys")
    empty = os.path.join(gw.rundir, "empty.keys")
    with open(empty, "w") as f:
        f.write("# no keys yet\n")
    write(gw, BASE.replace(harness.QUICKSTART_KEYS, empty)
          .replace('"{keys}"', '"%s"' % empty)
          .replace("ModelGateModel mock-small small alias=small\n", "")
          .replace("ModelGateModel mock-large small\n", ""))
    gw.start()
    log = gw.wait_log(r"MG00013")
    assert "ModelGateKeyFile %s holds no key" % empty in log
    assert gw.get("/v1/models", headers={"X-API-Key": DEMO_KEY}).status == 401
