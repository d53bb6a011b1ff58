#!/usr/bin/env python3
"""sse_client.py -- time SSE streams through a server, one after another.

    sse_client.py PORT STREAMS KEY [INCLUDE_USAGE]
    sse_client.py --pairs PAIRS PORT_A PORT_B KEY [INCLUDE_USAGE]

Sends STREAMS chat-completion requests with "stream": true (and
stream_options.include_usage when INCLUDE_USAGE is 1) to 127.0.0.1:PORT,
each on a connection of its own, one at a time, and reads each to its end.
Per stream it takes, with time.perf_counter():

  ttfb      from the request's first byte sent to the first event's first
            byte received ("data:"): what a user waits for the first token
  ttlb      from the request's first byte sent to the last event
            ("[DONE]"): events / ttlb is the rate events are delivered at
            (from a backend that sends them without delay, the first
            event's time to the last's can be 0: one read has them all)

and prints one line of JSON: the medians and means of both (in ms), the
events per stream (every stream must have as many), and the bytes.  Raw
sockets, so the client's own parsing costs the same for every server.

With SSE_CPU_PGIDS="PGID_A PGID_B" in the environment, --pairs also
reads the CPU time of every thread of each server's process group
(/proc/PID/task/TID/schedstat, ns) before and after each of its streams,
and reports the per-pair difference of CPU a stream the same way: what
the server spent, against what the client waited.

--pairs: PAIRS pairs of streams, one through PORT_A and one through
PORT_B, the order alternating (A B, B A, A B, ...), so that the machine's
drift -- this VM's speed moves by 15-40 % over seconds, as much as the
whole of what a gateway adds to a stream's first byte -- falls on both
sides of every pair alike.  Prints the median ttfb and ttlb of each side,
and the time from the first event to the last ("rest": the events after
the first, delivered), and for each the median of the per-pair
differences B - A with its 95 %
interval from order statistics (distribution-free), and the ratio A / B
of medians with the interval that difference implies.
"""
import json
import math
import os
import socket
import statistics
import sys
import time


def one(port, key, body):
    req = ("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           "X-API-Key: %s\r\nContent-Type: application/json\r\n"
           "Content-Length: %d\r\nConnection: close\r\n\r\n" % (key, len(body))).encode() + body
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    chunks = []
    first = last = None
    tail = b""
    t0 = time.perf_counter()
    s.sendall(req)
    while True:
        data = s.recv(65536)
        if not data:
            break
        now = time.perf_counter()
        chunks.append(data)
        if first is None and b"data:" in tail + data:
            first = now
        if b"[DONE]" in tail + data:
            last = now
        tail = data[-8:]
    s.close()
    raw = b"".join(chunks)
    if not raw.startswith(b"HTTP/1.1 200") or first is None or last is None:
        raise SystemExit("bad stream: %r" % raw[:300])
    return first - t0, last - t0, raw.count(b"\ndata:"), len(raw)


def body_of(include):
    b = {"model": "mock-small", "max_tokens": 1000, "stream": True,
         "messages": [{"role": "user", "content": "one two three"}]}
    if include:
        b["stream_options"] = {"include_usage": True}
    return json.dumps(b).encode()


def median_interval(xs):
    """The median of xs and its 95 % interval: the k-th lowest and highest
    values, k the largest with P(Binomial(n, 1/2) < k) <= 2.5 %."""
    xs = sorted(xs)
    n = len(xs)
    tail, k, whole = 0, 0, 2 ** n       # in integers: 2 ** n overflows a float
    while k < n // 2:
        nxt = tail + math.comb(n, k)
        if nxt * 40 > whole:
            break
        tail, k = nxt, k + 1
    return statistics.median(xs), xs[k], xs[n - 1 - k]


def group_pids(pgid):
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    st = f.read()
            except OSError:
                continue
            if int(st[st.rindex(")") + 2:].split()[2]) == pgid:
                pids.append(name)
    return pids


def cpu_us(pids):
    total = 0
    for pid in pids:
        try:
            for tid in os.listdir("/proc/%s/task" % pid):
                with open("/proc/%s/task/%s/schedstat" % (pid, tid)) as f:
                    total += int(f.read().split()[0])
        except OSError:
            pass
    return total / 1000.0


def pairs(n, port_a, port_b, key, include):
    body = body_of(include)
    pgids = os.environ.get("SSE_CPU_PGIDS", "").split()
    a = {"ttfb": [], "ttlb": [], "rest": [], "cpu": []}
    b = {"ttfb": [], "ttlb": [], "rest": [], "cpu": []}
    pids = {}
    events = set()
    for i in range(n):
        if pgids and i % 100 == 0:       # children a graceful restart made
            pids = {port_a: group_pids(int(pgids[0])), port_b: group_pids(int(pgids[1]))}
        order = ((port_a, a), (port_b, b)) if i % 2 == 0 else ((port_b, b), (port_a, a))
        for port, side in order:
            c0 = cpu_us(pids[port]) if pids else 0
            t, d, e, _ = one(port, key, body)
            if pids:
                side["cpu"].append(cpu_us(pids[port]) - c0)
            side["ttfb"].append(t * 1e6)
            side["ttlb"].append(d * 1e6)
            side["rest"].append((d - t) * 1e6)
            events.add(e)
    out = {"pairs": n, "events": sorted(events)}
    if pids:
        d, lo, hi = median_interval([y - x for x, y in zip(a["cpu"], b["cpu"])])
        out["cpu"] = {"a_us": round(statistics.median(a["cpu"]), 1),
                      "b_us": round(statistics.median(b["cpu"]), 1),
                      "b_minus_a_us": [round(d, 1), round(lo, 1), round(hi, 1)]}
    for what in ("ttfb", "ttlb", "rest"):
        ma, mb = statistics.median(a[what]), statistics.median(b[what])
        d, lo, hi = median_interval([y - x for x, y in zip(a[what], b[what])])
        out[what] = {"a_us": round(ma, 1), "b_us": round(mb, 1),
                     "b_minus_a_us": [round(d, 1), round(lo, 1), round(hi, 1)],
                     "a_over_b": [round(ma / (ma + d), 4), round(ma / (ma + hi), 4),
                                  round(ma / (ma + lo), 4)]}
    print(json.dumps(out))


def main():
    if sys.argv[1] == "--pairs":
        pairs(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5],
              len(sys.argv) > 6 and sys.argv[6] == "1")
        return
    port, streams, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    include = len(sys.argv) > 4 and sys.argv[4] == "1"
    body = body_of(include)
    ttfb, delivery, events, size = [], [], set(), set()
    for _ in range(streams):
        t, d, e, n = one(port, key, body)
        ttfb.append(t * 1000)
        delivery.append(d * 1000)
        events.add(e)
        size.add(n)
    print(json.dumps({
        "streams": streams, "events": sorted(events), "bytes": sorted(size),
        "ttfb_ms_median": statistics.median(ttfb), "ttfb_ms_mean": statistics.mean(ttfb),
        "ttlb_ms_median": statistics.median(delivery),
        "ttlb_ms_mean": statistics.mean(delivery)}))


if __name__ == "__main__":
    main()
