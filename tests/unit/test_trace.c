/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_trace.c -- W3C trace context and request ids (mg_trace.c): what a
 * valid traceparent is, a new trace for anything else, the gateway's span
 * as the upstream's parent, tracestate's limits, X-Request-Id.
 */
#include "mg_test.h"
#include <string.h>
#include <apr_strings.h>
#include <apr_hash.h>

#include "mg_trace.h"

#define TRACE  "4bf92f3577b34da6a3ce929d0e0e4736"
#define PARENT "00f067aa0ba902b7"
#define VALID  "00-" TRACE "-" PARENT "-01"

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

static mg_trace_rng seeded(void)
{
    mg_trace_rng g;
    apr_uint64_t seed;

    /* The glue seeds from the system's random source the same way. */
    assert_int_equal(apr_generate_random_bytes((unsigned char *)&seed,
                                               sizeof(seed)), APR_SUCCESS);
    mg_trace_rng_seed(&g, seed);
    return g;
}

static void test_parse_valid(void **state)
{
    mg_trace t;

    (void)state;
    assert_true(mg_trace_parse(VALID, &t));
    assert_string_equal(t.trace_id, TRACE);
    assert_string_equal(t.parent_id, PARENT);
    assert_string_equal(t.flags, "01");
    /* a later version: longer, after a '-', read as 00 */
    assert_true(mg_trace_parse("cc-" TRACE "-" PARENT "-00-what-comes", &t));
    assert_string_equal(t.flags, "00");
    assert_true(mg_trace_parse("cc-" TRACE "-" PARENT "-00", &t));
}

static void test_parse_invalid(void **state)
{
    static const char *const bad[] = {
        "",
        "00-" TRACE "-" PARENT "-0",                       /* short */
        "00-" TRACE "-" PARENT "-01-",                     /* 00, longer */
        "00-" TRACE "-" PARENT "-011",
        "ff-" TRACE "-" PARENT "-01",                      /* version ff */
        "00-00000000000000000000000000000000-" PARENT "-01", /* zero trace */
        "00-" TRACE "-0000000000000000-01",                /* zero parent */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-" PARENT "-01", /* upper case */
        "00_" TRACE "-" PARENT "-01",
        "00-" TRACE "-" PARENT "-0g",
        "0x-" TRACE "-" PARENT "-01",
        "cc-" TRACE "-" PARENT "-01x",                     /* no '-' after */
        "00-" TRACE "-" PARENT "\n01",
        NULL
    };
    mg_trace t;
    int i;

    (void)state;
    assert_false(mg_trace_parse(NULL, &t));
    for (i = 0; bad[i]; i++) {
        assert_false(mg_trace_parse(bad[i], &t));
    }
}

/* A valid trace continues with a new span; anything else starts a new
 * trace; the forwarded header is version 00 with the gateway's span. */
static void test_start(void **state)
{
    mg_trace_rng g = seeded();
    mg_trace t, u;
    char out[MG_TRACEPARENT_LEN + 1];

    (void)state;
    mg_trace_start(&g, VALID, &t);
    assert_true(t.kept);
    assert_string_equal(t.trace_id, TRACE);
    assert_string_equal(t.parent_id, PARENT);
    assert_string_not_equal(t.span_id, PARENT);
    mg_trace_format(&t, out);
    assert_int_equal(strlen(out), MG_TRACEPARENT_LEN);
    assert_true(mg_trace_parse(out, &u));
    assert_string_equal(u.trace_id, TRACE);
    assert_string_equal(u.parent_id, t.span_id);
    assert_string_equal(u.flags, "01");

    mg_trace_start(&g, "ff-" TRACE "-" PARENT "-01", &t);
    assert_false(t.kept);
    assert_string_not_equal(t.trace_id, TRACE);
    assert_string_equal(t.parent_id, "");
    mg_trace_format(&t, out);
    assert_true(mg_trace_parse(out, &u));
    assert_string_equal(u.trace_id, t.trace_id);

    mg_trace_start(&g, NULL, &u);
    assert_false(u.kept);
    assert_string_not_equal(u.trace_id, t.trace_id);
}

/* Distinct ids, draw after draw, and from two processes' seeds. */
static void test_ids_distinct(void **state)
{
    apr_pool_t *p = *state;
    apr_hash_t *seen = apr_hash_make(p);
    mg_trace_rng a = seeded(), b = seeded();
    mg_trace t;
    int i;

    for (i = 0; i < 2000; i++) {
        mg_trace_start(i % 2 ? &a : &b, NULL, &t);
        assert_null(apr_hash_get(seen, t.trace_id, APR_HASH_KEY_STRING));
        apr_hash_set(seen, apr_pstrdup(p, t.trace_id), APR_HASH_KEY_STRING,
                     "");
        assert_null(apr_hash_get(seen, t.span_id, APR_HASH_KEY_STRING));
        apr_hash_set(seen, apr_pstrdup(p, t.span_id), APR_HASH_KEY_STRING,
                     "");
    }
}

static void test_tracestate(void **state)
{
    apr_pool_t *p = *state;
    const char *small = "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7";
    const char *many = "", *res;
    char *big, *longm;
    int i;

    assert_ptr_equal(mg_trace_state_trim(p, small), small);
    assert_null(mg_trace_state_trim(p, NULL));
    assert_null(mg_trace_state_trim(p, " , "));
    for (i = 0; i < 33; i++) {
        many = apr_psprintf(p, "%s%sk%d=v", many, i ? "," : "", i);
    }
    assert_null(mg_trace_state_trim(p, many));      /* 33 members */

    /* Over 512: the member over 128 goes first ... */
    longm = apr_palloc(p, 201);
    memset(longm, 'x', 200);
    longm[200] = '\0';
    big = apr_psprintf(p, "a=%s,b=1,c=%s,d=2", longm, longm + 50);
    res = mg_trace_state_trim(p, apr_pstrcat(p, big, ",e=", longm + 100,
                                             ",f=", longm + 100, NULL));
    assert_string_equal(res, apr_pstrcat(p, "b=1,d=2,e=", longm + 100,
                                         ",f=", longm + 100, NULL));
    /* ... then members from the end until it fits */
    big = "";
    for (i = 0; i < 6; i++) {
        big = apr_psprintf(p, "%s%sk%d=%s", big, i ? "," : "", i,
                           longm + 80);
    }
    res = mg_trace_state_trim(p, big);
    assert_true(strlen(res) <= MG_TRACESTATE_MAX);
    assert_int_equal(strlen(res), 4 * 123 + 3);   /* "kN=" + 120 each */
    assert_true(!strncmp(res, "k0=", 3));
    assert_null(strstr(res, "k4="));
}

static void test_request_id(void **state)
{
    char longid[MG_REQUEST_ID_MAX + 2];

    (void)state;
    assert_true(mg_request_id_valid("abc-123_X.y:z"));
    assert_false(mg_request_id_valid(NULL));
    assert_false(mg_request_id_valid(""));
    assert_false(mg_request_id_valid("a b"));
    assert_false(mg_request_id_valid("a\"b"));
    assert_false(mg_request_id_valid("a\nb"));
    memset(longid, 'a', sizeof(longid));
    longid[MG_REQUEST_ID_MAX] = '\0';
    assert_true(mg_request_id_valid(longid));
    longid[MG_REQUEST_ID_MAX] = 'a';
    longid[MG_REQUEST_ID_MAX + 1] = '\0';
    assert_false(mg_request_id_valid(longid));
    assert_true(mg_request_id_valid("00f067aa0ba902b7"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test_setup_teardown(test_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_distinct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tracestate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_id, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
