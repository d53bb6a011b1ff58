/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_otlp.c -- the span exporter's plain parts (plugins/otlp/mg_otlp.c):
 * the tail rule, the rate's decision by trace id, the bounded queue (a
 * full queue refuses, never grows or waits) and the OTLP JSON of a batch.
 */
#include "mg_test.h"
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <apr_strings.h>

#include "mg_otlp.h"

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

static void test_tail_rule(void **state)
{
    (void)state;
    /* admitted and answered: only the rate decides */
    assert_int_equal(mg_otlp_must_keep(1, 200), 0);
    assert_int_equal(mg_otlp_must_keep(1, 404), 0);
    /* admitted but failed */
    assert_int_equal(mg_otlp_must_keep(1, 500), 1);
    assert_int_equal(mg_otlp_must_keep(1, 504), 1);
    /* refused, degraded, shed...: whatever the status */
    assert_int_equal(mg_otlp_must_keep(0, 429), 1);
    assert_int_equal(mg_otlp_must_keep(0, 200), 1);
    assert_int_equal(mg_otlp_must_keep(0, 401), 1);
}

static void test_rate_by_trace_id(void **state)
{
    /* the last 14 hex digits against rate x 2^56 */
    const char *low = "ffffffffffffffffff00000000000000";
    const char *mid = "00000000000000000080000000000000"; /* 0.5 x 2^56 */
    const char *high = "000000000000000000ffffffffffffff";
    (void)state;

    assert_int_equal(mg_otlp_sampled(low, 0.0), 0);
    assert_int_equal(mg_otlp_sampled(low, 1e-9), 1);
    assert_int_equal(mg_otlp_sampled(high, 0.999999), 0);
    assert_int_equal(mg_otlp_sampled(high, 1.0), 1);
    assert_int_equal(mg_otlp_sampled(mid, 0.5), 0);     /* not below */
    assert_int_equal(mg_otlp_sampled(mid, 0.5000001), 1);
    /* malformed ids are never sampled by the rate */
    assert_int_equal(mg_otlp_sampled("abc", 0.5), 0);
    assert_int_equal(mg_otlp_sampled("0000000000000000000000000000000G", 0.9),
                     0);
    assert_int_equal(mg_otlp_sampled(NULL, 1.0), 0);
}

static void test_rate_share(void **state)
{
    apr_pool_t *p = *state;
    int i, kept = 0;

    /* ids spread evenly over the 56 bits (steps just above 2^56 / 1000):
     * the share kept is the rate */
    for (i = 0; i < 1000; i++) {
        apr_uint64_t v = (apr_uint64_t)i
                         * ((APR_UINT64_C(1) << 56) / 1000 + 1);
        const char *id = apr_psprintf(p, "000000000000000000%014" APR_UINT64_T_HEX_FMT,
                                      v);
        kept += mg_otlp_sampled(id, 0.1);
    }
    assert_int_equal(kept, 100);
}

static void span_named(mg_otlp_span *s, int i)
{
    memset(s, 0, sizeof(*s));
    apr_snprintf(s->trace_id, sizeof(s->trace_id), "%032x", i + 1);
    apr_snprintf(s->span_id, sizeof(s->span_id), "%016x", i + 1);
    mg_otlp_copy(s->method, sizeof(s->method), "POST");
    s->status = 200;
    s->prompt_tokens = -1;
}

static void test_queue_bounded(void **state)
{
    apr_pool_t *p = *state;
    mg_otlp_queue *q;
    mg_otlp_span s, out[8];
    int i, queued = 0;

    assert_int_equal(mg_otlp_queue_create(&q, 5, 3, p), APR_SUCCESS);
    for (i = 0; i < 8; i++) {
        span_named(&s, i);
        queued += mg_otlp_queue_push(q, &s);
    }
    /* exactly the capacity; the other 3 refused, not waited for */
    assert_int_equal(queued, 5);
    assert_int_equal(mg_otlp_queue_take(q, out, 2, 0), 2);
    assert_string_equal(out[0].trace_id, "00000000000000000000000000000001");
    assert_string_equal(out[1].trace_id, "00000000000000000000000000000002");
    /* room again, order kept across the ring's end */
    span_named(&s, 100);
    assert_int_equal(mg_otlp_queue_push(q, &s), 1);
    span_named(&s, 101);
    assert_int_equal(mg_otlp_queue_push(q, &s), 1);
    span_named(&s, 102);
    assert_int_equal(mg_otlp_queue_push(q, &s), 0);
    assert_int_equal(mg_otlp_queue_take(q, out, 8, 0), 5);
    assert_string_equal(out[0].trace_id, "00000000000000000000000000000003");
    assert_string_equal(out[3].trace_id, "00000000000000000000000000000065");
    assert_string_equal(out[4].trace_id, "00000000000000000000000000000066");
    assert_int_equal(mg_otlp_queue_take(q, out, 8, 0), 0);
    /* stopped: nothing more is queued, and a wait returns at once */
    mg_otlp_queue_stop(q);
    assert_int_equal(mg_otlp_queue_push(q, &s), 0);
    assert_int_equal(mg_otlp_queue_take(q, out, 8, MG_SEC(60)), 0);
}

static void test_copy_cuts(void **state)
{
    char small[4];
    (void)state;

    mg_otlp_copy(small, sizeof(small), "abcdef");
    assert_string_equal(small, "abc");
    mg_otlp_copy(small, sizeof(small), NULL);
    assert_string_equal(small, "");
}

static const char *attr(json_t *span, const char *key, const char *kind)
{
    json_t *a;
    size_t i;

    json_array_foreach(json_object_get(span, "attributes"), i, a) {
        if (!strcmp(json_string_value(json_object_get(a, "key")), key)) {
            return json_string_value(json_object_get(
                json_object_get(a, "value"), kind));
        }
    }
    return NULL;
}

static void test_encode(void **state)
{
    mg_otlp_resource res = { "gw", "host1", "0.1.0" };
    mg_otlp_span s[2];
    json_t *root, *spans, *sp, *rattrs;
    json_error_t err;
    char *text;
    (void)state;

    span_named(&s[0], 0);
    mg_otlp_copy(s[0].parent_id, sizeof(s[0].parent_id), "00f067aa0ba902b7");
    mg_otlp_copy(s[0].decision, sizeof(s[0].decision), "rejected");
    mg_otlp_copy(s[0].limit, sizeof(s[0].limit), "free-large");
    mg_otlp_copy(s[0].route, sizeof(s[0].route), "big");
    mg_otlp_copy(s[0].tier, sizeof(s[0].tier), "free");
    mg_otlp_copy(s[0].tenant, sizeof(s[0].tenant), "acme\"quoted");
    s[0].status = 429;
    s[0].start = MG_T0;
    s[0].end = MG_T0 + 1500;
    s[0].kept = 1;
    span_named(&s[1], 1);
    mg_otlp_copy(s[1].decision, sizeof(s[1].decision), "allowed");
    s[1].status = 502;
    s[1].upstream_status = 0;
    s[1].prompt_tokens = 12;
    s[1].completion_tokens = 34;
    s[1].spend = 5000;

    text = mg_otlp_encode(&res, s, 2);
    assert_non_null(text);
    root = json_loads(text, 0, &err);
    free(text);
    assert_non_null(root);
    rattrs = json_object_get(json_object_get(json_array_get(
        json_object_get(root, "resourceSpans"), 0), "resource"), "attributes");
    assert_int_equal(json_array_size(rattrs), 2);
    spans = json_object_get(json_array_get(json_object_get(json_array_get(
        json_object_get(root, "resourceSpans"), 0), "scopeSpans"), 0),
        "spans");
    assert_int_equal(json_array_size(spans), 2);

    sp = json_array_get(spans, 0);
    assert_string_equal(json_string_value(json_object_get(sp, "traceId")),
                        "00000000000000000000000000000001");
    assert_string_equal(json_string_value(json_object_get(sp,
                                                          "parentSpanId")),
                        "00f067aa0ba902b7");
    assert_string_equal(json_string_value(json_object_get(sp, "name")),
                        "POST big");
    assert_int_equal(json_integer_value(json_object_get(sp, "kind")), 2);
    assert_string_equal(json_string_value(json_object_get(sp,
                                                          "startTimeUnixNano")),
                        "1700000000000000000");
    assert_string_equal(json_string_value(json_object_get(sp,
                                                          "endTimeUnixNano")),
                        "1700000000001500000");
    assert_string_equal(attr(sp, "http.response.status_code", "intValue"),
                        "429");
    assert_string_equal(attr(sp, "modelgate.decision", "stringValue"),
                        "rejected");
    assert_string_equal(attr(sp, "modelgate.limit", "stringValue"),
                        "free-large");
    assert_string_equal(attr(sp, "modelgate.tenant", "stringValue"),
                        "acme\"quoted");
    assert_string_equal(attr(sp, "modelgate.sampling", "stringValue"),
                        "kept");
    assert_null(attr(sp, "gen_ai.usage.input_tokens", "intValue"));
    assert_null(attr(sp, "modelgate.upstream.status_code", "intValue"));
    /* a 4xx is the client's: status unset */
    assert_int_equal(json_integer_value(json_object_get(
        json_object_get(sp, "status"), "code")), 0);

    sp = json_array_get(spans, 1);
    assert_null(json_object_get(sp, "parentSpanId"));
    assert_string_equal(json_string_value(json_object_get(sp, "name")),
                        "POST gateway");
    assert_string_equal(attr(sp, "gen_ai.usage.input_tokens", "intValue"),
                        "12");
    assert_string_equal(attr(sp, "gen_ai.usage.output_tokens", "intValue"),
                        "34");
    assert_string_equal(attr(sp, "modelgate.spend_nano", "intValue"), "5000");
    assert_string_equal(attr(sp, "modelgate.sampling", "stringValue"),
                        "sampled");
    assert_int_equal(json_integer_value(json_object_get(
        json_object_get(sp, "status"), "code")), 2);
    json_decref(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tail_rule),
        cmocka_unit_test(test_rate_by_trace_id),
        cmocka_unit_test_setup_teardown(test_rate_share, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_bounded, setup, teardown),
        cmocka_unit_test(test_copy_cuts),
        cmocka_unit_test(test_encode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
