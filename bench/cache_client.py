#!/usr/bin/env python3
"""cache_client.py -- the load of bench/cache_instructions.sh.

Sends --requests POSTs of a chat completion with "temperature": 0, one
after the other, on ONE keep-alive connection.  With --unique every body
differs (a counter in the message: every request a cache miss), else all
are the same (every request after the first a hit).  Every answer must be
200, and with --cache-status PREFIX carry a Cache-Status that starts with
it (after the first, for a run of hits), else it exits 1: a gateway that
did less would look cheap.
"""
import argparse
import http.client
import json
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/v1/chat/completions")
    p.add_argument("--key", required=True)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--unique", action="store_true")
    p.add_argument("--first", type=int, default=0,
                   help="with --unique, the first body's number (runs that "
                        "follow each other on one server ask new questions)")
    p.add_argument("--cache-status", default=None)
    a = p.parse_args()

    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=120)
    headers = {"X-API-Key": a.key, "Content-Type": "application/json"}

    for i in range(a.requests):
        content = "question %06d" % (a.first + i) if a.unique else "question 000000"
        body = json.dumps({"model": "bench", "temperature": 0,
                           "messages": [{"role": "user", "content": content}]})
        conn.request("POST", a.path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        cs = resp.getheader("Cache-Status")
        bad = resp.status != 200 or resp.will_close
        if a.cache_status is not None and (i > 0 or a.unique):
            bad = bad or not (cs or "").startswith(a.cache_status)
        if bad:
            sys.exit("cache_client: request %d: status %d, Cache-Status %r%s"
                     % (i, resp.status, cs,
                        ", connection closed" if resp.will_close else ""))
    conn.close()


if __name__ == "__main__":
    main()
