/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_headers.c -- RateLimit header values (mg_headers.c) and the JSON
 * error bodies (mg_error.c).
 */
#include "mg_test.h"
#include <string.h>

#include <apr_strings.h>
#include <jansson.h>
#include "mg_headers.h"
#include "mg_policy.h"
#include "mg_error.h"

/* ---- helpers --------------------------------------------------------------- */

/* A request over up to MG_LIMIT_MAX_LAYERS layers, each with its own state,
 * decided the way the table does: every layer, then combine, then commit
 * only when all allow. */
typedef struct req {
    int n;
    mg_layer layers[MG_LIMIT_MAX_LAYERS];
    mg_limit_state states[MG_LIMIT_MAX_LAYERS];
    mg_decision d;
} req;

static void add_layer(req *r, const char *policy, const mg_limit_spec *spec)
{
    mg_layer *l = &r->layers[r->n];

    memset(l, 0, sizeof(*l));
    l->policy = policy;
    l->spec = spec;
    l->cost = 1;
    memset(&r->states[r->n], 0, sizeof(r->states[0]));
    r->n++;
}

static const mg_decision *request(req *r, apr_time_t now)
{
    mg_limit_state next[MG_LIMIT_MAX_LAYERS];
    int i;

    r->d.nlayers = r->n;
    for (i = 0; i < r->n; i++) {
        mg_limit_decide(r->layers[i].spec, &r->states[i], now,
                        r->layers[i].cost, &next[i], &r->d.layer[i]);
    }
    mg_limit_combine(r->layers, &r->d);
    if (r->d.allowed) {
        /* Commit the layers that allowed (a shadow layer that would have
         * rejected consumes nothing), as mg_table_decide does. */
        for (i = 0; i < r->n; i++) {
            if (r->d.layer[i].allowed) {
                r->states[i] = next[i];
            }
        }
    }
    return &r->d;
}

static mg_headers build(apr_pool_t *p, const req *r)
{
    mg_headers h;

    mg_headers_build(p, r->layers, &r->d, &h);
    return h;
}

/* ---- mg_headers_seconds ---------------------------------------------------- */

static void test_seconds_rounding(void **state)
{
    (void)state;
    assert_int_equal(mg_headers_seconds(0), 0);
    assert_int_equal(mg_headers_seconds(-1), 0);
    assert_int_equal(mg_headers_seconds(-MG_SEC(5)), 0);
    assert_int_equal(mg_headers_seconds(1), 1);
    assert_int_equal(mg_headers_seconds(999999), 1);
    assert_int_equal(mg_headers_seconds(MG_SEC(1)), 1);
    assert_int_equal(mg_headers_seconds(MG_SEC(1) + 1), 2);
    assert_int_equal(mg_headers_seconds(MG_SEC(6)), 6);
    assert_int_equal(mg_headers_seconds(MG_DAY(1)), 86400);
    assert_int_equal(mg_headers_seconds(MG_LIMIT_MAX_WINDOW), 31622400);
}

/* ---- single layer ---------------------------------------------------------- */

static void test_allowed(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec spec = mg_test_spec(10, MG_MIN(1), 10);
    mg_headers h;
    req r;

    memset(&r, 0, sizeof(r));
    add_layer(&r, "free", &spec);
    assert_true(request(&r, MG_T0)->allowed);
    h = build(p, &r);
    assert_string_equal(h.policy, "\"free\";q=10;w=60");
    assert_string_equal(h.ratelimit, "\"free\";r=9;t=6");
    assert_string_equal(h.x_limit, "10");
    assert_string_equal(h.x_remaining, "9");
    assert_string_equal(h.x_reset, "6");
    assert_null(h.retry_after);
    assert_null(h.retry_after_ms);
    assert_null(h.should_retry);

    /* Four more at t0 + 1.5 s: 5 units and 1.5e6 sub-units left; whole
     * again in 4.5e6 + 6e6 * 4 = 28.5e6 us, announced as 29 s. */
    request(&r, MG_T0 + MG_MSEC(1500));
    request(&r, MG_T0 + MG_MSEC(1500));
    request(&r, MG_T0 + MG_MSEC(1500));
    assert_true(request(&r, MG_T0 + MG_MSEC(1500))->allowed);
    h = build(p, &r);
    assert_string_equal(h.ratelimit, "\"free\";r=5;t=29");
    assert_string_equal(h.x_remaining, "5");
    assert_string_equal(h.x_reset, "29");

    /* A cost-0 look at a full bucket: nothing used, nothing to wait for. */
    memset(&r, 0, sizeof(r));
    add_layer(&r, "free", &spec);
    r.layers[0].cost = 0;
    request(&r, MG_T0);
    h = build(p, &r);
    assert_string_equal(h.ratelimit, "\"free\";r=10;t=0");
    assert_string_equal(h.x_reset, "0");
}

static void test_rejected(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec spec = mg_test_spec(10, MG_MIN(1), 10);
    mg_headers h;
    req r;
    int i;

    memset(&r, 0, sizeof(r));
    add_layer(&r, "free", &spec);
    for (i = 0; i < 10; i++) {
        assert_true(request(&r, MG_T0)->allowed);
    }
    assert_false(request(&r, MG_T0)->allowed);
    h = build(p, &r);
    assert_string_equal(h.policy, "\"free\";q=10;w=60");
    assert_string_equal(h.ratelimit, "\"free\";r=0;t=6");
    assert_string_equal(h.x_limit, "10");
    assert_string_equal(h.x_remaining, "0");
    assert_string_equal(h.x_reset, "6");
    assert_string_equal(h.retry_after, "6");
    assert_string_equal(h.retry_after_ms, "6000");
    assert_string_equal(h.should_retry, "true");

    /* Rounding: seconds and milliseconds both round up. */
    {
        static const struct {
            apr_interval_time_t at;      /* after t0 */
            const char *seconds, *ms;
        } cases[] = {
            { 1,            "6", "6000" },   /* 5,999,999 us */
            { 999,          "6", "6000" },   /* 5,999,001 us */
            { 1000,         "6", "5999" },   /* 5,999,000 us */
            { 1001,         "6", "5999" },   /* 5,998,999 us */
            { 1500000,      "5", "4500" },   /* 4,500,000 us */
            { 5000000,      "1", "1000" },   /* 1,000,000 us */
            { 4999999,      "2", "1001" },   /* 1,000,001 us */
            { 5999999,      "1", "1" },      /* 1 us */
        };
        apr_size_t c;
        for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
            assert_false(request(&r, MG_T0 + cases[c].at)->allowed);
            h = build(p, &r);
            assert_string_equal(h.retry_after, cases[c].seconds);
            assert_string_equal(h.retry_after_ms, cases[c].ms);
            assert_string_equal(h.x_reset, cases[c].seconds);
            assert_string_equal(h.ratelimit,
                                apr_psprintf(p, "\"free\";r=0;t=%s",
                                             cases[c].seconds));
            assert_string_equal(h.should_retry, "true");
        }
    }
}

static void test_rejected_long_wait(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec daily = mg_test_spec(1, MG_DAY(1), 1);
    mg_headers h;
    req r;

    memset(&r, 0, sizeof(r));
    add_layer(&r, "daily", &daily);
    assert_true(request(&r, MG_T0)->allowed);
    h = build(p, &r);
    assert_string_equal(h.policy, "\"daily\";q=1;w=86400");
    assert_string_equal(h.ratelimit, "\"daily\";r=0;t=86400");
    assert_false(request(&r, MG_T0 + MG_HOUR(1))->allowed);
    h = build(p, &r);
    assert_string_equal(h.ratelimit, "\"daily\";r=0;t=82800");
    assert_string_equal(h.retry_after, "82800");
    assert_string_equal(h.retry_after_ms, "82800000");
    assert_string_equal(h.should_retry, "false");
}

/* x-should-retry: true up to and including 60 s, false beyond. */
static void test_should_retry_horizon(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec spec = mg_test_spec(1, MG_MIN(2), 1);
    mg_headers h;
    req r;

    memset(&r, 0, sizeof(r));
    add_layer(&r, "slow", &spec);
    assert_true(request(&r, MG_T0)->allowed);

    /* 2 min per unit: at t0 + 60 s exactly 60 s remain. */
    assert_false(request(&r, MG_T0 + MG_SEC(60))->allowed);
    assert_int_equal(r.d.layer[0].retry_after, MG_HEADERS_RETRY_HORIZON);
    h = build(p, &r);
    assert_string_equal(h.retry_after, "60");
    assert_string_equal(h.retry_after_ms, "60000");
    assert_string_equal(h.should_retry, "true");

    assert_false(request(&r, MG_T0 + MG_SEC(60) - 1)->allowed);
    h = build(p, &r);
    assert_string_equal(h.retry_after, "61");
    assert_string_equal(h.retry_after_ms, "60001");
    assert_string_equal(h.should_retry, "false");

    assert_false(request(&r, MG_T0 + MG_SEC(119))->allowed);
    h = build(p, &r);
    assert_string_equal(h.retry_after, "1");
    assert_string_equal(h.should_retry, "true");
}

/* ---- several layers ----------------------------------------------------------- */

static void test_multi_layer(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec key = mg_test_spec(10, MG_MIN(1), 10);
    mg_limit_spec tenant = mg_test_spec(3, MG_MIN(1), 3);
    mg_limit_spec global = mg_test_spec(1000, MG_DAY(1), 1000);
    const char *policy = "\"free\";q=10;w=60, \"acme\";q=3;w=60, "
                         "\"global\";q=1000;w=86400";
    mg_headers h;
    req r;
    int i;

    memset(&r, 0, sizeof(r));
    add_layer(&r, "free", &key);
    add_layer(&r, "acme", &tenant);
    add_layer(&r, "global", &global);

    /* Allowed: free 9/10, acme 2/3, global 999/1000: acme is nearest. */
    assert_true(request(&r, MG_T0)->allowed);
    assert_int_equal(r.d.binding, 1);
    h = build(p, &r);
    assert_string_equal(h.policy, policy);
    assert_string_equal(h.ratelimit, "\"acme\";r=2;t=20");
    assert_string_equal(h.x_limit, "3");
    assert_string_equal(h.x_remaining, "2");
    assert_string_equal(h.x_reset, "20");
    assert_null(h.retry_after);

    /* acme runs out and rejects: 20 s until its next unit. */
    request(&r, MG_T0);
    request(&r, MG_T0);
    assert_false(request(&r, MG_T0)->allowed);
    h = build(p, &r);
    assert_string_equal(h.policy, policy);
    assert_string_equal(h.ratelimit, "\"acme\";r=0;t=20");
    assert_string_equal(h.x_limit, "3");
    assert_string_equal(h.x_remaining, "0");
    assert_string_equal(h.retry_after, "20");
    assert_string_equal(h.retry_after_ms, "20000");
    assert_string_equal(h.should_retry, "true");

    /* Two layers reject: the longer wait is the one announced.  Three
     * requests at t0, t0 + 1 us, t0 + 2 us empty both acme (3/min) and
     * strict (1 per 5 min, burst 3) but for the 2 sub-units refilled
     * meanwhile; at t0 + 3 us each holds 3: acme waits 20 s - 3 us,
     * strict 300 s - 3 us. */
    {
        mg_limit_spec strict = mg_test_spec(1, MG_MIN(5), 3);
        req r2;
        memset(&r2, 0, sizeof(r2));
        add_layer(&r2, "acme", &tenant);
        add_layer(&r2, "strict", &strict);
        for (i = 0; i < 3; i++) {
            assert_true(request(&r2, MG_T0 + i)->allowed);
        }
        assert_false(request(&r2, MG_T0 + 3)->allowed);
        assert_false(r2.d.layer[0].allowed);
        assert_false(r2.d.layer[1].allowed);
        assert_int_equal(r2.d.layer[0].retry_after, MG_SEC(20) - 3);
        assert_int_equal(r2.d.layer[1].retry_after, MG_SEC(300) - 3);
        h = build(p, &r2);
        assert_int_equal(r2.d.binding, 1);
        assert_string_equal(h.policy, "\"acme\";q=3;w=60, "
                                      "\"strict\";q=1;w=300");
        assert_string_equal(h.ratelimit, "\"strict\";r=0;t=300");
        assert_string_equal(h.retry_after, "300");
        assert_string_equal(h.retry_after_ms, "300000");   /* rounded up */
        assert_string_equal(h.should_retry, "false");
    }
}

/* The binding layer of an admitted request is the one with the smallest
 * share left of what it can hold, not of its quota: a bucket of 120/min
 * with a burst of 20 that holds 19 has 95% left, not 16%. */
static void test_binding_share_of_burst(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec pro = mg_test_spec(120, MG_MIN(1), 20);
    mg_limit_spec daily = mg_test_spec(2, MG_DAY(1), 2);
    mg_limit_spec roomy = mg_test_spec(10, MG_MIN(1), 100);
    mg_limit_spec tight = mg_test_spec(10, MG_MIN(1), 10);
    mg_headers h;
    req r;
    int i;

    memset(&r, 0, sizeof(r));
    add_layer(&r, "pro", &pro);
    add_layer(&r, "large-daily", &daily);
    /* pro 19 of 20, large-daily 1 of 2: only one more is admitted, and
     * large-daily is the layer that says so. */
    assert_true(request(&r, MG_T0)->allowed);
    assert_int_equal(r.d.binding, 1);
    h = build(p, &r);
    assert_string_equal(h.ratelimit, "\"large-daily\";r=1;t=43200");
    assert_true(request(&r, MG_T0 + MG_SEC(1))->allowed);
    assert_false(request(&r, MG_T0 + MG_SEC(2))->allowed);
    assert_int_equal(r.d.binding, 1);

    /* A burst above the quota: 50 of 100 left is half, though it is five
     * windows' quota; 6 of 10 is more. */
    memset(&r, 0, sizeof(r));
    add_layer(&r, "roomy", &roomy);
    add_layer(&r, "tight", &tight);
    r.layers[0].cost = 50;
    r.layers[1].cost = 4;
    assert_true(request(&r, MG_T0)->allowed);
    assert_int_equal(r.d.layer[0].remaining, 50);
    assert_int_equal(r.d.layer[1].remaining, 6);
    assert_int_equal(r.d.binding, 0);
    h = build(p, &r);
    assert_string_equal(h.ratelimit, "\"roomy\";r=50;t=300");

    /* The OpenAI trio of a kind picks the same way. */
    {
        mg_headers_openai o;
        for (i = 0; i < 2; i++) {
            r.layers[i].tokens = MG_COUNT_TOTAL + 1;
        }
        mg_headers_build_openai(p, r.layers, &r.d, &o);
        assert_string_equal(o.remaining_tokens, "50");
    }
}

/* A cost above what a limit can ever hold: no Retry-After (no wait admits
 * it), x-should-retry false, and that limit binds -- the smallest such, and
 * before any limit that only asks for a wait. */
static void test_never_fits(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec free5 = mg_test_spec(5, MG_MIN(1), 5);
    mg_limit_spec pro = mg_test_spec(100, MG_MIN(1), 100);
    mg_limit_spec pro_tokens = mg_test_spec(600, MG_MIN(1), 600);
    mg_limit_spec large_tpm = mg_test_spec(300, MG_MIN(1), 300);
    mg_limit_spec daily, strict = mg_test_spec(1, MG_HOUR(1), 1);
    mg_headers_openai o;
    mg_headers h;
    req r;

    /* `free 5/min` and a route costing 10: refused on a full bucket. */
    memset(&r, 0, sizeof(r));
    add_layer(&r, "free", &free5);
    r.layers[0].cost = 10;
    assert_false(request(&r, MG_T0)->allowed);
    assert_int_equal(r.d.never, 0);
    assert_int_equal(r.d.binding, 0);
    h = build(p, &r);
    assert_string_equal(h.ratelimit, "\"free\";r=5;t=0");
    assert_null(h.retry_after);
    assert_null(h.retry_after_ms);
    assert_string_equal(h.should_retry, "false");
    /* Cost 5 fits, and a wait is a wait again. */
    r.layers[0].cost = 5;
    assert_true(request(&r, MG_T0)->allowed);
    assert_int_equal(r.d.never, -1);
    assert_false(request(&r, MG_T0)->allowed);
    assert_int_equal(r.d.never, -1);
    h = build(p, &r);
    assert_string_equal(h.retry_after, "60");
    assert_string_equal(h.should_retry, "true");

    /* A reservation of 618 tokens: above pro-tokens' 600 and large-tpm's
     * 300; large-tpm, the smaller, is the one to shrink below. */
    memset(&r, 0, sizeof(r));
    add_layer(&r, "pro", &pro);
    add_layer(&r, "pro-tokens", &pro_tokens);
    add_layer(&r, "large-tpm", &large_tpm);
    r.layers[1].cost = r.layers[2].cost = 618;
    r.layers[1].tokens = r.layers[2].tokens = MG_COUNT_TOTAL + 1;
    assert_false(request(&r, MG_T0)->allowed);
    assert_int_equal(r.d.never, 2);
    assert_int_equal(r.d.binding, 2);
    h = build(p, &r);
    assert_string_equal(h.ratelimit, "\"large-tpm\";r=300;t=0");
    assert_null(h.retry_after);
    assert_string_equal(h.should_retry, "false");
    mg_headers_build_openai(p, r.layers, &r.d, &o);
    assert_string_equal(o.limit_tokens, "300");
    assert_string_equal(o.reset_tokens, "0ms");
    assert_string_equal(o.limit_requests, "100");

    /* A layer that only asks for a wait, however long, does not hide one
     * that can never admit: a fixed window of 2 a day and a cost of 3. */
    assert_null(mg_limit_spec_init(&daily, MG_ALGO_FIXED_WINDOW, 2,
                                   MG_DAY(1), 0));
    memset(&r, 0, sizeof(r));
    add_layer(&r, "strict", &strict);
    add_layer(&r, "daily", &daily);
    assert_true(request(&r, MG_T0)->allowed);       /* strict now empty */
    r.layers[0].cost = 1;
    r.layers[1].cost = 3;
    assert_false(request(&r, MG_T0 + MG_SEC(1))->allowed);
    assert_false(r.d.layer[0].allowed);
    assert_int_equal(r.d.never, 1);
    assert_int_equal(r.d.binding, 1);
    h = build(p, &r);
    assert_null(h.retry_after);
    assert_string_equal(h.should_retry, "false");

    /* A shadow layer that could never admit it only reports. */
    r.layers[1].shadow = 1;
    r.layers[0].cost = 0;
    assert_true(request(&r, MG_T0 + MG_SEC(2))->allowed);
    assert_int_equal(r.d.never, -1);
    assert_int_equal(r.d.shadow_rejected, 0x2);
}

/* A window that is not whole seconds (possible through mg_limit_spec_init,
 * never through the rate syntax) is announced rounded up. */
static void test_policy_window_rounding(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec spec = mg_test_spec(3, MG_MSEC(1500), 3);
    mg_headers h;
    req r;

    memset(&r, 0, sizeof(r));
    add_layer(&r, "odd", &spec);
    assert_true(request(&r, MG_T0)->allowed);
    h = build(p, &r);
    assert_string_equal(h.policy, "\"odd\";q=3;w=2");
    assert_string_equal(h.ratelimit, "\"odd\";r=2;t=1");    /* 0.5 s */
}

static void test_no_layers(void **state)
{
    apr_pool_t *p = *state;
    mg_decision d;
    mg_headers h;

    memset(&d, 0, sizeof(d));
    d.nlayers = 0;
    mg_limit_combine(NULL, &d);       /* no layers: none is read */
    memset(&h, 0x5a, sizeof(h));
    mg_headers_build(p, NULL, &d, &h);
    assert_null(h.policy);
    assert_null(h.ratelimit);
    assert_null(h.x_limit);
    assert_null(h.x_remaining);
    assert_null(h.x_reset);
    assert_null(h.retry_after);
    assert_null(h.retry_after_ms);
    assert_null(h.should_retry);
}

/* ---- error bodies ------------------------------------------------------------- */

static void test_error_simple(void **state)
{
    apr_pool_t *p = *state;

    assert_string_equal(
        mg_error_json(p, "Invalid API key provided.", MG_ERRT_REQUEST,
                      MG_ERR_INVALID_KEY),
        "{\"error\":{\"message\":\"Invalid API key provided.\","
        "\"type\":\"invalid_request_error\",\"param\":null,"
        "\"code\":\"invalid_api_key\"}}\n");
    assert_string_equal(
        mg_error_json(p, "", MG_ERRT_REQUESTS, MG_ERR_RATE_LIMITED),
        "{\"error\":{\"message\":\"\",\"type\":\"requests\",\"param\":null,"
        "\"code\":\"rate_limit_exceeded\"}}\n");
}

static void test_error_escaping(void **state)
{
    apr_pool_t *p = *state;
    /* Quotes, backslashes, newline, tab, CR, a control byte, a slash, and
     * UTF-8 of 2, 3 and 4 bytes (e-acute, check mark, U+1F600). */
    const char *message = "He said \"hi\" in C:\\tmp\\x\nline 2\tcol\r"
                          "\x01 a/b caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80";
    const char *expected =
        "{\"error\":{\"message\":\"He said \\\"hi\\\" in C:\\\\tmp\\\\x"
        "\\nline 2\\tcol\\r\\u0001 a/b caf\xc3\xa9 \xe2\x9c\x93 "
        "\xf0\x9f\x98\x80\",\"type\":\"server_error\",\"param\":null,"
        "\"code\":\"gateway_error\"}}\n";
    const char *out = mg_error_json(p, message, MG_ERRT_SERVER,
                                    MG_ERR_GATEWAY);
    json_t *body, *msg;
    json_error_t jerr;

    assert_string_equal(out, expected);

    /* And a JSON parser reads the message back byte for byte. */
    body = json_loads(out, 0, &jerr);
    assert_non_null(body);
    msg = json_object_get(json_object_get(body, "error"), "message");
    assert_non_null(msg);
    assert_string_equal(json_string_value(msg), message);
    assert_true(json_is_null(json_object_get(json_object_get(body, "error"),
                                             "param")));
    json_decref(body);

    /* type and code are escaped the same way. */
    assert_string_equal(mg_error_json(p, "m", "a\"b", "c\\d"),
                        "{\"error\":{\"message\":\"m\",\"type\":\"a\\\"b\","
                        "\"param\":null,\"code\":\"c\\\\d\"}}\n");
}

static void test_precomputed_texts(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec spec = mg_test_spec(10, MG_MIN(1), 10);
    req r;
    const mg_decision *d;
    mg_headers h;

    memset(&r, 0, sizeof(r));
    add_layer(&r, "free", &spec);
    /* Texts made once per limit (mg_layers_prepare) are used verbatim. */
    assert_string_equal(mg_headers_policy_item(p, "free", &spec),
                        "\"free\";q=10;w=60");
    r.layers[0].policy_item = "\"free\";q=10;w=60;precomputed";
    r.layers[0].limit_text = "ten";
    d = request(&r, MG_T0);
    mg_headers_build(p, r.layers, d, &h);
    assert_string_equal(h.policy, "\"free\";q=10;w=60;precomputed");
    assert_string_equal(h.x_limit, "ten");
    assert_string_equal(h.ratelimit, "\"free\";r=9;t=6");
    assert_string_equal(h.x_remaining, "9");
}

/* Header names the gateway owns, however a client spells them: WSGI and
 * CGI read X_Foo and X-Foo as the same HTTP_X_FOO. */
static void test_header_names(void **state)
{
    (void)state;
    assert_true(mg_header_name_is("X-API-Key", "X-API-Key", 0));
    assert_true(mg_header_name_is("x_api_key", "X-API-Key", 0));
    assert_true(mg_header_name_is("X_Api-KEY", "X-API-Key", 0));
    assert_false(mg_header_name_is("X-API-Keys", "X-API-Key", 0));
    assert_false(mg_header_name_is("X-API-Ke", "X-API-Key", 0));
    assert_false(mg_header_name_is("X.API.Key", "X-API-Key", 0));
    assert_true(mg_header_name_is("X_Modelgate_Tenant", "X-Modelgate-", 1));
    assert_true(mg_header_name_is("x-modelgate-", "X-Modelgate-", 1));
    assert_false(mg_header_name_is("X-Modelgate", "X-Modelgate-", 1));
    assert_false(mg_header_name_is("X-Model-gate-Tenant", "X-Modelgate-", 1));
    /* Only letters fold: bytes that differ in bit 0x20 alone but are no
     * letters are different names. */
    assert_false(mg_header_name_is("X-@", "X-`", 0));
    assert_false(mg_header_name_is("X-`", "X-@", 0));
    assert_false(mg_header_name_is("X-^", "X-~", 0));
    assert_false(mg_header_name_is("X-[", "X-{", 0));
    assert_false(mg_header_name_is("X\\", "X|", 0));
    assert_false(mg_header_name_is("X\x01", "X!", 0));
    assert_true(mg_header_name_is("X-ZZ", "x-zz", 0));
    assert_true(mg_header_name_is("x-aa", "X-AA", 0));
    assert_true(mg_header_name_is("X-A", "X_a", 0));
    assert_true(mg_header_name_is("X_A", "X_a", 0));
    assert_false(mg_header_name_is("X_A", "X.a", 0));
    /* The end of the name is no letter. */
    assert_false(mg_header_name_is("X-", "X-A", 1));
    assert_false(mg_header_name_is("", "X", 1));
    assert_true(mg_header_name_is("", "", 0));
    assert_true(mg_header_name_is("abc", "", 1));
    assert_false(mg_header_name_is("abc", "", 0));
}

/* Which of an upstream's response fields are the gateway's to write. */
static void test_header_families(void **state)
{
    (void)state;
    assert_int_equal(mg_header_family("X-Modelgate-Model"), MG_HF_OURS);
    assert_int_equal(mg_header_family("x_modelgate_degraded"), MG_HF_OURS);
    assert_int_equal(mg_header_family("X-Modelgate-"), MG_HF_OURS);
    assert_int_equal(mg_header_family("X-Modelgate"), 0);
    assert_int_equal(mg_header_family("RateLimit"), MG_HF_RATELIMIT);
    assert_int_equal(mg_header_family("ratelimit-policy"), MG_HF_RATELIMIT);
    assert_int_equal(mg_header_family("RateLimit_Policy"), MG_HF_RATELIMIT);
    assert_int_equal(mg_header_family("RateLimits"), 0);
    assert_int_equal(mg_header_family("RateLimit-Policy-X"), 0);
    assert_int_equal(mg_header_family("X-RateLimit-Limit"), MG_HF_RATELIMIT);
    assert_int_equal(mg_header_family("x_ratelimit_remaining"),
                     MG_HF_RATELIMIT);
    assert_int_equal(mg_header_family("X-RateLimit-Reset"), MG_HF_RATELIMIT);
    assert_int_equal(mg_header_family("X-RateLimit-Resets"), 0);
    assert_int_equal(mg_header_family("X-RateLimit-"), 0);
    assert_int_equal(mg_header_family("Retry-After"), MG_HF_RETRY);
    assert_int_equal(mg_header_family("retry-after-ms"), MG_HF_RETRY);
    assert_int_equal(mg_header_family("Retry-After-Seconds"), 0);
    assert_int_equal(mg_header_family("x-should-retry"), MG_HF_RETRY);
    assert_int_equal(mg_header_family("X_Should_Retry"), MG_HF_RETRY);
    assert_int_equal(mg_header_family("x-ratelimit-limit-requests"),
                     MG_HF_REQUESTS);
    assert_int_equal(mg_header_family("x-ratelimit-remaining-requests"),
                     MG_HF_REQUESTS);
    assert_int_equal(mg_header_family("X-RateLimit-Reset-Requests"),
                     MG_HF_REQUESTS);
    assert_int_equal(mg_header_family("x-ratelimit-limit-tokens"),
                     MG_HF_TOKENS);
    assert_int_equal(mg_header_family("x-ratelimit-remaining-tokens"),
                     MG_HF_TOKENS);
    assert_int_equal(mg_header_family("x_ratelimit_reset_tokens"),
                     MG_HF_TOKENS);
    /* OpenAI's other fields and anyone else's are not the gateway's. */
    assert_int_equal(mg_header_family("x-ratelimit-limit-project-tokens"), 0);
    assert_int_equal(mg_header_family("x-ratelimit-remaining-images"), 0);
    assert_int_equal(mg_header_family("X-Request-Id"), 0);
    assert_int_equal(mg_header_family("X-Mock-Server"), 0);
    assert_int_equal(mg_header_family("Xmodelgate-Model"), 0);
    assert_int_equal(mg_header_family("Content-Type"), 0);
    assert_int_equal(mg_header_family("R"), 0);
    assert_int_equal(mg_header_family("X"), 0);
    assert_int_equal(mg_header_family(""), 0);
}

static void test_connection_tokens(void **state)
{
    apr_pool_t *p = *state;
    const char *plain = "keep-alive";

    /* Nothing to drop: the same string, no allocation. */
    assert_ptr_equal(mg_header_connection_without(p, plain, "X-Modelgate-"),
                     plain);
    assert_string_equal(mg_header_connection_without(p,
        "close, X-Modelgate-Tenant,X_MODELGATE_TIER ,  x-modelgate-key-id",
        "X-Modelgate-"), "close");
    assert_string_equal(mg_header_connection_without(p,
        " TE ,x-modelgate-tier, Upgrade", "X-Modelgate-"), "TE, Upgrade");
    assert_null(mg_header_connection_without(p, "X-Modelgate-Tier",
                                             "X-Modelgate-"));
    assert_null(mg_header_connection_without(p, " , X_Modelgate_A,,",
                                             "X-Modelgate-"));
    /* A token that only contains the prefix later is not ours. */
    assert_string_equal(mg_header_connection_without(p,
        "Foo-X-Modelgate-Tier, X-Modelgate-Tier", "X-Modelgate-"),
        "Foo-X-Modelgate-Tier");
}

/* OpenAI writes waits as Go durations. */
static void test_openai_durations(void **state)
{
    apr_pool_t *p = *state;

    assert_string_equal(mg_headers_duration(p, 0), "0ms");
    assert_string_equal(mg_headers_duration(p, 1), "1ms");
    assert_string_equal(mg_headers_duration(p, MG_MSEC(17)), "17ms");
    assert_string_equal(mg_headers_duration(p, MG_SEC(1)), "1s");
    assert_string_equal(mg_headers_duration(p, MG_MSEC(1500)), "1.5s");
    assert_string_equal(mg_headers_duration(p, MG_MSEC(1250)), "1.25s");
    assert_string_equal(mg_headers_duration(p, MG_MSEC(59112)), "59.112s");
    assert_string_equal(mg_headers_duration(p, MG_MIN(6)), "6m0s");
    assert_string_equal(mg_headers_duration(p, MG_MIN(6) + MG_MSEC(500)),
                        "6m0.5s");
    assert_string_equal(mg_headers_duration(p, MG_HOUR(1)), "1h0m0s");
    assert_string_equal(mg_headers_duration(p, MG_DAY(1) + MG_SEC(61)),
                        "24h1m1s");
    /* Decimals as they are needed, zeros inside kept; the longest text. */
    assert_string_equal(mg_headers_duration(p, MG_MSEC(999)), "999ms");
    assert_string_equal(mg_headers_duration(p, MG_MSEC(1050)), "1.05s");
    assert_string_equal(mg_headers_duration(p, MG_MSEC(1001)), "1.001s");
    assert_string_equal(mg_headers_duration(p, MG_MSEC(60010)), "1m0.01s");
    assert_string_equal(mg_headers_duration(p, -5), "0ms");
    assert_string_equal(mg_headers_duration(p, APR_INT64_MAX),
                        "2562047788h0m54.776s");
}

/* The -requests trio from request layers, the -tokens one from token
 * layers, budgets in neither; each from the layer of its kind that binds. */
static void test_openai_trios(void **state)
{
    apr_pool_t *p = *state;
    mg_layer layers[4];
    mg_decision d;
    mg_headers_openai h;

    memset(layers, 0, sizeof(layers));
    memset(&d, 0, sizeof(d));
    d.nlayers = 4;
    layers[1].tokens = MG_COUNT_TOTAL + 1;
    layers[2].tokens = MG_COUNT_COMPLETION + 1;
    layers[3].tokens = MG_LAYER_MONEY;
    d.layer[0] = mg_test_ld(1, 100, 40, 0, 0);
    d.layer[0].reset = MG_SEC(36);
    d.layer[1] = mg_test_ld(1, 40000, 30000, 0, 0);
    d.layer[1].reset = MG_SEC(15);
    d.layer[2] = mg_test_ld(1, 1000, 100, 0, 0);  /* 10% left: binds */
    d.layer[2].reset = MG_MIN(6);
    d.layer[3] = mg_test_ld(1, 5, 0, 0, 0);       /* a budget: neither */
    {
        /* Limits holding what the decisions' limits say: shares compare. */
        static mg_limit_spec specs[4];
        int i;
        for (i = 0; i < 4; i++) {
            specs[i] = mg_test_spec(d.layer[i].limit, MG_MIN(1),
                                    d.layer[i].limit);
            layers[i].spec = &specs[i];
        }
    }
    mg_headers_build_openai(p, layers, &d, &h);
    assert_string_equal(h.limit_requests, "100");
    assert_string_equal(h.remaining_requests, "40");
    assert_string_equal(h.reset_requests, "36s");
    assert_string_equal(h.limit_tokens, "1000");
    assert_string_equal(h.remaining_tokens, "100");
    assert_string_equal(h.reset_tokens, "6m0s");
    /* A refusing token layer binds, with its wait. */
    d.layer[1] = mg_test_ld(0, 40000, 10, MG_MSEC(1500), 0);
    mg_headers_build_openai(p, layers, &d, &h);
    assert_string_equal(h.limit_tokens, "40000");
    assert_string_equal(h.reset_tokens, "1.5s");
    /* No token layer: no -tokens trio. */
    d.nlayers = 1;
    mg_headers_build_openai(p, layers, &d, &h);
    assert_non_null(h.limit_requests);
    assert_null(h.limit_tokens);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_openai_durations),
        MG_TEST(test_openai_trios),
        MG_TEST(test_header_names),
        MG_TEST(test_header_families),
        MG_TEST(test_connection_tokens),
        MG_TEST(test_seconds_rounding),
        MG_TEST(test_allowed),
        MG_TEST(test_rejected),
        MG_TEST(test_rejected_long_wait),
        MG_TEST(test_should_retry_horizon),
        MG_TEST(test_multi_layer),
        MG_TEST(test_binding_share_of_burst),
        MG_TEST(test_never_fits),
        MG_TEST(test_policy_window_rounding),
        MG_TEST(test_no_layers),
        MG_TEST(test_precomputed_texts),
        MG_TEST(test_error_simple),
        MG_TEST(test_error_escaping),
    };

    return MG_RUN(tests);
}
