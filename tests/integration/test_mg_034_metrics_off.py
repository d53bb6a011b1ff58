"""ModelGateMetrics Off (issue 14's bench compares metrics on and off):
nothing is recorded or mapped, a scrape answers 503, requests are served
as ever; the directive is main-server only."""
import harness
from harness import DEMO_KEY, PRO_KEY
from test_mg_031_span_export import wait_metric

METRICS = """
<Location "/metrics">
    SetHandler modelgate-metrics
    Require all granted
</Location>
"""


def gateway(gateways, backend, flag):
    backend.reset()
    gw = gateways("metrics-" + flag.lower(), backend_port=backend.port)
    gw.write_conf("ModelGateMetrics %s\nModelGateTier free 100/min\nModelGateTier pro 100/min\n"
                  % flag + harness.routed_v1(harness.QUICKSTART_KEYS, backend.port) + METRICS)
    return gw.start()


def test_mg_034_01_off_records_nothing(gateways, backend):
    gw = gateway(gateways, backend, "Off")
    assert [gw.chat(k).status for k in (DEMO_KEY, PRO_KEY, DEMO_KEY)] == [200] * 3
    assert gw.chat().status == 401
    assert gw.get("/metrics").status == 503
    assert backend.count() == 3


def test_mg_034_02_on_is_the_default_and_counts(gateways, backend):
    gw = gateway(gateways, backend, "On")
    assert [gw.chat(k).status for k in (DEMO_KEY, PRO_KEY, DEMO_KEY)] == [200] * 3
    # counted in log_transaction, after the client has its answer
    assert wait_metric(gw, "modelgate_requests_total", 2, tier="free",
                       outcome="allowed") == 2
    assert wait_metric(gw, "modelgate_requests_total", 1, tier="pro",
                       outcome="allowed") == 1


def test_mg_034_03_main_server_only(gateways):
    harness.assert_config_errors(gateways, [
        ('<Location "/x">\n    ModelGateMetrics Off\n</Location>\n',
         "ModelGateMetrics not allowed in <Location> context"),
        ("ModelGateMetrics maybe\n", "ModelGateMetrics must be On or Off"),
    ], name="metrics-conf")
