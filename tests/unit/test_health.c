/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_health.c -- upstream health (mg_health.c): the latency histogram,
 * the sliding window, the circuit breaker and "degraded", on a fake clock.
 */
#include "mg_test.h"
#include <string.h>

#include "mg_health.h"

static mg_health_conf conf(void)
{
    mg_health_conf c;

    mg_health_conf_default(&c);
    c.window = MG_SEC(10);
    c.min_requests = 10;
    c.error_pct = 50;
    c.open = MG_SEC(5);
    c.probes = 1;
    return c;
}

static void record_n(mg_health *h, const mg_health_conf *c, apr_time_t now,
                     int n, int failed, apr_interval_time_t latency)
{
    int i;

    for (i = 0; i < n; i++) {
        mg_health_record(h, c, now, failed, latency, 0, 0);
    }
}

static int allowed(mg_health *h, const mg_health_conf *c, apr_time_t now,
                   int *probe)
{
    apr_interval_time_t ra;
    return mg_health_allow(h, c, now, probe, &ra);
}

/* Every latency lands in a bucket whose top is at least it and less than
 * 1.25 times it (plus one microsecond): percentiles are upper bounds
 * within a quarter. */
static void test_buckets(void **state)
{
    apr_interval_time_t l;
    int b, prev = -1;

    for (l = 0; l < MG_SEC(100); l = l < 64 ? l + 1 : l + l / 7) {
        b = mg_health_bucket(l);
        assert_true(b >= prev);
        assert_true(b < MG_HEALTH_BUCKETS);
        assert_true(mg_health_bucket_top(b) >= l);
        assert_true(mg_health_bucket_top(b) <= l + l / 4 + 1);
        if (b > 0) {
            assert_true(mg_health_bucket_top(b - 1) < l);
        }
        prev = b;
    }
    assert_int_equal(mg_health_bucket(-5), 0);
    assert_int_equal(mg_health_bucket(MG_SEC(100000)), MG_HEALTH_BUCKETS - 1);
}

static void test_percentiles_and_window(void **state)
{
    mg_health_conf c = conf();
    mg_health h;
    mg_health_stats st;
    apr_time_t t = MG_T0;

    memset(&h, 0, sizeof(h));
    mg_health_stats_get(&h, &c, t, &st);
    assert_int_equal(st.requests, 0);
    assert_int_equal(st.p95, 0);
    /* 90 fast answers, 10 slow ones */
    record_n(&h, &c, t, 90, 0, MG_MSEC(20));
    record_n(&h, &c, t + MG_SEC(1), 10, 0, MG_MSEC(900));
    mg_health_stats_get(&h, &c, t + MG_SEC(2), &st);
    assert_int_equal(st.requests, 100);
    assert_int_equal(st.errors, 0);
    assert_true(st.p50 >= MG_MSEC(20) && st.p50 < MG_MSEC(25));
    assert_true(st.p95 >= MG_MSEC(900) && st.p95 < MG_MSEC(1125));
    assert_true(st.p99 >= MG_MSEC(900));
    /* the fast ones leave the window first */
    mg_health_stats_get(&h, &c, t + MG_SEC(10) + MG_MSEC(500), &st);
    assert_int_equal(st.requests, 10);
    assert_true(st.p50 >= MG_MSEC(900));
    mg_health_stats_get(&h, &c, t + MG_SEC(12), &st);
    assert_int_equal(st.requests, 0);
}

static void test_breaker_opens_on_errors(void **state)
{
    mg_health_conf c = conf();
    mg_health h;
    apr_time_t t = MG_T0;
    apr_interval_time_t ra;
    int probe;

    c.consecutive = 0;        /* the share alone */
    memset(&h, 0, sizeof(h));
    /* below min_requests nothing is judged */
    record_n(&h, &c, t, 9, 1, 0);
    assert_true(allowed(&h, &c, t, &probe));
    assert_false(probe);
    /* the tenth failure of ten: 100 % >= 50 % */
    record_n(&h, &c, t, 1, 1, 0);
    assert_int_equal(h.state, MG_BREAKER_OPEN);
    assert_int_equal(h.opened, 1);
    assert_false(mg_health_allow(&h, &c, t + MG_SEC(1), &probe, &ra));
    assert_int_equal(ra, MG_SEC(4));
    assert_true(mg_health_degraded(&h, &c, t + MG_SEC(1)));

    /* half-open after 5 s: one probe, the others still refused */
    assert_true(allowed(&h, &c, t + MG_SEC(5), &probe));
    assert_true(probe);
    assert_int_equal(h.state, MG_BREAKER_HALF_OPEN);
    assert_false(mg_health_allow(&h, &c, t + MG_SEC(5), &probe, &ra));
    assert_int_equal(ra, MG_SEC(1));

    /* the probe fails: open twice as long */
    mg_health_record(&h, &c, t + MG_SEC(6), 1, 0, 0, 1);
    assert_int_equal(h.state, MG_BREAKER_OPEN);
    assert_false(allowed(&h, &c, t + MG_SEC(15), &probe));
    assert_true(allowed(&h, &c, t + MG_SEC(16), &probe));
    assert_true(probe);

    /* the probe succeeds: closed, and the old failures are forgotten */
    mg_health_record(&h, &c, t + MG_SEC(17), 0, MG_MSEC(10), 0, 1);
    assert_int_equal(h.state, MG_BREAKER_CLOSED);
    assert_true(allowed(&h, &c, t + MG_SEC(17), &probe));
    assert_false(probe);
    record_n(&h, &c, t + MG_SEC(17), 1, 1, 0);
    assert_int_equal(h.state, MG_BREAKER_CLOSED);
    assert_false(mg_health_degraded(&h, &c, t + MG_SEC(17)));
}

static void test_breaker_share_and_growth(void **state)
{
    mg_health_conf c = conf();
    mg_health h;
    apr_time_t t = MG_T0;
    int i, probe;

    c.consecutive = 0;        /* the share alone */
    memset(&h, 0, sizeof(h));
    /* 60 successes, then failures: opens when failures reach half */
    record_n(&h, &c, t, 60, 0, MG_MSEC(5));
    for (i = 0; i < 59; i++) {
        mg_health_record(&h, &c, t, 1, 0, 0, 0);
        assert_int_equal(h.state, MG_BREAKER_CLOSED);
    }
    mg_health_record(&h, &c, t, 1, 0, 0, 0);
    assert_int_equal(h.state, MG_BREAKER_OPEN);

    /* failed probes double the open time up to 16 x open */
    for (i = 0; i < 8; i++) {
        t = h.open_until;
        assert_true(allowed(&h, &c, t, &probe));
        assert_true(probe);
        mg_health_record(&h, &c, t, 1, 0, 0, 1);
    }
    assert_int_equal(h.open_until - t, 16 * c.open);

    /* a probe whose process died is forgotten after `open` */
    t = h.open_until;
    assert_true(allowed(&h, &c, t, &probe));
    assert_false(allowed(&h, &c, t + c.open - 1, &probe));
    assert_true(allowed(&h, &c, t + c.open, &probe));
    assert_true(probe);
}

/* An upstream's 429/503 with Retry-After opens the breaker for that long
 * (a minute at most), whatever the counts. */
static void test_pause(void **state)
{
    mg_health_conf c = conf();
    mg_health h;
    apr_time_t t = MG_T0;
    apr_interval_time_t ra;
    int probe;

    memset(&h, 0, sizeof(h));
    mg_health_record(&h, &c, t, 0, MG_MSEC(3), MG_SEC(3), 0);
    assert_false(mg_health_allow(&h, &c, t + MG_SEC(1), &probe, &ra));
    assert_int_equal(ra, MG_SEC(2));
    assert_true(allowed(&h, &c, t + MG_SEC(3), &probe));
    assert_true(probe);
    mg_health_record(&h, &c, t + MG_SEC(3), 0, MG_MSEC(3), MG_SEC(600), 1);
    assert_false(mg_health_allow(&h, &c, t + MG_SEC(3), &probe, &ra));
    assert_int_equal(ra, MG_SEC(60));
}

/* Issue 10: with the window full of successes, a dead server failed 7,320
 * forwards before the share reached 50 %.  Five failures in a row open the
 * breaker whatever the window holds; a success ends the run. */
static void test_consecutive_failures_open(void **state)
{
    mg_health_conf c = conf();
    mg_health h;
    mg_health_stats st;
    apr_time_t t = MG_T0;
    int i, probe;

    assert_int_equal(c.consecutive, 5);         /* the default */
    memset(&h, 0, sizeof(h));
    record_n(&h, &c, t, 1000, 0, MG_MSEC(20));
    for (i = 0; i < 4; i++) {
        assert_int_equal(mg_health_record(&h, &c, t, 1, 0, 0, 0),
                         MG_HEALTH_UNCHANGED);
    }
    /* a success, counted the lock-free way, ends the run */
    mg_health_count(&h, &c, t, 0, MG_MSEC(20));
    assert_int_equal(h.run, 0);
    for (i = 0; i < 4; i++) {
        assert_int_equal(mg_health_record(&h, &c, t + MG_SEC(1), 1, 0, 0, 0),
                         MG_HEALTH_UNCHANGED);
        assert_int_equal(h.state, MG_BREAKER_CLOSED);
    }
    /* a success recorded under the lock ends it too */
    assert_int_equal(mg_health_record(&h, &c, t + MG_SEC(1), 0, MG_MSEC(20),
                                      0, 0), MG_HEALTH_UNCHANGED);
    record_n(&h, &c, t + MG_SEC(2), 4, 1, 0);
    assert_int_equal(h.state, MG_BREAKER_CLOSED);
    /* the fifth failure in a row: 13 of 1,015 answers failed (1.3 %) */
    assert_int_equal(mg_health_record(&h, &c, t + MG_SEC(2), 1, 0, 0, 0),
                     MG_HEALTH_OPENED_RUN);
    mg_health_stats_get(&h, &c, t + MG_SEC(2), &st);
    assert_int_equal(st.requests, 1015);
    assert_int_equal(st.errors, 13);
    assert_int_equal(h.state, MG_BREAKER_OPEN);
    assert_int_equal(h.opened, 1);
    assert_int_equal(h.open_until, t + MG_SEC(2) + c.open);
    /* answers still in flight when it opened change nothing */
    assert_int_equal(mg_health_record(&h, &c, t + MG_SEC(2), 1, 0, 0, 0),
                     MG_HEALTH_UNCHANGED);
    assert_int_equal(h.opened, 1);
    /* refused meanwhile: counted for the line that says it closed */
    assert_false(allowed(&h, &c, t + MG_SEC(3), &probe));
    assert_false(allowed(&h, &c, t + MG_SEC(4), &probe));
    assert_int_equal(h.refused, 2);

    /* a good probe closes it and ends the run: five failures again */
    assert_true(allowed(&h, &c, h.open_until, &probe));
    assert_true(probe);
    assert_int_equal(mg_health_record(&h, &c, h.open_until, 0, MG_MSEC(20),
                                      0, 1), MG_HEALTH_CLOSED);
    assert_int_equal(h.run, 0);
    t = h.open_until;
    record_n(&h, &c, t, 4, 1, 0);
    assert_int_equal(h.state, MG_BREAKER_CLOSED);
    assert_int_equal(mg_health_record(&h, &c, t, 1, 0, 0, 0),
                     MG_HEALTH_OPENED_RUN);
    assert_int_equal(h.opened, 2);
    assert_int_equal(h.refused, 0);             /* a new outage */
}

/* A run is "in a row" within the window: failures a whole window apart,
 * with no traffic between them, start a new run. */
static void test_consecutive_run_ages_out(void **state)
{
    mg_health_conf c = conf();
    mg_health h;
    apr_time_t t = MG_T0;

    memset(&h, 0, sizeof(h));
    record_n(&h, &c, t, 4, 1, 0);
    assert_int_equal(h.run, 4);
    /* just inside the window: the run goes on and opens */
    record_n(&h, &c, t + c.window - 1, 1, 1, 0);
    assert_int_equal(h.state, MG_BREAKER_OPEN);

    memset(&h, 0, sizeof(h));
    record_n(&h, &c, t, 4, 1, 0);
    /* a whole window later: a new run of one */
    record_n(&h, &c, t + c.window, 1, 1, 0);
    assert_int_equal(h.run, 1);
    assert_int_equal(h.state, MG_BREAKER_CLOSED);
    record_n(&h, &c, t + c.window + MG_SEC(1), 3, 1, 0);
    assert_int_equal(h.state, MG_BREAKER_CLOSED);
    record_n(&h, &c, t + c.window + MG_SEC(1), 1, 1, 0);
    assert_int_equal(h.state, MG_BREAKER_OPEN);
}

/* consecutive=0 (breaker_consecutive=off): only the share opens it; the
 * share's own thresholds are untouched by the run. */
static void test_consecutive_off(void **state)
{
    mg_health_conf c = conf();
    mg_health h;
    apr_time_t t = MG_T0;
    int i;

    c.consecutive = 0;
    memset(&h, 0, sizeof(h));
    record_n(&h, &c, t, 100, 0, MG_MSEC(20));
    for (i = 0; i < 99; i++) {
        assert_int_equal(mg_health_record(&h, &c, t, 1, 0, 0, 0),
                         MG_HEALTH_UNCHANGED);
    }
    assert_int_equal(h.run, 99);
    assert_int_equal(mg_health_record(&h, &c, t, 1, 0, 0, 0),
                     MG_HEALTH_OPENED_SHARE);
}

/* What each transition reports: the glue logs one line per change. */
static void test_events(void **state)
{
    mg_health_conf c = conf();
    mg_health h;
    apr_time_t t = MG_T0;
    int probe;

    memset(&h, 0, sizeof(h));
    assert_int_equal(mg_health_record(&h, &c, t, 0, MG_MSEC(3), MG_SEC(2), 0),
                     MG_HEALTH_OPENED_PAUSE);
    /* another pause while open: longer, but no new line */
    assert_int_equal(mg_health_record(&h, &c, t, 0, MG_MSEC(3), MG_SEC(3), 0),
                     MG_HEALTH_UNCHANGED);
    assert_true(allowed(&h, &c, t + MG_SEC(3), &probe));
    assert_true(probe);
    assert_int_equal(mg_health_record(&h, &c, t + MG_SEC(3), 0, MG_MSEC(3),
                                      MG_SEC(1), 1), MG_HEALTH_REOPENED);
    assert_true(allowed(&h, &c, t + MG_SEC(4), &probe));
    assert_int_equal(mg_health_record(&h, &c, t + MG_SEC(4), 1, 0, 0, 1),
                     MG_HEALTH_REOPENED);
    assert_true(allowed(&h, &c, h.open_until, &probe));
    assert_int_equal(mg_health_record(&h, &c, h.open_until, 0, MG_MSEC(3),
                                      0, 1), MG_HEALTH_CLOSED);
    assert_int_equal(h.opened, 3);              /* reopening counts */
}

static void test_degraded(void **state)
{
    mg_health_conf c = conf();
    mg_health h;
    apr_time_t t = MG_T0;

    c.degrade_p95 = MG_MSEC(500);
    c.degrade_error_pct = 10;
    memset(&h, 0, sizeof(h));
    record_n(&h, &c, t, 100, 0, MG_MSEC(100));
    assert_false(mg_health_degraded(&h, &c, t));
    /* 5 of 105 slow: p95 still fast */
    record_n(&h, &c, t, 5, 0, MG_MSEC(800));
    assert_false(mg_health_degraded(&h, &c, t));
    record_n(&h, &c, t, 10, 0, MG_MSEC(800));
    assert_true(mg_health_degraded(&h, &c, t));
    /* recovers when the slow answers leave the window */
    record_n(&h, &c, t + MG_SEC(11), 20, 0, MG_MSEC(50));
    assert_false(mg_health_degraded(&h, &c, t + MG_SEC(11)));
    /* errors: 10 % degrades before 50 % opens */
    record_n(&h, &c, t + MG_SEC(11), 3, 1, 0);
    assert_true(mg_health_degraded(&h, &c, t + MG_SEC(11)));
    assert_int_equal(h.state, MG_BREAKER_CLOSED);
    /* too few requests to judge */
    memset(&h, 0, sizeof(h));
    record_n(&h, &c, t, 5, 0, MG_SEC(5));
    assert_false(mg_health_degraded(&h, &c, t));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_buckets),
        MG_TEST(test_percentiles_and_window),
        MG_TEST(test_breaker_opens_on_errors),
        MG_TEST(test_breaker_share_and_growth),
        MG_TEST(test_pause),
        MG_TEST(test_consecutive_failures_open),
        MG_TEST(test_consecutive_run_ages_out),
        MG_TEST(test_consecutive_off),
        MG_TEST(test_events),
        MG_TEST(test_degraded),
    };
    return MG_RUN(tests);
}
