"""Several limit layers per request, decided as one: a request refused by
any enforced layer consumes from none; shadow layers count and report but
never refuse; costs; every algorithm reachable from the configuration."""
import calendar
import datetime
import os
import threading

import pytest

import harness
from harness import DEMO_KEY, OTHER_KEY, PRO_KEY

KEYS = os.path.join(harness.CONF_EXAMPLES, "keys", "quickstart.keys")


def start(gateways, backend, gateway_part, name="layers"):
    backend.reset()
    gw = gateways(name, backend_port=backend.port)
    gw.write_conf(("""
        ModelGateKeyFile "%s"
        ModelGateUpstream model http://127.0.0.1:%d
        """ % (KEYS, backend.port)) + gateway_part)
    return gw.start()


def location(path, *lines):
    body = "\n".join("    " + l for l in lines)
    return """
<Location "%s">
    Require all granted
    ModelGate On
    ModelGateRoute model
%s
</Location>
""" % (path, body)


def test_mg_009_01_rejecting_layer_consumes_from_none(gateways, backend):
    gw = start(gateways, backend, """
        ModelGateTier free 10/min
        ModelGateTier pro  100/min
        """ + location("/v1/", "") + location("/v1/chat/", "ModelGateLimit acme-chat tenant 3/min"))
    for _ in range(3):
        assert gw.chat(DEMO_KEY).status == 200
    for _ in range(5):
        resp = gw.chat(DEMO_KEY)
        assert resp.status == 429
        assert resp.header("ratelimit") .startswith('"acme-chat";r=0;t=')
        assert resp.header("ratelimit-policy") == '"free";q=10;w=60, "acme-chat";q=3;w=60'
        assert "policy 'acme-chat'" in resp.json["error"]["message"]
    # the same tenant's other key is refused by the tenant layer too
    assert gw.chat(PRO_KEY).status == 429
    # ... while the key layer kept what it had: 3 used, not 8
    resp = gw.get("/v1/models", headers={"X-API-Key": DEMO_KEY})
    assert resp.status == 200
    assert resp.header("ratelimit").startswith('"free";r=6;')
    assert backend.count() == 4


def test_mg_009_02_global_layer_spans_keys(gateways, backend):
    gw = start(gateways, backend, """
        ModelGateTier free 10/min
        ModelGateTier pro  100/min
        ModelGateLimit everyone global 5/min
        """ + location("/v1/"))
    statuses = [gw.chat(k).status for k in (DEMO_KEY, OTHER_KEY, PRO_KEY, DEMO_KEY, OTHER_KEY)]
    assert statuses == [200] * 5
    for key in (DEMO_KEY, OTHER_KEY, PRO_KEY):
        resp = gw.chat(key)
        assert resp.status == 429
        assert resp.header("ratelimit").startswith('"everyone";r=0;')


def test_mg_009_03_tiers_option_restricts_a_limit(gateways, backend):
    gw = start(gateways, backend, """
        ModelGateTier free 10/min
        ModelGateTier pro  100/min
        ModelGateLimit pro-pool tier 2/min tiers=pro
        """ + location("/v1/"))
    assert [gw.chat(PRO_KEY).status for _ in range(3)] == [200, 200, 429]
    resp = gw.chat(DEMO_KEY)
    assert resp.status == 200
    assert resp.header("ratelimit-policy") == '"free";q=10;w=60'


def test_mg_009_04_shadow_layer_never_refuses(gateways, backend):
    gw = start(gateways, backend, """
        ModelGateTier free 10/min
        ModelGateTier pro  100/min
        ModelGateLimit trial tenant 2/min shadow
        """ + location("/v1/"))
    results = [gw.chat(DEMO_KEY) for _ in range(4)]
    assert [r.status for r in results] == [200] * 4
    assert [r.header("x-modelgate-shadow-rejected") for r in results] == [None, None, "trial", "trial"]
    assert results[3].header("ratelimit-policy") == '"free";q=10;w=60, "trial";q=2;w=60'
    # the enforced layer still binds the RateLimit numbers
    assert results[3].header("ratelimit").startswith('"free";r=6;')
    assert backend.count() == 4
    assert gw.read_log().count("MG00203: shadow limit(s) trial would have refused key 'demo'") == 2


def test_mg_009_05_cost_weights(gateways, backend):
    gw = start(gateways, backend, """
        ModelGateTier free 10/min
        ModelGateTier pro  100/min
        """ + location("/v1/") + location("/v1/chat/", "ModelGateCost 4"))
    r1 = gw.chat(DEMO_KEY)
    r2 = gw.chat(DEMO_KEY)
    r3 = gw.chat(DEMO_KEY)
    assert [r1.status, r2.status, r3.status] == [200, 200, 429]
    assert r1.header("ratelimit").startswith('"free";r=6;')
    assert r2.header("ratelimit").startswith('"free";r=2;')
    # cheaper routes still fit in what is left
    resp = gw.get("/v1/models", headers={"X-API-Key": DEMO_KEY})
    assert resp.status == 200
    assert resp.header("ratelimit").startswith('"free";r=1;')


@pytest.mark.parametrize("algorithm", ["token_bucket", "leaky_bucket", "fixed_window",
                                       "sliding_log", "sliding_window", "gcra"])
def test_mg_009_06_every_algorithm_limits(gateways, backend, algorithm):
    gw = start(gateways, backend, """
        ModelGateTier free 5/h algorithm=%s
        ModelGateTier pro  100/min
        """ % algorithm + location("/v1/"), name=algorithm)
    results = [gw.chat(DEMO_KEY) for _ in range(6)]
    assert [r.status for r in results] == [200] * 5 + [429]
    assert [r.header("x-ratelimit-remaining") for r in results] == ["4", "3", "2", "1", "0", "0"]
    last = results[-1]
    assert last.header("ratelimit-policy") == '"free";q=5;w=3600'
    retry = int(last.header("retry-after"))
    # buckets refill one unit each 12 minutes; windows reopen with the next
    # window (fixed: at the next hour; the sliding log when its first entry
    # ages out; the sliding counter once this hour's 5 weigh 4 or less in
    # the next, 12 minutes into it)
    assert 0 < retry <= (3600 + 720 if algorithm == "sliding_window" else 3600)
    if algorithm in ("token_bucket", "leaky_bucket", "gcra"):
        assert 700 < retry <= 720
    # (a fixed window may be about to reopen: SDKs are told to retry then)
    assert last.header("x-should-retry") == ("false" if retry > 60 else "true")
    assert gw.chat(OTHER_KEY).status == 200


def test_mg_009_07_fixed_window_resets_at_the_next_minute(gateways, backend):
    gw = start(gateways, backend, """
        ModelGateTier free 3/min algorithm=fixed_window
        ModelGateTier pro  100/min
        """ + location("/v1/"))
    statuses = []
    for _ in range(4):
        resp = gw.chat(DEMO_KEY)
        statuses.append(resp.status)
    now = datetime.datetime.now(datetime.timezone.utc)
    if statuses != [200, 200, 200, 429]:
        # the 4 requests straddled a minute boundary: the window reopened
        assert statuses.count(429) == 0
        return
    to_next_minute = 60 - now.second
    assert abs(int(resp.header("retry-after")) - to_next_minute) <= 1


def test_mg_009_08_calendar_month_in_a_zone(gateways, backend):
    gw = start(gateways, backend, """
        ModelGateTier free 2/month algorithm=fixed_window zone=+05:30
        ModelGateTier pro  100/min
        """ + location("/v1/"))
    assert gw.chat(DEMO_KEY).status == 200
    assert gw.chat(DEMO_KEY).status == 200
    resp = gw.chat(DEMO_KEY)
    assert resp.status == 429
    assert resp.header("ratelimit-policy") == '"free";q=2;w=2678400'
    zone = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    local = datetime.datetime.now(zone)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    next_month = datetime.datetime(year, month, 1, tzinfo=zone)
    expected = (next_month - local).total_seconds()
    assert abs(int(resp.header("retry-after")) - expected) <= 2
    assert resp.header("x-should-retry") == ("false" if expected > 61 else "true")


def test_mg_009_15_calendar_day_in_a_named_zone(gateways, backend):
    gw = start(gateways, backend, """
        ModelGateTier free 1/day algorithm=fixed_window zone=America/New_York
        ModelGateTier pro  100/min
        """ + location("/v1/"))
    assert gw.chat(DEMO_KEY).status == 200
    resp = gw.chat(DEMO_KEY)
    assert resp.status == 429
    import zoneinfo
    zone = zoneinfo.ZoneInfo("America/New_York")
    local = datetime.datetime.now(zone)
    midnight = datetime.datetime.combine(local.date() + datetime.timedelta(days=1),
                                         datetime.time(0), tzinfo=zone)
    expected = (midnight - local).total_seconds()
    assert abs(int(resp.header("retry-after")) - expected) <= 2


def test_mg_009_09_leaky_bucket_queue_holds_then_refuses(gateways, backend):
    # one per second, room for 5, but nobody waits more than 2.5 s: of 5
    # requests arriving together 3 are held 0, ~1 and ~2 s, and 2 refused.
    gw = start(gateways, backend, """
        ModelGateTier free 1/s algorithm=leaky_bucket burst=5 delay=2500
        ModelGateTier pro  100/min
        """ + location("/v1/"))
    results = []
    barrier = threading.Barrier(5)

    def client():
        barrier.wait()
        results.append(gw.chat(DEMO_KEY).status)

    threads = [threading.Thread(target=client) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [200, 200, 200, 429, 429]
    delays = sorted(int(line.rsplit(" ", 1)[1]) for line in gw.access_lines(5)
                    if " 200 " in line and not line.endswith(" -"))
    assert len(delays) == 2
    assert 0 < delays[0] <= 1000 and 1000 < delays[1] <= 2000


def test_mg_009_10_ip_and_route_scopes(gateways, backend):
    gw = start(gateways, backend, """
        ModelGateTier free 10/min
        ModelGateTier pro  100/min
        ModelGateLimit per-address ip 3/min
        """ + location("/v1/"))
    statuses = [gw.chat(k).status for k in (DEMO_KEY, OTHER_KEY, PRO_KEY, DEMO_KEY)]
    assert statuses == [200, 200, 200, 429]


def test_mg_009_11_htaccess_can_add_a_layer(gateways, backend):
    backend.reset()
    g = gateways("htlimit", backend_port=backend.port)
    g.write_conf("""
        ModelGateTier free 10/min
        ModelGateTier pro  100/min
        ModelGateKeyFile "%s"
        ModelGateUpstream model http://127.0.0.1:%d
        <Directory "%s/htdocs">
            AllowOverride AuthConfig
            Require all granted
        </Directory>
        <Location "/v1/">
            ModelGate On
        </Location>
        """ % (KEYS, backend.port, g.rundir))
    os.makedirs(os.path.join(g.rundir, "htdocs", "v1"), exist_ok=True)
    with open(os.path.join(g.rundir, "htdocs", "v1", ".htaccess"), "w") as f:
        f.write("ModelGateRoute model\nModelGateLimit tight key 2/min\n")
    g.start()
    assert [g.chat(DEMO_KEY).status for _ in range(3)] == [200, 200, 429]


@pytest.mark.parametrize("directive,message", [
    ("ModelGateLimit big key 300/min algorithm=sliding_log",
     "its quota must be at most 256"),
    ("ModelGateLimit w key 10/min algorithm=fixed_window burst=5",
     "burst= applies to token_bucket, leaky_bucket and gcra"),
    ("ModelGateLimit z key 10/day zone=+01:00", "zone= applies to fixed windows"),
    ("ModelGateLimit m key 10/month", "months are periods of fixed windows"),
    ("ModelGateLimit s planet 10/min", "'planet' is not a scope"),
    ("ModelGateLimit d key 10/min delay=100", "only a leaky bucket can hold requests"),
    ("ModelGateLimit a key 10/min algorithm=magic", "unknown algorithm"),
    ("ModelGateLimit free key 10/min", "limit 'free' is already defined"),
    ("ModelGateLimit q key 10/day zone=Mars/Olympus algorithm=fixed_window",
     "'Mars/Olympus' is not a time zone of the tz database"),
], ids=["log-max", "burst-window", "zone", "month", "scope", "delay", "algo", "dup", "tzname"])
def test_mg_009_12_limit_config_errors(gateways, directive, message):
    gw = gateways("conf")
    gw.write_conf("""
        ModelGateTier free 10/min
        ModelGateKeyFile "%s"
        %s
        """ % (KEYS, directive))
    code, out = gw.check_syntax()
    assert code != 0
    assert message in out, out
    assert "ModelGateLimit" in out


def test_mg_009_13_ip_scope_honours_trusted_proxies(gateways, backend):
    """Client addresses come from httpd's mod_remoteip: X-Forwarded-For is
    believed only from the proxies it trusts (IPv4 and IPv6 prefixes)."""
    gw = start(gateways, backend, """
        LoadModule remoteip_module %s/mod_remoteip.so
        RemoteIPHeader X-Forwarded-For
        RemoteIPInternalProxy 127.0.0.0/8 ::1/128
        ModelGateTier free 10/min
        ModelGateTier pro  100/min
        ModelGateLimit per-address ip 2/min
        """ % harness.HTTPD_MODDIR + location("/v1/"))

    def via(addr):
        return gw.chat(DEMO_KEY, extra={"X-Forwarded-For": addr}).status

    assert [via("203.0.113.7") for _ in range(3)] == [200, 200, 429]
    assert [via("2001:db8::1") for _ in range(3)] == [200, 200, 429]
    # a forged hop before an untrusted one does not move the count: the
    # rightmost untrusted address is the client
    assert via("198.51.100.9, 203.0.113.7") == 429
    assert via("203.0.113.8") == 200


def test_mg_009_14_forwarded_for_ignored_without_trust(gateways, backend):
    gw = start(gateways, backend, """
        ModelGateTier free 10/min
        ModelGateTier pro  100/min
        ModelGateLimit per-address ip 2/min
        """ + location("/v1/"))
    statuses = [gw.chat(DEMO_KEY, extra={"X-Forwarded-For": "203.0.113.%d" % i}).status
                for i in range(3)]
    assert statuses == [200, 200, 429]
