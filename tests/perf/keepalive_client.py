#!/usr/bin/env python3
"""keepalive_client.py -- the load of tests/perf/instructions.sh.

Sends --requests identical requests (GETs, or with --body POSTs of that
JSON body), one after the other, on ONE keep-alive connection, then
closes it.  Sequential and identical, so what they cost under callgrind
is the same from run to run.

Every answer must be 200 and carry every --expect header, else it exits
1: a gateway that refused the key, or stopped sending a header, would
otherwise look cheap.

--settled HEADER (the POST mode's x-ratelimit-remaining-tokens): every
answer must report its usage (usage.total_tokens), and HEADER must fall
from one answer to the next by exactly the usage the first reported: the
counter behind it was settled to what the model server said it used, not
left at the reservation (a gateway that skipped the settle would be
cheaper, and would fail here instead).  The header must tell a counter
that does not refill between requests (bench/tokens_conf.sh's day
window); once a run it may rise instead: the window turned.

--sse-events N (the SSE mode: the body asks for a stream): every answer
must be an event stream of exactly N events ending in [DONE], with no
`usage` in it (the client did not ask for one: the gateway asked the model
server for it, and must drop the usage chunk and strip `"usage": null`
from every other).  With --settled, the usage the model server reported
is not in the stream: --sse-usage T gives it (the mock's, for the body).
"""
import argparse
import http.client
import json
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/v1/models")
    p.add_argument("--key", required=True)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--body", help="POST this JSON body instead of a GET")
    p.add_argument("--expect", action="append", default=[],
                   help="a response header every answer must carry")
    p.add_argument("--settled", metavar="HEADER",
                   help="check HEADER falls by each answer's total_tokens")
    p.add_argument("--sse-events", type=int,
                   help="each answer is a stream of exactly this many events")
    p.add_argument("--sse-usage", type=int,
                   help="the total_tokens the model server used for a stream")
    a = p.parse_args()

    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=120)
    headers = {"X-API-Key": a.key}
    method, body = "GET", None
    if a.body is not None:
        method, body = "POST", a.body.encode()
        headers["Content-Type"] = "application/json"
    state = {"last": None, "turned": False}

    def fail(i, why):
        sys.exit("keepalive_client: request %d: %s" % (i, why))

    def settled(i, resp, data):
        if a.sse_events is not None:
            used = a.sse_usage
        else:
            try:
                used = json.loads(data)["usage"]["total_tokens"]
            except (ValueError, KeyError, TypeError):
                fail(i, "no usage.total_tokens in the answer: %r" % data[:200])
        try:
            remaining = int(resp.getheader(a.settled, ""))
        except ValueError:
            fail(i, "%s is not a number: %r" % (a.settled,
                                                resp.getheader(a.settled)))
        last = state["last"]
        if last is not None:
            fell = last[0] - remaining
            if fell < 0 and not state["turned"]:
                state["turned"] = True      # the day's window turned
            elif fell != last[1]:
                fail(i, "%s fell by %d since the answer before, which "
                     "used %d: its usage was not settled"
                     % (a.settled, fell, last[1]))
        state["last"] = (remaining, used)

    def one(i):
        conn.request(method, a.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        missing = [h for h in a.expect if resp.getheader(h) is None]
        if resp.status != 200 or missing or resp.will_close:
            fail(i, "status %d, missing %s%s"
                 % (resp.status, missing,
                    ", connection closed" if resp.will_close else ""))
        if a.sse_events is not None:
            events = [e for e in data.split(b"\n\n") if e.strip()]
            if (len(events) != a.sse_events or events[-1] != b"data: [DONE]"
                    or b'"usage"' in data):
                fail(i, "not the stream of %d events without usage asked for: "
                     "%d events, ending %r" % (a.sse_events, len(events), data[-80:]))
        if a.settled:
            settled(i, resp, data)

    for i in range(a.requests):
        one(i)
    conn.close()


if __name__ == "__main__":
    main()
