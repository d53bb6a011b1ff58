#!/usr/bin/env python3
"""sse_client.py -- time SSE streams through a server, one after another.

    sse_client.py PORT STREAMS KEY [INCLUDE_USAGE]

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
"""
import json
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


def main():
    port, streams, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    include = len(sys.argv) > 4 and sys.argv[4] == "1"
    b = {"model": "mock-small", "max_tokens": 1000, "stream": True,
         "messages": [{"role": "user", "content": "one two three"}]}
    if include:
        b["stream_options"] = {"include_usage": True}
    body = json.dumps(b).encode()
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
