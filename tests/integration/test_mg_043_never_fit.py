"""Requests no wait can admit, and waits a queue cannot hold (issue 43).

A request whose cost is above what a limit can ever hold (its burst, a
window's quota) is refused as final: that limit is named, no Retry-After,
x-should-retry: false, a message saying how to shrink it, and no queueing.
A queue action refuses at once when the wait is longer than it may hold a
request.  And an admitted request's RateLimit names the layer nearest to
running out of what it can hold, not of its quota."""
import json
import math
import threading
import time

import harness
from harness import DEMO_KEY, PRO_KEY, QUICKSTART_KEYS

def test_mg_043_04_queue_refuses_a_wait_it_cannot_hold(gateways, backend):
    """2/min: the next unit is 30 s away, longer than queue:3000 may hold a
    request; every such request is refused at once, holding no worker."""
    backend.reset()
    gw = gateways("queue", backend_port=backend.port)
    gw.write_conf("ModelGateTier free 2/min on_limit=queue:3000\n"
                  "ModelGateTier pro 100/min\n"
                  + harness.routed_v1(QUICKSTART_KEYS, backend.port))
    gw.start()
    assert [gw.chat(DEMO_KEY).status for _ in range(2)] == [200, 200]
    results = []
    lock = threading.Lock()

    def client():
        t0 = time.monotonic()
        r = gw.chat(DEMO_KEY)
        with lock:
            results.append((time.monotonic() - t0, r))

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 6
    for took, r in results:
        assert r.status == 429
        assert took < 1.5, took           # not the 3 s queue
        assert r.header("x-modelgate-queued-ms") is None
        assert 20 <= int(r.header("retry-after")) <= 30
        assert r.header("x-should-retry") == "true"
