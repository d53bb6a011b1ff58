#!/usr/bin/env python3
"""bench/redis_stall.py -- how long the gateway keeps refusing after Redis
stalls under load (issue 10; bench/README.md, "Redis stalled under load").

Starts, on loopback ports of their own (with tests/integration/harness.py):
a redis-server, the mock model backend, and apache2 (event, 2 children of 25
threads) with mod_modelgate on the redis store in exact mode with its default
timeouts (connect 100 ms, command 50 ms), `ModelGateStoreFailure closed` and a
limit no client reaches.  CLIENTS threads send chat requests on keep-alive
connections and record, per response, when it arrived and its status.

Each burst: SIGSTOP Redis, sleep STALL ms, SIGCONT, then wait until no 503
has arrived for QUIET s (at most MAX_WAIT s).  Per burst it prints the 503s,
how long after SIGCONT the last one arrived ("refused after"), and how many
requests sent after SIGCONT were refused.  The target: <= 1 s of refused
requests after Redis answers again.

    /usr/bin/python3 bench/redis_stall.py [--bursts 6] [--stall-ms 200]
        [--clients 16] [--module .libs/mod_modelgate_redis.so]

--module measures another build of the plugin (e.g. the one before a fix).
Needs the tree built (scripts/build.sh); nothing but the packages the
integration tests use.
"""
import argparse
import http.client
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bursts", type=int, default=6)
    ap.add_argument("--stall-ms", type=int, default=200)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--quiet", type=float, default=3.0)
    ap.add_argument("--max-wait", type=float, default=45.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--module", default=harness.REDIS_MODULE)
    args = ap.parse_args()

    run = tempfile.mkdtemp(prefix="mg-redis-stall-")
    backend = harness.MockBackend("stall")
    redis = harness.RedisServer(os.path.join(run, "redis")).start()
    gw = harness.Gateway(os.path.join(run, "gw"), backend_port=backend.port)
    gw.write_conf("""
        LoadModule modelgate_redis_module "%s"
        ModelGateStore redis 127.0.0.1:%d
        ModelGateStoreFailure closed
        ModelGateTier free 1000000000/min
        ModelGateTier pro  1000000000/min
        """ % (os.path.abspath(args.module), redis.port)
                  + harness.routed_v1(harness.QUICKSTART_KEYS, backend.port))
    records = []            # (arrived, status), appended by every client
    done = threading.Event()

    def client():
        conn = None
        while not done.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
                status = harness.request(gw.port, "POST", "/v1/chat/completions",
                                         headers={"X-API-Key": harness.OTHER_KEY},
                                         body=harness.CHAT, conn=conn).status
            except Exception:
                status = -1
                conn = None
            records.append((time.monotonic(), status))

    threads = []
    try:
        gw.start()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(args.warmup)
        print("plugin: %s" % os.path.abspath(args.module))
        print("%d keep-alive clients, Redis stopped %d ms per burst\n"
              % (args.clients, args.stall_ms))
        print("| burst | responses in the second before | 503s | last 503 after SIGCONT | 503s arriving > 100 ms after SIGCONT |")
        print("|---:|---:|---:|---:|---:|")
        worst = 0.0
        for burst in range(1, args.bursts + 1):
            start = len(records)
            t0 = time.monotonic()
            before = [r for r in records[-5000:] if r[0] > t0 - 1.0]
            redis.proc.send_signal(signal.SIGSTOP)
            time.sleep(args.stall_ms / 1000.0)
            redis.proc.send_signal(signal.SIGCONT)
            t_cont = time.monotonic()
            while True:
                time.sleep(0.1)
                now = time.monotonic()
                recent = records[start:]
                last503 = max([t for t, s in recent if s == 503], default=None)
                if last503 is None and now - t_cont > args.quiet:
                    break
                if last503 is not None and now - last503 > args.quiet:
                    break
                if now - t_cont > args.max_wait:
                    break
            recent = records[start:]
            n503 = sum(1 for _, s in recent if s == 503)
            after = max(0.0, (last503 or t_cont) - t_cont)
            # a response that arrives later than 100 ms after SIGCONT was
            # sent after it (the command timeout is 50 ms)
            late = sum(1 for t, s in recent if s == 503 and t > t_cont + 0.1)
            worst = max(worst, after)
            print("| %d | %d | %d | %.3f s%s | %d |"
                  % (burst, len(before), n503, after,
                     "" if now - t_cont <= args.max_wait else " (still refusing)", late))
            sys.stdout.flush()
        others = sorted({s for _, s in records if s not in (200, 503)})
        print("\nworst: %.3f s of refusals after SIGCONT (target <= 1 s)%s"
              % (worst, "; other answers: %r" % others if others else ""))
    finally:
        done.set()
        for t in threads:
            t.join(60)
        gw.stop()
        redis.proc and redis.proc.send_signal(signal.SIGCONT)
        redis.stop()
        backend.stop()
        shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
