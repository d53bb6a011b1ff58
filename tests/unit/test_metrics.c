/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_metrics.c -- the metrics' slot layout, histogram buckets, sums over
 * process slots and the Prometheus text they make (mg_metrics.c).
 */
#include "mg_test.h"
#include <string.h>
#include <apr_strings.h>

#include "mg_metrics.h"

static int setup(void **state)
{
    apr_pool_t *p;

    apr_initialize();
    apr_pool_create(&p, NULL);
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    apr_pool_destroy(*state);
    apr_terminate();
    return 0;
}

/* Families do not overlap, every cell is inside the slot, and a slot is
 * whole cache lines. */
static void test_layout(void **state)
{
    mg_metrics_layout l;
    apr_size_t last;

    (void)state;
    mg_metrics_layout_init(&l, 2, 3, 4, 5);
    assert_int_equal(l.routes, 3);
    assert_int_equal(l.models, 4);
    assert_int_equal(l.tiers, 5);
    assert_int_equal(l.limits, 6);
    assert_int_equal(l.requests, 0);
    last = mg_metrics_requests_cell(&l, 2, 3, 4, MG_OUT_INVALID);
    assert_int_equal(last, 3 * 4 * 5 * MG_OUT_COUNT - 1);
    assert_int_equal(l.rejections, last + 1);
    assert_int_equal(l.degradations, l.rejections + 5 * 6);
    assert_int_equal(l.responses, l.degradations + 5 * MG_ACT_COUNT);
    assert_int_equal(l.gw_latency, l.responses + 3 * MG_METRICS_CLASSES);
    assert_int_equal(l.up_latency, l.gw_latency + 3 * MG_METRICS_HIST_CELLS);
    assert_int_equal(l.tokens, l.up_latency + 3 * MG_METRICS_HIST_CELLS);
    assert_int_equal(l.spend, l.tokens + 4 * 5 * 2);
    assert_true(l.cells >= l.spend + 4 * 5);
    assert_true(l.cells < l.spend + 4 * 5 + 8);
    assert_int_equal(l.cells % 8, 0);
}

static void test_buckets(void **state)
{
    (void)state;
    assert_int_equal(mg_metrics_bucket(0), 0);
    assert_int_equal(mg_metrics_bucket(500), 0);
    assert_int_equal(mg_metrics_bucket(501), 1);
    assert_int_equal(mg_metrics_bucket(MG_SEC(1)), 10);
    assert_int_equal(mg_metrics_bucket(MG_SEC(60)), MG_METRICS_BOUNDS - 1);
    assert_int_equal(mg_metrics_bucket(MG_SEC(61)), MG_METRICS_BOUNDS);
}

/* Slots add up; a shared slot counts every addition. */
static void test_sum(void **state)
{
    apr_pool_t *p = *state;
    mg_metrics_layout l;
    apr_uint64_t *slots, *sum;
    apr_size_t c;

    mg_metrics_layout_init(&l, 1, 1, 1, 1);
    slots = apr_pcalloc(p, 3 * l.cells * sizeof(*slots));
    sum = apr_palloc(p, l.cells * sizeof(*sum));
    c = mg_metrics_requests_cell(&l, 1, 0, 1, MG_OUT_REJECTED);
    mg_metrics_add(slots, c, 2);
    mg_metrics_add(slots + l.cells, c, 3);
    mg_metrics_add(slots + 2 * l.cells, c, 4);
    mg_metrics_add(slots + 2 * l.cells, c, 1);
    mg_metrics_observe(slots + l.cells, l.gw_latency, MG_MSEC(3));
    mg_metrics_observe(slots, l.gw_latency, -5);
    mg_metrics_sum(&l, slots, 3, sum);
    assert_int_equal(sum[c], 10);
    assert_int_equal(sum[l.gw_latency + 0], 1);
    assert_int_equal(sum[l.gw_latency + 3], 1);
    assert_int_equal(sum[l.gw_latency + MG_METRICS_BOUNDS + 1], 3000);
}

static void collect(void *baton, const char *text, apr_size_t len)
{
    char **buf = baton;
    apr_pool_t *p = *(apr_pool_t **)(buf + 1);

    *buf = apr_pstrcat(p, *buf, apr_pstrndup(p, text, len), NULL);
}

static const char *const routes[] = { "", "up-a", "up\"b" };
static const char *const models[] = { "", "gpt" };
static const char *const tiers[] = { "", "free" };
static const char *const limits[] = { "", "free", "per-min" };

static const char *expose(apr_pool_t *p, const mg_metrics_layout *l,
                          const apr_uint64_t *sum)
{
    mg_metrics_names n = { routes, models, tiers, limits };
    mg_metrics_out o;
    void *baton[2];

    baton[0] = apr_pstrdup(p, "");
    baton[1] = p;
    o.p = p;
    o.emit = collect;
    o.baton = baton;
    mg_metrics_write(&o, l, &n, sum);
    return baton[0];
}

/* The exposition: declared names as labels (escaped), zero series left
 * out, histograms cumulative to +Inf with _sum in seconds and _count. */
static void test_write(void **state)
{
    apr_pool_t *p = *state;
    mg_metrics_layout l;
    apr_uint64_t *sum;
    const char *text;

    mg_metrics_layout_init(&l, 2, 1, 1, 2);
    sum = apr_pcalloc(p, l.cells * sizeof(*sum));
    sum[mg_metrics_requests_cell(&l, 1, 1, 1, MG_OUT_ALLOWED)] = 7;
    sum[mg_metrics_requests_cell(&l, 2, 0, 1, MG_OUT_REJECTED)] = 2;
    sum[l.rejections + 1 * l.limits + 2] = 2;
    sum[l.degradations + 1 * MG_ACT_COUNT + MG_ACT_FALLBACK] = 1;
    sum[l.responses + 1 * MG_METRICS_CLASSES + 1] = 7;
    sum[l.gw_latency + MG_METRICS_HIST_CELLS + 0] = 5;
    sum[l.gw_latency + MG_METRICS_HIST_CELLS + MG_METRICS_BOUNDS] = 2;
    sum[l.gw_latency + MG_METRICS_HIST_CELLS + MG_METRICS_BOUNDS + 1] =
        1500000;
    sum[l.tokens + (1 * l.tiers + 1) * 2 + 1] = 42;
    sum[l.spend + 1 * l.tiers + 1] = 1234567891;
    text = expose(p, &l, sum);

    assert_non_null(strstr(text, "# TYPE modelgate_requests_total counter\n"));
    assert_non_null(strstr(text, "modelgate_requests_total{route=\"up-a\","
                            "model=\"gpt\",tier=\"free\",outcome=\"allowed\"}"
                            " 7\n"));
    assert_non_null(strstr(text, "modelgate_requests_total{route="
                            "\"up\\\"b\",model=\"\",tier=\"free\","
                            "outcome=\"rejected\"} 2\n"));
    assert_null(strstr(text, "outcome=\"shed\""));
    assert_non_null(strstr(text, "modelgate_rejections_total{tier=\"free\","
                            "limit=\"per-min\"} 2\n"));
    assert_non_null(strstr(text, "modelgate_degradations_total{tier=\"free\","
                            "action=\"fallback\"} 1\n"));
    assert_non_null(strstr(text, "modelgate_responses_total{route=\"up-a\","
                            "class=\"2xx\"} 7\n"));
    assert_non_null(strstr(text, "# TYPE modelgate_gateway_latency_seconds "
                            "histogram\n"));
    assert_non_null(strstr(text, "modelgate_gateway_latency_seconds_bucket{"
                            "route=\"up-a\",le=\"0.0005\"} 5\n"));
    assert_non_null(strstr(text, "modelgate_gateway_latency_seconds_bucket{"
                            "route=\"up-a\",le=\"60\"} 5\n"));
    assert_non_null(strstr(text, "modelgate_gateway_latency_seconds_bucket{"
                            "route=\"up-a\",le=\"+Inf\"} 7\n"));
    assert_non_null(strstr(text, "modelgate_gateway_latency_seconds_sum{"
                            "route=\"up-a\"} 1.500000\n"));
    assert_non_null(strstr(text, "modelgate_gateway_latency_seconds_count{"
                            "route=\"up-a\"} 7\n"));
    /* No observation, no series. */
    assert_null(strstr(text, "modelgate_upstream_latency_seconds_count"));
    assert_null(strstr(text, "route=\"up\\\"b\",le="));
    assert_non_null(strstr(text, "modelgate_tokens_total{model=\"gpt\","
                            "tier=\"free\",kind=\"completion\"} 42\n"));
    assert_non_null(strstr(text, "modelgate_spend_total{model=\"gpt\","
                            "tier=\"free\"} 1.234567891\n"));
}

static void test_escape(void **state)
{
    apr_pool_t *p = *state;
    const char *plain = "abc";

    assert_ptr_equal(mg_metrics_escape(p, plain), plain);
    assert_string_equal(mg_metrics_escape(p, "a\\b\"c\nd"),
                        "a\\\\b\\\"c\\nd");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_buckets),
        cmocka_unit_test_setup_teardown(test_sum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escape, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
