"""Configuration errors stop `apache2 -t` with a message that names the
directive, the file and the line; every conf-examples file passes it."""
import os
import re

import pytest

import harness

KEYS = os.path.join(harness.CONF_EXAMPLES, "keys", "quickstart.keys")
GOOD = """
ModelGateTier free 10/min
ModelGateTier pro  100/min burst=20
ModelGateKeyFile "{keys}"
ModelGateUpstream model http://127.0.0.1:9
<Location "/v1/">
    Require all granted
    ModelGate On
    ModelGateRoute model
</Location>
"""


def syntax(gateways, conf, proxy=True):
    gw = gateways("conf")
    path = gw.write_conf(conf.replace("{keys}", KEYS), proxy=proxy)
    code, out = gw.check_syntax()
    return code, out, path


def test_mg_005_01_good_configuration_passes(gateways):
    code, out, _ = syntax(gateways, GOOD)
    assert code == 0, out
    assert "Syntax OK" in out


@pytest.mark.parametrize("directive,message", [
    ("ModelGateTier gold ten/min", "ModelGateTier: 'ten/min' is not a rate"),
    ("ModelGateTier gold 10/fortnight", "unknown period unit 'fortnight'"),
    ("ModelGateTier gold 0/min", "the quota must be a whole number"),
    ("ModelGateTier gold 10/min burst=0", "burst must be a whole number"),
    ("ModelGateTier gold 10/min bust=5", "unknown option 'bust=5'"),
    ("ModelGateTier gold", "ModelGateTier: expected NAME RATE"),
    ("ModelGateTier go/ld 10/min", "'go/ld' is not a valid tier name"),
    ("ModelGateTier free 20/min", "tier 'free' is already defined"),
    ("ModelGateTier gold 10/400d", "must not exceed 366 days"),
], ids=["rate", "unit", "zero", "burst", "option", "missing", "name", "duplicate", "period"])
def test_mg_005_02_bad_tier_syntax(gateways, directive, message):
    code, out, path = syntax(gateways, GOOD + directive + "\n")
    assert code != 0
    assert message in out, out
    assert "line %d of %s" % (harness.line_of(path, directive), path) in out, out


def test_mg_005_03_tier_outside_server_config(gateways):
    conf = GOOD.replace("    ModelGateRoute model\n",
                        "    ModelGateRoute model\n    ModelGateTier gold 10/min\n")
    code, out, path = syntax(gateways, conf)
    assert code != 0
    assert "ModelGateTier not allowed in <Location> context" in out, out


def test_mg_005_04_unknown_tier_in_key_file(gateways, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# a comment\n"
                    "sha256:%s  k1  acme  free\n" % ("ab" * 32) +
                    "sha256:%s  k2  acme  gold\n" % ("cd" * 32))
    code, out, path = syntax(gateways, GOOD.replace("{keys}", str(keys)))
    assert code != 0
    assert ("ModelGateKeyFile: %s line 3: key 'k2' names the unknown tier 'gold'" % keys) in out, out
    assert "(%s line %d)" % (path, harness.line_of(path, "ModelGateKeyFile")) in out, out


@pytest.mark.parametrize("content,message", [
    ("sha256:1234  k1  acme  free\n", "line 1: the first field must be a SHA-256 digest"),
    ("%s  k1  acme\n" % ("ab" * 32), "line 1: too few fields"),
    ("%s  k1  acme  free  chat  extra\n" % ("ab" * 32), "line 1: too many fields"),
    ("%s  k1  acme  free\n%s  k1  acme  free\n" % ("ab" * 32, "cd" * 32),
     "line 2: key id 'k1' is used twice"),
    ("%s  k1  acme  free\n%s  k2  acme  free\n" % ("ab" * 32, "ab" * 32),
     "line 2: the digest of key 'k2' repeats that of 'k1' (line 1)"),
    ("%s  k/1  acme  free\n" % ("ab" * 32), "line 1: key id, tenant and tier must be names"),
], ids=["digest", "few", "many", "dup-id", "dup-digest", "name"])
def test_mg_005_05_malformed_key_file(gateways, tmp_path, content, message):
    keys = tmp_path / "keys"
    keys.write_text(content)
    code, out, path = syntax(gateways, GOOD.replace("{keys}", str(keys)))
    assert code != 0
    assert "ModelGateKeyFile: %s %s" % (keys, message) in out, out


@pytest.mark.parametrize("where", ["missing", "directory"])
def test_mg_005_06_unreadable_key_file(gateways, tmp_path, where):
    target = tmp_path / "nope" if where == "missing" else tmp_path
    code, out, path = syntax(gateways, GOOD.replace("{keys}", str(target)))
    assert code != 0
    assert "ModelGateKeyFile: cannot read '%s'" % target in out, out
    assert "line %d of %s" % (harness.line_of(path, "ModelGateKeyFile"), path) in out


def test_mg_005_07_route_to_undeclared_upstream(gateways):
    code, out, path = syntax(gateways, GOOD.replace("ModelGateRoute model", "ModelGateRoute chat"))
    assert code != 0
    assert "ModelGateRoute: unknown upstream 'chat'" in out, out
    assert "(%s line %d)" % (path, harness.line_of(path, "ModelGateRoute chat")) in out, out


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1:8080", "http://127.0.0.1/?a=b",
                                 "http://user:pw@127.0.0.1/"])
def test_mg_005_08_bad_upstream_url(gateways, url):
    code, out, path = syntax(gateways, GOOD + "ModelGateUpstream other %s\n" % url)
    assert code != 0
    assert "ModelGateUpstream: '%s' is not an upstream URL" % url in out, out


def test_mg_005_09_upstream_needs_mod_proxy(gateways):
    code, out, path = syntax(gateways, GOOD, proxy=False)
    assert code != 0
    assert "ModelGateUpstream: mod_proxy is not loaded" in out, out


@pytest.mark.parametrize("arg,message", [
    ("redis 127.0.0.1:6379", "no counter store called 'redis'"),
    ("shm capacity=abc", "capacity must be a number of counters from 8 to 67108864, not 'abc'"),
    ("shm logs=1", "logs must be a number of counters from 8 to 1048576, not '1'"),
    ("shm size=10", "unknown argument 'size=10'"),
])
def test_mg_005_10_bad_store(gateways, arg, message):
    code, out, path = syntax(gateways, "ModelGateStore %s\n" % arg + GOOD)
    assert code != 0
    assert message in out, out


def test_mg_005_11_conf_examples_pass_syntax_check(gateways, backend):
    examples = sorted(f for f in os.listdir(harness.CONF_EXAMPLES) if f.endswith(".conf"))
    assert "quickstart.conf" in examples and "modelgate.conf" in examples
    gw = gateways("examples", backend_port=backend.port)
    # htaccess-routes.conf serves ${MG_RUN}/htdocs, as its header says
    os.makedirs(os.path.join(gw.rundir, "htdocs"), exist_ok=True)
    for name in examples:
        path = os.path.join(harness.CONF_EXAMPLES, name)
        if name == "modelgate.conf":
            # A Debian mods-available fragment.  The generated base already
            # loads the module under test, as modelgate.load would.
            with open(os.path.join(harness.CONF_EXAMPLES, "modelgate.load")) as f:
                load = f.read()
            assert "# Depends: proxy proxy_http" in load
            assert re.search(r"^LoadModule modelgate_module "
                             r"/usr/lib/apache2/modules/mod_modelgate\.so$", load, re.M)
            path = gw.write_conf('Include "%s"\n' % path, name="fragment.conf")
        code, out = gw.check_syntax(path)
        assert code == 0, "%s: %s" % (name, out)
