"""The shm store's table under pressure (issue 10): a small table, many
distinct client addresses (the ip scope, through mod_remoteip), and clients
over their limit that keep asking.  A refused request counts as use, and an
exhausted counter is evicted only when every other entry of its set is
exhausted too, so a client over its limit stays refused whatever the churn;
such a last-resort eviction is logged, at most once a minute."""
import os

import harness
from harness import DEMO_KEY

KEYS = os.path.join(harness.CONF_EXAMPLES, "keys", "quickstart.keys")


def start(gateways, backend, capacity, rate):
    backend.reset()
    gw = gateways("pressure", backend_port=backend.port)
    gw.write_conf("""
        LoadModule remoteip_module %s/mod_remoteip.so
        RemoteIPHeader X-Forwarded-For
        RemoteIPInternalProxy 127.0.0.0/8
        ModelGateStore shm capacity=%d
        ModelGateKeyFile "%s"
        ModelGateUpstream model http://127.0.0.1:%d
        ModelGateTier free 100000/min
        ModelGateTier pro  100000/min
        ModelGateLimit per-address ip %s
        <Location "/v1/">
            Require all granted
            ModelGate On
            ModelGateRoute model
        </Location>
        """ % (harness.HTTPD_MODDIR, capacity, KEYS, backend.port, rate))
    return gw.start()


def status(gw, addr):
    return gw.chat(DEMO_KEY, extra={"X-Forwarded-For": addr}).status


def pressure_lines(gw):
    return [l for l in gw.read_log().splitlines() if "MG00108" in l]


def test_mg_020_01_exhausted_clients_stay_exhausted_under_churn(gateways, backend):
    """10 clients at 3/day hammer on after their 3 while 300 new addresses
    pass through a table of 64 counters: exactly 30 of theirs admitted.
    Before the fix a refusal did not count as use and the hammered
    counters were evicted and started again full."""
    gw = start(gateways, backend, 64, "3/day")
    hammered = ["203.0.113.%d" % i for i in range(1, 11)]
    admitted = dict.fromkeys(hammered, 0)
    churn = 0
    for addr in hammered:
        assert [status(gw, addr) for _ in range(4)] == [200, 200, 200, 429]
        admitted[addr] += 3
    for _ in range(30):
        for addr in hammered:
            got = status(gw, addr)
            assert got in (200, 429)
            admitted[addr] += got == 200
        for _ in range(10):
            # a new client: 1 of its 3 used, a partly used counter
            assert status(gw, "198.18.%d.%d" % divmod(churn, 256)) == 200
            churn += 1
    assert admitted == dict.fromkeys(hammered, 3)
    assert backend.count() == 30 + churn
    # the newcomers only evicted each other: no last resort, no warning
    assert pressure_lines(gw) == []


def test_mg_020_02_last_resort_is_logged_once(gateways, backend):
    """One set of 8 (the tier's counter and 7 addresses), every address
    exhausted by its first request (1/day): newcomers must evict exhausted
    counters, the least recently used, never the one that keeps being
    refused; the store says so once, not once per eviction."""
    gw = start(gateways, backend, 8, "1/day")
    hammered = "203.0.113.77"
    assert status(gw, hammered) == 200
    refused = 0
    for i in range(20):
        refused += status(gw, hammered) == 429
        for j in range(2):
            assert status(gw, "198.18.0.%d" % (2 * i + j + 1)) == 200
    assert refused == 20
    assert backend.count() == 1 + 40
    # 41 addresses through 7 ways: 34 exhausted counters forgotten, the
    # first of them reported at once, the rest left for the next minute
    lines = pressure_lines(gw)
    assert len(lines) == 1, lines
    assert "[modelgate:warn]" in lines[0]
    assert "1 counter(s) that were refusing requests forgotten" in lines[0]
    assert "capacity= (now 8 counters" in lines[0]
