#!/usr/bin/python3
"""Make docs/dashboard/modelgate-dashboard.png: a real gateway (Debian's
apache2 with this tree's modules, the Redis store, span export to a port
where nothing listens), two mock model servers and scripted traffic, scraped
every 2 s, then conf-examples/grafana-modelgate.json's panels drawn from
those scrapes by render.py.  Run by hand (needs python3-matplotlib, which
the tests do not):

    python3 docs/dashboard/demo.py [OUT.png]

The traffic, about 80 s: pro and free callers throughout (free callers
spend their large-model allowance, fall back to the small model, then get
429); from 20 s to 35 s the large model's server answers 500 (its breaker
opens); from 40 s to 52 s Redis is stopped (decisions fall back to the
local store: degraded store_local, store errors and fast failures); the
large model is slow (40 ms) from 55 s.
"""
import os
import random
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
import harness  # noqa: E402
import render  # noqa: E402

OTLP_MODULE = os.path.join(os.path.dirname(harness.MODULE), "mod_modelgate_otlp.so")
CONF = """
LoadModule modelgate_redis_module "{redis_module}"
LoadModule modelgate_otlp_module "{otlp_module}"
ModelGateStore redis 127.0.0.1:{redis_port} timeout=100
ModelGateStoreFailure local
ModelGateTraceExport http://127.0.0.1:{closed}/v1/traces sample=0.1 interval=200 timeout=200
ModelGateTier free 240/min on_limit=fallback:mock-small,reject tokens=100000/min
ModelGateTier pro  6000/min tokens=1000000/min
ModelGateLimit free-large key 20/min tiers=free models=mock-large
ModelGateLimit free-small key 30/min tiers=free models=mock-small
"""
METRICS = """
<Location "/metrics">
    SetHandler modelgate-metrics
    Require all granted
</Location>
"""
DURATION = 80.0


def client(gw, key, model, per_second, stop):
    body = {"model": model, "messages": [{"role": "user", "content": "hello " * 20}]}
    while not stop.is_set():
        try:
            gw.chat(key, body=body, timeout=10)
        except OSError:
            pass
        time.sleep(random.expovariate(per_second))


def main(argv):
    out = argv[0] if argv else os.path.join(HERE, "modelgate-dashboard.png")
    run = tempfile.mkdtemp(prefix="mg-dashboard-")
    os.chmod(run, 0o755)
    small, large = harness.MockBackend("small"), harness.MockBackend("large")
    redis = harness.RedisServer(os.path.join(run, "redis")).start()
    gw = harness.Gateway(os.path.join(run, "gw"), backend_port=small.port)
    stop = threading.Event()
    try:
        conf = harness.two_models(
            small, large,
            CONF.format(redis_module=harness.REDIS_MODULE, otlp_module=OTLP_MODULE,
                        redis_port=redis.port, closed=harness.free_port()),
            extra=METRICS)
        conf = conf.replace("ModelGateModel mock-small small",
                            "ModelGateModel mock-small small price=0.15/0.60")
        conf = conf.replace("ModelGateModel mock-large big",
                            "ModelGateModel mock-large big price=2.50/10.00")
        gw.write_conf(conf)
        gw.start()
        clients = [
            (harness.PRO_KEY, "mock-large", 8.0), (harness.PRO_KEY, "mock-small", 6.0),
            (harness.DEMO_KEY, "mock-large", 1.5), (harness.OTHER_KEY, "mock-large", 1.0),
            (harness.DEMO_KEY, "mock-small", 1.0),
        ]
        threads = [threading.Thread(target=client, args=(gw, k, m, r, stop), daemon=True)
                   for k, m, r in clients]
        for t in threads:
            t.start()
        scrapes = os.path.join(run, "scrapes")
        capture = threading.Thread(target=render.capture,
                                   args=("http://127.0.0.1:%d/metrics" % gw.port, scrapes,
                                         DURATION, 2.0))
        capture.start()
        start = time.monotonic()

        def at(t):
            time.sleep(max(0.0, start + t - time.monotonic()))

        at(20)
        large.mode(mode="error", status=500)
        at(35)
        large.mode(mode="normal")
        at(40)
        redis.stop()
        at(52)
        redis.start()
        at(55)
        large.mode(mode="slow", delay_ms=40)
        capture.join()
        stop.set()
        render.draw(scrapes, out)
        print("wrote", out)
    finally:
        stop.set()
        gw.stop()
        if redis.proc:
            redis.stop()
        small.stop()
        large.stop()
        shutil.rmtree(run, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
