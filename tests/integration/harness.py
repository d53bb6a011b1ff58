"""harness.py - start and stop a real apache2 and the mock model server.

Everything binds to 127.0.0.1 on ports picked free at start.  Processes are
started in the foreground (apache2 -D FOREGROUND) as children of the test
run, so they are stopped and reaped by PID, never left behind.
"""
import configparser
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = configparser.ConfigParser()
CONFIG.read(os.path.join(HERE, "config.ini"))
G = CONFIG["global"] if CONFIG.has_section("global") else {}

SRCDIR = G.get("srcdir", os.path.abspath(os.path.join(HERE, "..", "..")))
HTTPD = G.get("httpd", "/usr/sbin/apache2")
MODULE = G.get("module", os.path.join(SRCDIR, ".libs", "mod_modelgate.so"))
KEYTOOL = G.get("keytool", os.path.join(SRCDIR, "modelgate-key"))
REDIS_MODULE = G.get("redis_module", os.path.join(SRCDIR, ".libs", "mod_modelgate_redis.so"))
CACHE_MODULE = G.get("cache_module", os.path.join(SRCDIR, ".libs", "mod_modelgate_cache.so"))
JWT_MODULE = G.get("jwt_module", os.path.join(SRCDIR, ".libs", "mod_modelgate_jwt.so"))
REDIS_SERVER = "/usr/bin/redis-server"
HTTPD_MODDIR = G.get("httpd_moddir", "/usr/lib/apache2/modules")
CONF_EXAMPLES = os.path.join(SRCDIR, "conf-examples")
MOCK = os.path.join(SRCDIR, "tests", "mock_backend", "mock_model.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

# conf-examples/keys/quickstart.keys and its keys (the digests are in the file).
QUICKSTART_KEYS = os.path.join(CONF_EXAMPLES, "keys", "quickstart.keys")
DEMO_KEY = "mg-quickstart-demo-key"
OTHER_KEY = "mg-quickstart-other-key"
PRO_KEY = "mg-quickstart-pro-key"

START_TIMEOUT = 30.0


def routed_v1(keys, backend_port):
    """The gateway part most generated configurations share: a key file,
    one upstream, and /v1/ authenticated, limited and routed to it."""
    return """
ModelGateKeyFile "%s"
ModelGateUpstream model http://127.0.0.1:%d
<Location "/v1/">
    Require all granted
    ModelGate On
    ModelGateRoute model
</Location>
""" % (keys, backend_port)


def two_models(backend, backend2, tiers, big_opts="", extra="", large_as=None):
    """Two upstreams, `small` (backend) and `big` (backend2, with
    `big_opts`), serving the models mock-small and mock-large (under the
    name `large_as` if given); /v1/ routed to small by default."""
    return """
%s
ModelGateKeyFile "%s"
ModelGateUpstream small http://127.0.0.1:%d
ModelGateUpstream big   http://127.0.0.1:%d %s
ModelGateModel mock-small small
ModelGateModel mock-large big%s
%s
<Location "/v1/">
    Require all granted
    ModelGate On
    ModelGateRoute small
</Location>
""" % (tiers, QUICKSTART_KEYS, backend.port, backend2.port, big_opts,
       " served_as=" + large_as if large_as else "", extra)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout=START_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def stop_process(proc, sig=signal.SIGTERM, timeout=30.0):
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def allow_search(path):
    while path not in ("/", ""):
        st = os.stat(path)
        if st.st_uid == os.getuid() and not st.st_mode & 0o001:
            os.chmod(path, (st.st_mode & 0o7777) | 0o011)
        path = os.path.dirname(path)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # lower-case name -> value
        self.body = body

    @property
    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers, self.body[:200])


def request(port, method, path, headers=None, body=None, timeout=30.0, conn=None):
    """One HTTP/1.1 request; with `conn` the connection is reused."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        hdrs = {}
        for k, v in resp.getheaders():
            k = k.lower()
            hdrs[k] = v if k not in hdrs else hdrs[k] + ", " + v
        return Response(resp.status, hdrs, data)
    finally:
        if own:
            conn.close()


CHAT = {"model": "mock-small", "messages": [{"role": "user", "content": "is this good?"}]}


class MockBackend:
    """tests/mock_backend/mock_model.py on a free port."""

    def __init__(self, name="mock"):
        self.name = name
        self.proc = subprocess.Popen(
            [PYTHON, MOCK, "--host", "127.0.0.1", "--port", "0", "--name", name, "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True)
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "LISTENING":
            stop_process(self.proc)
            raise RuntimeError("mock backend did not start: %r" % line)
        self.port = int(line[1])

    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def control(self, method, path, body=None):
        return request(self.port, method, path, body=body)

    def reset(self):
        assert self.control("POST", "/_mock/reset").status == 200

    def mode(self, **mode):
        assert self.control("POST", "/_mock/mode", body=mode).status == 200

    def requests(self):
        return self.control("GET", "/_mock/requests").json

    def count(self):
        return self.control("GET", "/_mock/stats").json["requests"]

    def stop(self):
        stop_process(self.proc)


class RedisServer:
    """A redis-server of the test's own on a free loopback port, no disk."""

    def __init__(self, rundir, password=None):
        self.rundir = str(rundir)
        os.makedirs(self.rundir, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.proc = None

    def start(self):
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.rundir,
                "--daemonize", "no", "--protected-mode", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        if not wait_port(self.port, self.proc):
            raise RuntimeError("redis-server did not start")
        return self

    def stop(self):
        stop_process(self.proc)
        self.proc = None

    def command(self, *args):
        """One command in RESP, for the tests' own checks."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            if self.password:
                s.sendall(self._encode("AUTH", self.password))
                s.recv(1024)
            s.sendall(self._encode(*args))
            return s.recv(65536).decode(errors="replace")

    @staticmethod
    def _encode(*args):
        out = "*%d\r\n" % len(args)
        for a in args:
            a = str(a)
            out += "$%d\r\n%s\r\n" % (len(a.encode()), a)
        return out.encode()


# Lines in error.log that are never acceptable: a test lists the ones it
# provokes on purpose.
BAD_LOG = re.compile(r"\[(?:[a-z_0-9]+:)?(error|crit|alert|emerg)\]")
ALWAYS_OK = [
    r"AH00558",   # could not determine the server's fully qualified domain name
]
# What httpd itself may log while it stops or restarts (children stop),
# and only from then on: the event MPM
# failing to re-arm a keep-alive or lingering-close connection when its
# pollset is going away.
SHUTDOWN_NOISE = [
    r"AH03093",   # process_socket: apr_pollset_add failure for keep alive
    r"AH03092",   # start/process_lingering_close: apr_pollset_add failure
]


class Gateway:
    """A real apache2 (Debian's) running a configuration in its own dir."""

    def __init__(self, rundir, backend_port=None, mpm="event"):
        self.rundir = str(rundir)
        os.makedirs(self.rundir, exist_ok=True)
        # Children run as www-data when started by root: they must be able
        # to reach lock files and .htaccess files in the run dir, so every
        # directory above it gets search (not read) permission for others.
        os.chmod(self.rundir, 0o755)
        allow_search(os.path.dirname(self.rundir))
        self.port = free_port()
        self.backend_port = backend_port or free_port()
        self.mpm = mpm
        self.proc = None
        self.conf = None
        self.log_offset = 0
        self.stopping = []            # byte offsets where a stop began
        self.allowed_errors = list(ALWAYS_OK)
        self.redis_port = None
        self.backend2_port = None

    # ---- configuration ----
    def env(self):
        env = dict(os.environ)
        env.update({
            "MG_RUN": self.rundir,
            "MG_PORT": str(self.port),
            "MG_BACKEND_PORT": str(self.backend_port),
            "MG_BACKEND2_PORT": str(self.backend2_port or 9),
            "MG_MODULE": MODULE,
            "MG_CONF": CONF_EXAMPLES,
            "MG_HTTPD_MODULES": HTTPD_MODDIR,
            "MG_REDIS_MODULE": REDIS_MODULE,
            "MG_CACHE_MODULE": CACHE_MODULE,
            "MG_JWT_MODULE": JWT_MODULE,
            "MG_REDIS_PORT": str(self.redis_port or 6379),
        })
        return env

    def defines(self):
        return {"prefork": ["-D", "MG_PREFORK"], "worker": ["-D", "MG_WORKER"]}.get(self.mpm, [])

    def base_conf(self, proxy=True):
        """The httpd part every generated test configuration shares."""
        mpm_conf = {
            "event": "StartServers 2\nThreadsPerChild 25\nMaxRequestWorkers 150\n",
            "worker": "StartServers 2\nThreadsPerChild 25\nMaxRequestWorkers 150\n",
            "prefork": "StartServers 8\nMinSpareServers 8\nMaxSpareServers 80\nMaxRequestWorkers 100\n",
        }[self.mpm]
        return textwrap.dedent("""\
            ServerRoot "{run}"
            ServerName 127.0.0.1
            Listen 127.0.0.1:{port}
            PidFile "{run}/httpd.pid"
            DefaultRuntimeDir "{run}"
            ErrorLog "{run}/error.log"
            LogLevel warn modelgate:info
            User www-data
            Group www-data
            LoadModule mpm_{mpm}_module {mods}/mod_mpm_{mpm}.so
            {mpm_conf}
            LoadModule authz_core_module {mods}/mod_authz_core.so
            {proxy}
            LoadModule modelgate_module "{module}"
            LogFormat "%h %{{MODELGATE_KEY_ID}}e %{{MODELGATE_TIER}}e \\"%r\\" %>s %{{modelgate-decision}}n %{{modelgate-upstream}}n %{{modelgate-delay-ms}}n" modelgate
            CustomLog "{run}/access.log" modelgate
            DocumentRoot "{run}/htdocs"
            <Directory />
                AllowOverride None
                Require all denied
            </Directory>
            """).format(run=self.rundir, port=self.port, mpm=self.mpm, mpm_conf=mpm_conf,
                        mods=HTTPD_MODDIR, module=MODULE,
                        proxy=("LoadModule proxy_module {0}/mod_proxy.so\n"
                               "LoadModule proxy_http_module {0}/mod_proxy_http.so"
                               .format(HTTPD_MODDIR) if proxy else ""))

    def write_conf(self, gateway_part, name="httpd.conf", proxy=True):
        os.makedirs(os.path.join(self.rundir, "htdocs"), exist_ok=True)
        path = os.path.join(self.rundir, name)
        with open(path, "w") as f:
            f.write(self.base_conf(proxy=proxy))
            f.write("\n# ---- test configuration ----\n")
            f.write(textwrap.dedent(gateway_part))
        self.conf = path
        return path

    def use_conf(self, path):
        self.conf = path
        return path

    # ---- lifecycle ----
    def check_syntax(self, conf=None):
        """apache2 -t: returns (exit code, output)."""
        p = subprocess.run([HTTPD, "-d", self.rundir, "-f", conf or self.conf, "-t"]
                           + self.defines(), env=self.env(), capture_output=True, text=True,
                           timeout=60)
        return p.returncode, p.stdout + p.stderr

    def log_size(self):
        try:
            return os.path.getsize(self.error_log())
        except FileNotFoundError:
            return 0

    def start(self):
        assert self.conf, "no configuration"
        # Again here: another pytest session on the machine makes
        # /tmp/pytest-of-root 0700 again when it starts.
        allow_search(os.path.dirname(self.rundir))
        if os.path.exists(self.error_log()):
            self.log_offset = self.log_size()
        self.stopping = []
        started_at = self.log_size()
        # A session of its own: prefork stops its children by signalling
        # its whole process group, which would otherwise be pytest's.
        self.proc = subprocess.Popen(
            [HTTPD, "-d", self.rundir, "-f", self.conf, "-D", "FOREGROUND"] + self.defines(),
            env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        if not wait_port(self.port, self.proc):
            out = ""
            if self.proc.poll() is not None:
                out = self.proc.stdout.read()
            self.stop()
            raise RuntimeError("apache2 did not start: %s\n%s" % (out, self.read_log()))
        # The port is open before the parent has logged its start-up
        # (post_config): a test reading the log must find it there.
        self.wait_log("resuming normal operations", since=started_at)
        return self

    def signal(self, sig):
        if sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGWINCH):
            # Each of these stops children (a restart replaces them): their
            # shutdown noise is httpd's, as at a stop.
            self.stopping.append(self.log_size())
        self.proc.send_signal(sig)

    def graceful(self):
        """apache2 -k graceful: SIGUSR1 to the parent, then wait for the
        new generation to answer."""
        before = self.read_log().count("resuming normal operations")
        self.signal(signal.SIGUSR1)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.read_log().count("resuming normal operations") > before:
                return wait_port(self.port)
            time.sleep(0.05)
        raise RuntimeError("graceful restart did not complete")

    def stop(self):
        if self.proc is not None:
            self.stopping.append(self.log_size())
            stop_process(self.proc)
            if self.proc.stdout:
                self.proc.stdout.close()
            self.proc = None

    # ---- logs ----
    def error_log(self):
        return os.path.join(self.rundir, "error.log")

    def read_log(self, name="error.log"):
        try:
            with open(os.path.join(self.rundir, name), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def access_lines(self, count, timeout=10.0):
        """The access log once it holds `count` lines: httpd writes a line
        after the response has gone, so a client can be ahead of it."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.read_log("access.log").splitlines()
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def allow_errors(self, *patterns):
        self.allowed_errors.extend(patterns)

    def wait_log(self, pattern, since=0, timeout=START_TIMEOUT):
        """The error log once `pattern` (a regular expression) appears in
        it after byte `since`: httpd writes some lines after the event a
        test waits for (start-up, a child's first request)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(self.error_log(), "rb") as f:
                    f.seek(since)
                    text = f.read().decode(errors="replace")
            except FileNotFoundError:
                # apache2 opens it while it starts: on a loaded machine a
                # test can be here first.
                text = ""
            if re.search(pattern, text) or time.monotonic() > deadline:
                return text
            time.sleep(0.05)

    def unexpected_errors(self):
        try:
            with open(self.error_log(), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        bad = []
        pos = self.log_offset
        for raw in data[self.log_offset:].splitlines(keepends=True):
            line = raw.decode(errors="replace")
            at, pos = pos, pos + len(raw)
            allowed = self.allowed_errors
            if self.stopping and at >= self.stopping[0]:
                allowed = allowed + SHUTDOWN_NOISE
            if BAD_LOG.search(line) and not any(re.search(p, line) for p in allowed):
                bad.append(line.rstrip("\n"))
        return bad

    # ---- requests ----
    def get(self, path, headers=None, **kw):
        return request(self.port, "GET", path, headers=headers, **kw)

    def post(self, path, body=None, headers=None, **kw):
        return request(self.port, "POST", path, headers=headers, body=body, **kw)

    def chat(self, key=None, header="X-API-Key", body=None, extra=None, **kw):
        headers = dict(extra or {})
        if key is not None:
            headers[header] = key if header == "X-API-Key" else "Bearer " + key
        return self.post("/v1/chat/completions", body=body or CHAT, headers=headers, **kw)


def line_of(path, text):
    """The number of the first line of the file at `path` that holds
    `text`: where a configuration error must say the directive is."""
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if text in line:
                return n
    raise AssertionError("%r not in %s" % (text, path))


def assert_config_errors(gateways, cases, name="conferr"):
    """Each (configuration text, message): `apache2 -t` must refuse the
    text and say the message."""
    for text, message in cases:
        gw = gateways(name)
        gw.write_conf(text)
        code, out = gw.check_syntax()
        assert code != 0, text
        assert message in out, (text, out)


# A site whose /v1/ is a directory of htdocs, gated, routed by .htaccess
# files (test_mg_021, _039, _040).
HTACCESS_SITE = """
LoadModule access_compat_module {mods}/mod_access_compat.so
ModelGateTier free 10/min
ModelGateTier pro  100/min
ModelGateKeyFile "{keys}"
ModelGateUpstream model http://127.0.0.1:{port}
<Directory "{run}/htdocs">
    AllowOverride AuthConfig
    Require all granted
</Directory>
<Directory "{run}/htdocs/v1">
    {dir_extra}
</Directory>
<Location "/v1/">
    ModelGate On
</Location>
"""


def htaccess_site(gateways, backend, files, dir_extra="", server_extra="",
                  name="site"):
    """/v1/ gated, routed by .htaccess; `files` maps paths under htdocs to
    .htaccess texts; `dir_extra` goes into htdocs/v1's <Directory>."""
    backend.reset()
    gw = gateways(name, backend_port=backend.port)
    gw.write_conf(server_extra + HTACCESS_SITE.format(
        mods=HTTPD_MODDIR, keys=QUICKSTART_KEYS, port=backend.port, run=gw.rundir,
        dir_extra=dir_extra))
    for rel, text in files.items():
        path = os.path.join(gw.rundir, "htdocs", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    return gw.start()
