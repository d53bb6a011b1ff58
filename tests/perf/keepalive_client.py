#!/usr/bin/env python3
"""keepalive_client.py -- the load of tests/perf/instructions.sh.

Sends --requests identical GETs, one after the other, on ONE keep-alive
connection, then closes it.  Sequential and identical, so what they cost
under callgrind is the same from run to run.

Every answer must be 200 and carry every --expect header, else it exits
1: a gateway that refused the key, or stopped sending a header, would
otherwise look cheap.
"""
import argparse
import http.client
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/v1/models")
    p.add_argument("--key", required=True)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--expect", action="append", default=[],
                   help="a response header every answer must carry")
    a = p.parse_args()

    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=120)
    headers = {"X-API-Key": a.key}

    def one(i):
        conn.request("GET", a.path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        missing = [h for h in a.expect if resp.getheader(h) is None]
        if resp.status != 200 or missing or resp.will_close:
            sys.exit("keepalive_client: request %d: status %d, missing %s%s"
                     % (i, resp.status, missing,
                        ", connection closed" if resp.will_close else ""))

    for i in range(a.requests):
        one(i)
    conn.close()


if __name__ == "__main__":
    main()
