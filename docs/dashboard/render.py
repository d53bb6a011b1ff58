#!/usr/bin/python3
"""Render conf-examples/grafana-modelgate.json's panels from real scrapes.

There is no Grafana (nor Prometheus) here, so this draws each panel of the
dashboard with matplotlib from a series of scrapes of SetHandler
modelgate-metrics, evaluating the panels' own queries with a small
evaluator of the PromQL they use: `sum|max by (...) (...)`, `rate(sel[w])`,
`histogram_quantile(q, ...)`, selectors with `=` matchers, and `/` between
two aggregations.  The picture is a rendering of the panels, not a Grafana
screenshot.

    python3 docs/dashboard/render.py capture URL DIR [SECONDS] [EVERY]
    python3 docs/dashboard/render.py draw DIR OUT.png [DASHBOARD]

`capture` scrapes URL every EVERY seconds (default 2) for SECONDS (60) into
DIR/scrape-NNNN.txt (the first line is the time); `draw` renders them.
docs/dashboard/demo.py runs a gateway with traffic and does both.

tests/integration/test_mg_033_dashboard.py imports this file: every query
of the dashboard must name metrics a real scrape has and give data.
"""
import json
import math
import os
import re
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DASHBOARD = os.path.join(HERE, "..", "..", "conf-examples", "grafana-modelgate.json")
RATE_WINDOW = 30.0          # what $__rate_interval stands for, in seconds

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
METRIC_NAME = re.compile(r'\bmodelgate_[a-z0-9_]+\b')


def parse_scrape(text):
    """[(name, {label: value}, value)] of a text exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if m:
            out.append((m.group(1), dict(LABEL.findall(m.group(3) or "")),
                        float(m.group(4))))
    return out


def dashboard_queries(path=DASHBOARD):
    """[(panel title, expr, legend format)] of every panel's targets."""
    with open(path) as f:
        dash = json.load(f)
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"], t.get("legendFormat", "")))
    return out


def metric_names(expr):
    return set(METRIC_NAME.findall(expr))


# ---- a small PromQL evaluator ------------------------------------------------

TOKEN = re.compile(r'\s*(?:(\d+\.\d+|\d+)|([a-zA-Z_:$][a-zA-Z0-9_:]*)|'
                   r'("(?:[^"\\]|\\.)*")|(\[[^\]]*\])|(.))')


def tokenize(expr):
    out = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise ValueError("cannot read %r at %d" % (expr, pos))
        pos = m.end()
        num, ident, string, rng, op = m.groups()
        if num is not None:
            out.append(("num", float(num)))
        elif ident is not None:
            out.append(("id", ident))
        elif string is not None:
            out.append(("str", json.loads(string)))
        elif rng is not None:
            out.append(("range", rng[1:-1]))
        elif op.strip():
            out.append(("op", op))
    return out


class Parser:
    def __init__(self, expr):
        self.t = tokenize(expr)
        self.i = 0

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else (None, None)

    def take(self, kind=None, value=None):
        tok = self.peek()
        if (kind and tok[0] != kind) or (value is not None and tok[1] != value):
            raise ValueError("expected %s %s, got %r" % (kind, value, tok))
        self.i += 1
        return tok

    def expr(self):
        left = self.term()
        while self.peek() in (("op", "/"), ("op", "*")):
            op = self.take()[1]
            left = ("binop", op, left, self.term())
        return left

    def term(self):
        kind, v = self.peek()
        if kind == "num":
            self.take()
            return ("num", v)
        if kind == "op" and v == "(":
            self.take()
            e = self.expr()
            self.take("op", ")")
            return e
        self.take("id")
        if v in ("sum", "max", "min"):
            by = None
            if self.peek() == ("id", "by"):
                self.take()
                by = self.labels()
            self.take("op", "(")
            e = self.expr()
            self.take("op", ")")
            return ("agg", v, by, e)
        if v in ("rate", "increase"):
            self.take("op", "(")
            sel = self.selector(self.take("id")[1])
            rng = self.take("range")[1]
            self.take("op", ")")
            return (v, sel, rng)
        if v == "histogram_quantile":
            self.take("op", "(")
            q = self.take("num")[1]
            self.take("op", ",")
            e = self.expr()
            self.take("op", ")")
            return ("hq", q, e)
        return self.selector(v)

    def labels(self):
        self.take("op", "(")
        out = []
        while self.peek() != ("op", ")"):
            out.append(self.take("id")[1])
            if self.peek() == ("op", ","):
                self.take()
        self.take("op", ")")
        return out

    def selector(self, name):
        matchers = {}
        if self.peek() == ("op", "{"):
            self.take()
            while self.peek() != ("op", "}"):
                label = self.take("id")[1]
                self.take("op", "=")
                matchers[label] = self.take("str")[1]
                if self.peek() == ("op", ","):
                    self.take()
            self.take("op", "}")
        return ("sel", name, matchers)


def parse(expr):
    p = Parser(expr)
    e = p.expr()
    if p.i != len(p.t):
        raise ValueError("trailing tokens in %r" % expr)
    return e


def duration(text):
    if text == "$__rate_interval":
        return RATE_WINDOW
    m = re.fullmatch(r"(\d+)([smh])", text)
    if not m:
        raise ValueError("range %r" % text)
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]


def key(labels):
    return tuple(sorted(labels.items()))


def select(samples, name, matchers):
    """{label key: value} of the samples of `name` that match."""
    out = {}
    for n, labels, v in samples:
        if n == name and all(labels.get(k) == x for k, x in matchers.items()):
            out[key(labels)] = out.get(key(labels), 0.0) + v
    return out


def evaluate(node, scrapes, i):
    """The instant vector ({label key: value}) of `node` at scrapes[i];
    scrapes is [(time, samples)]."""
    kind = node[0]
    if kind == "num":
        return {(): node[1]}
    if kind == "sel":
        return select(scrapes[i][1], node[1], node[2])
    if kind in ("rate", "increase"):
        _, (_, name, matchers), rng = node
        window = duration(rng)
        t = scrapes[i][0]
        first = i
        while first > 0 and scrapes[first - 1][0] >= t - window:
            first -= 1
        if first == i:
            return {}
        span = scrapes[i][0] - scrapes[first][0]
        now = select(scrapes[i][1], name, matchers)
        out = {}
        for k, v in now.items():
            # increase over the window, counter resets taken as restarts
            total, prev = 0.0, None
            for j in range(first, i + 1):
                cur = select(scrapes[j][1], name, matchers).get(k, 0.0)
                if prev is not None:
                    total += cur - prev if cur >= prev else cur
                prev = cur
            out[k] = total / span if kind == "rate" else total
        return out
    if kind == "agg":
        _, op, by, inner = node
        vec = evaluate(inner, scrapes, i)
        groups = {}
        for k, v in vec.items():
            labels = dict(k)
            g = key({b: labels.get(b, "") for b in (by or [])})
            groups.setdefault(g, []).append(v)
        f = {"sum": sum, "max": max, "min": min}[op]
        return {g: f(vs) for g, vs in groups.items()}
    if kind == "hq":
        _, q, inner = node
        vec = evaluate(inner, scrapes, i)
        series = {}
        for k, v in vec.items():
            labels = dict(k)
            le = labels.pop("le")
            series.setdefault(key(labels), []).append(
                (math.inf if le == "+Inf" else float(le), v))
        out = {}
        for k, buckets in series.items():
            buckets.sort()
            total = buckets[-1][1]
            if total <= 0:
                continue
            rank = q * total
            lower_bound, lower_count = 0.0, 0.0
            for bound, count in buckets:
                if count >= rank:
                    if math.isinf(bound):
                        out[k] = lower_bound
                    else:
                        # linear within the bucket, as Prometheus does
                        part = (rank - lower_count) / max(count - lower_count, 1e-12)
                        out[k] = lower_bound + (bound - lower_bound) * part
                    break
                lower_bound, lower_count = bound, count
        return out
    if kind == "binop":
        _, op, left, right = node
        a, b = evaluate(left, scrapes, i), evaluate(right, scrapes, i)
        out = {}
        for k, v in a.items():
            w = b.get(k, b.get(()))
            if w is None:
                continue
            if op == "*":
                out[k] = v * w
            elif w != 0:
                out[k] = v / w
        return out
    raise ValueError("cannot evaluate %r" % (node,))


def series(expr, scrapes):
    """{label key: [(time, value)]} of `expr` over every scrape."""
    tree = parse(expr)
    out = {}
    for i in range(len(scrapes)):
        for k, v in evaluate(tree, scrapes, i).items():
            out.setdefault(k, []).append((scrapes[i][0], v))
    return out


def legend(fmt, k):
    labels = dict(k)
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)
    return text.strip() or "value"


# ---- capture and draw -------------------------------------------------------

def load(directory):
    scrapes = []
    for name in sorted(os.listdir(directory)):
        if name.startswith("scrape-") and name.endswith(".txt"):
            with open(os.path.join(directory, name)) as f:
                t = float(f.readline())
                scrapes.append((t, parse_scrape(f.read())))
    return scrapes


def capture(url, directory, seconds=60.0, every=2.0):
    os.makedirs(directory, exist_ok=True)
    start = time.monotonic()
    n = 0
    while time.monotonic() - start <= seconds:
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        with open(os.path.join(directory, "scrape-%04d.txt" % n), "w") as f:
            f.write("%.3f\n%s" % (time.time(), text))
        n += 1
        time.sleep(max(0.0, start + n * every - time.monotonic()))
    return n


def draw(directory, out, dashboard=DASHBOARD):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(dashboard) as f:
        dash = json.load(f)
    scrapes = load(directory)
    t0 = scrapes[0][0]
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 6, rows * 3.2))
    for ax, p in zip(axes.flat, panels):
        for t in p["targets"]:
            for k, pts in sorted(series(t["expr"], scrapes).items()):
                ax.plot([x - t0 for x, _ in pts], [y for _, y in pts],
                        label=legend(t.get("legendFormat", ""), k), linewidth=1.2)
        unit = p["fieldConfig"]["defaults"].get("unit", "")
        ax.set_title(p["title"], fontsize=10, loc="left")
        ax.set_xlabel("seconds", fontsize=7)
        ax.set_ylabel(unit, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("%s -- the dashboard's panels rendered from %d real scrapes "
                 "(matplotlib, not Grafana)" % (dash["title"], len(scrapes)),
                 fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(out, dpi=80)


def main(argv):
    if len(argv) >= 3 and argv[0] == "capture":
        rest = [float(x) for x in argv[3:5]]
        print(capture(argv[1], argv[2], *rest), "scrapes")
        return 0
    if len(argv) >= 3 and argv[0] == "draw":
        draw(argv[1], argv[2], *(argv[3:4]))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
