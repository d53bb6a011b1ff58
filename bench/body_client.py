#!/usr/bin/env python3
"""body_client.py -- the load of bench/body_instructions.sh.

Sends --requests POSTs of /v1/chat/completions, one after the other on ONE
keep-alive connection, each a chat body whose user message is --prompt-bytes
ASCII bytes long (0: the ~100-byte body of a short question).  Every answer
must be 200 on a kept connection, else it exits 1: a gateway that refused
the body would look cheap.
"""
import argparse
import http.client
import json
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--prompt-bytes", type=int, default=0)
    a = p.parse_args()

    text = "Tell me a story about the sea. "
    content = (text * (a.prompt_bytes // len(text) + 1))[:a.prompt_bytes] \
        if a.prompt_bytes else "Hi, who are you?"
    body = json.dumps({"model": "bench", "max_tokens": 64,
                       "messages": [{"role": "user", "content": content}]})
    sys.stderr.write("body_client: %d-byte bodies\n" % len(body))
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=120)
    headers = {"X-API-Key": a.key, "Content-Type": "application/json"}
    for i in range(a.requests):
        conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200 or resp.will_close:
            sys.exit("body_client: request %d: status %d" % (i, resp.status))
    conn.close()


if __name__ == "__main__":
    main()
