"""The response cache's statistics in the core's Prometheus exposition
(SetHandler modelgate-metrics), through the mg_metrics_scrape hook: the
same numbers as the modelgate-cache-status page, exact over every
process, accepted by promtool; no cache families without a cache."""
import harness
from test_mg_024_cache import STATUS, body, cached, chat, conf, stats  # noqa: F401
from test_mg_026_observability import parse, promtool_check, scrape, total

METRICS = """
<Location "/metrics">
    SetHandler modelgate-metrics
    Require all granted
</Location>
"""


def test_mg_035_01_cache_figures_in_the_exposition(cached, backend, backend2, tmp_path):
    # the shmcb file in the gateway's own run directory, which apache2's
    # children can reach (pytest's tmp_path is not searchable by them)
    gw = cached(conf(backend, backend2, server='ModelGateCache "shmcb:${MG_RUN}/small(8192)"\n'
                     'ModelGateCacheMaxObject 65536\n' + STATUS + METRICS))
    gw.allow_errors(r"AH00\d\d\d.*shmcb", r"socache_shmcb:error")
    first = chat(gw, body())                                  # lookup, miss, store
    assert first.header("cache-status") == "modelgate; fwd=miss; stored"
    for _ in range(3):                                         # lookups, hits
        assert chat(gw, body()).header("cache-status").startswith("modelgate; hit")
    assert chat(gw, body("b"), headers={"Cache-Control": "no-store"}).header(
        "cache-status") == "modelgate; fwd=miss"               # lookup, miss
    big = chat(gw, body(" ".join(["w" * 1200] * 8)))          # lookup, miss, refused
    assert big.header("cache-status") == "modelgate; fwd=miss"
    assert harness.request(gw.port, "DELETE", "/cache-status?tenant=acme").status == 200
    text = scrape(gw)
    promtool_check(text, tmp_path)
    s = parse(text)
    want = {("modelgate_cache_lookups_total", ()): 6,
            ("modelgate_cache_hits_total", (("freshness", "fresh"),)): 3,
            ("modelgate_cache_hits_total", (("freshness", "stale"),)): 0,
            ("modelgate_cache_misses_total", ()): 3,
            ("modelgate_cache_stores_total", (("result", "stored"),)): 1,
            ("modelgate_cache_stores_total", (("result", "refused"),)): 1,
            ("modelgate_cache_stored_bytes_total", ()): len(first.body),
            ("modelgate_cache_purges_total", ()): 1}
    for (name, labels), value in want.items():
        assert [v for n, l, v in s if n == name and tuple(sorted(l.items())) == labels] \
            == [value], (name, labels)
    # the status page's figures are the same counters
    st = stats(gw)
    assert (st["Lookups"], st["Hits"], st["Misses"], st["Stores"], st["StoreFailures"],
            st["BytesStored"], st["Purges"]) == \
        ("6", "3", "3", "1", "1", str(len(first.body)), "1")
    assert total(s, "modelgate_cache_hits_total") == 3


def test_mg_035_02_no_cache_no_families(cached, backend, backend2):
    """The plugin loaded but no location cacheable: nothing to show."""
    gw = cached('LoadModule modelgate_cache_module "%s"\n' % harness.CACHE_MODULE
                + harness.two_models(backend, backend2,
                                     "ModelGateTier free 100/min\nModelGateTier pro 100/min\n")
                + METRICS)
    assert chat(gw, body()).status == 200
    text = scrape(gw)
    assert "modelgate_requests_total" in text
    assert "modelgate_cache_" not in text
