"""Self-test for mock_model.py (stdlib + pytest only).

Run:  /usr/bin/python3 -m pytest tests/mock_backend -q
"""

import hashlib
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
MOCK = os.path.join(HERE, "mock_model.py")


def start_server(*extra, pidfile=None):
    cmd = [sys.executable, MOCK, "--host", "127.0.0.1", "--port", "0", "--quiet"] + list(extra)
    if pidfile:
        cmd += ["--pidfile", str(pidfile)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            proc.kill()
            raise RuntimeError("mock server did not print LISTENING")
        b = os.read(proc.stdout.fileno(), 1)
        if not b:
            raise RuntimeError("mock server exited: rc=%s" % proc.wait())
        line += b
    word, port = line.decode().split()
    assert word == "LISTENING"
    return proc, int(port)


def stop_server(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    proc.stdout.close()
    return proc.returncode


@pytest.fixture(scope="module")
def server(request):
    proc, port = start_server("--name", "selftest")

    def fin():
        stop_server(proc)
    request.addfinalizer(fin)
    return port


@pytest.fixture(autouse=True)
def reset(request):
    if "server" in request.fixturenames:
        port = request.getfixturevalue("server")
        status, _, body = call(port, "POST", "/_mock/reset")
        assert status == 200


def call(port, method, path, body=None, headers=None, conn=None):
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp, (json.loads(data) if data else None)
    finally:
        if own:
            conn.close()


def assert_error(obj, code=None, etype=None):
    err = obj["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code
    if etype is not None:
        assert err["type"] == etype


def read_chunked_stream(sock_file):
    """Read a chunked body incrementally: return [(arrival_time, chunk_bytes)]."""
    chunks = []
    while True:
        size_line = sock_file.readline()
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            assert sock_file.readline() == b"\r\n"
            return chunks
        data = sock_file.read(size)
        assert sock_file.read(2) == b"\r\n"
        chunks.append((time.monotonic(), data))


# ---------------------------------------------------------------------------


def test_health_and_server_header(server):
    status, resp, body = call(server, "GET", "/health")
    assert status == 200 and body == {"status": "ok"}
    assert resp.getheader("X-Mock-Server") == "selftest"
    assert resp.getheader("Content-Type") == "application/json"


def test_models_default(server):
    status, resp, body = call(server, "GET", "/v1/models")
    assert status == 200
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["mock-small", "mock-large"]
    assert all(m["object"] == "model" for m in body["data"])
    status, _, body = call(server, "GET", "/v1/models/mock-large")
    assert status == 200 and body["id"] == "mock-large"
    status, _, body = call(server, "GET", "/v1/models/nope")
    assert status == 404
    assert_error(body, "model_not_found")


def test_chat_completion(server):
    req = {"model": "gpt-test", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "one two three four five six seven eight nine ten"}]}
    status, resp, body = call(server, "POST", "/v1/chat/completions", req)
    assert status == 200
    assert resp.getheader("X-Mock-Server") == "selftest"
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "gpt-test"
    assert isinstance(body["created"], int)
    choice = body["choices"][0]
    text = "This is a mock reply from selftest to: one two three four five six seven eight"
    assert choice["index"] == 0
    assert choice["message"] == {"role": "assistant", "content": text}
    assert choice["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 16, "total_tokens": 28}


def test_chat_max_tokens_and_content_parts(server):
    req = {"model": "m", "max_tokens": 4, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi there"}]}]}
    status, _, body = call(server, "POST", "/v1/chat/completions", req)
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "This is a mock"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}


def test_chat_stream_incremental(server):
    status, _, _ = call(server, "POST", "/_mock/mode", {"mode": "normal", "stream_chunk_delay_ms": 200})
    assert status == 200
    req = json.dumps({"model": "m", "stream": True, "max_tokens": 3,
                      "messages": [{"role": "user", "content": "a b c"}]}).encode()
    sock = socket.create_connection(("127.0.0.1", server), timeout=10)
    try:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(req) + req)
        f = sock.makefile("rb")
        assert f.readline().startswith(b"HTTP/1.1 200")
        headers = {}
        while True:
            line = f.readline()
            if line == b"\r\n":
                break
            k, v = line.decode().split(":", 1)
            headers[k.strip().lower()] = v.strip()
        assert headers["content-type"] == "text/event-stream"
        assert headers["transfer-encoding"] == "chunked"
        assert headers["x-mock-server"] == "selftest"
        assert "content-length" not in headers
        chunks = read_chunked_stream(f)
        # 3 words + final chunk + [DONE], each in its own HTTP chunk
        assert len(chunks) == 5
        gaps = [b[0] - a[0] for a, b in zip(chunks, chunks[1:])]
        # a decoding step between the generated events (words, finish);
        # [DONE] follows the finish chunk at once
        assert min(gaps[:3]) > 0.1, gaps
        assert gaps[3] < min(gaps[:3]) / 2, gaps
        events = [c.decode() for _, c in chunks]
        assert all(e.startswith("data: ") and e.endswith("\n\n") for e in events)
        assert events[-1] == "data: [DONE]\n\n"
        objs = [json.loads(e[6:]) for e in events[:-1]]
        assert all(o["object"] == "chat.completion.chunk" for o in objs)
        assert objs[0]["choices"][0]["delta"] == {"role": "assistant", "content": "This"}
        text = "".join(o["choices"][0]["delta"].get("content", "") for o in objs)
        assert text == "This is a"
        assert objs[-1]["choices"][0]["finish_reason"] == "length"
        # As OpenAI: no usage in a stream unless include_usage asks for it.
        assert all("usage" not in o for o in objs)
        # the connection stays usable after the stream
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert f.readline().startswith(b"HTTP/1.1 200")
    finally:
        sock.close()


def test_chat_stream_http_client(server):
    req = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(req),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    data = resp.read().decode()
    conn.close()
    events = [e for e in data.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    final = json.loads(events[-2][6:])
    assert final["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in final and len(events) - 2 == 9


def test_chat_stream_include_usage(server):
    req = {"model": "m", "stream": True, "stream_options": {"include_usage": True},
           "messages": [{"role": "user", "content": "x"}]}
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(req))
    events = [e for e in conn.getresponse().read().decode().split("\n\n") if e]
    conn.close()
    assert events[-1] == "data: [DONE]"
    objs = [json.loads(e[6:]) for e in events[:-1]]
    assert all(o["usage"] is None for o in objs[:-1])
    assert objs[-2]["choices"][0]["finish_reason"] == "stop"
    assert objs[-1]["choices"] == []
    assert objs[-1]["usage"] == {"prompt_tokens": 1, "completion_tokens": 9, "total_tokens": 10}
    bad = dict(req, stream_options={"include_usage": "yes"})
    status, _, body = call(server, "POST", "/v1/chat/completions", bad)
    assert status == 400


def test_usage_mode(server):
    status, _, _ = call(server, "POST", "/_mock/mode", {"usage": "omit"})
    assert status == 200
    try:
        status, _, body = call(server, "POST", "/v1/chat/completions",
                               {"model": "m", "messages": [{"role": "user", "content": "x"}]})
        assert status == 200 and "usage" not in body
        weird = {"prompt_tokens": -5, "completion_tokens": 1.5}
        call(server, "POST", "/_mock/mode", {"usage": weird})
        status, _, body = call(server, "POST", "/v1/embeddings", {"model": "e", "input": "a"})
        assert body["usage"] == weird
        status, _, _ = call(server, "POST", "/_mock/mode", {"usage": 5})
        assert status == 400
    finally:
        call(server, "POST", "/_mock/reset", None)


def test_reply_words_and_first_word_bytes(server):
    """reply_words: a reply (and a stream) of exactly that many words;
    first_word_bytes: one event that large."""
    req = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    try:
        status, _, _ = call(server, "POST", "/_mock/mode", {"reply_words": 200})
        assert status == 200
        conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
        conn.request("POST", "/v1/chat/completions", body=json.dumps(req))
        events = [e for e in conn.getresponse().read().decode().split("\n\n") if e]
        conn.close()
        assert len(events) == 200 + 2            # the words, the finish, [DONE]
        status, _, body = call(server, "POST", "/v1/chat/completions",
                               dict(req, stream=False, max_tokens=150))
        assert body["usage"]["completion_tokens"] == 150
        assert len(body["choices"][0]["message"]["content"].split()) == 150
        call(server, "POST", "/_mock/mode", {"first_word_bytes": 1 << 20})
        conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
        conn.request("POST", "/v1/chat/completions", body=json.dumps(req))
        events = [e for e in conn.getresponse().read().decode().split("\n\n") if e]
        conn.close()
        first = json.loads(events[0][6:])["choices"][0]["delta"]["content"]
        assert len(first) == 1 << 20 and first.startswith("Thisx")
        assert len(events) == 9 + 2
        call(server, "POST", "/_mock/mode", {"line_end": "\r"})
        conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
        conn.request("POST", "/v1/chat/completions", body=json.dumps(req))
        raw = conn.getresponse().read()
        conn.close()
        assert b"\n" not in raw and raw.endswith(b"data: [DONE]\r\r")
        for bad in ({"reply_words": -1}, {"reply_words": 100001},
                    {"first_word_bytes": "big"}, {"line_end": "\n\n"}):
            assert call(server, "POST", "/_mock/mode", bad)[0] == 400
    finally:
        call(server, "POST", "/_mock/reset", None)


def test_completions(server):
    status, _, body = call(server, "POST", "/v1/completions",
                           {"model": "mock-small", "prompt": "say something nice"})
    assert status == 200
    assert body["object"] == "text_completion"
    assert body["id"].startswith("cmpl-")
    assert body["choices"][0]["text"] == "This is a mock reply from selftest to: say something nice"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 11, "total_tokens": 14}
    status, _, body = call(server, "POST", "/v1/completions",
                           {"model": "mock-small", "prompt": ["a b", "c"], "max_tokens": 2})
    assert status == 200
    assert body["choices"][0]["text"] == "This is"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["prompt_tokens"] == 3
    status, _, body = call(server, "POST", "/v1/completions", {"model": "m", "prompt": 5})
    assert status == 400
    assert_error(body, etype="invalid_request_error")


def test_completions_stream(server):
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    conn.request("POST", "/v1/completions",
                 body=json.dumps({"model": "m", "prompt": "p", "stream": True, "max_tokens": 2}))
    resp = conn.getresponse()
    events = [e for e in resp.read().decode().split("\n\n") if e]
    conn.close()
    objs = [json.loads(e[6:]) for e in events[:-1]]
    assert [o["choices"][0]["text"] for o in objs] == ["This", " is", ""]
    assert all("usage" not in o for o in objs)
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    conn.request("POST", "/v1/completions",
                 body=json.dumps({"model": "m", "prompt": "p", "stream": True, "max_tokens": 2,
                                  "stream_options": {"include_usage": True}}))
    events = [e for e in conn.getresponse().read().decode().split("\n\n") if e]
    conn.close()
    last = json.loads(events[-2][6:])
    assert last["choices"] == [] and last["usage"]["total_tokens"] == 3


def test_embeddings(server):
    status, _, body = call(server, "POST", "/v1/embeddings",
                           {"model": "emb", "input": ["hello world", "x"]})
    assert status == 200
    assert body["object"] == "list" and body["model"] == "emb"
    assert [d["index"] for d in body["data"]] == [0, 1]
    for d in body["data"]:
        assert d["object"] == "embedding"
        assert len(d["embedding"]) == 8
        assert all(isinstance(v, float) and -1 <= v < 1 for v in d["embedding"])
    assert body["data"][0]["embedding"] != body["data"][1]["embedding"]
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    _, _, again = call(server, "POST", "/v1/embeddings", {"model": "emb", "input": "hello world"})
    assert again["data"][0]["embedding"] == body["data"][0]["embedding"]
    status, _, body = call(server, "POST", "/v1/embeddings", {"model": "emb", "input": []})
    assert status == 400


def test_not_found_and_method_not_allowed(server):
    status, resp, body = call(server, "GET", "/v1/nope")
    assert status == 404 and resp.getheader("Content-Type") == "application/json"
    assert_error(body, etype="invalid_request_error")
    status, _, body = call(server, "GET", "/totally/else")
    assert status == 404
    assert_error(body)
    status, resp, body = call(server, "GET", "/v1/chat/completions")
    assert status == 405
    assert_error(body, "method_not_allowed")
    assert "POST" in resp.getheader("Allow")
    status, _, body = call(server, "DELETE", "/health")
    assert status == 405
    status, _, body = call(server, "BREW", "/health")
    assert status == 405
    assert_error(body)


def test_malformed_json_and_bad_input(server):
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    try:
        status, resp, body = call(server, "POST", "/v1/chat/completions", b"{not json", conn=conn)
        assert status == 400
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["param"] is None
        assert "code" in body["error"]
        # same connection still works afterwards
        status, _, _ = call(server, "GET", "/health", conn=conn)
        assert status == 200
        for bad in ([1, 2], {"messages": "x"}, {"messages": []}, {"messages": [1]},
                    {"messages": [{"role": "user", "content": "a"}], "stream": "yes"},
                    {"messages": [{"role": "user", "content": "a"}], "max_tokens": 0}):
            status, _, body = call(server, "POST", "/v1/chat/completions", bad, conn=conn)
            assert status == 400, bad
            assert_error(body, etype="invalid_request_error")
        status, _, body = call(server, "POST", "/v1/chat/completions", b"\xff\xfe\x00garbage",
                               conn=conn)
        assert status == 400
        status, _, body = call(server, "POST", "/_mock/mode", b"nope", conn=conn)
        assert status == 400
        status, _, body = call(server, "POST", "/_mock/mode", {"mode": "bogus"}, conn=conn)
        assert status == 400
    finally:
        conn.close()
    # invalid Content-Length -> 400, connection closed
    sock = socket.create_connection(("127.0.0.1", server), timeout=10)
    sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    data = b""
    while True:
        b = sock.recv(65536)
        if not b:
            break
        data += b
    sock.close()
    assert data.startswith(b"HTTP/1.1 400")
    assert b"Connection: close" in data


def test_chunked_request_body(server):
    payload = json.dumps({"model": "m", "input": "chunked body here"}).encode()
    parts = [payload[:7], payload[7:20], payload[20:]]
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    conn.request("POST", "/v1/embeddings?x=1&y=2", body=iter(parts),
                 headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                 encode_chunked=True)
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert resp.status == 200
    assert body["usage"]["prompt_tokens"] == 3
    _, _, recs = call(server, "GET", "/_mock/requests")
    assert len(recs) == 1
    rec = recs[0]
    assert rec["method"] == "POST" and rec["path"] == "/v1/embeddings" and rec["query"] == "x=1&y=2"
    assert rec["headers"]["transfer-encoding"] == "chunked"
    assert rec["body"] == payload.decode()
    assert rec["body_sha256"] == hashlib.sha256(payload).hexdigest()


def test_oversized_bodies(server):
    # Content-Length far beyond the cap -> immediate 413, connection closed
    sock = socket.create_connection(("127.0.0.1", server), timeout=10)
    sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                 % (200 * 1024 * 1024))
    data = sock.recv(65536)
    sock.close()
    assert data.startswith(b"HTTP/1.1 413")
    assert b'"request_too_large"' in data
    # chunk larger than the cap -> 413
    sock = socket.create_connection(("127.0.0.1", server), timeout=10)
    sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"1000001\r\n")
    data = sock.recv(65536)
    sock.close()
    assert data.startswith(b"HTTP/1.1 413")


def test_keepalive_reuse(server):
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    try:
        status, _, _ = call(server, "GET", "/health", conn=conn)
        assert status == 200
        sock = conn.sock
        assert sock is not None
        local = sock.getsockname()
        for i in range(5):
            status, resp, body = call(server, "POST", "/v1/chat/completions",
                                      {"model": "m", "messages": [{"role": "user", "content": "k%d" % i}]},
                                      conn=conn)
            assert status == 200
            assert resp.getheader("Connection") is None
            assert conn.sock is sock and sock.getsockname() == local
        status, _, body = call(server, "POST", "/v1/embeddings", {"input": "z"}, conn=conn)
        assert status == 200 and conn.sock is sock
        status, _, body = call(server, "GET", "/v1/models", conn=conn)
        assert status == 200 and conn.sock is sock
    finally:
        conn.close()


def test_request_record_headers(server):
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    body = '{"model":"m","messages":[{"role":"user","content":"héllo"}]}'.encode()
    conn.putrequest("POST", "/v1/chat/completions")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("X-Modelgate-Tenant", "acme")
    conn.putheader("X-Dup", "one")
    conn.putheader("X-Dup", "two")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 200
    call(server, "GET", "/health")   # not recorded
    _, _, recs = call(server, "GET", "/_mock/requests")
    assert len(recs) == 1
    rec = recs[0]
    for key in ("method", "path", "query", "headers", "body", "body_sha256"):
        assert key in rec
    h = rec["headers"]
    assert all(k == k.lower() for k in h)
    assert h["x-modelgate-tenant"] == "acme"
    assert h["x-dup"] == "one, two"
    assert "x-api-key" not in h
    assert rec["body"] == body.decode("utf-8")
    assert rec["body_sha256"] == hashlib.sha256(body).hexdigest()
    # non-UTF-8 body is returned as latin-1
    raw = b'{"input":"\xe9"}'
    call(server, "POST", "/v1/embeddings", raw)
    _, _, recs = call(server, "GET", "/_mock/requests?limit=1")
    assert len(recs) == 1
    assert recs[0]["body"].encode("latin-1") == raw
    assert recs[0]["body_sha256"] == hashlib.sha256(raw).hexdigest()
    _, _, stats = call(server, "GET", "/_mock/stats")
    assert stats == {"requests": 2}


def test_mode_slow(server):
    status, _, mode = call(server, "POST", "/_mock/mode", {"mode": "slow", "delay_ms": 300})
    assert status == 200 and mode["mode"] == "slow" and mode["delay_ms"] == 300
    _, _, cur = call(server, "GET", "/_mock/mode")
    assert cur == mode
    t0 = time.monotonic()
    status, _, _ = call(server, "GET", "/v1/models")
    assert status == 200 and time.monotonic() - t0 >= 0.28
    t0 = time.monotonic()
    status, _, _ = call(server, "GET", "/health")        # not delayed
    call(server, "GET", "/_mock/stats")                  # not delayed
    assert status == 200 and time.monotonic() - t0 < 0.25


def test_mode_error(server):
    status, _, mode = call(server, "POST", "/_mock/mode", {"mode": "error", "status": 503})
    assert status == 200 and mode["mode"] == "error" and mode["status"] == 503
    status, resp, body = call(server, "POST", "/v1/chat/completions",
                              {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert status == 503
    assert resp.getheader("X-Mock-Server") == "selftest"
    assert_error(body, etype="server_error")
    status, _, body = call(server, "POST", "/_mock/mode", {"mode": "error"})
    status, _, body = call(server, "POST", "/v1/embeddings", {"input": "x"})
    assert status == 500
    assert_error(body)
    # control API and health unaffected
    status, _, body = call(server, "GET", "/health")
    assert status == 200
    status, _, body = call(server, "GET", "/_mock/stats")
    assert status == 200 and body == {"requests": 2}
    status, _, body = call(server, "POST", "/_mock/reset")
    assert status == 200
    status, _, _ = call(server, "GET", "/v1/models")
    assert status == 200
    _, _, cur = call(server, "GET", "/_mock/mode")
    assert cur["mode"] == "normal"


def test_mode_ratelimit(server):
    status, _, mode = call(server, "POST", "/_mock/mode", {"mode": "ratelimit", "retry_after": 7})
    assert status == 200 and mode["mode"] == "ratelimit"
    status, resp, body = call(server, "POST", "/v1/completions", {"prompt": "x"})
    assert status == 429
    assert resp.getheader("Retry-After") == "7"
    assert_error(body, code="rate_limit_exceeded")
    call(server, "POST", "/_mock/mode", {"mode": "ratelimit"})
    status, resp, _ = call(server, "GET", "/v1/models")
    assert status == 429 and resp.getheader("Retry-After") == "1"
    _, _, recs = call(server, "GET", "/_mock/requests")
    assert len(recs) == 2      # failed requests are still recorded
    call(server, "POST", "/_mock/reset")
    _, _, recs = call(server, "GET", "/_mock/requests")
    assert recs == []
    _, _, stats = call(server, "GET", "/_mock/stats")
    assert stats == {"requests": 0}


def test_cli_models_pidfile_and_sigterm(tmp_path):
    pidfile = tmp_path / "mock.pid"
    proc, port = start_server("--name", "other", "--model", "a", "--model", "b", "c",
                              pidfile=pidfile)
    try:
        assert int(pidfile.read_text()) == proc.pid
        status, resp, body = call(port, "GET", "/v1/models")
        assert [m["id"] for m in body["data"]] == ["a", "b", "c"]
        assert resp.getheader("X-Mock-Server") == "other"
        # an idle keep-alive connection must not prevent shutdown
        idle = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        call(port, "GET", "/health", conn=idle)
    finally:
        rc = stop_server(proc)
    assert rc == 0
    assert not pidfile.exists()
    idle.close()


def test_sigint_and_head_and_garbage_request_line():
    proc, port = start_server()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("HEAD", "/health")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b""
        assert resp.getheader("Content-Length") == "15"
        conn.close()
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"this is not http\r\n\r\n")
        data = sock.recv(65536)
        sock.close()
        assert data.startswith(b"HTTP/1.1 400") and b'"error"' in data
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=5) == 0
    finally:
        stop_server(proc)
