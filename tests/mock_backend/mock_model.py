#!/usr/bin/env python3
"""mock_model.py - a mock OpenAI-compatible model server for mod_modelgate tests.

Standard library only (runs with Debian's /usr/bin/python3, 3.11+).  Used by
the integration tests, the demo and the benchmark as a stand-in backend.

Command line
------------
    mock_model.py --host 127.0.0.1 --port PORT [--name NAME]
                  [--model MODEL_ID ...] [--pidfile FILE] [--quiet]
                  [--idle-timeout SECONDS]

``--port 0`` picks a free port.  Once the socket listens, exactly one line
``LISTENING <port>`` is printed to stdout (flushed); nothing else is ever
written to stdout.  ``--model`` may be repeated and/or given several ids
(default: mock-small mock-large).  Request logging goes to stderr unless
``--quiet``.  SIGTERM / SIGINT stop the server cleanly (exit status 0, the
pidfile is removed).

Every response carries ``X-Mock-Server: <name>``.

Endpoints
---------
    POST /v1/chat/completions   chat completion, optionally streamed (SSE)
    POST /v1/completions        legacy text completion, optionally streamed
    POST /v1/embeddings         8 deterministic floats per input
    GET  /v1/models             configured model ids
    GET  /v1/models/<id>        one model (404 model_not_found if unknown)
    GET  /health                {"status":"ok"}
    POST /_mock/mode            set the failure mode (see below)
    GET  /_mock/mode            current mode
    GET  /_mock/requests        recorded /v1 requests (optional ?limit=N)
    POST /_mock/reset           clear record and counters, mode -> normal
    GET  /_mock/stats           {"requests": <count of /v1 requests served>}

Unknown paths -> 404, known path with a wrong method -> 405 (with Allow),
malformed JSON -> 400, body over 16 MiB -> 413.  All errors use OpenAI's shape
``{"error":{"message":..,"type":..,"param":..,"code":..}}``.

Token counting rule (deterministic)
-----------------------------------
* A "token" is a whitespace-separated word (``str.split()``).
* chat: prompt_tokens = words across the contents of all messages (string
  contents, or the "text" of content parts), minimum 1.
  completions: words across all prompt strings (a token-id array counts its
  length), minimum 1.  embeddings: same rule over all inputs, minimum 1.
* The reply is ``"This is a mock reply from <name> to: "`` followed by the
  first 8 words of the last user message (chat) / of the last prompt
  (completions).  completion_tokens = number of words of the reply.
* If ``max_tokens`` (or ``max_completion_tokens``) is given and the reply has
  more words, the reply is truncated to max_tokens words and finish_reason is
  "length"; otherwise finish_reason is "stop".
* total_tokens = prompt_tokens + completion_tokens.

Streaming (``"stream": true``)
------------------------------
``text/event-stream`` with HTTP/1.1 chunked framing (one HTTP chunk per SSE
event, written and flushed separately): one ``data: {chunk}\\n\\n`` per reply
word (the first one also carries ``"role":"assistant"`` for chat), then a
final chunk with an empty delta and the finish_reason, then
``data: [DONE]\\n\\n``.  As OpenAI does, a stream carries usage only when the
request says ``"stream_options": {"include_usage": true}``: then every chunk
has ``"usage": null`` and one more chunk, with ``"choices": []`` and the
``usage`` object, comes before ``[DONE]``.  ``stream_chunk_delay_ms`` (see modes) is slept between
consecutive generated events (the words and the finish chunk); the usage chunk
and ``[DONE]`` follow the finish chunk at once, as OpenAI's and vLLM's do (a
gateway that asks for usage must not look one decoding step slower).  HTTP/1.0 clients get the same events without chunked
framing, and the connection is closed at the end.

Modes (POST /_mock/mode, global to the server instance)
-------------------------------------------------------
Body: ``{"mode": "normal"|"slow"|"error"|"ratelimit", "delay_ms": int,
"status": int, "retry_after": int, "stream_chunk_delay_ms": int,
"usage": null|"omit"|object, "headers": object, "reply_words": int,
"first_word_bytes": int, "line_end": "\\n"|"\\r\\n"|"\\r"}``.  Each call replaces the whole mode; omitted
fields take their defaults (mode "normal", delay_ms 0 - or 1000 for "slow" -,
status 500, retry_after 1, stream_chunk_delay_ms 0, usage null).  Returns the
new mode object.  ``usage`` plays a model server that reports usage badly:
"omit" sends none (neither in JSON answers nor in streams), an object is
sent verbatim wherever the real usage would be (negative, fractional or
absurd values, for the gateway's tests).  ``headers`` (name -> string) are
added to every /v1 answer (Set-Cookie, Cache-Control, for the cache's tests).
``reply_words`` (0..100000; 0: the rule above) makes every reply that many
words (the rule's words repeated; max_tokens still cuts it): a stream of
that many content events, for the benchmark.  ``first_word_bytes``
(0..64 MiB) pads the reply's first word with "x" to that many bytes: one
stream event that large (the gateway's bounded-memory tests).  ``line_end``
(default LF) ends a stream's lines with CRLF or CR instead, as the SSE
standard allows.

* normal     answer normally.
* slow       sleep delay_ms before answering each /v1 request.
* error      answer /v1 requests with ``status`` (400..599) and an error JSON.
* ratelimit  answer /v1 requests with 429, ``Retry-After: <retry_after>`` and
             an error with code "rate_limit_exceeded".
delay_ms > 0 is honoured in every mode; stream_chunk_delay_ms applies to
streaming responses in every mode.  The mode applies to every request whose
path is /v1 or under /v1/; /health and /_mock/* are never delayed or failed.

Request record
--------------
Every request to /v1 or /v1/... is counted and recorded (even when the mode
fails it): ``{"seq","method","path","query","http_version","peer","headers",
"body","body_sha256"}``; peer is the client's "host:port", so tests can tell
whether connections were reused; header names are lower-cased and repeated headers are
joined with ", "; body is the raw body decoded as UTF-8, or latin-1 if it is
not valid UTF-8 (body_sha256 is over the raw bytes).  The record keeps the
last 10,000 requests (and at most 256 MiB of bodies).
"""

import argparse
import base64
import hashlib
import json
import os
import queue
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 16 * 1024 * 1024          # larger bodies -> 413
DRAIN_LIMIT = 64 * 1024 * 1024       # oversized Content-Length bodies up to this are drained (keep-alive)
MAX_RECORDS = 10000                  # bounded request record
MAX_RECORD_BYTES = 256 * 1024 * 1024 # ... and bounded bytes of recorded bodies
MAX_LINE = 65536                     # chunk-size / trailer line limit
REPLY_USER_WORDS = 8
DEFAULT_MODELS = ["mock-small", "mock-large"]
MODEL_CREATED = 1700000000           # fixed "created" for /v1/models (deterministic)
MODES = ("normal", "slow", "error", "ratelimit")
SLOW_DEFAULT_DELAY_MS = 1000
MAX_DELAY_MS = 600000
MAX_REPLY_WORDS = 100000

_JSON_SEP = (",", ":")


def _dumps(obj):
    return json.dumps(obj, separators=_JSON_SEP).encode("ascii")


class RequestError(Exception):
    """An error to report to the client as an OpenAI-style error JSON."""

    def __init__(self, status, message, code=None, param=None, etype=None,
                 headers=None, close=False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.etype = etype or ("server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers or []
        self.close = close


class ClientGone(Exception):
    """The client disconnected (or sent a truncated request); just close."""


def error_body(message, etype="invalid_request_error", param=None, code=None):
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


# --------------------------------------------------------------------------
# deterministic "model" logic
# --------------------------------------------------------------------------

def content_text(content):
    """Text of a message content: a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, str):
                parts.append(p)
            elif isinstance(p, dict) and isinstance(p.get("text"), str):
                parts.append(p["text"])
        return " ".join(parts)
    return ""


def make_reply(name, user_words, max_tokens, mode=None):
    """Return (reply_words, finish_reason).  The mode may ask for a reply
    of `reply_words` words, and for a first word `first_word_bytes` long."""
    words = ("This is a mock reply from %s to:" % name).split() + list(user_words[:REPLY_USER_WORDS])
    if mode and mode.get("reply_words"):
        n = mode["reply_words"]
        words = (words * (n // len(words) + 1))[:n]
    if mode and mode.get("first_word_bytes", 0) > len(words[0]):
        words[0] += "x" * (mode["first_word_bytes"] - len(words[0]))
    if max_tokens is not None and len(words) > max_tokens:
        return words[:max_tokens], "length"
    return words, "stop"


def embedding_for(data):
    """8 deterministic floats in [-1, 1) derived from sha256 of the input."""
    digest = hashlib.sha256(data).digest()
    return [round(int.from_bytes(digest[i:i + 4], "big") / 2147483648.0 - 1.0, 6)
            for i in range(0, 32, 4)]


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_token_list(v):
    return isinstance(v, list) and len(v) > 0 and all(_is_int(t) for t in v)


# --------------------------------------------------------------------------
# shared server state
# --------------------------------------------------------------------------

def default_mode():
    return {"mode": "normal", "delay_ms": 0, "status": 500, "retry_after": 1,
            "stream_chunk_delay_ms": 0, "usage": None, "headers": {},
            "reply_words": 0, "first_word_bytes": 0, "line_end": "\n"}


def parse_mode(req):
    if not isinstance(req, dict):
        raise RequestError(400, "Mode request body must be a JSON object.", "invalid_type")
    mode = req.get("mode", "normal")
    if mode is None:
        mode = "normal"
    if mode not in MODES:
        raise RequestError(400, "Unknown mode %r; expected one of %s." % (mode, ", ".join(MODES)),
                           "invalid_value", "mode")
    new = default_mode()
    new["mode"] = mode
    if mode == "slow":
        new["delay_ms"] = SLOW_DEFAULT_DELAY_MS
    limits = {"delay_ms": (0, MAX_DELAY_MS), "status": (400, 599),
              "retry_after": (0, 86400), "stream_chunk_delay_ms": (0, MAX_DELAY_MS),
              "reply_words": (0, MAX_REPLY_WORDS), "first_word_bytes": (0, MAX_BODY * 4)}
    for key, (lo, hi) in limits.items():
        if key in req and req[key] is not None:
            v = req[key]
            if not _is_int(v) or not lo <= v <= hi:
                raise RequestError(400, "%s must be an integer in [%d, %d]." % (key, lo, hi),
                                   "invalid_value", key)
            new[key] = v
    usage = req.get("usage")
    if usage is not None and usage != "omit" and not isinstance(usage, dict):
        raise RequestError(400, "usage must be null, \"omit\" or an object.", "invalid_value",
                           "usage")
    new["usage"] = usage
    headers = req.get("headers") or {}
    if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise RequestError(400, "headers must be an object of strings.", "invalid_value",
                           "headers")
    new["headers"] = headers
    line_end = req.get("line_end", "\n")
    if line_end not in ("\n", "\r\n", "\r"):
        raise RequestError(400, "line_end must be \"\\n\", \"\\r\\n\" or \"\\r\".",
                           "invalid_value", "line_end")
    new["line_end"] = line_end
    return new


class MockState:
    def __init__(self, name, models):
        self.name = name
        self.models = list(models)
        self.lock = threading.Lock()
        self.records = deque()
        self.record_bytes = 0
        self.served = 0
        self.seq = 0
        self.ids = 0
        self.mode = default_mode()

    def next_id(self):
        with self.lock:
            self.ids += 1
            return self.ids

    def get_mode(self):
        with self.lock:
            return self.mode

    def set_mode(self, mode):
        with self.lock:
            self.mode = mode
            return dict(mode)

    def reset(self):
        with self.lock:
            self.records.clear()
            self.record_bytes = 0
            self.served = 0
            self.seq = 0
            self.mode = default_mode()

    def record(self, rec, body):
        with self.lock:
            self.seq += 1
            self.served += 1
            rec["seq"] = self.seq
            self.records.append((rec, body))
            self.record_bytes += len(body)
            while self.records and (len(self.records) > MAX_RECORDS or
                                    (self.record_bytes > MAX_RECORD_BYTES and len(self.records) > 1)):
                _, old = self.records.popleft()
                self.record_bytes -= len(old)

    def snapshot(self, limit=None):
        with self.lock:
            items = list(self.records)
        if limit is not None:
            items = items[-limit:] if limit > 0 else []
        out = []
        for rec, body in items:
            r = dict(rec)
            try:
                r["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                r["body"] = body.decode("latin-1")
            r["body_sha256"] = hashlib.sha256(body).hexdigest()
            out.append(r)
        return out

    def stats(self):
        with self.lock:
            return {"requests": self.served}


class Logger:
    """Non-blocking logging to stderr: a full/blocked stderr never stalls requests."""

    def __init__(self, quiet):
        self.quiet = quiet
        self.q = queue.Queue(maxsize=10000)
        t = threading.Thread(target=self._run, name="mock-logger", daemon=True)
        t.start()

    def _put(self, msg):
        try:
            self.q.put_nowait(msg)
        except queue.Full:
            pass

    def request(self, msg):
        if not self.quiet:
            self._put(msg)

    def error(self, msg):
        self._put(msg)

    def drain(self, timeout):
        deadline = time.monotonic() + timeout
        while not self.q.empty() and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self):
        while True:
            msg = self.q.get()
            try:
                sys.stderr.write(msg if msg.endswith("\n") else msg + "\n")
                sys.stderr.flush()
            except Exception:
                pass


# --------------------------------------------------------------------------
# HTTP handling
# --------------------------------------------------------------------------

def split_target(target):
    """Return (path, raw_query) of a request target (origin- or absolute-form)."""
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        return parts.path or "/", parts.query
    target = target.split("#", 1)[0]
    path, _, query = target.partition("?")
    return path, query


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-model/1.0"
    sys_version = ""
    # Errors on unparsable request lines still get a status line and headers.
    default_request_version = "HTTP/1.0"
    disable_nagle_algorithm = True
    timeout = None   # overridden by --idle-timeout

    # Any method (PUT, DELETE, PATCH, OPTIONS, FOO, ...) goes to _dispatch so
    # that unknown methods get a JSON 404/405 rather than an HTML 501.
    def __getattr__(self, name):
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def version_string(self):
        return self.server_version

    def log_message(self, format, *args):
        self.server.logger.request("%s - - [%s] %s" % (
            self.address_string(), self.log_date_time_string(), format % args))

    def log_error(self, format, *args):
        self.log_message(format, *args)

    # ---- low-level response writing ------------------------------------

    def _begin(self, status, content_type, headers, close):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("X-Mock-Server", self.server.state.name)
        for k, v in headers:
            self.send_header(k, v)
        mode = getattr(self, "_mode", None)
        if mode and mode.get("headers") and (self.path == "/v1" or self.path.startswith("/v1/")):
            for k, v in mode["headers"].items():
                self.send_header(k, v)
        if close:
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        elif self.request_version == "HTTP/1.0":
            self.send_header("Connection", "keep-alive")

    def send_body(self, status, body, content_type="application/json", headers=(), close=False):
        """Send a complete response with a single write."""
        self._begin(status, content_type, headers, close)
        self.send_header("Content-Length", str(len(body)))
        self._sent = True
        if hasattr(self, "_headers_buffer"):
            self._headers_buffer.append(b"\r\n")
            if self.command != "HEAD":
                self._headers_buffer.append(body)
            self.flush_headers()
        elif self.command != "HEAD":   # HTTP/0.9 style: no headers at all
            self.wfile.write(body)

    def send_json(self, status, obj, headers=(), close=False):
        self.send_body(status, _dumps(obj), headers=headers, close=close)

    def send_request_error(self, err):
        self.send_json(err.status, error_body(err.message, err.etype, err.param, err.code),
                       headers=err.headers, close=err.close)

    def send_error(self, code, message=None, explain=None):
        """Replaces BaseHTTPRequestHandler.send_error (HTML) with a JSON error."""
        if message is None:
            message = self.responses.get(code, ("Error",))[0]
        codes = {400: "bad_request", 408: "request_timeout", 413: "request_too_large",
                 414: "uri_too_long", 431: "headers_too_large", 501: "not_implemented",
                 505: "http_version_not_supported"}
        etype = "server_error" if code >= 500 else "invalid_request_error"
        try:
            self.send_json(code, error_body(message, etype, None, codes.get(code)), close=True)
        except OSError:
            self.close_connection = True

    def handle_expect_100(self):
        # Refuse an oversized body before the client sends it.
        cl = self.headers.get("Content-Length", "").strip()
        if cl.isdigit() and int(cl) > MAX_BODY:
            self.send_request_error(RequestError(
                413, "Request body too large (limit %d bytes)." % MAX_BODY,
                "request_too_large", close=True))
            return False
        return super().handle_expect_100()

    # ---- request body ----------------------------------------------------

    def _read_exact(self, n):
        data = self.rfile.read(n)
        if data is None or len(data) < n:
            raise ClientGone()
        return data

    def _read_line(self):
        line = self.rfile.readline(MAX_LINE + 1)
        if not line:
            raise ClientGone()
        if len(line) > MAX_LINE or not line.endswith(b"\n"):
            raise RequestError(400, "Malformed chunked request body.", "bad_chunked_encoding", close=True)
        return line

    def _read_chunked(self):
        parts = []
        total = 0
        while True:
            line = self._read_line()
            size_s = line.split(b";", 1)[0].strip()
            if not size_s or any(c not in b"0123456789abcdefABCDEF" for c in size_s):
                raise RequestError(400, "Malformed chunk size in chunked request body.",
                                   "bad_chunked_encoding", close=True)
            size = int(size_s, 16)
            if size == 0:
                break
            total += size
            if total > MAX_BODY:
                raise RequestError(413, "Request body too large (limit %d bytes)." % MAX_BODY,
                                   "request_too_large", close=True)
            parts.append(self._read_exact(size))
            if self._read_line().strip() != b"":
                raise RequestError(400, "Missing CRLF after chunk data.", "bad_chunked_encoding",
                                   close=True)
        for _ in range(1000):                     # trailer section
            if self._read_line().strip() == b"":
                return b"".join(parts)
        raise RequestError(400, "Too many trailer lines.", "bad_chunked_encoding", close=True)

    def _read_body(self):
        te_values = self.headers.get_all("Transfer-Encoding") or []
        codings = [c.strip().lower() for v in te_values for c in v.split(",") if c.strip()]
        if codings:
            if codings != ["chunked"]:
                raise RequestError(400, "Unsupported Transfer-Encoding %r." % ", ".join(codings),
                                   "unsupported_transfer_encoding", close=True)
            return self._read_chunked()
        cl_values = self.headers.get_all("Content-Length") or []
        if not cl_values:
            return b""
        vals = {c.strip() for v in cl_values for c in v.split(",")}
        if len(vals) != 1 or not next(iter(vals)).isdigit():
            raise RequestError(400, "Invalid Content-Length header.", "invalid_content_length",
                               close=True)
        length = int(next(iter(vals)))
        if length > MAX_BODY:
            if length <= DRAIN_LIMIT:
                remaining = length
                while remaining:
                    chunk = self.rfile.read(min(remaining, 65536))
                    if not chunk:
                        raise ClientGone()
                    remaining -= len(chunk)
                close = False
            else:
                close = True
            raise RequestError(413, "Request body too large (limit %d bytes)." % MAX_BODY,
                               "request_too_large", close=close)
        return self._read_exact(length) if length else b""

    # ---- dispatch ----------------------------------------------------------

    def _dispatch(self):
        self._sent = False
        try:
            self._handle()
        except ClientGone:
            self.close_connection = True
        except RequestError as err:
            if self._sent:
                self.close_connection = True
            else:
                try:
                    self.send_request_error(err)
                except OSError:
                    self.close_connection = True
        except (ConnectionError, socket.timeout):
            self.close_connection = True
        except Exception:
            self.close_connection = True
            self.server.logger.error("mock_model: internal error handling %s %s\n%s" % (
                self.command, self.path, traceback.format_exc()))
            if not self._sent:
                try:
                    self.send_json(500, error_body("Internal mock server error.", "server_error",
                                                   None, "internal_error"), close=True)
                except OSError:
                    pass

    def _handle(self):
        state = self.server.state
        path, query = split_target(self.path)
        body = self._read_body()
        method = self.command

        self._mode = state.get_mode()
        if path == "/v1" or path.startswith("/v1/"):
            headers = {}
            for k, v in self.headers.items():
                k = k.lower()
                headers[k] = headers[k] + ", " + v if k in headers else v
            state.record({"method": method, "path": path, "query": query,
                          "http_version": self.request_version,
                          "peer": "%s:%d" % self.client_address[:2],
                          "headers": headers}, body)
            mode = self._mode
            if mode["delay_ms"] > 0:
                time.sleep(mode["delay_ms"] / 1000.0)
            if mode["mode"] == "error":
                st = mode["status"]
                raise RequestError(st, "Mock server error (mode=error, status=%d)." % st, "mock_error")
            if mode["mode"] == "ratelimit":
                ra = mode["retry_after"]
                raise RequestError(429, "Rate limit exceeded (mock). Please retry after %d seconds." % ra,
                                   "rate_limit_exceeded", etype="requests",
                                   headers=[("Retry-After", str(ra))])

        route = ROUTES.get(path)
        if route is None and path.startswith("/v1/models/") and len(path) > len("/v1/models/"):
            route = {"GET": Handler.h_model}
        if route is None:
            code = "unknown_url" if path == "/v1" or path.startswith("/v1/") else "not_found"
            raise RequestError(404, "Invalid URL (%s %s)" % (method, path), code)
        fn = route.get(method)
        if fn is None and method == "HEAD":
            fn = route.get("GET")
        if fn is None:
            allowed = sorted(route) + (["HEAD"] if "GET" in route else [])
            raise RequestError(405, "Method %s not allowed for %s (allowed: %s)."
                               % (method, path, ", ".join(allowed)), "method_not_allowed",
                               headers=[("Allow", ", ".join(allowed))])
        fn(self, path, query, body)

    # ---- helpers for the endpoints ------------------------------------------

    @staticmethod
    def parse_json_object(body):
        if not body.strip():
            raise RequestError(400, "We could not parse the JSON body of your request: the body is empty.",
                               "invalid_json")
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError) as e:
            raise RequestError(400, "We could not parse the JSON body of your request (%s)." % e,
                               "invalid_json")
        if not isinstance(obj, dict):
            raise RequestError(400, "The JSON body of your request must be an object.", "invalid_type")
        return obj

    def _model_param(self, req):
        model = req.get("model")
        if model is None:
            return self.server.state.models[0] if self.server.state.models else "mock"
        if not isinstance(model, str):
            raise RequestError(400, "'model' must be a string.", "invalid_type", "model")
        return model

    def _usage(self, real):
        """What this answer reports as usage: the real counts, none (None)
        or the mode's override."""
        override = self._mode.get("usage")
        if override == "omit":
            return None
        return override if isinstance(override, dict) else real

    @staticmethod
    def _include_usage(req):
        opts = req.get("stream_options")
        if opts is None:
            return False
        if not isinstance(opts, dict):
            raise RequestError(400, "'stream_options' must be an object.", "invalid_type",
                               "stream_options")
        inc = opts.get("include_usage", False)
        if not isinstance(inc, bool):
            raise RequestError(400, "'stream_options.include_usage' must be a boolean.",
                               "invalid_type", "stream_options.include_usage")
        return inc

    @staticmethod
    def _stream_param(req):
        stream = req.get("stream", False)
        if stream is None:
            return False
        if not isinstance(stream, bool):
            raise RequestError(400, "'stream' must be a boolean.", "invalid_type", "stream")
        return stream

    @staticmethod
    def _max_tokens_param(req):
        for key in ("max_tokens", "max_completion_tokens"):
            v = req.get(key)
            if v is None:
                continue
            if not _is_int(v) or v < 1:
                raise RequestError(400, "'%s' must be an integer >= 1." % key, "invalid_value", key)
            return v
        return None

    def _stream(self, events, paced):
        """Send SSE events (bytes), one HTTP chunk each, sleeping between the
        first `paced` of them: what the model generates (its tokens and the
        finish chunk) comes a decoding step apart; what the server adds after
        generation (the usage chunk, [DONE]) follows at once, as OpenAI's and
        vLLM's do."""
        http10 = self.request_version == "HTTP/1.0"
        headers = [("Cache-Control", "no-cache")]
        if http10:
            self.close_connection = True
        else:
            headers.append(("Transfer-Encoding", "chunked"))
        self._begin(200, "text/event-stream", headers, False)
        self.end_headers()
        self._sent = True
        delay = self._mode["stream_chunk_delay_ms"] / 1000.0
        w = self.wfile
        if self._mode.get("line_end", "\n") != "\n":
            # JSON has no raw line ends: only the SSE framing's change
            events = [ev.replace(b"\n", self._mode["line_end"].encode()) for ev in events]
        for i, ev in enumerate(events):
            if i and i < paced and delay > 0:
                time.sleep(delay)
            if http10:
                w.write(ev)
            else:
                w.write(b"%x\r\n%s\r\n" % (len(ev), ev))
            w.flush()
        if not http10:
            w.write(b"0\r\n\r\n")
            w.flush()

    @staticmethod
    def _sse(obj):
        return b"data: " + _dumps(obj) + b"\n\n"

    # ---- endpoints -------------------------------------------------------------

    def h_chat(self, path, query, body):
        state = self.server.state
        req = self.parse_json_object(body)
        messages = req.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "'messages' must be a non-empty array.", "invalid_value", "messages")
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                raise RequestError(400, "messages[%d] must be an object." % i, "invalid_type",
                                   "messages[%d]" % i)
        model = self._model_param(req)
        stream = self._stream_param(req)
        include_usage = stream and self._include_usage(req)
        max_tokens = self._max_tokens_param(req)

        prompt_tokens = max(1, sum(len(content_text(m.get("content")).split()) for m in messages))
        last_user = None
        for m in reversed(messages):
            if m.get("role") == "user":
                last_user = m
                break
        user_words = content_text(last_user.get("content")).split() if last_user else []
        words, finish = make_reply(state.name, user_words, max_tokens, self._mode)
        usage = self._usage({"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                             "total_tokens": prompt_tokens + len(words)})
        cid = "chatcmpl-%d" % state.next_id()
        created = int(time.time())

        if not stream:
            answer = {
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0,
                             "message": {"role": "assistant", "content": " ".join(words)},
                             "logprobs": None, "finish_reason": finish}]}
            if usage is not None:
                answer["usage"] = usage
            self.send_json(200, answer)
            return

        def chunk(delta, finish_reason):
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                "finish_reason": finish_reason}]}
            if include_usage:
                obj["usage"] = None
            return self._sse(obj)

        events = []
        for i, w in enumerate(words):
            if i == 0:
                events.append(chunk({"role": "assistant", "content": w}, None))
            else:
                events.append(chunk({"content": " " + w}, None))
        events.append(chunk({}, finish))
        paced = len(events)
        if include_usage and usage is not None:
            events.append(self._sse({"id": cid, "object": "chat.completion.chunk",
                                     "created": created, "model": model, "choices": [],
                                     "usage": usage}))
        events.append(b"data: [DONE]\n\n")
        self._stream(events, paced)

    def h_completions(self, path, query, body):
        state = self.server.state
        req = self.parse_json_object(body)
        prompt = req.get("prompt")
        if isinstance(prompt, str):
            prompts = [prompt]
        elif _is_token_list(prompt):
            prompts = [prompt]
        elif isinstance(prompt, list) and prompt and all(
                isinstance(p, str) or _is_token_list(p) for p in prompt):
            prompts = prompt
        else:
            raise RequestError(400, "'prompt' must be a string, an array of strings or an array of "
                               "token arrays.", "invalid_value", "prompt")
        model = self._model_param(req)
        stream = self._stream_param(req)
        include_usage = stream and self._include_usage(req)
        max_tokens = self._max_tokens_param(req)

        prompt_tokens = max(1, sum(len(p.split()) if isinstance(p, str) else len(p) for p in prompts))
        last = prompts[-1]
        user_words = last.split() if isinstance(last, str) else []
        words, finish = make_reply(state.name, user_words, max_tokens, self._mode)
        usage = self._usage({"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                             "total_tokens": prompt_tokens + len(words)})
        cid = "cmpl-%d" % state.next_id()
        created = int(time.time())

        if not stream:
            answer = {
                "id": cid, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": " ".join(words), "logprobs": None,
                             "finish_reason": finish}]}
            if usage is not None:
                answer["usage"] = usage
            self.send_json(200, answer)
            return

        def chunk(text, finish_reason):
            obj = {"id": cid, "object": "text_completion", "created": created, "model": model,
                   "choices": [{"index": 0, "text": text, "logprobs": None,
                                "finish_reason": finish_reason}]}
            if include_usage:
                obj["usage"] = None
            return self._sse(obj)

        events = [chunk(w if i == 0 else " " + w, None) for i, w in enumerate(words)]
        events.append(chunk("", finish))
        paced = len(events)
        if include_usage and usage is not None:
            events.append(self._sse({"id": cid, "object": "text_completion", "created": created,
                                     "model": model, "choices": [], "usage": usage}))
        events.append(b"data: [DONE]\n\n")
        self._stream(events, paced)

    def h_embeddings(self, path, query, body):
        req = self.parse_json_object(body)
        inp = req.get("input")
        if isinstance(inp, str) or _is_token_list(inp):
            inputs = [inp]
        elif isinstance(inp, list) and inp and all(isinstance(x, str) or _is_token_list(x) for x in inp):
            inputs = inp
        else:
            raise RequestError(400, "'input' must be a string, an array of strings or an array of "
                               "token arrays.", "invalid_value", "input")
        fmt = req.get("encoding_format", "float")
        if fmt is None:
            fmt = "float"
        if fmt not in ("float", "base64"):
            raise RequestError(400, "'encoding_format' must be 'float' or 'base64'.", "invalid_value",
                               "encoding_format")
        model = self._model_param(req)
        data = []
        tokens = 0
        for i, x in enumerate(inputs):
            if isinstance(x, str):
                raw = x.encode("utf-8", "surrogatepass")
                tokens += len(x.split())
            else:
                raw = _dumps(x)
                tokens += len(x)
            vec = embedding_for(raw)
            if fmt == "base64":
                vec = base64.b64encode(struct.pack("<8f", *vec)).decode("ascii")
            data.append({"object": "embedding", "index": i, "embedding": vec})
        tokens = max(1, tokens)
        answer = {"object": "list", "data": data, "model": model}
        usage = self._usage({"prompt_tokens": tokens, "total_tokens": tokens})
        if usage is not None:
            answer["usage"] = usage
        self.send_json(200, answer)

    def _model_obj(self, mid):
        return {"id": mid, "object": "model", "created": MODEL_CREATED,
                "owned_by": self.server.state.name}

    def h_models(self, path, query, body):
        self.send_json(200, {"object": "list",
                             "data": [self._model_obj(m) for m in self.server.state.models]})

    def h_model(self, path, query, body):
        mid = path[len("/v1/models/"):]
        if mid not in self.server.state.models:
            raise RequestError(404, "The model '%s' does not exist" % mid, "model_not_found", "model")
        self.send_json(200, self._model_obj(mid))

    def h_health(self, path, query, body):
        self.send_json(200, {"status": "ok"})

    def h_mode_set(self, path, query, body):
        mode = parse_mode(self.parse_json_object(body))
        self.send_json(200, self.server.state.set_mode(mode))

    def h_mode_get(self, path, query, body):
        self.send_json(200, dict(self.server.state.get_mode()))

    def h_requests(self, path, query, body):
        limit = None
        q = parse_qs(query)
        if "limit" in q:
            v = q["limit"][-1]
            if not v.isdigit():
                raise RequestError(400, "'limit' must be a non-negative integer.", "invalid_value", "limit")
            limit = int(v)
        self.send_json(200, self.server.state.snapshot(limit))

    def h_reset(self, path, query, body):
        self.server.state.reset()
        self.send_json(200, {"status": "ok", "mode": dict(self.server.state.get_mode())})

    def h_stats(self, path, query, body):
        self.send_json(200, self.server.state.stats())


ROUTES = {
    "/v1/chat/completions": {"POST": Handler.h_chat},
    "/v1/completions": {"POST": Handler.h_completions},
    "/v1/embeddings": {"POST": Handler.h_embeddings},
    "/v1/models": {"GET": Handler.h_models},
    "/health": {"GET": Handler.h_health},
    "/_mock/mode": {"POST": Handler.h_mode_set, "GET": Handler.h_mode_get},
    "/_mock/requests": {"GET": Handler.h_requests},
    "/_mock/reset": {"POST": Handler.h_reset},
    "/_mock/stats": {"GET": Handler.h_stats},
}


class MockServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address, handler, state, logger):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.state = state
        self.logger = logger
        super().__init__(address, handler)

    def server_bind(self):
        # Skip HTTPServer.server_bind's getfqdn() (a possibly slow DNS lookup).
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = self.server_address[1]

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout, ClientGone)):
            return
        self.logger.error("mock_model: error on connection from %s\n%s" % (
            client_address, traceback.format_exc()))


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def _ignore_signal(signum, frame):
    pass


def parse_args(argv):
    p = argparse.ArgumentParser(description="Mock OpenAI-compatible model server (stdlib only).")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free port (default 0)")
    p.add_argument("--name", default="mock", help="server instance name, sent as X-Mock-Server")
    p.add_argument("--model", dest="models", action="extend", nargs="+", metavar="MODEL_ID",
                   help="model id(s) to serve; repeatable (default: %s)" % " ".join(DEFAULT_MODELS))
    p.add_argument("--pidfile", help="write the process id to this file (removed on exit)")
    p.add_argument("--quiet", action="store_true", help="no request logging on stderr")
    p.add_argument("--idle-timeout", type=float, default=0,
                   help="close idle keep-alive connections after this many seconds (0 = never)")
    args = p.parse_args(argv)
    if not 0 <= args.port <= 65535:
        p.error("--port must be in 0..65535")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    models = args.models or list(DEFAULT_MODELS)

    # Stop signals are handled synchronously: block them in every thread
    # (threads inherit the mask, so block before creating any) and wait for
    # them with sigwait() in the main thread.  A real handler is installed
    # first because an inherited SIG_IGN (e.g. SIGINT in background jobs)
    # would make the kernel discard the signal.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    for sig in stop_signals:
        signal.signal(sig, _ignore_signal)
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)

    state = MockState(args.name, models)
    logger = Logger(args.quiet)
    Handler.timeout = args.idle_timeout if args.idle_timeout > 0 else None
    try:
        server = MockServer((args.host, args.port), Handler, state, logger)
    except OSError as e:
        sys.stderr.write("mock_model: cannot listen on %s:%d: %s\n" % (args.host, args.port, e))
        return 1
    port = server.server_address[1]
    wrote_pid = False
    rc = 0
    try:
        if args.pidfile:
            with open(args.pidfile, "w") as f:
                f.write("%d\n" % os.getpid())
            wrote_pid = True
        serve = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                 name="mock-accept", daemon=True)
        serve.start()
        sys.stdout.write("LISTENING %d\n" % port)
        sys.stdout.flush()
        signal.sigwait(stop_signals)
        server.shutdown()
    except Exception:
        sys.stderr.write("mock_model: fatal error\n%s" % traceback.format_exc())
        rc = 1
    finally:
        try:
            server.server_close()
        except Exception:
            pass
        if wrote_pid:
            try:
                with open(args.pidfile) as f:
                    if f.read().strip() == str(os.getpid()):
                        os.unlink(args.pidfile)
            except OSError:
                pass
        logger.drain(0.5)
    return rc


def _exit(rc):
    """Exit at once: in-flight daemon handler threads must not delay or break shutdown."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(rc)


if __name__ == "__main__":
    _exit(main())
