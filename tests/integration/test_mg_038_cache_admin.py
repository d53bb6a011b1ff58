"""The response cache's purge is the server configuration's to allow
(ModelGateCacheAdmin On in a <Location> or <Directory>): a status handler
set anywhere else -- by an .htaccess author with FileInfo, say -- shows the
statistics and refuses DELETE, and .htaccess cannot allow it."""
import os
import re

import harness
from harness import DEMO_KEY
from test_mg_024_cache import STATUS, body, cached, chat, conf, stats  # noqa: F401

STATS_ONLY = """
<Location "/cache-stats">
    SetHandler modelgate-cache-status
    Require all granted
</Location>
<Directory "{run}/htdocs/ops">
    AllowOverride FileInfo
    Require all granted
</Directory>
"""


def start(cached, backend, backend2, htaccess):
    gw = cached(conf(backend, backend2, server="ModelGateCache shmcb\n" + STATUS
                     + STATS_ONLY.replace("{run}", "${MG_RUN}")))
    os.makedirs(os.path.join(gw.rundir, "htdocs", "ops"), exist_ok=True)
    with open(os.path.join(gw.rundir, "htdocs", "ops", ".htaccess"), "w") as f:
        f.write(htaccess)
    gw.allow_errors(r"MGC00019", r"\.htaccess: ")
    return gw


def test_mg_038_01_purge_needs_the_server_config(cached, backend, backend2):
    gw = start(cached, backend, backend2, "SetHandler modelgate-cache-status\n")
    assert chat(gw, body()).header("cache-status") == "modelgate; fwd=miss; stored"
    since = os.path.getsize(gw.error_log())
    # a location without ModelGateCacheAdmin: statistics, no purge
    r = harness.request(gw.port, "GET", "/cache-stats")
    assert r.status == 200 and "Stores: 1\n" in r.body.decode()
    assert harness.request(gw.port, "DELETE", "/cache-stats?tenant=acme").status == 403
    # the handler set by an .htaccess (FileInfo): the same
    r = harness.request(gw.port, "GET", "/ops/")
    assert r.status == 200 and "Stores: 1\n" in r.body.decode()
    assert harness.request(gw.port, "DELETE", "/ops/?tenant=acme").status == 403
    assert harness.request(gw.port, "DELETE", "/ops/x?global").status == 403
    log = gw.wait_log(r"MGC00019", since=since)
    assert len(re.findall(r"MGC00019: response cache: purge refused: no "
                          r"ModelGateCacheAdmin On for this location", log)) >= 1
    # nothing was purged: the answer is still there
    assert stats(gw)["Purges"] == "0"
    assert chat(gw, body()).header("cache-status").startswith("modelgate; hit")
    assert backend.count() == 1
    # where the server's configuration allows it, the purge works
    assert harness.request(gw.port, "DELETE", "/cache-status?tenant=acme").status == 200
    assert chat(gw, body(), key=DEMO_KEY).header("cache-status") == \
        "modelgate; fwd=miss; stored"
    assert backend.count() == 2


def test_mg_038_02_htaccess_cannot_allow_purge(cached, backend, backend2):
    gw = start(cached, backend, backend2,
               "SetHandler modelgate-cache-status\nModelGateCacheAdmin On\n")
    assert chat(gw, body()).header("cache-status") == "modelgate; fwd=miss; stored"
    assert harness.request(gw.port, "DELETE", "/ops/?tenant=acme").status == 500
    assert "ModelGateCacheAdmin not allowed here" in gw.wait_log(r"not allowed here")
    assert stats(gw)["Purges"] == "0"
    assert chat(gw, body()).header("cache-status").startswith("modelgate; hit")
    assert backend.count() == 1
