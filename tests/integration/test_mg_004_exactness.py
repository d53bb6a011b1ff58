"""Limits are exact across every process and thread: with 64 concurrent
clients a bucket of B admits B, never B + 1, under each MPM."""
import collections
import os
import threading

import pytest

import harness
from harness import DEMO_KEY, OTHER_KEY, PRO_KEY

CLIENTS = 64
PER_CLIENT = 3
# Refill of one request per half hour or more: nothing refills during a test.
TIERS = """
ModelGateTier free 48/day
ModelGateTier pro  25/day
"""


def gateway_conf(backend):
    return TIERS + harness.routed_v1(harness.QUICKSTART_KEYS, backend.port)


def hammer(gw, keys):
    """CLIENTS threads, released together, each sending PER_CLIENT requests
    per key on a connection of its own; returns key -> Counter of statuses."""
    results = collections.defaultdict(collections.Counter)
    lock = threading.Lock()
    barrier = threading.Barrier(CLIENTS)

    def client(i):
        barrier.wait()
        for n in range(PER_CLIENT):
            for key in keys:
                try:
                    status = gw.chat(key).status
                except Exception as e:      # recorded, and fails the test
                    status = repr(e)
                with lock:
                    results[key][status] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


@pytest.mark.parametrize("mpm", ["event", "worker", "prefork"])
def test_mg_004_01_burst_admits_exactly_b(gateways, backend, mpm):
    backend.reset()
    gw = gateways(mpm, backend_port=backend.port, mpm=mpm)
    gw.write_conf(gateway_conf(backend))
    gw.start()
    results = hammer(gw, [DEMO_KEY, OTHER_KEY, PRO_KEY])
    sent = CLIENTS * PER_CLIENT
    assert results[DEMO_KEY] == {200: 48, 429: sent - 48}
    assert results[OTHER_KEY] == {200: 48, 429: sent - 48}
    assert results[PRO_KEY] == {200: 25, 429: sent - 25}
    assert backend.count() == 48 + 48 + 25


def test_mg_004_02_mutex_directive_applies(gateways, backend):
    """With lock=httpd the store's lock is httpd's "modelgate-store" mutex:
    `Mutex` picks its mechanism and place, and the limit stays exact."""
    backend.reset()
    gw = gateways("mutex", backend_port=backend.port)
    gw.write_conf("ModelGateStore shm lock=httpd\n"
                  + gateway_conf(backend)
                  + 'Mutex flock:%s/locks modelgate-store\n' % gw.rundir)
    os.makedirs(os.path.join(gw.rundir, "locks"), exist_ok=True)
    gw.start()
    locks = os.listdir(os.path.join(gw.rundir, "locks"))
    assert any(name.startswith("modelgate-store") for name in locks), locks
    results = hammer(gw, [DEMO_KEY])
    assert results[DEMO_KEY] == {200: 48, 429: CLIENTS * PER_CLIENT - 48}
