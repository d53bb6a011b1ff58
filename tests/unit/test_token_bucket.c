/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_token_bucket.c -- the token bucket (mg_limit_token_bucket.c), limit
 * construction (mg_limit_spec_init) and the combination of layers
 * (mg_limit_combine).  Every time is a fake clock value; every expected
 * number is worked out by hand in the comments.
 */
#include "mg_test.h"
#include <string.h>

#include "mg_limit.h"

/* ---- helpers --------------------------------------------------------------- */

/* Decide and commit `next` whatever the answer (the contract allows it: a
 * rejection consumes nothing). */
static mg_limit_decision take(const mg_limit_spec *spec, mg_limit_state *st,
                              apr_time_t now, apr_uint64_t cost)
{
    mg_limit_decision d;
    mg_limit_state next;

    mg_limit_decide(spec, st, now, cost, &next, &d);
    *st = next;
    return d;
}

/* Decide without committing. */
static mg_limit_decision peek(const mg_limit_spec *spec,
                              const mg_limit_state *st, apr_time_t now,
                              apr_uint64_t cost)
{
    mg_limit_decision d;
    mg_limit_state next;

    mg_limit_decide(spec, st, now, cost, &next, &d);
    return d;
}

/* ---- mg_limit_spec_init ----------------------------------------------------- */

static void test_spec_derived_fields(void **state)
{
    mg_limit_spec s;

    (void)state;
    /* 10/min: g = gcd(10, 60e6) = 10; a unit is 6e6 sub-units and the
     * bucket gains 1 sub-unit per microsecond. */
    s = mg_test_spec(10, MG_MIN(1), 10);
    assert_int_equal(s.algo, MG_ALGO_TOKEN_BUCKET);
    assert_int_equal(s.quota, 10);
    assert_int_equal(s.window, 60000000);
    assert_int_equal(s.burst, 10);
    assert_int_equal(s.unit_scale, 6000000);
    assert_int_equal(s.refill_per_us, 1);
    assert_int_equal(s.capacity, 60000000);

    /* 7/13s: gcd(7, 13e6) = 1. */
    s = mg_test_spec(7, MG_SEC(13), 3);
    assert_int_equal(s.unit_scale, 13000000);
    assert_int_equal(s.refill_per_us, 7);
    assert_int_equal(s.capacity, 39000000);

    /* 1000/day: gcd(1000, 8.64e10) = 1000. */
    s = mg_test_spec(1000, MG_DAY(1), 1000);
    assert_int_equal(s.unit_scale, 86400000);
    assert_int_equal(s.refill_per_us, 1);

    /* 10^12 per 366 days: window = 2^14 * 3^4 * 61 * 5^8 us, quota =
     * 2^12 * 5^12, g = 2^12 * 5^8 = 1.6e9: 19764 sub-units a unit and
     * 625 sub-units a microsecond. */
    s = mg_test_spec(APR_UINT64_C(1000000000000), MG_DAY(366),
                     APR_UINT64_C(1000000000000));
    assert_int_equal(s.unit_scale, 19764);
    assert_int_equal(s.refill_per_us, 625);
    assert_int_equal(s.capacity, APR_UINT64_C(19764000000000000));
}

static void test_spec_init_errors(void **state)
{
    mg_limit_spec s;
    const char *quota_msg = "the quota must be between 1 and 10^12";
    const char *window_msg = "the window must be between 1 second and 366 days";
    const char *burst_msg = "the burst must be between 1 and 10^12";

    (void)state;
    assert_string_equal(mg_limit_spec_init(&s, MG_ALGO_TOKEN_BUCKET, 0,
                                           MG_MIN(1), 10), quota_msg);
    assert_string_equal(mg_limit_spec_init(&s, MG_ALGO_TOKEN_BUCKET,
                                           MG_LIMIT_MAX_QUOTA + 1,
                                           MG_MIN(1), 10), quota_msg);
    assert_string_equal(mg_limit_spec_init(&s, MG_ALGO_TOKEN_BUCKET, 10,
                                           MG_SEC(1) - 1, 10), window_msg);
    assert_string_equal(mg_limit_spec_init(&s, MG_ALGO_TOKEN_BUCKET, 10,
                                           0, 10), window_msg);
    assert_string_equal(mg_limit_spec_init(&s, MG_ALGO_TOKEN_BUCKET, 10,
                                           -MG_MIN(1), 10), window_msg);
    assert_string_equal(mg_limit_spec_init(&s, MG_ALGO_TOKEN_BUCKET, 10,
                                           MG_LIMIT_MAX_WINDOW + 1, 10),
                        window_msg);
    assert_string_equal(mg_limit_spec_init(&s, MG_ALGO_TOKEN_BUCKET, 10,
                                           MG_MIN(1), 0), burst_msg);
    assert_string_equal(mg_limit_spec_init(&s, MG_ALGO_TOKEN_BUCKET, 10,
                                           MG_MIN(1),
                                           MG_LIMIT_MAX_QUOTA + 1),
                        burst_msg);
    assert_string_equal(mg_limit_spec_init(&s, (mg_limit_algo)99, 10,
                                           MG_MIN(1), 10),
                        "unknown algorithm");

    /* The bounds themselves are accepted. */
    assert_null(mg_limit_spec_init(&s, MG_ALGO_TOKEN_BUCKET, 1, MG_SEC(1), 1));
    assert_null(mg_limit_spec_init(&s, MG_ALGO_TOKEN_BUCKET,
                                   MG_LIMIT_MAX_QUOTA, MG_LIMIT_MAX_WINDOW,
                                   MG_LIMIT_MAX_QUOTA));

    /* burst * unit_scale must stay <= 2^62.  1 per 366 days: unit_scale =
     * 31,622,400,000,000, so the largest burst is floor(2^62 / that) =
     * 145836 (145836 * unit_scale = 4,611,684,326,400,000,000). */
    assert_null(mg_limit_spec_init(&s, MG_ALGO_TOKEN_BUCKET, 1,
                                   MG_LIMIT_MAX_WINDOW, 145836));
    assert_int_equal(s.capacity, APR_UINT64_C(4611684326400000000));
    assert_string_equal(mg_limit_spec_init(&s, MG_ALGO_TOKEN_BUCKET, 1,
                                           MG_LIMIT_MAX_WINDOW, 145837),
                        "burst and window are too large together for exact "
                        "arithmetic: lower the burst or pick a quota that "
                        "divides the window more evenly");
}

/* ---- basic behaviour ------------------------------------------------------- */

static void test_fresh_state_is_full(void **state)
{
    static const mg_limit_state fresh;   /* zero-filled: never seen */
    mg_limit_spec spec = mg_test_spec(10, MG_MIN(1), 10);
    mg_limit_state next;
    mg_limit_decision d;

    (void)state;
    /* Cost 0 looks without consuming: the whole bucket is there. */
    mg_limit_decide(&spec, &fresh, MG_T0, 0, &next, &d);
    assert_true(d.allowed);
    assert_int_equal(d.limit, 10);
    assert_int_equal(d.remaining, 10);
    assert_int_equal(d.reset, 0);
    assert_int_equal(d.retry_after, 0);
    assert_int_equal(d.expires, MG_T0);
    assert_int_equal(next.level, 60000000);
    assert_int_equal(next.stamp, MG_T0);
    assert_int_equal(next.flags, MG_LIMIT_STATE_VALID);

    /* Cost 1: 9 left, whole again 6 s later. */
    mg_limit_decide(&spec, &fresh, MG_T0, 1, &next, &d);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 9);
    assert_int_equal(d.reset, MG_SEC(6));
    assert_int_equal(d.retry_after, 0);
    assert_int_equal(d.expires, MG_T0 + MG_SEC(6));
    assert_int_equal(next.level, 54000000);
    assert_int_equal(next.stamp, MG_T0);

    /* A fresh state is full whatever the time, even long before the base. */
    mg_limit_decide(&spec, &fresh, 0, 10, &next, &d);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);

    /* A set `flags` without VALID still means fresh, whatever `level`,
     * `aux` and `count`. */
    {
        mg_limit_state odd = { 0, MG_T0 - MG_DAY(1), 77, 0x2u, 5 };
        mg_limit_decide(&spec, &odd, MG_T0, 10, &next, &d);
        assert_true(d.allowed);
        assert_int_equal(d.remaining, 0);
    }

    /* mg_limit_decide dispatches to the token bucket. */
    {
        mg_limit_decision d2;
        mg_limit_state next2;
        /* Poison both: every field of the answer and the state is set by
         * the algorithm itself, also when called directly. */
        memset(&d, 0xab, sizeof(d));
        memset(&d2, 0xcd, sizeof(d2));
        memset(&next, 0xab, sizeof(next));
        memset(&next2, 0xcd, sizeof(next2));
        mg_limit_decide(&spec, &fresh, MG_T0, 3, &next, &d);
        mg_limit_token_bucket(&spec, &fresh, MG_T0, 3, &next2, &d2);
        assert_int_equal(d2.delay, 0);
        mg_test_assert_decision_equal(&d, &d2);
        mg_test_assert_state_equal(&next, &next2);
    }
}

static void test_ten_per_minute_burst_ten(void **state)
{
    mg_limit_spec spec = mg_test_spec(10, MG_MIN(1), 10);
    mg_limit_state st;
    mg_limit_decision d;
    int i;

    (void)state;
    memset(&st, 0, sizeof(st));
    for (i = 0; i < 10; i++) {
        d = take(&spec, &st, MG_T0, 1);
        assert_true(d.allowed);
        assert_int_equal(d.remaining, 9 - i);
        assert_int_equal(d.reset, (i + 1) * MG_SEC(6));
        assert_int_equal(d.retry_after, 0);
        assert_int_equal(d.expires, MG_T0 + (i + 1) * MG_SEC(6));
    }
    assert_int_equal(st.level, 0);

    /* The 11th at t0: the next unit is 6,000,000 us away. */
    d = take(&spec, &st, MG_T0, 1);
    assert_false(d.allowed);
    assert_int_equal(d.remaining, 0);
    assert_int_equal(d.retry_after, 6000000);
    assert_int_equal(d.reset, 60000000);
    assert_int_equal(d.expires, MG_T0 + 60000000);

    /* Later, retry_after is exactly 6,000,000 us minus the time elapsed. */
    {
        static const apr_interval_time_t elapsed[] = {
            1, 999, 1000000, 2999999, 3000000, 5999999
        };
        for (i = 0; i < (int)(sizeof(elapsed) / sizeof(elapsed[0])); i++) {
            d = peek(&spec, &st, MG_T0 + elapsed[i], 1);
            assert_false(d.allowed);
            assert_int_equal(d.retry_after, 6000000 - elapsed[i]);
            assert_int_equal(d.remaining, 0);
            assert_int_equal(d.reset, 60000000 - elapsed[i]);
        }
    }
}

static void test_refill_boundary(void **state)
{
    mg_limit_spec spec = mg_test_spec(10, MG_MIN(1), 10);
    mg_limit_state empty, st;
    mg_limit_decision d;
    int i;

    (void)state;
    memset(&empty, 0, sizeof(empty));
    for (i = 0; i < 10; i++) {
        assert_true(take(&spec, &empty, MG_T0, 1).allowed);
    }

    /* 5.999999 s: one microsecond short. */
    st = empty;
    d = take(&spec, &st, MG_T0 + 5999999, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 1);
    /* ... and exactly 6 s: one more, and only one. */
    d = take(&spec, &st, MG_T0 + 6000000, 1);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    assert_int_equal(d.reset, 60000000);
    d = take(&spec, &st, MG_T0 + 6000000, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 6000000);

    /* Straight to 6 s without the rejected look in between: the same. */
    st = empty;
    d = take(&spec, &st, MG_T0 + MG_SEC(6), 1);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);

    /* 12 s: two units; 60 s: full; 600 s: still only full. */
    st = empty;
    assert_int_equal(peek(&spec, &st, MG_T0 + MG_SEC(12), 0).remaining, 2);
    assert_int_equal(peek(&spec, &st, MG_T0 + MG_SEC(12) - 1, 0).remaining, 1);
    assert_int_equal(peek(&spec, &st, MG_T0 + MG_SEC(60), 0).remaining, 10);
    assert_int_equal(peek(&spec, &st, MG_T0 + MG_SEC(60), 0).reset, 0);
    assert_int_equal(peek(&spec, &st, MG_T0 + MG_SEC(600), 0).remaining, 10);
    for (i = 0; i < 10; i++) {
        assert_true(take(&spec, &st, MG_T0 + MG_SEC(600), 1).allowed);
    }
    assert_false(take(&spec, &st, MG_T0 + MG_SEC(600), 1).allowed);
}

static void test_remaining_and_reset_exact(void **state)
{
    mg_limit_spec spec = mg_test_spec(10, MG_MIN(1), 10);
    mg_limit_state st;
    mg_limit_decision d;
    int i;

    (void)state;
    memset(&st, 0, sizeof(st));
    for (i = 0; i < 3; i++) {
        take(&spec, &st, MG_T0, 1);
    }
    /* At t0 + 1.5 s: 7 units (42e6) + 1.5e6 refilled = 43.5e6 sub-units;
     * one unit taken leaves 37.5e6: 6 whole units, and 22.5e6 us until
     * the bucket holds 60e6 again. */
    d = take(&spec, &st, MG_T0 + MG_MSEC(1500), 1);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 6);
    assert_int_equal(d.reset, 22500000);
    assert_int_equal(d.expires, MG_T0 + MG_MSEC(1500) + 22500000);
    assert_int_equal(st.level, 37500000);
    assert_int_equal(st.stamp, MG_T0 + MG_MSEC(1500));

    /* A limit whose refill is not one sub-unit per microsecond: 7/13s,
     * burst 3.  unit = 13e6 sub-units, 7 sub-units per us. */
    spec = mg_test_spec(7, MG_SEC(13), 3);
    memset(&st, 0, sizeof(st));
    for (i = 0; i < 3; i++) {
        assert_true(take(&spec, &st, MG_T0, 1).allowed);
    }
    d = take(&spec, &st, MG_T0, 1);
    assert_false(d.allowed);
    /* ceil(13e6 / 7) = 1857143 us (1857142 * 7 = 12999994 < 13e6). */
    assert_int_equal(d.retry_after, 1857143);
    /* ceil(39e6 / 7) = 5571429. */
    assert_int_equal(d.reset, 5571429);
    assert_false(take(&spec, &st, MG_T0 + 1857142, 1).allowed);
    d = take(&spec, &st, MG_T0 + 1857143, 1);
    assert_true(d.allowed);
    /* 1857143 * 7 = 13000001: one sub-unit over a unit, spent: level 1. */
    assert_int_equal(st.level, 1);
    assert_int_equal(d.remaining, 0);
    assert_int_equal(d.reset, 5571429);   /* ceil((39e6 - 1) / 7) */
}

static void test_burst_above_quota(void **state)
{
    mg_limit_spec spec = mg_test_spec(10, MG_MIN(1), 25);
    mg_limit_state st;
    mg_limit_decision d;
    int i;

    (void)state;
    memset(&st, 0, sizeof(st));
    for (i = 0; i < 25; i++) {
        d = take(&spec, &st, MG_T0, 1);
        assert_true(d.allowed);
        assert_int_equal(d.limit, 10);
        assert_int_equal(d.remaining, 24 - i);
    }
    d = take(&spec, &st, MG_T0, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(6));
    assert_int_equal(d.reset, MG_SEC(150));      /* 25 units * 6 s */

    /* One minute refills the quota, 10, not the burst. */
    for (i = 0; i < 10; i++) {
        assert_true(take(&spec, &st, MG_T0 + MG_MIN(1), 1).allowed);
    }
    assert_false(take(&spec, &st, MG_T0 + MG_MIN(1), 1).allowed);

    /* 150 s after the last consumption the bucket is full again: 25. */
    d = peek(&spec, &st, MG_T0 + MG_MIN(1) + MG_SEC(150), 0);
    assert_int_equal(d.remaining, 25);
    d = peek(&spec, &st, MG_T0 + MG_MIN(1) + MG_SEC(150) - 1, 0);
    assert_int_equal(d.remaining, 24);
}

static void test_burst_below_quota(void **state)
{
    mg_limit_spec spec = mg_test_spec(10, MG_MIN(1), 2);
    mg_limit_state st;
    mg_limit_decision d;
    int i, admitted;

    (void)state;
    memset(&st, 0, sizeof(st));
    assert_true(take(&spec, &st, MG_T0, 1).allowed);
    d = take(&spec, &st, MG_T0, 1);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    assert_int_equal(d.reset, MG_SEC(12));
    d = take(&spec, &st, MG_T0, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(6));

    /* An idle minute does not bank more than the burst. */
    d = peek(&spec, &st, MG_T0 + MG_MIN(1), 0);
    assert_int_equal(d.remaining, 2);

    /* One request a second for 60 s starting on a full bucket, i.e. at
     * t0 + 60 s + k s for k = 0..59: 2 from the bucket at k = 0, 1 (the
     * second taken from 2 units less 1 + 1 s of refill, leaving 1 s worth);
     * then a whole unit is there again at k = 6, 12, ..., 54: 9 more.
     * 11 in all, against a quota of 10 a minute. */
    admitted = 0;
    for (i = 0; i < 60; i++) {
        admitted += take(&spec, &st, MG_T0 + MG_MIN(1) + MG_SEC(i), 1).allowed;
    }
    assert_int_equal(admitted, 11);
}

static void test_cost_above_one(void **state)
{
    mg_limit_spec spec = mg_test_spec(10, MG_MIN(1), 10);
    mg_limit_state st;
    mg_limit_decision d;

    (void)state;
    memset(&st, 0, sizeof(st));
    d = take(&spec, &st, MG_T0, 3);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 7);
    assert_int_equal(d.reset, MG_SEC(18));
    assert_int_equal(take(&spec, &st, MG_T0, 3).remaining, 4);
    assert_int_equal(take(&spec, &st, MG_T0, 3).remaining, 1);
    /* 1 unit left, 3 needed: 2 units = 12 s away. */
    d = take(&spec, &st, MG_T0, 3);
    assert_false(d.allowed);
    assert_int_equal(d.remaining, 1);
    assert_int_equal(d.retry_after, MG_SEC(12));
    /* ... though a cost of 1 still fits. */
    assert_true(peek(&spec, &st, MG_T0, 1).allowed);

    d = take(&spec, &st, MG_T0 + MG_SEC(12) - 1, 3);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 1);
    d = take(&spec, &st, MG_T0 + MG_SEC(12), 3);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);

    /* A cost equal to the burst fits a full bucket exactly. */
    memset(&st, 0, sizeof(st));
    d = take(&spec, &st, MG_T0, 10);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    assert_int_equal(d.reset, MG_MIN(1));

    /* Cost 0 always fits and takes nothing. */
    d = take(&spec, &st, MG_T0, 0);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    assert_int_equal(st.level, 0);
}

static void test_cost_above_burst(void **state)
{
    mg_limit_spec spec = mg_test_spec(10, MG_MIN(1), 10);
    mg_limit_state st, before;
    mg_limit_decision d;
    int i;

    (void)state;
    memset(&st, 0, sizeof(st));
    /* A full bucket: the cost never fits; the wait offered is a window. */
    d = take(&spec, &st, MG_T0, 11);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_MIN(1));
    assert_int_equal(d.remaining, 10);
    assert_int_equal(d.reset, 0);
    assert_int_equal(st.level, 60000000);   /* nothing consumed */

    /* A part-empty bucket: the wait until it is full. */
    for (i = 0; i < 4; i++) {
        take(&spec, &st, MG_T0, 1);
    }
    before = st;
    d = take(&spec, &st, MG_T0, 11);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(24));
    assert_int_equal(d.remaining, 6);
    mg_test_assert_state_equal(&st, &before);

    /* Absurd costs do not overflow cost * unit_scale. */
    d = take(&spec, &st, MG_T0, APR_UINT64_MAX);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(24));
    d = take(&spec, &st, MG_T0, APR_UINT64_MAX / 6000000 + 1);
    assert_false(d.allowed);
    assert_true(d.retry_after > 0);
    mg_test_assert_state_equal(&st, &before);
    /* ... and the bucket still serves the 6 units it holds. */
    for (i = 0; i < 6; i++) {
        assert_true(take(&spec, &st, MG_T0, 1).allowed);
    }
    assert_false(take(&spec, &st, MG_T0, 1).allowed);
}

static void test_rejection_leaves_state_unchanged(void **state)
{
    mg_limit_spec spec = mg_test_spec(10, MG_MIN(1), 10);
    mg_limit_state s, next, again;
    mg_limit_decision d;
    int i;

    (void)state;
    memset(&s, 0, sizeof(s));
    for (i = 0; i < 10; i++) {
        take(&spec, &s, MG_T0, 1);
    }

    /* At the stamp itself a rejection's next state is the state. */
    mg_limit_decide(&spec, &s, MG_T0, 1, &next, &d);
    assert_false(d.allowed);
    mg_test_assert_state_equal(&next, &s);
    mg_limit_decide(&spec, &s, MG_T0, 11, &next, &d);
    assert_false(d.allowed);
    mg_test_assert_state_equal(&next, &s);

    /* Later, next only banks the refill: 2 s = 2e6 sub-units. */
    mg_limit_decide(&spec, &s, MG_T0 + MG_SEC(2), 1, &next, &d);
    assert_false(d.allowed);
    assert_int_equal(next.level, 2000000);
    assert_int_equal(next.stamp, MG_T0 + MG_SEC(2));

    /* Any later decision from `next` equals one from the original state. */
    {
        static const apr_interval_time_t later[] = {
            MG_SEC(2), MG_SEC(3), MG_SEC(6) - 1, MG_SEC(6), MG_SEC(7),
            MG_SEC(59), MG_SEC(61), MG_DAY(1)
        };
        static const apr_uint64_t costs[] = { 0, 1, 2, 10, 11 };
        apr_size_t a, b;
        for (a = 0; a < sizeof(later) / sizeof(later[0]); a++) {
            for (b = 0; b < sizeof(costs) / sizeof(costs[0]); b++) {
                mg_limit_decision d1, d2;
                mg_limit_state n1, n2;
                mg_limit_decide(&spec, &s, MG_T0 + later[a], costs[b],
                                &n1, &d1);
                mg_limit_decide(&spec, &next, MG_T0 + later[a], costs[b],
                                &n2, &d2);
                mg_test_assert_decision_equal(&d1, &d2);
                mg_test_assert_state_equal(&n1, &n2);
            }
        }
    }

    /* Hammering rejections and committing each one consumes nothing. */
    again = s;
    for (i = 0; i < 1000; i++) {
        d = take(&spec, &again, MG_T0 + MG_SEC(5), 1);
        assert_false(d.allowed);
        assert_int_equal(d.retry_after, MG_SEC(1));
    }
    assert_true(take(&spec, &again, MG_T0 + MG_SEC(6), 1).allowed);

    /* `next` may alias `state` when the caller commits anyway. */
    again = s;
    mg_limit_decide(&spec, &again, MG_T0 + MG_SEC(6), 1, &again, &d);
    assert_true(d.allowed);
    assert_int_equal(again.level, 0);
    assert_int_equal(again.stamp, MG_T0 + MG_SEC(6));
}

static void test_clock_backwards(void **state)
{
    mg_limit_spec spec = mg_test_spec(10, MG_MIN(1), 10);
    const apr_time_t T = MG_T0 + MG_SEC(10);
    mg_limit_state st, empty;
    mg_limit_decision d;
    int i;

    (void)state;
    memset(&empty, 0, sizeof(empty));
    for (i = 0; i < 10; i++) {
        take(&spec, &empty, T, 1);
    }

    /* 5 s back: no time passes; the later stamp is kept. */
    st = empty;
    d = take(&spec, &st, T - MG_SEC(5), 1);
    assert_false(d.allowed);
    assert_int_equal(d.remaining, 0);
    /* Waits count from the caller's clock: 5 s until it is back at T,
     * then 6 s of refill. */
    assert_int_equal(d.retry_after, MG_SEC(11));
    assert_int_equal(d.reset, MG_MIN(1) + MG_SEC(5));
    assert_int_equal(d.expires, T + MG_MIN(1));
    assert_int_equal(st.stamp, T);
    assert_int_equal(st.level, 0);
    /* The 5 s are not credited when the clock comes back: 6 s after T,
     * not 1 s. */
    assert_false(take(&spec, &st, T + MG_SEC(6) - 1, 1).allowed);
    assert_true(take(&spec, &st, T + MG_SEC(6), 1).allowed);

    /* Forward 3 s, back 2 s, forward again: 3 s are credited once. */
    st = empty;
    assert_false(take(&spec, &st, T + MG_SEC(3), 1).allowed);
    assert_int_equal(st.level, 3000000);
    assert_int_equal(st.stamp, T + MG_SEC(3));
    assert_false(take(&spec, &st, T + MG_SEC(1), 1).allowed);
    assert_int_equal(st.level, 3000000);
    assert_int_equal(st.stamp, T + MG_SEC(3));
    assert_false(take(&spec, &st, T + MG_SEC(3), 1).allowed);
    assert_int_equal(st.level, 3000000);
    assert_false(take(&spec, &st, T + MG_SEC(6) - 1, 1).allowed);
    assert_true(take(&spec, &st, T + MG_SEC(6), 1).allowed);
    assert_int_equal(st.level, 0);

    /* A full bucket consumed while the clock is behind: the stamp stays
     * ahead, and expires counts from it. */
    memset(&st, 0, sizeof(st));
    take(&spec, &st, T, 0);
    d = take(&spec, &st, T - MG_HOUR(1), 1);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 9);
    assert_int_equal(d.reset, MG_HOUR(1) + MG_SEC(6));
    assert_int_equal(d.expires, T + MG_SEC(6));
    assert_int_equal(st.stamp, T);
    assert_int_equal(st.level, 54000000);

    /* A wild jump to time 0 and below: no crash, nothing negative. */
    st = empty;
    d = take(&spec, &st, 0, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, T + MG_SEC(6));
    assert_int_equal(d.reset, T + MG_MIN(1));
    assert_int_equal(d.expires, T + MG_MIN(1));
    d = take(&spec, &st, -MG_DAY(365), 1);
    assert_false(d.allowed);
    assert_true(d.retry_after > 0);
    assert_true(d.reset >= 0);
    assert_int_equal(st.level, 0);
    assert_int_equal(st.stamp, T);
    assert_true(take(&spec, &st, T + MG_SEC(6), 1).allowed);
}

static void test_large_values(void **state)
{
    const apr_uint64_t TERA = APR_UINT64_C(1000000000000);
    mg_limit_spec spec;
    mg_limit_state st;
    mg_limit_decision d;

    (void)state;
    /* 10^12 per 366 days, burst 10^12: 19764 sub-units a unit, 625 a us,
     * capacity 1.9764e16. */
    spec = mg_test_spec(TERA, MG_DAY(366), TERA);
    memset(&st, 0, sizeof(st));
    d = take(&spec, &st, MG_T0, TERA);
    assert_true(d.allowed);
    assert_int_equal(d.limit, TERA);
    assert_int_equal(d.remaining, 0);
    /* 1.9764e16 / 625 = 31,622,400,000,000 us: the window exactly. */
    assert_int_equal(d.reset, MG_DAY(366));
    assert_int_equal(d.expires, MG_T0 + MG_DAY(366));
    d = take(&spec, &st, MG_T0, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 32);   /* ceil(19764 / 625) */
    d = take(&spec, &st, MG_T0 + 32, 1);
    assert_true(d.allowed);
    assert_int_equal(st.level, 236);       /* 32 * 625 - 19764 */
    /* Ten years later: full, not more. */
    d = take(&spec, &st, MG_T0 + MG_DAY(3653), 1);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, TERA - 1);
    assert_int_equal(st.level, APR_UINT64_C(19764000000000000) - 19764);

    /* 1 per 366 days with the largest burst the spec allows: capacity
     * 4,611,684,326,400,000,000 sub-units, 1 sub-unit a us. */
    spec = mg_test_spec(1, MG_DAY(366), 145836);
    memset(&st, 0, sizeof(st));
    d = take(&spec, &st, MG_T0, 145836);
    assert_true(d.allowed);
    assert_int_equal(d.reset, APR_INT64_C(4611684326400000000));
    assert_int_equal(d.expires, MG_T0 + APR_INT64_C(4611684326400000000));
    d = take(&spec, &st, MG_T0, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_DAY(366));
    /* Ten years (3653 days) later: 3653/366 = 9.98 units, 9 whole. */
    d = take(&spec, &st, MG_T0 + MG_DAY(3653), 0);
    assert_int_equal(d.remaining, 9);
    assert_int_equal(st.level, (apr_uint64_t)MG_DAY(3653));
    d = take(&spec, &st, MG_T0 + MG_DAY(3653), 145836);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after,
                     APR_INT64_C(4611684326400000000) - MG_DAY(3653));
    /* 366,000 days after the bucket was emptied: exactly 1000 units. */
    d = take(&spec, &st, MG_T0 + MG_DAY(366000) - 1, 0);
    assert_int_equal(d.remaining, 999);
    d = take(&spec, &st, MG_T0 + MG_DAY(366000), 0);
    assert_int_equal(d.remaining, 1000);
    /* Full only once the whole capacity has dripped in, 146,000 years
     * after the bucket was emptied: no product wrapped on the way.  (Not
     * spent there: `expires` would then lie past year 292,000 and leave
     * apr_time_t; clocks of this century are 3000 times short of that.) */
    d = peek(&spec, &st, MG_T0 + APR_INT64_C(4611684326400000000) - 1,
             145836);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 1);
    assert_int_equal(d.remaining, 145835);
    d = take(&spec, &st, MG_T0 + APR_INT64_C(4611684326400000000), 0);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 145836);
    assert_int_equal(d.reset, 0);
    assert_int_equal(st.level, APR_UINT64_C(4611684326400000000));

    /* A stored level beyond the capacity (a changed spec, corruption) is
     * clamped, not trusted. */
    spec = mg_test_spec(10, MG_MIN(1), 10);
    st.level = APR_UINT64_MAX;
    st.stamp = MG_T0;
    st.flags = MG_LIMIT_STATE_VALID;
    d = take(&spec, &st, MG_T0 + MG_DAY(3653), 1);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 9);
    /* ... also with no time passing. */
    st.level = APR_UINT64_MAX;
    st.stamp = MG_T0;
    d = take(&spec, &st, MG_T0, 1);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 9);
    assert_int_equal(d.reset, MG_SEC(6));
    assert_int_equal(st.level, 54000000);

    /* Elapsed time of decades against a state stamped at 0. */
    st.level = 0;
    st.stamp = 0;
    d = take(&spec, &st, MG_T0, 10);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
}

/* 20 requests spread evenly over one second against 10/s, burst 10.
 *
 * 10/s: a unit is 100,000 sub-units, 1 sub-unit comes per microsecond, the
 * bucket holds 1,000,000.  With request i (i = 0..19) at t0 + i * 50 ms and
 * every request so far admitted, the bucket holds, just before request i,
 *     1,000,000 - 100,000 * i + 50,000 * i = 1,000,000 - 50,000 * i
 * (after the first request it is never full, so the refill is never
 * clipped).  Request i fits when that is >= 100,000, i.e. i <= 18: the
 * first 19 are admitted and the 20th, at 950 ms, finds 50,000 sub-units and
 * is told to come back in 50,000 us.
 *
 * Spread instead over the closed second, request i at t0 + floor(i * 1e6 /
 * 19) us (0 and 1,000,000 both included), the bucket holds
 *     1,000,000 - 100,000 * i + floor(i * 1,000,000 / 19)
 * which is smallest at i = 19: exactly 100,000.  All 20 are admitted: the
 * burst of 10 and the 10 refilled during the second.  A token bucket
 * limits the long-run rate; over one window it admits up to burst + quota. */
static void test_twenty_evenly_in_one_second(void **state)
{
    mg_limit_spec spec = mg_test_spec(10, MG_SEC(1), 10);
    mg_limit_state st;
    mg_limit_decision d;
    int i, admitted;

    (void)state;
    memset(&st, 0, sizeof(st));
    admitted = 0;
    for (i = 0; i < 20; i++) {
        d = take(&spec, &st, MG_T0 + i * MG_MSEC(50), 1);
        if (i < 19) {
            assert_true(d.allowed);
        }
        admitted += d.allowed;
    }
    assert_int_equal(admitted, 19);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 50000);
    assert_int_equal(st.level, 50000);

    memset(&st, 0, sizeof(st));
    admitted = 0;
    for (i = 0; i < 20; i++) {
        d = take(&spec, &st, MG_T0 + (apr_time_t)i * 1000000 / 19, 1);
        admitted += d.allowed;
    }
    assert_int_equal(admitted, 20);
    assert_int_equal(st.level, 0);
    assert_false(take(&spec, &st, MG_T0 + MG_SEC(1), 1).allowed);
}

/* ---- randomized trace against a reference model ----------------------------
 *
 * The reference keeps the bucket in units of 1/window of a token (so a
 * token is `window` of them and each microsecond adds `quota`), in 128-bit
 * integers, with no gcd and no clamping tricks: the textbook bucket. */

__extension__ typedef unsigned __int128 u128;

typedef struct ref_bucket {
    apr_uint64_t quota, burst;
    apr_int64_t window;
    int valid;
    u128 level;
    apr_time_t stamp;
} ref_bucket;

static u128 ceil_div(u128 a, u128 b)
{
    return (a + b - 1) / b;
}

/* Decides; updates *b only if `commit` (always when allowed). */
static void ref_decide(ref_bucket *b, apr_time_t now, apr_uint64_t cost,
                       int commit_on_reject, mg_limit_decision *d)
{
    u128 cap = (u128)b->burst * (u128)b->window;
    u128 level;
    apr_time_t stamp;

    if (!b->valid) {
        level = cap;
        stamp = now;
    }
    else {
        level = b->level;
        stamp = b->stamp;
        if (now > stamp) {
            level += (u128)(apr_uint64_t)(now - stamp) * b->quota;
            if (level > cap) {
                level = cap;
            }
            stamp = now;
        }
    }
    d->limit = b->quota;
    d->delay = 0;                       /* a token bucket never holds */
    if (cost <= b->burst && level >= (u128)cost * (u128)b->window) {
        level -= (u128)cost * (u128)b->window;
        d->allowed = 1;
        d->retry_after = 0;
    }
    else {
        d->allowed = 0;
        if (cost <= b->burst) {
            d->retry_after = (apr_interval_time_t)
                ceil_div((u128)cost * (u128)b->window - level, b->quota);
        }
        else if (level < cap) {
            d->retry_after = (apr_interval_time_t)ceil_div(cap - level,
                                                           b->quota);
        }
        else {
            d->retry_after = b->window;
        }
    }
    d->remaining = (apr_uint64_t)(level / (u128)b->window);
    d->reset = (apr_interval_time_t)ceil_div(cap - level, b->quota);
    d->expires = stamp + d->reset;
    if (stamp > now) {
        /* waits count from the caller's clock, which is behind the stamp */
        d->reset += stamp - now;
        if (!d->allowed) {
            d->retry_after += stamp - now;
        }
    }
    if (d->allowed || commit_on_reject) {
        b->valid = 1;
        b->level = level;
        b->stamp = stamp;
    }
}

typedef struct trace_case {
    apr_uint64_t quota;
    apr_int64_t window;
    apr_uint64_t burst;
} trace_case;

static void run_trace(const trace_case *tc, apr_uint64_t seed, int steps)
{
    mg_limit_spec spec = mg_test_spec(tc->quota, tc->window, tc->burst);
    apr_uint64_t g = (apr_uint64_t)tc->window / spec.unit_scale;
    /* Mean time per unit, at least 1 us. */
    apr_uint64_t per_unit = (apr_uint64_t)tc->window / tc->quota;
    mg_test_rng rng = { seed };
    ref_bucket ref;
    mg_limit_state st;
    apr_time_t now = MG_T0;
    int i, admitted = 0, rejected = 0;

    if (per_unit == 0) {
        per_unit = 1;
    }
    memset(&ref, 0, sizeof(ref));
    ref.quota = tc->quota;
    ref.window = tc->window;
    ref.burst = tc->burst;
    memset(&st, 0, sizeof(st));

    for (i = 0; i < steps; i++) {
        apr_uint64_t r = mg_test_below(&rng, 100), cost;
        int commit_on_reject = (int)mg_test_below(&rng, 2);
        mg_limit_decision dr, di;
        mg_limit_state next;

        /* The clock: mostly near the limit's pace, sometimes still,
         * sometimes a long idle, sometimes backwards. */
        if (r < 85) {
            now += (apr_time_t)mg_test_below(&rng, 2 * per_unit + 1);
        }
        else if (r < 90) {
            /* no time passes */
        }
        else if (r < 95) {
            now += (apr_time_t)mg_test_below(&rng,
                                             2 * (apr_uint64_t)tc->window);
        }
        else {
            now -= (apr_time_t)mg_test_below(&rng, 5 * per_unit + 1);
        }

        /* The cost: mostly 1, sometimes small, sometimes up to the burst,
         * sometimes more than the burst. */
        r = mg_test_below(&rng, 100);
        if (r < 70) {
            cost = 1;
        }
        else if (r < 88) {
            cost = mg_test_below(&rng, (tc->burst < 20 ? tc->burst : 20) + 1);
        }
        else if (r < 95) {
            cost = 1 + mg_test_below(&rng, tc->burst);
        }
        else {
            cost = tc->burst + 1 + mg_test_below(&rng, 3);
        }

        ref_decide(&ref, now, cost, commit_on_reject, &dr);
        mg_limit_decide(&spec, &st, now, cost, &next, &di);
        if (di.allowed != dr.allowed) {
            fail_msg("step %d: q=%llu w=%lld b=%llu now=t0%+lld cost=%llu: "
                     "implementation %s, reference %s", i,
                     (unsigned long long)tc->quota, (long long)tc->window,
                     (unsigned long long)tc->burst,
                     (long long)(now - MG_T0), (unsigned long long)cost,
                     di.allowed ? "admits" : "rejects",
                     dr.allowed ? "admits" : "rejects");
        }
        mg_test_assert_decision_equal(&di, &dr);
        if (di.allowed || commit_on_reject) {
            st = next;
        }
        /* The stored states agree, scale apart. */
        assert_true((u128)st.level * g == ref.level);
        assert_int_equal(st.stamp, ref.stamp);
        if (di.allowed) {
            admitted++;
        }
        else {
            rejected++;
        }
    }
    /* The trace exercised both answers. */
    assert_true(admitted > steps / 20);
    assert_true(rejected > steps / 100);
}

static void test_random_trace_vs_reference(void **state)
{
    static const trace_case cases[] = {
        { 10, 60 * APR_USEC_PER_SEC, 10 },
        { 10, 60 * APR_USEC_PER_SEC, 1 },
        { 10, 60 * APR_USEC_PER_SEC, 40 },
        { 7, 13 * APR_USEC_PER_SEC, 3 },
        { 5, 1 * APR_USEC_PER_SEC, 20 },
        { 1000, 86400 * APR_USEC_PER_SEC, 50 },
        { 999983, 7 * APR_USEC_PER_SEC, 1000 },
        { APR_UINT64_C(3000000), 1 * APR_USEC_PER_SEC, 100 },
        { APR_UINT64_C(1000000000000), 366 * 86400 * APR_USEC_PER_SEC,
          APR_UINT64_C(1000000000000) },
        { 1, 366 * 86400 * APR_USEC_PER_SEC, 145836 },
    };
    apr_size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        run_trace(&cases[i], APR_UINT64_C(0x5eed0000) + i, 100000);
    }
}

/* ---- mg_limit_combine -------------------------------------------------------- */

/* Enforced layers only (shadow = 0), costing 1, each able to hold what
 * its decision's limit says (a burst equal to the quota): the combination
 * reads no more of them.  Shadow layers are covered in test_algorithms.c. */
static void combine(mg_decision *d)
{
    static mg_limit_spec specs[MG_LIMIT_MAX_LAYERS];
    mg_layer layers[MG_LIMIT_MAX_LAYERS];
    int i;

    memset(layers, 0, sizeof(layers));
    for (i = 0; i < d->nlayers; i++) {
        specs[i] = mg_test_spec(d->layer[i].limit, MG_MIN(1),
                                d->layer[i].limit);
        layers[i].spec = &specs[i];
        layers[i].cost = 1;
    }
    mg_limit_combine(layers, d);
}

static void test_combine_zero_layers(void **state)
{
    mg_decision d;

    (void)state;
    memset(&d, 0xab, sizeof(d));
    d.nlayers = 0;
    combine(&d);
    assert_int_equal(d.allowed, 1);
    assert_int_equal(d.binding, -1);
    assert_int_equal(d.shadow_rejected, 0);
    assert_int_equal(d.delay, 0);
}

static void test_combine_all_allow(void **state)
{
    mg_decision d;

    (void)state;
    memset(&d, 0, sizeof(d));
    d.nlayers = 1;
    d.layer[0] = mg_test_ld(1, 10, 0, 0, 0);
    combine(&d);
    assert_int_equal(d.allowed, 1);
    assert_int_equal(d.binding, 0);

    /* 50%, 2%, 5%: the second is nearest its limit. */
    d.nlayers = 3;
    d.layer[0] = mg_test_ld(1, 100, 50, 0, 0);
    d.layer[1] = mg_test_ld(1, 100, 2, 0, 0);
    d.layer[2] = mg_test_ld(1, 10, 5, 0, 0);
    combine(&d);
    assert_int_equal(d.allowed, 1);
    assert_int_equal(d.binding, 1);

    /* As a share, not in units: 9 of 1000 (0.9%) beats 1 of 10 (10%). */
    d.nlayers = 2;
    d.layer[0] = mg_test_ld(1, 10, 1, 0, 0);
    d.layer[1] = mg_test_ld(1, 1000, 9, 0, 0);
    combine(&d);
    assert_int_equal(d.binding, 1);

    /* Equal shares: the first keeps it. */
    d.layer[0] = mg_test_ld(1, 10, 5, 0, 0);
    d.layer[1] = mg_test_ld(1, 100, 50, 0, 0);
    combine(&d);
    assert_int_equal(d.binding, 0);

    /* The last layer can be binding. */
    d.nlayers = MG_LIMIT_MAX_LAYERS;
    {
        int i;
        for (i = 0; i < MG_LIMIT_MAX_LAYERS; i++) {
            d.layer[i] = mg_test_ld(1, 10, (apr_uint64_t)(MG_LIMIT_MAX_LAYERS - i), 0, 0);
        }
    }
    combine(&d);
    assert_int_equal(d.binding, MG_LIMIT_MAX_LAYERS - 1);
}

static void test_combine_rejections(void **state)
{
    mg_decision d;

    (void)state;
    memset(&d, 0, sizeof(d));
    /* One rejecting layer binds, however near the others are. */
    d.nlayers = 3;
    d.layer[0] = mg_test_ld(1, 10, 0, 0, 0);
    d.layer[1] = mg_test_ld(0, 100, 0, MG_SEC(1), 0);
    d.layer[2] = mg_test_ld(1, 10, 0, 0, 0);
    combine(&d);
    assert_int_equal(d.allowed, 0);
    assert_int_equal(d.binding, 1);

    /* Several rejecting: the longest wait binds. */
    d.nlayers = 4;
    d.layer[0] = mg_test_ld(0, 10, 0, MG_SEC(6), 0);
    d.layer[1] = mg_test_ld(1, 10, 0, 0, 0);
    d.layer[2] = mg_test_ld(0, 3, 0, MG_SEC(20), 0);
    d.layer[3] = mg_test_ld(0, 1000, 0, MG_SEC(7), 0);
    combine(&d);
    assert_int_equal(d.allowed, 0);
    assert_int_equal(d.binding, 2);

    /* A rejection at layer 0 with allowing layers after it. */
    d.nlayers = 3;
    d.layer[0] = mg_test_ld(0, 10, 0, MG_SEC(6), 0);
    d.layer[1] = mg_test_ld(1, 10, 0, 0, 0);
    d.layer[2] = mg_test_ld(1, 10, 1, 0, 0);
    combine(&d);
    assert_int_equal(d.allowed, 0);
    assert_int_equal(d.binding, 0);

    /* Equal waits: the first rejecting layer keeps it. */
    d.nlayers = 3;
    d.layer[0] = mg_test_ld(1, 10, 0, 0, 0);
    d.layer[1] = mg_test_ld(0, 10, 0, MG_SEC(6), 0);
    d.layer[2] = mg_test_ld(0, 10, 0, MG_SEC(6), 0);
    combine(&d);
    assert_int_equal(d.binding, 1);

    /* An allowing layer nearer its limit after a rejection does not steal
     * the binding. */
    d.nlayers = 2;
    d.layer[0] = mg_test_ld(0, 10, 5, MG_SEC(6), 0);
    d.layer[1] = mg_test_ld(1, 10, 0, 0, 0);
    combine(&d);
    assert_int_equal(d.binding, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_spec_derived_fields),
        MG_TEST(test_spec_init_errors),
        MG_TEST(test_fresh_state_is_full),
        MG_TEST(test_ten_per_minute_burst_ten),
        MG_TEST(test_refill_boundary),
        MG_TEST(test_remaining_and_reset_exact),
        MG_TEST(test_burst_above_quota),
        MG_TEST(test_burst_below_quota),
        MG_TEST(test_cost_above_one),
        MG_TEST(test_cost_above_burst),
        MG_TEST(test_rejection_leaves_state_unchanged),
        MG_TEST(test_clock_backwards),
        MG_TEST(test_large_values),
        MG_TEST(test_twenty_evenly_in_one_second),
        MG_TEST(test_random_trace_vs_reference),
        MG_TEST(test_combine_zero_layers),
        MG_TEST(test_combine_all_allow),
        MG_TEST(test_combine_rejections),
    };

    return MG_RUN(tests);
}
