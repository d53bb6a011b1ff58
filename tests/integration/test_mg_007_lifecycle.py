"""Counters live in shared memory kept across restarts of the parent: a
graceful restart (or -k restart) keeps them, a stop and start empties them."""
import os
import signal
import subprocess

import harness
from harness import DEMO_KEY, OTHER_KEY


def exhaust(gw):
    assert [gw.chat(DEMO_KEY).status for _ in range(11)] == [200] * 10 + [429]


def test_mg_007_01_graceful_restart_keeps_counters(quickstart):
    exhaust(quickstart)
    quickstart.chat(OTHER_KEY)
    quickstart.graceful()
    assert quickstart.chat(DEMO_KEY).status == 429
    resp = quickstart.chat(OTHER_KEY)
    assert resp.status == 200
    assert resp.header("ratelimit").startswith('"free";r=8;')


def test_mg_007_02_restart_keeps_counters(quickstart):
    exhaust(quickstart)
    before = quickstart.read_log().count("resuming normal operations")
    quickstart.signal(signal.SIGHUP)
    import time
    deadline = time.monotonic() + 30
    while quickstart.read_log().count("resuming normal operations") == before:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert harness.wait_port(quickstart.port)
    assert quickstart.chat(DEMO_KEY).status == 429


def test_mg_007_03_stop_and_start_begins_afresh(quickstart):
    exhaust(quickstart)
    quickstart.stop()
    quickstart.start()
    resp = quickstart.chat(DEMO_KEY)
    assert resp.status == 200
    assert resp.header("ratelimit").startswith('"free";r=9;')


def test_mg_007_04_shm_store_reports_its_size(quickstart):
    log = quickstart.wait_log("MG00104")
    # a 64-byte lock line, 65536 x (64-byte entry + 8-byte tag) + 64 of
    # header, then 1024 logs x (32 + 32 + 256 x 8 bytes + an 8-byte tag) + 64
    assert ("MG00104: shm store: 65536 counters and 1024 sliding logs in 6889664 bytes "
            "(72 bytes per counter, 2120 per log)") in log


def test_mg_007_05_keytool_lines_work_in_a_key_file(gateways, backend, tmp_path):
    out = subprocess.run([harness.KEYTOOL, "new", "batch-1", "acme", "free", "chat"],
                         capture_output=True, text=True, check=True)
    line = out.stdout.strip()
    key = out.stderr.strip().rsplit(" ", 1)[1]
    assert key.startswith("mg-") and len(key) == 35
    assert key not in line
    digest = subprocess.run([harness.KEYTOOL, "hash"], input=key + "\n",
                            capture_output=True, text=True, check=True).stdout.strip()
    import hashlib
    assert digest == "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    assert line.split() == [digest, "batch-1", "acme", "free", "chat"]
    keys = tmp_path / "keys"
    keys.write_text(line + "\n")
    backend.reset()
    gw = gateways("keytool", backend_port=backend.port)
    gw.write_conf("ModelGateTier free 10/min\n" + harness.routed_v1(keys, backend.port))
    gw.start()
    assert gw.chat(key).status == 200
    assert backend.requests()[-1]["headers"]["x-modelgate-key-id"] == "batch-1"
