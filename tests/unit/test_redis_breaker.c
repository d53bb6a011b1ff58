/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_redis_breaker.c -- the redis store's circuit breaker
 * (plugins/redis/mg_redis_breaker.c) on a fake clock: a stall under load
 * opens it once, only a failed probe lengthens the open time, one probe at
 * a time, and every opening retires the pooled connections (issue 10).
 */
#include "mg_test.h"
#include <string.h>

#include "mg_redis_breaker.h"

/* `n` requests let through while closed, all failing at `now` (a stall
 * with n requests in flight): only the first one may change anything. */
static void fail_in_flight(mg_redis_breaker *b, apr_time_t now, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        assert_int_equal(mg_redis_breaker_report(b, now, 0, 0),
                         i == 0 && b->state == MG_REDIS_BREAKER_CLOSED
                         ? MG_REDIS_OPENED : MG_REDIS_NO_CHANGE);
    }
}

static void test_stall_opens_once(void **state)
{
    mg_redis_breaker b;
    apr_time_t t = MG_T0;
    int i;

    (void)state;
    mg_redis_breaker_init(&b);
    for (i = 0; i < 16; i++) {
        assert_int_equal(mg_redis_breaker_allow(&b, t), MG_REDIS_PASS);
    }
    /* 16 requests in flight when Redis stalls: one opening, one back-off */
    fail_in_flight(&b, t + MG_MSEC(50), 16);
    assert_int_equal(b.state, MG_REDIS_BREAKER_OPEN);
    assert_int_equal(b.backoff, MG_REDIS_BACKOFF_FIRST);
    assert_int_equal(b.open_until, t + MG_MSEC(50) + MG_MSEC(250));
    assert_int_equal(b.generation, 1);
    assert_int_equal(b.opened, 1);
    /* more failures reported later while open change nothing either */
    fail_in_flight(&b, t + MG_MSEC(200), 100);
    assert_int_equal(b.open_until, t + MG_MSEC(300));
    assert_int_equal(b.generation, 1);
    /* fail fast until then; then exactly one probe */
    assert_int_equal(mg_redis_breaker_allow(&b, t + MG_MSEC(299)),
                     MG_REDIS_REFUSE);
    assert_int_equal(mg_redis_breaker_allow(&b, t + MG_MSEC(300)),
                     MG_REDIS_PROBE);
    assert_int_equal(mg_redis_breaker_allow(&b, t + MG_MSEC(300)),
                     MG_REDIS_REFUSE);
    /* Redis answers the probe: closed, back-off forgotten */
    assert_int_equal(mg_redis_breaker_report(&b, t + MG_MSEC(301), 1, 1),
                     MG_REDIS_CLOSED);
    assert_int_equal(b.state, MG_REDIS_BREAKER_CLOSED);
    assert_int_equal(b.backoff, 0);
    assert_int_equal(mg_redis_breaker_allow(&b, t + MG_MSEC(301)),
                     MG_REDIS_PASS);
    /* a new outage starts from the first back-off again */
    fail_in_flight(&b, t + MG_SEC(1), 8);
    assert_int_equal(b.backoff, MG_REDIS_BACKOFF_FIRST);
    assert_int_equal(b.generation, 2);
    assert_int_equal(b.opened, 2);
}

static void test_only_failed_probes_double(void **state)
{
    mg_redis_breaker b;
    apr_time_t t = MG_T0;
    const apr_interval_time_t want[] = {
        MG_MSEC(500), MG_MSEC(1000), MG_MSEC(1000), MG_MSEC(1000)
    };
    int i;

    (void)state;
    mg_redis_breaker_init(&b);
    fail_in_flight(&b, t, 4);
    for (i = 0; i < 4; i++) {
        t = b.open_until;
        assert_int_equal(mg_redis_breaker_allow(&b, t), MG_REDIS_PROBE);
        /* stragglers from before the opening fail while the probe is
         * out: the probe alone decides */
        assert_int_equal(mg_redis_breaker_report(&b, t, 0, 0),
                         MG_REDIS_NO_CHANGE);
        assert_int_equal(b.state, MG_REDIS_BREAKER_HALF_OPEN);
        assert_int_equal(mg_redis_breaker_report(&b, t + MG_MSEC(1), 0, 1),
                         MG_REDIS_REOPENED);
        assert_int_equal(b.backoff, want[i]);
        assert_int_equal(b.open_until, t + MG_MSEC(1) + want[i]);
        /* every failed probe retires the connections made before it */
        assert_int_equal(b.generation, 2 + i);
        /* and failures while open still change nothing */
        fail_in_flight(&b, t + MG_MSEC(2), 10);
        assert_int_equal(b.backoff, want[i]);
    }
    assert_int_equal(b.probes_failed, 4);
    assert_int_equal(b.opened, 1);
}

static void test_one_probe_at_a_time(void **state)
{
    mg_redis_breaker b;
    apr_time_t t = MG_T0;
    int i;

    (void)state;
    mg_redis_breaker_init(&b);
    fail_in_flight(&b, t, 1);
    assert_int_equal(mg_redis_breaker_allow(&b, t + MG_SEC(1)),
                     MG_REDIS_PROBE);
    /* however long the probe takes (a connect or command timeout), no
     * second one goes while it is out */
    for (i = 0; i < 100; i++) {
        assert_int_equal(mg_redis_breaker_allow(&b, t + MG_SEC(1 + i)),
                         MG_REDIS_REFUSE);
    }
    assert_int_equal(mg_redis_breaker_report(&b, t + MG_SEC(101), 0, 1),
                     MG_REDIS_REOPENED);
    assert_int_equal(b.backoff, MG_MSEC(500));
    assert_int_equal(mg_redis_breaker_allow(&b, t + MG_SEC(101)),
                     MG_REDIS_REFUSE);
}

static void test_any_success_closes(void **state)
{
    mg_redis_breaker b;
    apr_time_t t = MG_T0;

    (void)state;
    mg_redis_breaker_init(&b);
    fail_in_flight(&b, t, 1);
    /* a command from before the opening got its answer after all */
    assert_int_equal(mg_redis_breaker_report(&b, t + MG_MSEC(10), 1, 0),
                     MG_REDIS_CLOSED);
    assert_int_equal(mg_redis_breaker_allow(&b, t + MG_MSEC(10)),
                     MG_REDIS_PASS);
    /* while a probe is out, too; the probe's failure then begins a new
     * outage at the first back-off */
    fail_in_flight(&b, t + MG_SEC(1), 1);
    assert_int_equal(mg_redis_breaker_allow(&b, t + MG_SEC(2)),
                     MG_REDIS_PROBE);
    assert_int_equal(mg_redis_breaker_report(&b, t + MG_SEC(2), 1, 0),
                     MG_REDIS_CLOSED);
    assert_int_equal(mg_redis_breaker_report(&b, t + MG_SEC(2), 0, 1),
                     MG_REDIS_OPENED);
    assert_int_equal(b.backoff, MG_REDIS_BACKOFF_FIRST);
    /* and a probe's success after another command closed it is news to
     * nobody */
    assert_int_equal(mg_redis_breaker_allow(&b, t + MG_SEC(3)),
                     MG_REDIS_PROBE);
    assert_int_equal(mg_redis_breaker_report(&b, t + MG_SEC(3), 1, 0),
                     MG_REDIS_CLOSED);
    assert_int_equal(mg_redis_breaker_report(&b, t + MG_SEC(3), 1, 1),
                     MG_REDIS_NO_CHANGE);
}

/* A long outage under steady load (a request every 10 ms, 8 of them in
 * flight at each failure): whenever Redis comes back, the child's next
 * probe is at most MG_REDIS_BACKOFF_MAX later, and it succeeds. */
static void test_back_within_one_probe_interval(void **state)
{
    mg_redis_breaker b;
    apr_time_t back;

    (void)state;
    for (back = MG_T0 + MG_MSEC(1); back < MG_T0 + MG_SEC(120);
         back += MG_MSEC(7919)) {
        apr_time_t t = MG_T0;

        mg_redis_breaker_init(&b);
        for (;; t += MG_MSEC(10)) {
            mg_redis_verdict v = mg_redis_breaker_allow(&b, t);
            if (v == MG_REDIS_REFUSE) {
                continue;
            }
            if (t >= back) {
                mg_redis_breaker_report(&b, t, 1, v == MG_REDIS_PROBE);
                break;
            }
            if (v == MG_REDIS_PASS) {
                fail_in_flight(&b, t, 8);
            }
            else {
                assert_int_equal(mg_redis_breaker_report(&b, t, 0, 1),
                                 MG_REDIS_REOPENED);
            }
        }
        assert_int_equal(b.state, MG_REDIS_BREAKER_CLOSED);
        assert_true(t - back <= MG_REDIS_BACKOFF_MAX + MG_MSEC(10));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_stall_opens_once),
        MG_TEST(test_only_failed_probes_double),
        MG_TEST(test_one_probe_at_a_time),
        MG_TEST(test_any_success_closes),
        MG_TEST(test_back_within_one_probe_interval),
    };
    return MG_RUN(tests);
}
