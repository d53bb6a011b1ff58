/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_algorithms.c -- the six rate limit algorithms (mg_limit_bucket.c,
 * mg_limit_gcra.c, mg_limit_window.c, mg_limit_sliding_log.c), shadow
 * layers in mg_limit_combine and mixed algorithms in mg_table_decide.
 *
 * Every time is a fake clock value and every expected number is worked out
 * by hand from the algorithm's definition in the comment next to it.  The
 * randomized traces compare each algorithm with a reference model written
 * here from the definition (counts per window, a plain array of admitted
 * timestamps, a bucket of water in 128-bit integers), decision by decision.
 */
#include "mg_test.h"
#include <string.h>
#include <stdlib.h>

#include <apr_hash.h>
#include <apr_strings.h>
#include "mg_limit.h"
#include "mg_table.h"

__extension__ typedef unsigned __int128 u128;
__extension__ typedef __int128 i128;

/* An aligned minute: MG_T0 is 20 s past one (1,700,000,000 = 60 *
 * 28,333,333 + 20).  MG_T0 itself is a multiple of 1 s and of 10 s. */
#define M0 (MG_T0 - MG_SEC(20))

/* ---- helpers --------------------------------------------------------------- */

/* Room for the state of any algorithm: a sliding log's is the largest. */
typedef union st_buf {
    mg_limit_state head;
    mg_limit_log_state log;
} st_buf;

static mg_limit_spec spec_of(mg_limit_algo algo, apr_uint64_t quota,
                             apr_int64_t window, apr_uint64_t burst)
{
    mg_limit_spec spec;
    const char *err = mg_limit_spec_init(&spec, algo, quota, window, burst);

    if (err) {
        fail_msg("mg_limit_spec_init(%s, %llu, %lld, %llu): %s",
                 mg_limit_algo_name(algo), (unsigned long long)quota,
                 (long long)window, (unsigned long long)burst, err);
    }
    return spec;
}

static mg_limit_spec leaky_queue(apr_uint64_t quota, apr_int64_t window,
                                 apr_uint64_t burst,
                                 apr_interval_time_t max_delay)
{
    mg_limit_spec spec = spec_of(MG_ALGO_LEAKY_BUCKET, quota, window, burst);
    const char *err = mg_limit_spec_delay(&spec, max_delay);

    if (err) {
        fail_msg("mg_limit_spec_delay(%lld): %s", (long long)max_delay, err);
    }
    return spec;
}

static mg_limit_spec calendar_spec(apr_uint64_t quota,
                                   mg_limit_calendar calendar,
                                   apr_int32_t utc_offset)
{
    /* The window given here is replaced by the calendar's. */
    mg_limit_spec spec = spec_of(MG_ALGO_FIXED_WINDOW, quota, MG_MIN(1),
                                 quota);
    const char *err = mg_limit_spec_calendar(&spec, calendar, utc_offset);

    if (err) {
        fail_msg("mg_limit_spec_calendar(%d, %d): %s", (int)calendar,
                 (int)utc_offset, err);
    }
    return spec;
}

typedef void (*algo_fn)(const mg_limit_spec *, const mg_limit_state *,
                        apr_time_t, apr_uint64_t, mg_limit_state *,
                        mg_limit_decision *);

/* Runs `fn` twice with differently poisoned outputs and checks that the
 * answers and the states to store are the same: every field is written by
 * the algorithm.  Then checks what holds for every decision: nothing
 * negative, no wait when allowed, no delay when rejected, and a rejection's
 * `next` decides exactly as the state it came from. */
static void checked(algo_fn fn, const mg_limit_spec *spec, const st_buf *st,
                    apr_time_t now, apr_uint64_t cost, st_buf *next,
                    mg_limit_decision *d)
{
    st_buf n2;
    mg_limit_decision d2;
    apr_uint64_t most = spec->burst > spec->quota ? spec->burst : spec->quota;

    memset(next, 0xab, sizeof(*next));
    memset(d, 0xab, sizeof(*d));
    memset(&n2, 0x54, sizeof(n2));
    memset(&d2, 0x54, sizeof(d2));
    fn(spec, &st->head, now, cost, &next->head, d);
    fn(spec, &st->head, now, cost, &n2.head, &d2);
    mg_test_assert_decision_equal(d, &d2);
    assert_memory_equal(next, &n2, spec->state_size);

    assert_true(d->allowed == 0 || d->allowed == 1);
    assert_int_equal(d->limit, spec->quota);
    assert_true(d->remaining <= most);
    assert_true(d->reset >= 0);
    assert_true(d->retry_after >= 0);
    assert_true(d->delay >= 0);
    if (d->allowed) {
        assert_int_equal(d->retry_after, 0);
    }
    else {
        mg_limit_decision again;
        st_buf n3;

        assert_int_equal(d->delay, 0);
        assert_true(d->retry_after > 0);
        fn(spec, &next->head, now, cost, &n3.head, &again);
        mg_test_assert_decision_equal(&again, d);
    }
}

static void decide_any(const mg_limit_spec *spec, const mg_limit_state *state,
                       apr_time_t now, apr_uint64_t cost,
                       mg_limit_state *next, mg_limit_decision *d)
{
    mg_limit_decide(spec, state, now, cost, next, d);
}

/* Decide through mg_limit_decide; commit when allowed, as the table does. */
static mg_limit_decision take(const mg_limit_spec *spec, st_buf *st,
                              apr_time_t now, apr_uint64_t cost)
{
    mg_limit_decision d;
    st_buf next;

    checked(decide_any, spec, st, now, cost, &next, &d);
    if (d.allowed) {
        memcpy(st, &next, spec->state_size);
    }
    return d;
}

/* Decide and commit whatever the answer (a rejection consumes nothing). */
static mg_limit_decision take_always(const mg_limit_spec *spec, st_buf *st,
                                     apr_time_t now, apr_uint64_t cost)
{
    mg_limit_decision d;
    st_buf next;

    checked(decide_any, spec, st, now, cost, &next, &d);
    memcpy(st, &next, spec->state_size);
    return d;
}

/* Decide without committing. */
static mg_limit_decision peek(const mg_limit_spec *spec, const st_buf *st,
                              apr_time_t now, apr_uint64_t cost)
{
    mg_limit_decision d;
    st_buf next;

    checked(decide_any, spec, st, now, cost, &next, &d);
    return d;
}

static void fresh(st_buf *st)
{
    memset(st, 0, sizeof(*st));
}

/* Runs requests of cost 1 at times[0..n) and returns a bit mask of the
 * admitted ones; their decisions go to d[]. */
static apr_uint64_t run_requests(const mg_limit_spec *spec,
                                 const apr_time_t *times, int n,
                                 mg_limit_decision *d)
{
    st_buf st;
    apr_uint64_t mask = 0;
    int i;

    fresh(&st);
    for (i = 0; i < n; i++) {
        d[i] = take(spec, &st, times[i], 1);
        if (d[i].allowed) {
            mask |= APR_UINT64_C(1) << i;
        }
    }
    return mask;
}

/* ---- limits: construction ---------------------------------------------------- */

static void test_spec_algorithms(void **state)
{
    static const struct {
        const char *name;
        mg_limit_algo algo;
    } names[] = {
        { "token_bucket", MG_ALGO_TOKEN_BUCKET },
        { "leaky_bucket", MG_ALGO_LEAKY_BUCKET },
        { "fixed_window", MG_ALGO_FIXED_WINDOW },
        { "sliding_log", MG_ALGO_SLIDING_LOG },
        { "sliding_window", MG_ALGO_SLIDING_WINDOW },
        { "gcra", MG_ALGO_GCRA },
    };
    mg_limit_spec s;
    apr_size_t i;

    (void)state;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_int_equal(mg_limit_algo_parse(names[i].name), names[i].algo);
        assert_string_equal(mg_limit_algo_name(names[i].algo), names[i].name);
    }
    assert_int_equal(mg_limit_algo_parse("token-bucket"), 0);
    assert_int_equal(mg_limit_algo_parse("GCRA"), 0);
    assert_int_equal(mg_limit_algo_parse(""), 0);
    assert_string_equal(mg_limit_algo_name((mg_limit_algo)0), "?");
    assert_string_equal(mg_limit_algo_name((mg_limit_algo)7), "?");

    /* Buckets and GCRA keep their burst and run on the monotonic clock. */
    s = spec_of(MG_ALGO_GCRA, 10, MG_MIN(1), 25);
    assert_int_equal(s.burst, 25);
    assert_int_equal(s.capacity, 25 * 6000000);
    assert_int_equal(s.wall_clock, 0);
    assert_int_equal(s.state_size, sizeof(mg_limit_state));
    s = spec_of(MG_ALGO_LEAKY_BUCKET, 10, MG_MIN(1), 25);
    assert_int_equal(s.burst, 25);
    assert_int_equal(s.max_delay, 0);
    assert_int_equal(s.wall_clock, 0);

    /* Windows use the quota as their size; aligned ones the wall clock. */
    s = spec_of(MG_ALGO_FIXED_WINDOW, 10, MG_MIN(1), 25);
    assert_int_equal(s.burst, 10);
    assert_int_equal(s.capacity, 0);
    assert_int_equal(s.wall_clock, 1);
    assert_int_equal(s.calendar, MG_CAL_NONE);
    assert_int_equal(s.state_size, sizeof(mg_limit_state));
    s = spec_of(MG_ALGO_SLIDING_WINDOW, 10, MG_MIN(1), 1);
    assert_int_equal(s.burst, 10);
    assert_int_equal(s.wall_clock, 1);
    assert_int_equal(s.state_size, sizeof(mg_limit_state));
    /* A sliding log is not aligned: it runs on the monotonic clock. */
    s = spec_of(MG_ALGO_SLIDING_LOG, 10, MG_MIN(1), 1);
    assert_int_equal(s.burst, 10);
    assert_int_equal(s.wall_clock, 0);
}

static void test_spec_sliding_log_bound(void **state)
{
    mg_limit_spec s;
    const char *err;

    (void)state;
    /* One timestamp per unit: a 32-byte head and 8 bytes a unit. */
    assert_int_equal(sizeof(mg_limit_state), 32);
    assert_int_equal(sizeof(mg_limit_log_state), 32 + 8 * MG_LIMIT_LOG_MAX);
    s = spec_of(MG_ALGO_SLIDING_LOG, 1, MG_SEC(1), 1);
    assert_int_equal(s.state_size, 40);
    s = spec_of(MG_ALGO_SLIDING_LOG, MG_LIMIT_LOG_MAX, MG_MIN(1), 1);
    assert_int_equal(s.quota, 256);
    assert_int_equal(s.state_size, 2080);
    assert_int_equal(s.state_size, sizeof(mg_limit_log_state));

    err = mg_limit_spec_init(&s, MG_ALGO_SLIDING_LOG, MG_LIMIT_LOG_MAX + 1,
                             MG_MIN(1), 1);
    assert_non_null(err);
    assert_string_equal(err, "a sliding log keeps one timestamp per unit: "
                        "its quota must be at most 256 (use sliding_window "
                        "for larger quotas)");
    assert_non_null(mg_limit_spec_init(&s, MG_ALGO_SLIDING_LOG,
                                       MG_LIMIT_MAX_QUOTA, MG_MIN(1), 1));
    /* The sliding window counter has no such bound. */
    assert_null(mg_limit_spec_init(&s, MG_ALGO_SLIDING_WINDOW,
                                   MG_LIMIT_LOG_MAX + 1, MG_MIN(1), 1));
    assert_null(mg_limit_spec_init(&s, MG_ALGO_SLIDING_WINDOW,
                                   MG_LIMIT_MAX_QUOTA, MG_LIMIT_MAX_WINDOW,
                                   1));
}

static void test_spec_delay_and_calendar_errors(void **state)
{
    mg_limit_spec s;

    (void)state;
    s = spec_of(MG_ALGO_TOKEN_BUCKET, 10, MG_MIN(1), 10);
    assert_string_equal(mg_limit_spec_delay(&s, MG_SEC(1)),
                        "only a leaky bucket can hold requests (delay=)");
    s = spec_of(MG_ALGO_LEAKY_BUCKET, 10, MG_MIN(1), 10);
    assert_string_equal(mg_limit_spec_delay(&s, -1),
                        "delay must be between 0 and 60 seconds: a held "
                        "request holds an httpd worker");
    assert_non_null(mg_limit_spec_delay(&s, MG_SEC(60) + 1));
    assert_null(mg_limit_spec_delay(&s, MG_SEC(60)));
    assert_int_equal(s.max_delay, MG_SEC(60));
    assert_null(mg_limit_spec_delay(&s, 0));
    assert_int_equal(s.max_delay, 0);

    /* Calendar periods are for fixed windows only. */
    s = spec_of(MG_ALGO_SLIDING_WINDOW, 10, MG_MIN(1), 10);
    assert_string_equal(mg_limit_spec_calendar(&s, MG_CAL_DAY, 0),
                        "calendar days and months are periods of fixed "
                        "windows: use algorithm=fixed_window");
    s = spec_of(MG_ALGO_TOKEN_BUCKET, 10, MG_MIN(1), 10);
    assert_non_null(mg_limit_spec_calendar(&s, MG_CAL_MONTH, 0));
    /* ... though MG_CAL_NONE is accepted by any. */
    assert_null(mg_limit_spec_calendar(&s, MG_CAL_NONE, 0));

    s = spec_of(MG_ALGO_FIXED_WINDOW, 10, MG_MIN(1), 10);
    assert_string_equal(mg_limit_spec_calendar(&s, MG_CAL_DAY, 86400),
                        "the zone's offset from UTC must be less than a day");
    assert_non_null(mg_limit_spec_calendar(&s, MG_CAL_DAY, -86400));
    assert_null(mg_limit_spec_calendar(&s, MG_CAL_DAY, 86399));
    assert_null(mg_limit_spec_calendar(&s, MG_CAL_DAY, -86399));
    assert_int_equal(s.calendar, MG_CAL_DAY);
    assert_int_equal(s.utc_offset, -86399);
    assert_int_equal(s.window, MG_DAY(1));
    assert_null(mg_limit_spec_calendar(&s, MG_CAL_MONTH, 3600));
    assert_int_equal(s.window, MG_DAY(31));
    assert_int_equal(s.wall_clock, 1);
}

/* ---- leaky bucket ------------------------------------------------------------- */

/* As a meter (no max_delay) the leaky bucket's water is the token bucket's
 * missing tokens: decisions and stored states are the token bucket's, step
 * by step, clock steps back and rejections committed included. */
static void test_leaky_meter_is_token_bucket(void **state)
{
    static const struct {
        apr_uint64_t quota;
        apr_int64_t window;
        apr_uint64_t burst;
    } cases[] = {
        { 10, MG_MIN(1), 10 }, { 7, MG_SEC(13), 3 }, { 5, MG_SEC(1), 20 },
        { 1000, MG_DAY(1), 50 }, { 999983, MG_SEC(7), 1000 },
    };
    mg_limit_spec leaky, tb;
    st_buf sl, st;
    mg_limit_decision d;
    apr_size_t c;
    int i;

    (void)state;
    /* 10/min, burst 10: ten at once, the 11th waits 6 s, no delay. */
    leaky = spec_of(MG_ALGO_LEAKY_BUCKET, 10, MG_MIN(1), 10);
    fresh(&sl);
    for (i = 0; i < 10; i++) {
        d = take(&leaky, &sl, MG_T0, 1);
        assert_true(d.allowed);
        assert_int_equal(d.delay, 0);
        assert_int_equal(d.remaining, 9 - i);
    }
    d = take(&leaky, &sl, MG_T0, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(6));
    assert_int_equal(d.reset, MG_MIN(1));

    for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        mg_test_rng rng = { APR_UINT64_C(0x1eaf) + c };
        apr_uint64_t per_unit = (apr_uint64_t)cases[c].window
                                / cases[c].quota + 1;
        apr_time_t now = MG_T0;
        int admitted = 0;

        leaky = spec_of(MG_ALGO_LEAKY_BUCKET, cases[c].quota,
                        cases[c].window, cases[c].burst);
        tb = spec_of(MG_ALGO_TOKEN_BUCKET, cases[c].quota, cases[c].window,
                     cases[c].burst);
        fresh(&sl);
        fresh(&st);
        for (i = 0; i < 20000; i++) {
            apr_uint64_t r = mg_test_below(&rng, 100), cost;
            mg_limit_decision dl, dt;
            st_buf nl, nt;

            if (r < 85) {
                now += (apr_time_t)mg_test_below(&rng, 2 * per_unit);
            }
            else if (r < 92) {
                now += (apr_time_t)mg_test_below(&rng,
                                        2 * (apr_uint64_t)cases[c].window);
            }
            else if (r < 96) {
                now -= (apr_time_t)mg_test_below(&rng, 5 * per_unit);
            }
            cost = mg_test_below(&rng, 10) < 7 ? 1
                   : mg_test_below(&rng, cases[c].burst + 3);
            checked(mg_limit_leaky_bucket, &leaky, &sl, now, cost, &nl, &dl);
            checked(mg_limit_token_bucket, &tb, &st, now, cost, &nt, &dt);
            mg_test_assert_decision_equal(&dl, &dt);
            assert_memory_equal(&nl, &nt, sizeof(mg_limit_state));
            if (dl.allowed || mg_test_below(&rng, 2)) {
                sl = nl;
                st = nt;
            }
            admitted += dl.allowed;
        }
        assert_true(admitted > 2000);
        assert_true(admitted < 19000);
    }
}

/* With max_delay the bucket is a queue: a request waits for the water
 * ahead of it to leak, so requests leave at the rate.  10/s: one unit of
 * water leaks in W/q = 100 ms. */
static void test_leaky_queue_delays(void **state)
{
    mg_limit_spec spec;
    st_buf st;
    mg_limit_decision d;
    int i;

    (void)state;
    /* Burst 10, max_delay 450 ms, five at once: delays 0, W/q, 2W/q, 3W/q,
     * 4W/q.  The sixth would wait 500 ms > 450 ms: refused though the
     * bucket has room for 5 more; it may come back once 50 ms of water
     * has leaked. */
    spec = leaky_queue(10, MG_SEC(1), 10, MG_MSEC(450));
    fresh(&st);
    for (i = 0; i < 5; i++) {
        d = take(&spec, &st, MG_T0, 1);
        assert_true(d.allowed);
        assert_int_equal(d.delay, i * MG_MSEC(100));
        assert_int_equal(d.remaining, 9 - i);
        assert_int_equal(d.reset, (i + 1) * MG_MSEC(100));
    }
    d = take(&spec, &st, MG_T0, 1);
    assert_false(d.allowed);
    assert_int_equal(d.delay, 0);
    assert_int_equal(d.remaining, 5);
    assert_int_equal(d.retry_after, MG_MSEC(500) - MG_MSEC(450));
    /* wait - max_delay, exactly: 1 us early is still too long a queue. */
    d = peek(&spec, &st, MG_T0 + MG_MSEC(50) - 1, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 1);
    d = take(&spec, &st, MG_T0 + MG_MSEC(50), 1);
    assert_true(d.allowed);
    assert_int_equal(d.delay, MG_MSEC(450));
    /* 4.5 units of water were ahead, 5.5 now: 4 whole units of room. */
    assert_int_equal(d.remaining, 4);
    d = take(&spec, &st, MG_T0 + MG_MSEC(50), 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_MSEC(100));

    /* Costs above 1 wait for the water ahead only: 3 units at once each,
     * max_delay 1 s: delays 0, 300 ms, 600 ms, 900 ms. */
    spec = leaky_queue(10, MG_SEC(1), 12, MG_SEC(1));
    fresh(&st);
    for (i = 0; i < 4; i++) {
        d = take(&spec, &st, MG_T0, 3);
        assert_true(d.allowed);
        assert_int_equal(d.delay, i * MG_MSEC(300));
    }
    d = take(&spec, &st, MG_T0, 3);
    assert_false(d.allowed);
    assert_int_equal(d.remaining, 0);
    /* The bucket (12 units) is full: 300 ms until 3 units have leaked;
     * the queue is 1.2 s long, 200 ms more than max_delay. */
    assert_int_equal(d.retry_after, MG_MSEC(300));

    /* The bucket binds before the queue: burst 3, max_delay 10 s. */
    spec = leaky_queue(10, MG_SEC(1), 3, MG_SEC(10));
    fresh(&st);
    for (i = 0; i < 3; i++) {
        d = take(&spec, &st, MG_T0, 1);
        assert_true(d.allowed);
        assert_int_equal(d.delay, i * MG_MSEC(100));
    }
    d = take(&spec, &st, MG_T0, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_MSEC(100));

    /* Both at once, max_delay 200 ms, 5 units of water (500 ms of queue):
     * cost 6 needs 1 more unit of room (100 ms) and the queue to shrink
     * to 200 ms (300 ms): the longer, 300 ms. */
    spec = leaky_queue(10, MG_SEC(1), 10, MG_MSEC(200));
    fresh(&st);
    d = take(&spec, &st, MG_T0, 5);
    assert_true(d.allowed);
    assert_int_equal(d.delay, 0);
    d = take(&spec, &st, MG_T0, 6);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_MSEC(300));
    assert_false(peek(&spec, &st, MG_T0 + MG_MSEC(300) - 1, 6).allowed);
    d = peek(&spec, &st, MG_T0 + MG_MSEC(300), 6);
    assert_true(d.allowed);
    assert_int_equal(d.delay, MG_MSEC(200));
    /* cost 9 needs 4 units of room (400 ms), the queue 300 ms: 400 ms. */
    d = take(&spec, &st, MG_T0, 9);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_MSEC(400));
    d = peek(&spec, &st, MG_T0 + MG_MSEC(400), 9);
    assert_true(d.allowed);
    assert_int_equal(d.delay, MG_MSEC(100));
    /* Above the burst: never fits, the wait offered is until empty. */
    d = take(&spec, &st, MG_T0, 11);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_MSEC(500));

    /* A clock step back adds to the queue's wait: water of 1 unit at T0,
     * clock 150 ms behind: 250 ms of wait, above max_delay 200 ms. */
    fresh(&st);
    assert_true(take(&spec, &st, MG_T0, 1).allowed);
    d = take(&spec, &st, MG_T0 - MG_MSEC(150), 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_MSEC(50));
    d = take(&spec, &st, MG_T0 - MG_MSEC(50), 1);
    assert_true(d.allowed);
    assert_int_equal(d.delay, MG_MSEC(150));
}

/* Requests arriving every 10 ms at a queue of 10/s, burst 10, max_delay
 * 500 ms, for 2 s.  The k-th admitted leaves at exactly k * 100 ms.  With
 * k admitted before arrival a (and the water never empty) the wait is
 * k * 100 ms - a, so a is admitted while that is <= 500 ms: the first six
 * (a = 0..50 ms, waits 0, 90, ..., 450 ms), then one every 100 ms (a =
 * 100, 200, ..., 1900 ms, each waiting 500 ms): 6 + 19 = 25. */
static void test_leaky_queue_releases_at_rate(void **state)
{
    mg_limit_spec spec = leaky_queue(10, MG_SEC(1), 10, MG_MSEC(500));
    st_buf st;
    int i, k = 0;

    (void)state;
    fresh(&st);
    for (i = 0; i < 200; i++) {
        apr_time_t a = MG_T0 + i * MG_MSEC(10);
        mg_limit_decision d = take(&spec, &st, a, 1);
        int expect = i <= 5 || (i >= 10 && i % 10 == 0);

        assert_int_equal(d.allowed, expect);
        if (d.allowed) {
            assert_int_equal(a + d.delay, MG_T0 + k * MG_MSEC(100));
            assert_true(d.delay <= MG_MSEC(500));
            k++;
        }
        else {
            /* The next slot: when the queue is 500 ms long again. */
            assert_int_equal(a + d.retry_after,
                             MG_T0 + k * MG_MSEC(100) - MG_MSEC(500));
        }
    }
    assert_int_equal(k, 25);
}

/* ---- fixed window --------------------------------------------------------------- */

static void test_fixed_window_aligned(void **state)
{
    mg_limit_spec spec = spec_of(MG_ALGO_FIXED_WINDOW, 3, MG_SEC(10), 1);
    st_buf st;
    mg_limit_decision d;
    int i;

    (void)state;
    /* MG_T0 is a multiple of 10 s: the window is [T0, T0 + 10 s), whenever
     * the first request comes.  Three at T0 + 7 s, the allowance is whole
     * again at the window's end, 3 s later. */
    fresh(&st);
    for (i = 0; i < 3; i++) {
        d = take(&spec, &st, MG_T0 + MG_SEC(7), 1);
        assert_true(d.allowed);
        assert_int_equal(d.remaining, 2 - i);
        assert_int_equal(d.reset, MG_SEC(3));
        assert_int_equal(d.expires, MG_T0 + MG_SEC(10));
        assert_int_equal(st.head.level, i + 1);
        assert_int_equal(st.head.stamp, MG_T0);
    }
    d = take(&spec, &st, MG_T0 + MG_SEC(7), 1);
    assert_false(d.allowed);
    assert_int_equal(d.remaining, 0);
    assert_int_equal(d.retry_after, MG_SEC(3));
    assert_int_equal(d.reset, MG_SEC(3));
    d = peek(&spec, &st, MG_T0 + MG_SEC(10) - 1, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 1);
    assert_int_equal(d.reset, 1);
    /* The next window: the whole quota, for the whole window. */
    d = take(&spec, &st, MG_T0 + MG_SEC(10), 1);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 2);
    assert_int_equal(d.reset, MG_SEC(10));
    assert_int_equal(d.expires, MG_T0 + MG_SEC(20));
    /* Cost 0 looks; cost 2 fits exactly; then nothing. */
    assert_int_equal(take(&spec, &st, MG_T0 + MG_SEC(11), 0).remaining, 2);
    assert_true(take(&spec, &st, MG_T0 + MG_SEC(11), 2).allowed);
    assert_false(take(&spec, &st, MG_T0 + MG_SEC(11), 1).allowed);
    /* Windows later: fresh. */
    d = take(&spec, &st, MG_T0 + MG_DAY(1) + MG_SEC(5), 3);
    assert_true(d.allowed);
    assert_int_equal(d.reset, MG_SEC(5));

    /* Aligned to multiples of the window since the epoch, not to the
     * first request: 1,700,000,000 = 7 * 242,857,142 + 6, so T0 is 6 s
     * into a 7 s window that ends 1 s later. */
    spec = spec_of(MG_ALGO_FIXED_WINDOW, 5, MG_SEC(7), 1);
    fresh(&st);
    d = take(&spec, &st, MG_T0, 5);
    assert_true(d.allowed);
    assert_int_equal(d.reset, MG_SEC(1));
    assert_int_equal(d.expires, MG_T0 + MG_SEC(1));
    assert_int_equal(st.head.stamp, MG_T0 - MG_SEC(6));
    d = take(&spec, &st, MG_T0 + MG_SEC(1) - 1, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 1);
    d = take(&spec, &st, MG_T0 + MG_SEC(1), 5);
    assert_true(d.allowed);
    assert_int_equal(d.reset, MG_SEC(7));

    /* Before the epoch the windows are still aligned (floor, not
     * truncation): -1 us is the last microsecond of [-1 s, 0). */
    spec = spec_of(MG_ALGO_FIXED_WINDOW, 1, MG_SEC(1), 1);
    fresh(&st);
    d = take(&spec, &st, -1, 1);
    assert_true(d.allowed);
    assert_int_equal(d.reset, 1);
    assert_int_equal(d.expires, 0);
    assert_int_equal(st.head.stamp, -MG_SEC(1));
    d = take(&spec, &st, -1, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 1);
    d = take(&spec, &st, 0, 1);
    assert_true(d.allowed);
    assert_int_equal(d.reset, MG_SEC(1));
}

/* Calendar days in a zone east (+1 h) and west (-5 h) of UTC. */
static void test_fixed_window_calendar_day(void **state)
{
    /* 2024-03-10 00:00 at UTC+1 is 2024-03-09 23:00 UTC = 1,710,025,200. */
    const apr_time_t east = MG_SEC(APR_INT64_C(1710025200));
    /* 2024-03-10 00:00 at UTC-5 is 2024-03-10 05:00 UTC = 1,710,046,800. */
    const apr_time_t west = MG_SEC(APR_INT64_C(1710046800));
    mg_limit_spec spec;
    st_buf st;
    mg_limit_decision d;

    (void)state;
    spec = calendar_spec(2, MG_CAL_DAY, 3600);
    assert_int_equal(spec.window, MG_DAY(1));
    fresh(&st);
    /* Noon local: half the day left. */
    d = take(&spec, &st, east + MG_HOUR(12), 1);
    assert_true(d.allowed);
    assert_int_equal(d.reset, MG_HOUR(12));
    assert_int_equal(d.expires, east + MG_DAY(1));
    assert_int_equal(st.head.stamp, east);
    assert_true(take(&spec, &st, east + MG_HOUR(12), 1).allowed);
    d = take(&spec, &st, east + MG_HOUR(12), 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_HOUR(12));
    /* 23:59:59.999999 local (22:59:59.999999 UTC): still that day. */
    d = take(&spec, &st, east + MG_DAY(1) - 1, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 1);
    /* Local midnight, 23:00 UTC: a new day. */
    d = take(&spec, &st, east + MG_DAY(1), 1);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 1);
    assert_int_equal(d.reset, MG_DAY(1));
    /* 1 us before local midnight of the 10th belongs to the 9th. */
    fresh(&st);
    d = take(&spec, &st, east - 1, 2);
    assert_true(d.allowed);
    assert_int_equal(d.reset, 1);
    assert_int_equal(st.head.stamp, east - MG_DAY(1));
    /* Cost above the quota: to the end of the day and one more day. */
    d = take(&spec, &st, east - 1, 3);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 1 + MG_DAY(1));

    spec = calendar_spec(2, MG_CAL_DAY, -18000);
    fresh(&st);
    /* 03:00 UTC on the 10th is 22:00 on the 9th at UTC-5: 2 h left. */
    d = take(&spec, &st, west - MG_HOUR(2), 2);
    assert_true(d.allowed);
    assert_int_equal(d.reset, MG_HOUR(2));
    assert_int_equal(d.expires, west);
    d = take(&spec, &st, west - 1, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 1);
    /* 06:00 UTC is 01:00 local: a new day with 23 h left. */
    d = take(&spec, &st, west + MG_HOUR(1), 1);
    assert_true(d.allowed);
    assert_int_equal(d.reset, MG_HOUR(23));
    assert_int_equal(d.expires, west + MG_DAY(1));
}

/* Calendar months: December to January at UTC+1, February of a leap year
 * and of a common year at UTC-5. */
static void test_fixed_window_calendar_month(void **state)
{
    /* At UTC+1, December 2023 runs from 2023-11-30 23:00 UTC
     * (1,701,385,200) to 2023-12-31 23:00 UTC (1,704,063,600), and
     * January 2024 to 2024-01-31 23:00 UTC (1,706,742,000). */
    const apr_time_t dec = MG_SEC(APR_INT64_C(1701385200));
    const apr_time_t jan = MG_SEC(APR_INT64_C(1704063600));
    const apr_time_t feb_e = MG_SEC(APR_INT64_C(1706742000));
    /* 2023-12-15 12:00 UTC. */
    const apr_time_t mid_dec = MG_SEC(APR_INT64_C(1702641600));
    /* At UTC-5, February 2024 runs from 2024-02-01 05:00 UTC
     * (1,706,763,600) to 2024-03-01 05:00 UTC (1,709,269,200): 29 days;
     * February 2023 from 1,675,227,600 to 1,677,646,800: 28 days. */
    const apr_time_t feb24 = MG_SEC(APR_INT64_C(1706763600));
    const apr_time_t mar24 = MG_SEC(APR_INT64_C(1709269200));
    const apr_time_t feb23 = MG_SEC(APR_INT64_C(1675227600));
    const apr_time_t mar23 = MG_SEC(APR_INT64_C(1677646800));
    mg_limit_spec spec;
    st_buf st;
    mg_limit_decision d;

    (void)state;
    assert_int_equal(jan - dec, MG_DAY(31));
    assert_int_equal(feb_e - jan, MG_DAY(31));
    assert_int_equal(mar24 - feb24, MG_DAY(29));
    assert_int_equal(mar23 - feb23, MG_DAY(28));

    spec = calendar_spec(2, MG_CAL_MONTH, 3600);
    assert_int_equal(spec.window, MG_DAY(31));
    fresh(&st);
    d = take(&spec, &st, mid_dec, 2);
    assert_true(d.allowed);
    assert_int_equal(d.reset, jan - mid_dec);
    assert_int_equal(d.reset, MG_SEC(1422000));
    assert_int_equal(d.expires, jan);
    assert_int_equal(st.head.stamp, dec);
    d = take(&spec, &st, mid_dec, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, jan - mid_dec);
    /* Cost above the quota: to the month's end and a longest month more. */
    d = take(&spec, &st, mid_dec, 3);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, jan - mid_dec + MG_DAY(31));
    /* 2023-12-31 23:59:59.999999 local. */
    d = take(&spec, &st, jan - 1, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 1);
    /* 2024-01-01 00:00 local, 2023-12-31 23:00 UTC: January, new year. */
    d = take(&spec, &st, jan, 1);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 1);
    assert_int_equal(d.reset, MG_DAY(31));
    assert_int_equal(d.expires, feb_e);
    assert_int_equal(st.head.stamp, jan);

    spec = calendar_spec(3, MG_CAL_MONTH, -18000);
    fresh(&st);
    /* 2024-02-01 00:00 local: the whole 29-day February ahead. */
    d = take(&spec, &st, feb24, 1);
    assert_true(d.allowed);
    assert_int_equal(d.reset, MG_DAY(29));
    /* 2024-01-31 23:59:59.999999 local was January, which ends 1 us
     * later (a fresh counter: with `st` it would be a clock step back). */
    {
        st_buf jan24;
        fresh(&jan24);
        d = take(&spec, &jan24, feb24 - 1, 3);
        assert_true(d.allowed);
        assert_int_equal(d.reset, 1);
        assert_int_equal(d.expires, feb24);
    }
    /* 2024-02-29 23:00 local = 2024-03-01 04:00 UTC: still February. */
    d = take(&spec, &st, mar24 - MG_HOUR(1), 2);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    assert_int_equal(d.reset, MG_HOUR(1));
    d = take(&spec, &st, mar24 - MG_HOUR(1), 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_HOUR(1));
    /* March. */
    d = take(&spec, &st, mar24, 3);
    assert_true(d.allowed);
    assert_int_equal(d.reset, MG_DAY(31));
    /* February 2023 has 28 days. */
    fresh(&st);
    d = take(&spec, &st, feb23, 1);
    assert_int_equal(d.reset, MG_DAY(28));
    d = take(&spec, &st, mar23 - 1, 2);
    assert_true(d.allowed);
    assert_int_equal(d.reset, 1);
}

/* ---- sliding log ------------------------------------------------------------------ */

static void test_sliding_log_exact(void **state)
{
    mg_limit_spec spec = spec_of(MG_ALGO_SLIDING_LOG, 3, MG_SEC(10), 1);
    st_buf st;
    mg_limit_decision d;

    (void)state;
    /* Admissions at 0, 2 s, 4 s; until 10 s every 10 s interval holds all
     * three; then one leaves at 10 s, one at 12 s, one at 14 s. */
    fresh(&st);
    d = take(&spec, &st, MG_T0, 1);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 2);
    assert_int_equal(d.reset, MG_SEC(10));
    assert_int_equal(d.expires, MG_T0 + MG_SEC(10));
    d = take(&spec, &st, MG_T0 + MG_SEC(2), 1);
    assert_int_equal(d.remaining, 1);
    assert_int_equal(d.reset, MG_SEC(10));
    d = take(&spec, &st, MG_T0 + MG_SEC(4), 1);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    assert_int_equal(st.head.count, 3);
    /* retry_after = oldest relevant entry + W - now. */
    d = take(&spec, &st, MG_T0 + MG_SEC(5), 1);
    assert_false(d.allowed);
    assert_int_equal(d.remaining, 0);
    assert_int_equal(d.retry_after, MG_SEC(5));
    assert_int_equal(d.reset, MG_SEC(9));   /* newest (4 s) + 10 s - 5 s */
    d = take(&spec, &st, MG_T0 + MG_SEC(10) - 1, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 1);
    d = take(&spec, &st, MG_T0 + MG_SEC(10), 1);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    d = take(&spec, &st, MG_T0 + MG_SEC(10), 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(2));
    /* Long idle: everything expired, the whole quota. */
    d = take(&spec, &st, MG_T0 + MG_HOUR(1), 3);
    assert_true(d.allowed);
    assert_int_equal(d.reset, MG_SEC(10));

    /* Cost above 1: one entry per unit.  Quota 5 per 10 s: 1 at 0, 2 s,
     * 4 s, 2 at 5 s. */
    spec = spec_of(MG_ALGO_SLIDING_LOG, 5, MG_SEC(10), 1);
    fresh(&st);
    assert_true(take(&spec, &st, MG_T0, 1).allowed);
    assert_true(take(&spec, &st, MG_T0 + MG_SEC(2), 1).allowed);
    assert_true(take(&spec, &st, MG_T0 + MG_SEC(4), 1).allowed);
    d = take(&spec, &st, MG_T0 + MG_SEC(5), 2);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    /* Cost 3 at 6 s: the three oldest must leave, the third at 14 s. */
    d = take(&spec, &st, MG_T0 + MG_SEC(6), 3);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(8));
    /* At 12 s two have left (at 10 s and 12 s itself); the one of 4 s
     * must still go: 2 s. */
    d = take(&spec, &st, MG_T0 + MG_SEC(12), 3);
    assert_false(d.allowed);
    assert_int_equal(d.remaining, 2);
    assert_int_equal(d.retry_after, MG_SEC(2));
    /* ... though a cost of 2 fits now. */
    assert_true(peek(&spec, &st, MG_T0 + MG_SEC(12), 2).allowed);
    d = take(&spec, &st, MG_T0 + MG_SEC(14), 3);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    assert_int_equal(d.reset, MG_SEC(10));
    /* Cost 5 = the quota: every entry must go, the last at 24 s. */
    d = take(&spec, &st, MG_T0 + MG_SEC(14), 5);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(10));
    d = take(&spec, &st, MG_T0 + MG_SEC(15), 5);
    assert_int_equal(d.retry_after, MG_SEC(9));
    assert_true(peek(&spec, &st, MG_T0 + MG_SEC(24), 5).allowed);
    /* Cost above the quota never fits: a window is the wait offered. */
    d = take(&spec, &st, MG_T0 + MG_SEC(30), 6);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(10));
    assert_int_equal(d.remaining, 5);
}

/* The quota of the bound, 256 units: the ring wraps many times and a
 * minute never holds more than 256. */
static void test_sliding_log_full_ring(void **state)
{
    mg_limit_spec spec = spec_of(MG_ALGO_SLIDING_LOG, MG_LIMIT_LOG_MAX,
                                 MG_MIN(1), 1);
    st_buf st;
    mg_limit_decision d;
    int i, r;

    (void)state;
    fresh(&st);
    for (r = 0; r < 5; r++) {
        apr_time_t base = MG_T0 + r * MG_MIN(1);
        /* One unit every 100 ms from `base`: 256 fit in 25.5 s.  From the
         * second minute on, each finds its predecessor of a minute ago
         * just gone: 255 before it, none left after it. */
        for (i = 0; i < MG_LIMIT_LOG_MAX; i++) {
            d = take(&spec, &st, base + i * MG_MSEC(100), 1);
            assert_true(d.allowed);
            assert_int_equal(d.remaining,
                             r == 0 ? (apr_uint64_t)(255 - i) : 0);
        }
        d = take(&spec, &st, base + MG_SEC(30), 1);
        assert_false(d.allowed);
        assert_int_equal(d.retry_after, MG_SEC(30));   /* base + 60 s */
        assert_int_equal(st.head.count, 256);
        /* The oldest is back at index 0 each minute (256 a minute). */
        assert_int_equal(st.log.t[st.head.aux], base);
    }
    /* Half of them leave: 128 slots at base + 60 s + 12.75 s. */
    d = take(&spec, &st, MG_T0 + 4 * MG_MIN(1) + MG_MIN(1) + MG_MSEC(12750), 0);
    assert_int_equal(d.remaining, 128);
    assert_int_equal(st.head.aux, 128);
}

/* ---- sliding window counter ------------------------------------------------------------ */

static void test_sliding_window_counter(void **state)
{
    /* 10 per 10 s; MG_T0 is a multiple of 10 s. */
    mg_limit_spec spec = spec_of(MG_ALGO_SLIDING_WINDOW, 10, MG_SEC(10), 1);
    st_buf st;
    mg_limit_decision d;
    int i;

    (void)state;
    /* Ten in [T0, T0 + 10 s).  3 s into the next window the previous one
     * weighs 10 * 7/10 = 7: three more fit (7 + 3 = 10 exactly). */
    fresh(&st);
    for (i = 0; i < 10; i++) {
        assert_true(take(&spec, &st, MG_T0 + MG_SEC(5), 1).allowed);
    }
    for (i = 0; i < 3; i++) {
        d = take(&spec, &st, MG_T0 + MG_SEC(13), 1);
        assert_true(d.allowed);
        assert_int_equal(d.remaining, 2 - i);
        /* This window's count weighs until the end of the next one. */
        assert_int_equal(d.reset, MG_SEC(7) + MG_SEC(10));
        assert_int_equal(d.expires, MG_T0 + MG_SEC(30));
    }
    assert_int_equal(st.head.level, 3);
    assert_int_equal(st.head.aux, 10);
    assert_int_equal(st.head.stamp, MG_T0 + MG_SEC(10));
    /* The 4th: 7 + 4 > 10.  Within this window at e with
     * 10 * (10 s - e) / 10 s + 4 <= 10, i.e. e >= 4 s: 1 s from now. */
    d = take(&spec, &st, MG_T0 + MG_SEC(13), 1);
    assert_false(d.allowed);
    assert_int_equal(d.remaining, 0);
    assert_int_equal(d.retry_after, MG_SEC(1));
    d = peek(&spec, &st, MG_T0 + MG_SEC(14) - 1, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 1);
    d = take(&spec, &st, MG_T0 + MG_SEC(14), 1);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);

    /* Into the next window: ten at T0 + 2 s with nothing before.  The
     * 11th cannot fit in this window (11 > 10); in the next one this
     * window weighs 10 * (10 s - e) / 10 s and needs to weigh 9: e >= 1 s,
     * so 8 s + 1 s = 9 s from now. */
    fresh(&st);
    for (i = 0; i < 10; i++) {
        assert_true(take(&spec, &st, MG_T0 + MG_SEC(2), 1).allowed);
    }
    d = take(&spec, &st, MG_T0 + MG_SEC(2), 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(9));
    assert_int_equal(d.reset, MG_SEC(18));
    d = peek(&spec, &st, MG_T0 + MG_SEC(11) - 1, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 1);
    assert_true(peek(&spec, &st, MG_T0 + MG_SEC(11), 1).allowed);
    /* Cost = the quota needs this window to weigh nothing: 18 s. */
    d = take(&spec, &st, MG_T0 + MG_SEC(2), 10);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(18));
    assert_false(peek(&spec, &st, MG_T0 + MG_SEC(20) - 1, 10).allowed);
    assert_true(peek(&spec, &st, MG_T0 + MG_SEC(20), 10).allowed);
    /* Cost above the quota: a window. */
    d = take(&spec, &st, MG_T0 + MG_SEC(2), 11);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(10));
    /* Two windows on, the old count weighs nothing. */
    d = take(&spec, &st, MG_T0 + MG_SEC(20), 10);
    assert_true(d.allowed);
    assert_int_equal(st.head.aux, 0);

    /* Weights that are not whole: 7 in the previous window, 2.5 s into
     * this one it weighs 7 * 0.75 = 5.25: four fit (9.25), five do not
     * (10.25).  Remaining after each: floor(10 - 5.25 - k) = 3, 2, 1, 0.
     * The 5th fits once 7 * (10 s - e) <= 5 * 10 s, e >= 10 s - 50 s / 7,
     * e >= 2,857,143 us (7 * 7,142,857 = 49,999,999 <= 50,000,000; one us
     * earlier 7 * 7,142,858 = 50,000,006 is not): 357,143 us from now. */
    fresh(&st);
    for (i = 0; i < 7; i++) {
        assert_true(take(&spec, &st, MG_T0 + MG_SEC(1), 1).allowed);
    }
    for (i = 0; i < 4; i++) {
        d = take(&spec, &st, MG_T0 + MG_MSEC(12500), 1);
        assert_true(d.allowed);
        assert_int_equal(d.remaining, 3 - i);
    }
    d = take(&spec, &st, MG_T0 + MG_MSEC(12500), 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 357143);
    assert_false(peek(&spec, &st, MG_T0 + MG_MSEC(12500) + 357142, 1).allowed);
    assert_true(peek(&spec, &st, MG_T0 + MG_MSEC(12500) + 357143, 1).allowed);
    /* Only a previous count: whole again at this window's end. */
    fresh(&st);
    assert_true(take(&spec, &st, MG_T0 + MG_SEC(1), 1).allowed);
    d = take(&spec, &st, MG_T0 + MG_SEC(12), 0);
    assert_int_equal(d.reset, MG_SEC(8));
    assert_int_equal(d.remaining, 9);     /* 10 - 0.8 = 9.2 */
}

/* ---- GCRA ------------------------------------------------------------------------------- */

static void test_gcra_exact(void **state)
{
    mg_limit_spec spec = spec_of(MG_ALGO_GCRA, 10, MG_MIN(1), 10);
    st_buf st;
    mg_limit_decision d;
    int i;

    (void)state;
    /* T = 6 s; tau = 60 s.  Ten at once push the TAT to T0 + 60 s. */
    fresh(&st);
    for (i = 0; i < 10; i++) {
        d = take(&spec, &st, MG_T0, 1);
        assert_true(d.allowed);
        assert_int_equal(d.remaining, 9 - i);
        assert_int_equal(d.reset, (i + 1) * MG_SEC(6));
        assert_int_equal(d.expires, MG_T0 + (i + 1) * MG_SEC(6));
    }
    assert_int_equal(st.head.stamp, MG_T0 + MG_MIN(1));
    assert_int_equal(st.head.level, 0);
    d = take(&spec, &st, MG_T0, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(6));
    assert_int_equal(d.remaining, 0);
    assert_int_equal(d.reset, MG_MIN(1));
    d = take(&spec, &st, MG_T0 + MG_SEC(6) - 1, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 1);
    assert_true(take(&spec, &st, MG_T0 + MG_SEC(6), 1).allowed);
    /* Above the burst: never; the wait offered is until the TAT. */
    d = take(&spec, &st, MG_T0 + MG_SEC(6), 11);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_MIN(1));
    fresh(&st);
    d = take(&spec, &st, MG_T0, 11);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_MIN(1));
    assert_int_equal(d.remaining, 10);

    /* T not a whole number of us: 7 per 13 s, T = 1,857,142.857 us.  Three
     * at once: TAT = T0 + 5,571,428.57 us; the 4th (burst 3) waits for one
     * T: ceil(1,857,142.857) = 1,857,143 us. */
    spec = spec_of(MG_ALGO_GCRA, 7, MG_SEC(13), 3);
    fresh(&st);
    for (i = 0; i < 3; i++) {
        assert_true(take(&spec, &st, MG_T0, 1).allowed);
    }
    assert_int_equal(st.head.stamp, MG_T0 + 5571428);
    assert_int_equal(st.head.level, 4);    /* 0.571428... us = 4/7 us */
    d = take(&spec, &st, MG_T0, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, 1857143);
    assert_false(take(&spec, &st, MG_T0 + 1857142, 1).allowed);
    assert_true(take(&spec, &st, MG_T0 + 1857143, 1).allowed);
}

/* GCRA admits exactly what a token bucket of the same spec admits, and
 * says so with the same numbers, over long random monotonic traces. */
static void test_gcra_equals_token_bucket(void **state)
{
    static const struct {
        apr_uint64_t quota;
        apr_int64_t window;
        apr_uint64_t burst;
    } cases[] = {
        { 10, MG_MIN(1), 10 },
        { 10, MG_MIN(1), 1 },
        { 10, MG_MIN(1), 40 },
        { 7, MG_SEC(13), 3 },
        { 5, MG_SEC(1), 20 },
        { 1000, MG_DAY(1), 50 },
        { 999983, MG_SEC(7), 1000 },
        { APR_UINT64_C(3000000), MG_SEC(1), 100 },
        { APR_UINT64_C(1000000000000), MG_DAY(366),
          APR_UINT64_C(1000000000000) },
        { 1, MG_DAY(366), 145836 },
    };
    apr_size_t c;

    (void)state;
    for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        mg_limit_spec gcra = spec_of(MG_ALGO_GCRA, cases[c].quota,
                                     cases[c].window, cases[c].burst);
        mg_limit_spec tb = spec_of(MG_ALGO_TOKEN_BUCKET, cases[c].quota,
                                   cases[c].window, cases[c].burst);
        mg_test_rng rng = { APR_UINT64_C(0x6c7a0000) + c };
        apr_uint64_t per_unit = (apr_uint64_t)cases[c].window
                                / cases[c].quota;
        apr_uint64_t small = cases[c].burst < 20 ? cases[c].burst : 20;
        st_buf sg, st;
        apr_time_t now = MG_T0;
        int i, admitted = 0, rejected = 0;

        if (per_unit == 0) {
            per_unit = 1;
        }
        fresh(&sg);
        fresh(&st);
        for (i = 0; i < 50000; i++) {
            apr_uint64_t r = mg_test_below(&rng, 100), cost;
            mg_limit_decision dg, dt;
            st_buf ng, nt;

            if (r < 85) {
                now += (apr_time_t)mg_test_below(&rng, 2 * per_unit + 1);
            }
            else if (r < 92) {
                /* the same instant again */
            }
            else {
                now += (apr_time_t)mg_test_below(&rng,
                                        2 * (apr_uint64_t)cases[c].window);
            }
            r = mg_test_below(&rng, 100);
            cost = r < 70 ? 1
                   : r < 88 ? mg_test_below(&rng, small + 1)
                   : r < 95 ? 1 + mg_test_below(&rng, cases[c].burst)
                   : cases[c].burst + 1 + mg_test_below(&rng, 3);

            checked(mg_limit_gcra, &gcra, &sg, now, cost, &ng, &dg);
            checked(mg_limit_token_bucket, &tb, &st, now, cost, &nt, &dt);
            if (dg.allowed != dt.allowed) {
                fail_msg("case %d step %d: now=t0%+lld cost=%llu: gcra %s, "
                         "token bucket %s", (int)c, i,
                         (long long)(now - MG_T0), (unsigned long long)cost,
                         dg.allowed ? "admits" : "rejects",
                         dt.allowed ? "admits" : "rejects");
            }
            mg_test_assert_decision_equal(&dg, &dt);
            if (dg.allowed || mg_test_below(&rng, 2)) {
                sg = ng;
                st = nt;
            }
            if (dg.allowed) {
                admitted++;
            }
            else {
                rejected++;
            }
        }
        assert_true(admitted > 2500);
        assert_true(rejected > 500);
    }
}

/* ---- the classic exercise ---------------------------------------------------------------- */

/* 20 requests evenly spread over one second, request i at T0 + i * 50 ms
 * (i = 0..19; T0 is a whole second), against 10 per second.  Token bucket
 * terms: a unit is 100 ms of refill; before request i, with all before it
 * admitted, the bucket holds 10 - i + i/2 = 10 - i/2 units. */
static void test_classic_twenty_in_one_second(void **state)
{
    apr_time_t t[20];
    mg_limit_decision d[20];
    mg_limit_spec spec;
    apr_uint64_t mask;
    const apr_uint64_t first19 = (APR_UINT64_C(1) << 19) - 1;
    const apr_uint64_t first10 = (APR_UINT64_C(1) << 10) - 1;
    int i;

    (void)state;
    for (i = 0; i < 20; i++) {
        t[i] = MG_T0 + i * MG_MSEC(50);
    }

    /* Token bucket, burst 10: request i fits while 10 - i/2 >= 1, i.e.
     * i <= 18: 19 admitted (0..18); #19 finds half a unit and waits 50 ms. */
    spec = spec_of(MG_ALGO_TOKEN_BUCKET, 10, MG_SEC(1), 10);
    mask = run_requests(&spec, t, 20, d);
    assert_int_equal(mask, first19);
    assert_int_equal(d[19].retry_after, MG_MSEC(50));
    assert_int_equal(d[18].remaining, 0);

    /* Leaky bucket meter, burst 10: the same water, the same 19. */
    spec = spec_of(MG_ALGO_LEAKY_BUCKET, 10, MG_SEC(1), 10);
    mask = run_requests(&spec, t, 20, d);
    assert_int_equal(mask, first19);
    assert_int_equal(d[19].retry_after, MG_MSEC(50));
    for (i = 0; i < 19; i++) {
        assert_int_equal(d[i].delay, 0);
    }

    /* Leaky bucket queue, burst 10, max_delay 1 s: request i finds i/2
     * units of water, i * 50 ms of queue.  0 goes at once, 1..18 are held
     * i * 50 ms (50 ms .. 900 ms) and so leave at i * 100 ms: 10 per
     * second.  #19 finds 9.5 units: no room for 1 in a bucket of 10 (the
     * bucket binds, its 950 ms queue would be within max_delay): refused,
     * 50 ms. */
    spec = leaky_queue(10, MG_SEC(1), 10, MG_SEC(1));
    mask = run_requests(&spec, t, 20, d);
    assert_int_equal(mask, first19);
    for (i = 0; i < 19; i++) {
        assert_int_equal(d[i].delay, i * MG_MSEC(50));
        assert_int_equal(t[i] + d[i].delay, MG_T0 + i * MG_MSEC(100));
    }
    assert_int_equal(d[19].retry_after, MG_MSEC(50));

    /* Fixed window: one window [T0, T0 + 1 s); 0..9 fill it, 10..19 are
     * refused until its end (retry_after = 1 s - i * 50 ms). */
    spec = spec_of(MG_ALGO_FIXED_WINDOW, 10, MG_SEC(1), 1);
    mask = run_requests(&spec, t, 20, d);
    assert_int_equal(mask, first10);
    for (i = 10; i < 20; i++) {
        assert_int_equal(d[i].retry_after, MG_SEC(1) - i * MG_MSEC(50));
    }

    /* Sliding log: 0..9 fill the log; every later request is within 1 s
     * of request 0, so refused with retry_after = 0 + 1 s - t_i. */
    spec = spec_of(MG_ALGO_SLIDING_LOG, 10, MG_SEC(1), 1);
    mask = run_requests(&spec, t, 20, d);
    assert_int_equal(mask, first10);
    for (i = 10; i < 20; i++) {
        assert_int_equal(d[i].retry_after, MG_SEC(1) - i * MG_MSEC(50));
    }

    /* Sliding window counter: the window before T0 is empty, so this is
     * the fixed window: 0..9.  The refused ones cannot fit this window
     * (11 > 10) and in the next one this window's 10 must weigh 9: 100 ms
     * in, so retry_after = 1 s - i * 50 ms + 100 ms. */
    spec = spec_of(MG_ALGO_SLIDING_WINDOW, 10, MG_SEC(1), 1);
    mask = run_requests(&spec, t, 20, d);
    assert_int_equal(mask, first10);
    for (i = 10; i < 20; i++) {
        assert_int_equal(d[i].retry_after,
                         MG_SEC(1) - i * MG_MSEC(50) + MG_MSEC(100));
    }

    /* GCRA, burst 10: the token bucket's 19. */
    spec = spec_of(MG_ALGO_GCRA, 10, MG_SEC(1), 10);
    mask = run_requests(&spec, t, 20, d);
    assert_int_equal(mask, first19);
    assert_int_equal(d[19].retry_after, MG_MSEC(50));
}

/* ---- the boundary burst -------------------------------------------------------------------- */

/* 100 per minute.  100 requests at second 59 of an aligned minute and 100
 * at second 61 (the next minute); returns how many were admitted in each
 * group. */
static void boundary_burst(const mg_limit_spec *spec, int *first,
                           int *second)
{
    st_buf st;
    int i;

    fresh(&st);
    *first = *second = 0;
    for (i = 0; i < 100; i++) {
        *first += take(spec, &st, M0 + MG_SEC(59), 1).allowed;
    }
    for (i = 0; i < 100; i++) {
        *second += take(spec, &st, M0 + MG_SEC(61), 1).allowed;
    }
}

static void test_boundary_burst(void **state)
{
    mg_limit_spec spec;
    int a, b;

    (void)state;
    /* Fixed window: 100 in [M0, M0 + 60 s), 100 in the next minute: 200
     * within 2 s, its known weakness. */
    spec = spec_of(MG_ALGO_FIXED_WINDOW, 100, MG_MIN(1), 1);
    boundary_burst(&spec, &a, &b);
    assert_int_equal(a, 100);
    assert_int_equal(b, 100);

    /* Sliding log: at 61 s the 100 of 59 s are 2 s old: nothing more. */
    spec = spec_of(MG_ALGO_SLIDING_LOG, 100, MG_MIN(1), 1);
    boundary_burst(&spec, &a, &b);
    assert_int_equal(a, 100);
    assert_int_equal(b, 0);

    /* Sliding window counter: 1 s into the new minute the previous 100
     * weigh 100 * 59/60 = 98.33; n more fit while 98.33 + n <= 100, so
     * n = 1 (exactly: 100 * 59 s + n * 60 s <= 100 * 60 s, n <= 1.67). */
    spec = spec_of(MG_ALGO_SLIDING_WINDOW, 100, MG_MIN(1), 1);
    boundary_burst(&spec, &a, &b);
    assert_int_equal(a, 100);
    assert_int_equal(b, 1);

    /* Token bucket, burst 100: the full bucket, then 2 s of refill at
     * 100/60 per second = 3.33 units: 3. */
    spec = spec_of(MG_ALGO_TOKEN_BUCKET, 100, MG_MIN(1), 100);
    boundary_burst(&spec, &a, &b);
    assert_int_equal(a, 100);
    assert_int_equal(b, 3);

    /* GCRA, burst 100: the same. */
    spec = spec_of(MG_ALGO_GCRA, 100, MG_MIN(1), 100);
    boundary_burst(&spec, &a, &b);
    assert_int_equal(a, 100);
    assert_int_equal(b, 3);

    /* Leaky bucket meter, burst 100: the same. */
    spec = spec_of(MG_ALGO_LEAKY_BUCKET, 100, MG_MIN(1), 100);
    boundary_burst(&spec, &a, &b);
    assert_int_equal(a, 100);
    assert_int_equal(b, 3);
}

/* ---- clock steps back, costs above the quota ------------------------------------------------ */

static void test_windows_clock_backwards(void **state)
{
    mg_limit_spec spec;
    st_buf st;
    mg_limit_decision d;
    int i;

    (void)state;
    /* Fixed window, 5/min.  Three in [M0, M0 + 60 s) at 50 s; the clock
     * steps back into the previous minute: the later window is kept, so
     * two more fit there, not five. */
    spec = spec_of(MG_ALGO_FIXED_WINDOW, 5, MG_MIN(1), 1);
    fresh(&st);
    for (i = 0; i < 3; i++) {
        assert_true(take(&spec, &st, M0 + MG_SEC(50), 1).allowed);
    }
    d = take(&spec, &st, M0 - MG_SEC(10), 2);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    /* Waits count from the caller's clock: 70 s until the window ends. */
    assert_int_equal(d.reset, MG_SEC(70));
    assert_int_equal(d.expires, M0 + MG_MIN(1));
    assert_int_equal(st.head.stamp, M0);
    assert_int_equal(st.head.level, 5);
    d = take_always(&spec, &st, M0 - MG_SEC(10), 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(70));
    assert_int_equal(st.head.level, 5);
    /* Back at 50 s: the two were counted once, in this window. */
    d = take(&spec, &st, M0 + MG_SEC(50), 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(10));
    /* A wild step to before the epoch: nothing negative. */
    d = take_always(&spec, &st, -MG_DAY(1), 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, M0 + MG_MIN(1) + MG_DAY(1));
    assert_int_equal(st.head.stamp, M0);
    d = take(&spec, &st, M0 + MG_MIN(1), 5);
    assert_true(d.allowed);

    /* Sliding window counter, 10 per 10 s.  Ten in [T0, T0 + 10 s) at
     * 5 s, three at 13 s (the previous ten weigh 7).  The clock steps back
     * to 8 s, into the earlier window: the later window is kept, and with
     * e taken as 0 the previous ten weigh all 10: nothing fits.  The 4th
     * fits at 14 s (weight 6, 6 + 4 = 10), 6 s after the caller's 8 s. */
    spec = spec_of(MG_ALGO_SLIDING_WINDOW, 10, MG_SEC(10), 1);
    fresh(&st);
    for (i = 0; i < 10; i++) {
        assert_true(take(&spec, &st, MG_T0 + MG_SEC(5), 1).allowed);
    }
    for (i = 0; i < 3; i++) {
        assert_true(take(&spec, &st, MG_T0 + MG_SEC(13), 1).allowed);
    }
    d = take_always(&spec, &st, MG_T0 + MG_SEC(8), 1);
    assert_false(d.allowed);
    assert_int_equal(d.remaining, 0);
    assert_int_equal(d.retry_after, MG_SEC(6));
    assert_int_equal(d.reset, MG_SEC(12) + MG_SEC(10));
    assert_int_equal(st.head.stamp, MG_T0 + MG_SEC(10));
    assert_int_equal(st.head.level, 3);
    assert_int_equal(st.head.aux, 10);
    assert_false(peek(&spec, &st, MG_T0 + MG_SEC(14) - 1, 1).allowed);
    assert_true(peek(&spec, &st, MG_T0 + MG_SEC(14), 1).allowed);
    /* At 15 s the previous ten weigh 5; with this window's 3 that leaves
     * room for exactly 2. */
    d = take(&spec, &st, MG_T0 + MG_SEC(15), 2);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    /* Six in the window before a step back of 12 s: counted into the
     * later window, never the earlier one (no double counting). */
    fresh(&st);
    for (i = 0; i < 6; i++) {
        assert_true(take(&spec, &st, MG_T0 + MG_SEC(15), 1).allowed);
    }
    for (i = 0; i < 4; i++) {
        assert_true(take(&spec, &st, MG_T0 + MG_SEC(3), 1).allowed);
    }
    assert_int_equal(st.head.level, 10);
    assert_int_equal(st.head.stamp, MG_T0 + MG_SEC(10));
    assert_int_equal(st.head.aux, 0);
    d = take(&spec, &st, MG_T0 + MG_SEC(3), 1);
    assert_false(d.allowed);
    /* Next window ends at 20 s, then 1 s for the weight to reach 9. */
    assert_int_equal(d.retry_after, MG_SEC(18));
    d = take(&spec, &st, MG_T0 + MG_SEC(15), 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(6));
    d = take_always(&spec, &st, 0, 1);
    assert_false(d.allowed);
    assert_true(d.retry_after > MG_T0);

    /* Sliding log, 3 per 10 s.  Two at 5 s; the clock steps back to 0:
     * the third fits, stamped 5 s (the log stays in order), so all three
     * leave at 15 s, not one at 10 s. */
    spec = spec_of(MG_ALGO_SLIDING_LOG, 3, MG_SEC(10), 1);
    fresh(&st);
    assert_true(take(&spec, &st, MG_T0 + MG_SEC(5), 2).allowed);
    d = take(&spec, &st, MG_T0, 1);
    assert_true(d.allowed);
    assert_int_equal(d.reset, MG_SEC(15));
    assert_int_equal(st.log.t[2], MG_T0 + MG_SEC(5));
    d = take(&spec, &st, MG_T0, 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(15));
    d = take(&spec, &st, MG_T0 + MG_SEC(10), 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(5));
    d = take_always(&spec, &st, -MG_DAY(1), 1);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_T0 + MG_SEC(15) + MG_DAY(1));
    assert_int_equal(st.head.count, 3);
    d = take(&spec, &st, MG_T0 + MG_SEC(15), 3);
    assert_true(d.allowed);
}

/* GCRA's state is its theoretical arrival time only.  On the monotonic
 * clock it runs on, steps back are the microseconds between reading the
 * clock and taking the store's lock; what it does then must be sane. */
static void test_gcra_clock_backwards(void **state)
{
    mg_limit_spec spec = spec_of(MG_ALGO_GCRA, 10, MG_MIN(1), 10);
    st_buf st;
    mg_limit_decision d;

    (void)state;
    fresh(&st);
    assert_true(take(&spec, &st, MG_T0, 1).allowed);
    /* Far behind the TAT: nothing negative, and once the clock is back
     * the allowance is as it was (9 left at T0). */
    d = take_always(&spec, &st, 0, 1);
    assert_false(d.allowed);
    assert_true(d.retry_after > 0);
    assert_true(d.reset > 0);
    d = take_always(&spec, &st, -MG_DAY(1), 1);
    assert_false(d.allowed);
    assert_true(d.retry_after > 0);
    d = take(&spec, &st, MG_T0, 9);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    assert_int_equal(st.head.stamp, MG_T0 + MG_MIN(1));
}

/* A cost above the quota (above the burst for buckets) never fits, fresh
 * or not, and consumes nothing. */
static void test_cost_above_quota_never_fits(void **state)
{
    mg_limit_spec specs[6];
    apr_interval_time_t later[] = { 0, MG_SEC(1), MG_MIN(1), MG_DAY(1),
                                    MG_DAY(400) };
    int a;

    (void)state;
    specs[0] = spec_of(MG_ALGO_TOKEN_BUCKET, 5, MG_SEC(10), 5);
    specs[1] = leaky_queue(5, MG_SEC(10), 5, MG_SEC(5));
    specs[2] = spec_of(MG_ALGO_FIXED_WINDOW, 5, MG_SEC(10), 1);
    specs[3] = spec_of(MG_ALGO_SLIDING_LOG, 5, MG_SEC(10), 1);
    specs[4] = spec_of(MG_ALGO_SLIDING_WINDOW, 5, MG_SEC(10), 1);
    specs[5] = spec_of(MG_ALGO_GCRA, 5, MG_SEC(10), 5);
    for (a = 0; a < 6; a++) {
        st_buf st, before;
        apr_size_t k;

        fresh(&st);
        for (k = 0; k < sizeof(later) / sizeof(later[0]); k++) {
            mg_limit_decision d;

            d = take_always(&specs[a], &st, MG_T0 + later[k], 6);
            assert_false(d.allowed);
            assert_int_equal(d.remaining, 5);
            assert_true(d.retry_after >= MG_SEC(10));
            d = take_always(&specs[a], &st, MG_T0 + later[k],
                            APR_UINT64_MAX);
            assert_false(d.allowed);
            assert_int_equal(d.remaining, 5);
        }
        /* Then the whole quota at once still fits: nothing was used. */
        before = st;
        assert_true(take(&specs[a], &st, MG_T0 + MG_DAY(400), 5).allowed);
        /* ... and with one unit used, 6 still never fits. */
        st = before;
        assert_true(take(&specs[a], &st, MG_T0 + MG_DAY(400), 1).allowed);
        assert_false(take(&specs[a], &st, MG_T0 + MG_DAY(400), 6).allowed);
        assert_int_equal(take(&specs[a], &st, MG_T0 + MG_DAY(400), 0).remaining,
                         4);
    }
}

/* ---- randomized traces against reference models ---------------------------------------------- */

/* The trace: time and costs. */
typedef struct gen {
    mg_test_rng rng;
    apr_time_t now;
    apr_uint64_t per_unit;     /* mean time a unit, us */
    apr_uint64_t window;
    apr_uint64_t maxcost;      /* the burst, or the quota */
    apr_interval_time_t snap;  /* often land on multiples of it; 0: never */
    int backwards;             /* may the clock step back */
} gen;

static void gen_init(gen *g, apr_uint64_t seed, apr_time_t start,
                     apr_uint64_t quota, apr_int64_t window,
                     apr_uint64_t maxcost, int backwards)
{
    memset(g, 0, sizeof(*g));
    g->rng.s = seed;
    g->window = (apr_uint64_t)window;
    g->per_unit = (apr_uint64_t)window / quota;
    if (g->per_unit == 0) {
        g->per_unit = 1;
    }
    g->maxcost = maxcost;
    g->backwards = backwards;
    g->now = start + (apr_time_t)mg_test_below(&g->rng, g->window);
}

static void gen_step(gen *g, apr_uint64_t *cost, int *commit_on_reject)
{
    apr_uint64_t r = mg_test_below(&g->rng, 100);
    apr_uint64_t small = g->maxcost < 20 ? g->maxcost : 20;

    if (r < 85) {
        g->now += (apr_time_t)mg_test_below(&g->rng, 2 * g->per_unit + 1);
    }
    else if (r < 90) {
        /* the same instant again */
    }
    else if (r < 95) {
        g->now += (apr_time_t)mg_test_below(&g->rng, 2 * g->window);
    }
    else if (g->backwards) {
        g->now -= (apr_time_t)mg_test_below(&g->rng, 5 * g->per_unit + 1);
        if (mg_test_below(&g->rng, 4) == 0) {
            g->now -= (apr_time_t)mg_test_below(&g->rng, 2 * g->window);
        }
    }
    if (g->snap > 0 && g->now > 0 && mg_test_below(&g->rng, 3) == 0) {
        /* Up to a multiple: window boundaries and exact weights. */
        g->now += (g->snap - g->now % g->snap) % g->snap;
    }
    r = mg_test_below(&g->rng, 100);
    *cost = r < 70 ? 1
            : r < 88 ? mg_test_below(&g->rng, small + 1)
            : r < 95 ? 1 + mg_test_below(&g->rng, g->maxcost)
            : g->maxcost + 1 + mg_test_below(&g->rng, 3);
    *commit_on_reject = (int)mg_test_below(&g->rng, 2);
}

static void trace_fail(const char *what, int step, apr_time_t now,
                       apr_uint64_t cost, int got, int want)
{
    fail_msg("%s, step %d: now=t0%+lld cost=%llu: implementation %s, "
             "reference %s", what, step, (long long)(now - MG_T0),
             (unsigned long long)cost, got ? "admits" : "rejects",
             want ? "admits" : "rejects");
}

/* -- calendar arithmetic, independent of APR (H. Hinnant's algorithms) -- */

static apr_int64_t floor_div64(apr_int64_t a, apr_int64_t b)
{
    apr_int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static apr_int64_t days_from_civil(apr_int64_t y, apr_int64_t m,
                                   apr_int64_t dd)
{
    apr_int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = floor_div64(y, 400);
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + dd - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(apr_int64_t z, apr_int64_t *y, apr_int64_t *m)
{
    apr_int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = floor_div64(z, 146097);
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

/* The period (window index) containing t, and where period k starts. */
static apr_int64_t period_of(const mg_limit_spec *s, apr_time_t t)
{
    apr_time_t off = (apr_time_t)s->utc_offset * APR_USEC_PER_SEC;
    apr_int64_t y, m;

    switch (s->calendar) {
    case MG_CAL_DAY:
        return floor_div64(t + off, MG_DAY(1));
    case MG_CAL_MONTH:
        civil_from_days(floor_div64(t + off, MG_DAY(1)), &y, &m);
        return y * 12 + (m - 1);
    default:
        return floor_div64(t, s->window);
    }
}

static apr_time_t period_start(const mg_limit_spec *s, apr_int64_t k)
{
    apr_time_t off = (apr_time_t)s->utc_offset * APR_USEC_PER_SEC;

    switch (s->calendar) {
    case MG_CAL_DAY:
        return k * MG_DAY(1) - off;
    case MG_CAL_MONTH:
        return days_from_civil(floor_div64(k, 12), k - floor_div64(k, 12) * 12
                               + 1, 1) * MG_DAY(1) - off;
    default:
        return k * s->window;
    }
}

static void test_calendar_reference_sane(void **state)
{
    (void)state;
    /* The reference's own arithmetic, against known dates. */
    assert_int_equal(days_from_civil(1970, 1, 1), 0);
    assert_int_equal(days_from_civil(2024, 3, 10) * 86400 - 3600,
                     APR_INT64_C(1710025200));
    assert_int_equal(days_from_civil(2024, 3, 1) - days_from_civil(2024, 2, 1),
                     29);
    assert_int_equal(days_from_civil(2100, 3, 1) - days_from_civil(2100, 2, 1),
                     28);
    assert_int_equal(days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 1),
                     29);
    assert_int_equal(days_from_civil(1969, 12, 31), -1);
}

/* Units per period, by period index. */
typedef struct counts {
    apr_pool_t *p;
    apr_hash_t *h;
} counts;

static apr_uint64_t *count_slot(counts *c, apr_int64_t k)
{
    apr_uint64_t *v = apr_hash_get(c->h, &k, sizeof(k));

    if (!v) {
        apr_int64_t *key = apr_palloc(c->p, sizeof(*key));
        *key = k;
        v = apr_pcalloc(c->p, sizeof(*v));
        apr_hash_set(c->h, key, sizeof(*key), v);
    }
    return v;
}

static apr_uint64_t count_of(counts *c, apr_int64_t k)
{
    apr_uint64_t *v = apr_hash_get(c->h, &k, sizeof(k));
    return v ? *v : 0;
}

/* -- fixed window: a count per period; a clock step back into an earlier
 *    period counts into the latest period a stored decision saw. -- */

typedef struct ref_window {
    const mg_limit_spec *spec;
    counts c;
    int have;
    apr_int64_t kmax;          /* latest period of a committed decision */
} ref_window;

static apr_int64_t ref_period(const ref_window *r, apr_time_t now)
{
    apr_int64_t k = period_of(r->spec, now);
    return r->have && r->kmax > k ? r->kmax : k;
}

static void ref_fixed_decide(ref_window *r, apr_time_t now, apr_uint64_t cost,
                             mg_limit_decision *d)
{
    const mg_limit_spec *s = r->spec;
    apr_int64_t k = ref_period(r, now);
    apr_time_t end = period_start(s, k + 1);
    apr_uint64_t used = count_of(&r->c, k);

    memset(d, 0, sizeof(*d));
    d->limit = s->quota;
    d->allowed = cost <= s->quota && used + cost <= s->quota;
    if (d->allowed) {
        used += cost;
    }
    else {
        d->retry_after = end - now + (cost <= s->quota ? 0 : s->window);
    }
    d->remaining = s->quota - used;
    d->reset = used ? end - now : 0;
    d->expires = end;
}

static void ref_window_commit(ref_window *r, apr_time_t now, apr_uint64_t cost,
                              int allowed)
{
    apr_int64_t k = ref_period(r, now);

    r->have = 1;
    r->kmax = k;
    if (allowed) {
        *count_slot(&r->c, k) += cost;
    }
}

static void fixed_trace(apr_pool_t *p, const mg_limit_spec *spec,
                        apr_uint64_t seed, apr_time_t start, int steps,
                        int backwards, apr_interval_time_t snap)
{
    ref_window ref;
    gen g;
    st_buf st;
    int i, admitted = 0, rejected = 0;

    memset(&ref, 0, sizeof(ref));
    ref.spec = spec;
    ref.c.p = p;
    ref.c.h = apr_hash_make(p);
    gen_init(&g, seed, start, spec->quota, spec->window, spec->quota,
             backwards);
    g.snap = snap;
    fresh(&st);
    for (i = 0; i < steps; i++) {
        apr_uint64_t cost;
        int cor;
        mg_limit_decision di, dr;
        st_buf next;

        gen_step(&g, &cost, &cor);
        ref_fixed_decide(&ref, g.now, cost, &dr);
        checked(decide_any, spec, &st, g.now, cost, &next, &di);
        if (di.allowed != dr.allowed) {
            trace_fail("fixed window", i, g.now, cost, di.allowed, dr.allowed);
        }
        mg_test_assert_decision_equal(&di, &dr);
        if (di.allowed || cor) {
            st = next;
            ref_window_commit(&ref, g.now, cost, di.allowed);
        }
        admitted += di.allowed;
        rejected += !di.allowed;
    }
    assert_true(admitted > steps / 20);
    assert_true(rejected > steps / 100);
}

static void test_fixed_window_random(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec s;

    s = spec_of(MG_ALGO_FIXED_WINDOW, 10, MG_SEC(10), 1);
    fixed_trace(p, &s, 11, MG_T0, 60000, 0, MG_SEC(1));
    fixed_trace(p, &s, 12, MG_T0, 60000, 1, MG_SEC(1));
    s = spec_of(MG_ALGO_FIXED_WINDOW, 7, MG_SEC(13), 1);
    fixed_trace(p, &s, 13, MG_T0, 60000, 1, 0);
    s = spec_of(MG_ALGO_FIXED_WINDOW, 1, MG_SEC(1), 1);
    fixed_trace(p, &s, 14, MG_T0, 60000, 1, MG_MSEC(500));
    s = spec_of(MG_ALGO_FIXED_WINDOW, 1000, MG_HOUR(1), 1);
    fixed_trace(p, &s, 15, MG_T0, 60000, 0, 0);
    s = spec_of(MG_ALGO_FIXED_WINDOW, MG_LIMIT_MAX_QUOTA, MG_LIMIT_MAX_WINDOW,
                1);
    fixed_trace(p, &s, 16, MG_T0, 60000, 1, 0);
}

static void test_fixed_window_calendar_random(void **state)
{
    apr_pool_t *p = *state;
    /* 2096-01-01: the traces run through 2100, which is not a leap year. */
    const apr_time_t y2096 = days_from_civil(2096, 1, 1) * MG_DAY(1);
    mg_limit_spec s;

    s = calendar_spec(50, MG_CAL_DAY, 3600);
    fixed_trace(p, &s, 21, MG_T0, 60000, 1, MG_HOUR(1));
    s = calendar_spec(50, MG_CAL_DAY, -18000);
    fixed_trace(p, &s, 22, MG_T0, 60000, 0, MG_HOUR(1));
    s = calendar_spec(24, MG_CAL_DAY, 19800);         /* +5:30 */
    fixed_trace(p, &s, 23, MG_T0, 60000, 1, MG_MIN(30));
    s = calendar_spec(100, MG_CAL_MONTH, 3600);
    fixed_trace(p, &s, 24, y2096, 60000, 1, MG_HOUR(1));
    s = calendar_spec(100, MG_CAL_MONTH, -18000);
    fixed_trace(p, &s, 25, y2096, 60000, 0, MG_HOUR(1));
    s = calendar_spec(300, MG_CAL_MONTH, -86399);
    fixed_trace(p, &s, 26, MG_T0, 60000, 1, 0);
}

/* -- sliding window counter: counts per window; the textbook weighting
 *    prev * (W - e) / W + cur + cost <= q in long double, and exactly in
 *    128-bit integers. -- */

typedef struct sw_look {
    apr_uint64_t prev, cur;
    apr_int64_t e;
    apr_time_t start;
} sw_look;

static void sw_at(ref_window *r, apr_time_t t, sw_look *l)
{
    apr_int64_t k = ref_period(r, t);

    l->start = k * r->spec->window;
    l->e = t > l->start ? t - l->start : 0;
    l->prev = count_of(&r->c, k - 1);
    l->cur = count_of(&r->c, k);
}

/* Exact: prev * (W - e) + (cur + cost) * W <= q * W; *cmp the sign of
 * left minus right. */
static int sw_fits_exact(const mg_limit_spec *s, const sw_look *l,
                         apr_uint64_t cost, int *cmp)
{
    i128 w = s->window;
    i128 lhs = (i128)l->prev * (w - l->e)
               + ((i128)l->cur + (i128)cost) * w;
    i128 rhs = (i128)s->quota * w;

    *cmp = lhs < rhs ? -1 : lhs > rhs;
    return cost <= s->quota && lhs <= rhs;
}

static int sw_fits_ld(const mg_limit_spec *s, const sw_look *l,
                      apr_uint64_t cost)
{
    long double weighted = (long double)l->prev
                           * ((long double)(s->window - l->e)
                              / (long double)s->window);

    return cost <= s->quota
           && weighted + (long double)l->cur + (long double)cost
              <= (long double)s->quota;
}

typedef struct sw_stats {
    long ties, ld_disagree;
} sw_stats;

static void ref_sw_decide(ref_window *r, apr_time_t now, apr_uint64_t cost,
                          int ld_check, sw_stats *stats,
                          mg_limit_decision *d)
{
    const mg_limit_spec *s = r->spec;
    sw_look l;
    int cmp;
    u128 w = (u128)s->window, used;

    sw_at(r, now, &l);
    memset(d, 0, sizeof(*d));
    d->limit = s->quota;
    d->allowed = sw_fits_exact(s, &l, cost, &cmp);
    if (cost <= s->quota) {
        int by_ld = sw_fits_ld(s, &l, cost);
        stats->ties += cmp == 0;
        if (by_ld != d->allowed) {
            /* Long double may only differ where the exact form is a
             * tie: there rounding decides. */
            stats->ld_disagree++;
            if (ld_check && cmp != 0) {
                fail_msg("long double and exact disagree off a tie: prev=%llu "
                         "cur=%llu e=%lld cost=%llu",
                         (unsigned long long)l.prev, (unsigned long long)l.cur,
                         (long long)l.e, (unsigned long long)cost);
            }
        }
    }
    if (d->allowed) {
        l.cur += cost;
    }
    else if (cost > s->quota) {
        d->retry_after = s->window;
    }
    else {
        /* The first moment it fits: the weight only falls with time, so
         * search up to 3 windows past now (or past the later window a
         * step back left the counter in). */
        apr_time_t lo = now, hi = now + 3 * s->window;
        sw_look m;

        if (r->have && r->kmax * s->window > now) {
            hi += r->kmax * s->window - now;
        }

        sw_at(r, hi, &m);
        if (!sw_fits_exact(s, &m, cost, &cmp)) {
            fail_msg("sliding window reference: never fits");
        }
        while (hi - lo > 1) {
            apr_time_t mid = lo + (hi - lo) / 2;
            sw_at(r, mid, &m);
            if (sw_fits_exact(s, &m, cost, &cmp)) {
                hi = mid;
            }
            else {
                lo = mid;
            }
        }
        d->retry_after = hi - now;
    }
    used = (u128)l.prev * (w - (u128)l.e) + (u128)l.cur * w;
    d->remaining = used >= (u128)s->quota * w ? 0
                   : (apr_uint64_t)(((u128)s->quota * w - used) / w);
    /* Whole again once neither window weighs anything. */
    d->reset = l.cur ? l.start + 2 * s->window - now
               : l.prev ? l.start + s->window - now : 0;
    d->expires = now + d->reset;
}

static void sliding_window_trace(apr_pool_t *p, const mg_limit_spec *spec,
                                 apr_uint64_t seed, int steps, int backwards,
                                 apr_interval_time_t snap, int ld_check,
                                 sw_stats *stats)
{
    ref_window ref;
    gen g;
    st_buf st;
    int i, admitted = 0, rejected = 0;

    memset(&ref, 0, sizeof(ref));
    ref.spec = spec;
    ref.c.p = p;
    ref.c.h = apr_hash_make(p);
    gen_init(&g, seed, MG_T0, spec->quota, spec->window, spec->quota,
             backwards);
    g.snap = snap;
    fresh(&st);
    for (i = 0; i < steps; i++) {
        apr_uint64_t cost;
        int cor;
        mg_limit_decision di, dr;
        st_buf next;

        gen_step(&g, &cost, &cor);
        ref_sw_decide(&ref, g.now, cost, ld_check, stats, &dr);
        checked(decide_any, spec, &st, g.now, cost, &next, &di);
        if (di.allowed != dr.allowed) {
            trace_fail("sliding window", i, g.now, cost, di.allowed,
                       dr.allowed);
        }
        mg_test_assert_decision_equal(&di, &dr);
        if (di.allowed || cor) {
            st = next;
            ref_window_commit(&ref, g.now, cost, di.allowed);
        }
        admitted += di.allowed;
        rejected += !di.allowed;
    }
    assert_true(admitted > steps / 20);
    assert_true(rejected > steps / 100);
}

static void test_sliding_window_random(void **state)
{
    apr_pool_t *p = *state;
    sw_stats stats;
    mg_limit_spec s;

    memset(&stats, 0, sizeof(stats));
    /* Times often on tenths of the window: exact weights, many ties. */
    s = spec_of(MG_ALGO_SLIDING_WINDOW, 10, MG_SEC(10), 1);
    sliding_window_trace(p, &s, 31, 60000, 0, MG_SEC(1), 1, &stats);
    sliding_window_trace(p, &s, 32, 60000, 1, MG_SEC(1), 1, &stats);
    s = spec_of(MG_ALGO_SLIDING_WINDOW, 7, MG_SEC(13), 1);
    sliding_window_trace(p, &s, 33, 60000, 1, 0, 1, &stats);
    s = spec_of(MG_ALGO_SLIDING_WINDOW, 100, MG_MIN(1), 1);
    sliding_window_trace(p, &s, 34, 60000, 0, MG_MSEC(600), 1, &stats);
    s = spec_of(MG_ALGO_SLIDING_WINDOW, 1, MG_SEC(1), 1);
    sliding_window_trace(p, &s, 35, 60000, 1, MG_MSEC(250), 1, &stats);
    s = spec_of(MG_ALGO_SLIDING_WINDOW, 5000, MG_DAY(1), 1);
    sliding_window_trace(p, &s, 36, 60000, 0, MG_HOUR(1), 1, &stats);
    /* Long double holds 64 bits of mantissa: these numbers need the exact
     * form only. */
    s = spec_of(MG_ALGO_SLIDING_WINDOW, MG_LIMIT_MAX_QUOTA,
                MG_LIMIT_MAX_WINDOW, 1);
    sliding_window_trace(p, &s, 37, 60000, 1, 0, 0, &stats);
    print_message("sliding window: %ld exact ties, %ld long double "
                  "disagreements\n", stats.ties, stats.ld_disagree);
    assert_true(stats.ties > 1000);
}

/* -- sliding log: a plain array of admitted timestamps.  An entry counts
 *    while it is less than a window old; one that a stored decision saw
 *    leave is gone for good (a clock stepping back does not revive it);
 *    new entries are never stamped before the newest one still counting,
 *    so the entries that count are always in order. -- */

typedef struct ref_log {
    const mg_limit_spec *spec;
    apr_time_t *t;
    apr_size_t n, cap;
    apr_size_t live;           /* the entries before it left in a stored
                                  decision */
} ref_log;

/* The first entry still counting at `now`. */
static apr_size_t ref_log_first(const ref_log *r, apr_time_t now)
{
    apr_size_t i = r->live;

    while (i < r->n && r->t[i] + r->spec->window <= now) {
        i++;
    }
    return i;
}

static void ref_log_decide(const ref_log *r, apr_time_t now, apr_uint64_t cost,
                           mg_limit_decision *d)
{
    const mg_limit_spec *s = r->spec;
    apr_size_t first = ref_log_first(r, now);
    apr_uint64_t count = r->n - first;
    /* The newest entry that counts: the allowance is whole once it has
     * left.  An admission adds entries stamped now, or at the newest if
     * the clock stepped back behind it. */
    apr_time_t newest = count > 0 ? r->t[r->n - 1] : now;

    memset(d, 0, sizeof(*d));
    d->limit = s->quota;
    d->allowed = cost <= s->quota && count + cost <= s->quota;
    if (d->allowed) {
        count += cost;
        if (cost > 0 && newest < now) {
            newest = now;
        }
    }
    else if (cost <= s->quota) {
        /* Enough must leave for cost to fit: count + cost - q of them,
         * the last of those at its time + W. */
        d->retry_after = r->t[first + (count + cost - s->quota) - 1]
                         + s->window - now;
    }
    else {
        d->retry_after = s->window;
    }
    d->remaining = s->quota - count;
    d->reset = count ? newest + s->window - now : 0;
    d->expires = count ? newest + s->window : now;
}

static void ref_log_commit(ref_log *r, apr_time_t now, apr_uint64_t cost,
                           int allowed)
{
    apr_size_t first = ref_log_first(r, now);
    apr_time_t stamp = now;
    apr_uint64_t i;

    if (first < r->n && r->t[r->n - 1] > now) {
        stamp = r->t[r->n - 1];
    }
    r->live = first;
    if (!allowed) {
        return;
    }
    for (i = 0; i < cost; i++) {
        if (r->n == r->cap) {
            r->cap = r->cap ? 2 * r->cap : 1024;
            r->t = realloc(r->t, r->cap * sizeof(*r->t));
            assert_non_null(r->t);
        }
        r->t[r->n++] = stamp;
    }
}

static void sliding_log_trace(const mg_limit_spec *spec, apr_uint64_t seed,
                              int steps, int backwards,
                              apr_interval_time_t snap)
{
    ref_log ref;
    gen g;
    st_buf st;
    int i, admitted = 0, rejected = 0;

    memset(&ref, 0, sizeof(ref));
    ref.spec = spec;
    gen_init(&g, seed, MG_T0, spec->quota, spec->window, spec->quota,
             backwards);
    g.snap = snap;
    fresh(&st);
    for (i = 0; i < steps; i++) {
        apr_uint64_t cost;
        int cor;
        mg_limit_decision di, dr;
        st_buf next;

        gen_step(&g, &cost, &cor);
        ref_log_decide(&ref, g.now, cost, &dr);
        checked(decide_any, spec, &st, g.now, cost, &next, &di);
        if (di.allowed != dr.allowed) {
            free(ref.t);
            trace_fail("sliding log", i, g.now, cost, di.allowed, dr.allowed);
        }
        mg_test_assert_decision_equal(&di, &dr);
        if (di.allowed || cor) {
            memcpy(&st, &next, spec->state_size);
            ref_log_commit(&ref, g.now, cost, di.allowed);
        }
        admitted += di.allowed;
        rejected += !di.allowed;
    }
    /* Never more than the quota within a window, over the whole trace
     * (with a monotonic clock the stamps only grow). */
    if (!backwards) {
        apr_size_t a, b = 0;
        for (a = 0; a < ref.n; a++) {
            while (ref.t[b] + spec->window <= ref.t[a]) {
                b++;
            }
            if (a >= b) {
                assert_true(a - b + 1 <= spec->quota);
            }
        }
    }
    free(ref.t);
    assert_true(admitted > steps / 20);
    assert_true(rejected > steps / 100);
}

static void test_sliding_log_random(void **state)
{
    mg_limit_spec s;

    (void)state;
    s = spec_of(MG_ALGO_SLIDING_LOG, 3, MG_SEC(10), 1);
    sliding_log_trace(&s, 41, 60000, 0, MG_SEC(1));
    sliding_log_trace(&s, 42, 60000, 1, MG_SEC(1));
    s = spec_of(MG_ALGO_SLIDING_LOG, 1, MG_SEC(1), 1);
    sliding_log_trace(&s, 43, 60000, 1, 0);
    s = spec_of(MG_ALGO_SLIDING_LOG, 10, MG_SEC(1), 1);
    sliding_log_trace(&s, 44, 60000, 0, MG_MSEC(50));
    s = spec_of(MG_ALGO_SLIDING_LOG, 7, MG_SEC(13), 1);
    sliding_log_trace(&s, 45, 60000, 1, 0);
    s = spec_of(MG_ALGO_SLIDING_LOG, MG_LIMIT_LOG_MAX, MG_MIN(1), 1);
    sliding_log_trace(&s, 46, 60000, 1, MG_MSEC(100));
    s = spec_of(MG_ALGO_SLIDING_LOG, 100, MG_DAY(1), 1);
    sliding_log_trace(&s, 47, 60000, 0, 0);
}

/* -- leaky bucket: water in units of 1/W of a unit (a unit is W of them,
 *    Q leak each microsecond), in 128-bit integers; the queue's wait is
 *    the time the water takes to leak. -- */

typedef struct ref_leaky {
    const mg_limit_spec *spec;
    int valid;
    u128 water;
    apr_time_t stamp;
} ref_leaky;

static u128 ceil_div128(u128 a, u128 b)
{
    return (a + b - 1) / b;
}

/* The water and the stamp at t, without storing. */
static void ref_leaky_at(const ref_leaky *r, apr_time_t t, u128 *water,
                         apr_time_t *stamp)
{
    if (!r->valid) {
        *water = 0;
        *stamp = t;
        return;
    }
    *water = r->water;
    *stamp = r->stamp;
    if (t > r->stamp) {
        u128 leaked = (u128)(apr_uint64_t)(t - r->stamp) * r->spec->quota;
        *water = *water > leaked ? *water - leaked : 0;
        *stamp = t;
    }
}

static int ref_leaky_fits(const ref_leaky *r, apr_time_t t, apr_uint64_t cost,
                          apr_interval_time_t *qwait)
{
    const mg_limit_spec *s = r->spec;
    u128 water, cap = (u128)s->burst * (u128)s->window;
    apr_time_t stamp;

    ref_leaky_at(r, t, &water, &stamp);
    *qwait = (apr_interval_time_t)ceil_div128(water, s->quota)
             + (stamp > t ? stamp - t : 0);
    return cost <= s->burst && water + (u128)cost * (u128)s->window <= cap
           && (s->max_delay == 0 || *qwait <= s->max_delay);
}

static void ref_leaky_decide(const ref_leaky *r, apr_time_t now,
                             apr_uint64_t cost, mg_limit_decision *d)
{
    const mg_limit_spec *s = r->spec;
    u128 water, cap = (u128)s->burst * (u128)s->window;
    apr_time_t stamp;
    apr_interval_time_t qwait, back;

    ref_leaky_at(r, now, &water, &stamp);
    back = stamp > now ? stamp - now : 0;
    memset(d, 0, sizeof(*d));
    d->limit = s->quota;
    d->allowed = ref_leaky_fits(r, now, cost, &qwait);
    if (d->allowed) {
        water += (u128)cost * (u128)s->window;
        d->delay = s->max_delay ? qwait : 0;
    }
    else if (cost <= s->burst) {
        /* The first moment it fits: water only leaks, so search up to
         * when the bucket is empty and the clock past the stamp. */
        apr_time_t lo = now, hi = now + back
                                  + (apr_interval_time_t)ceil_div128(cap,
                                                                 s->quota);
        apr_interval_time_t w2;

        assert_true(ref_leaky_fits(r, hi, cost, &w2));
        while (hi - lo > 1) {
            apr_time_t mid = lo + (hi - lo) / 2;
            if (ref_leaky_fits(r, mid, cost, &w2)) {
                hi = mid;
            }
            else {
                lo = mid;
            }
        }
        d->retry_after = hi - now;
    }
    else {
        /* Never fits: the wait until the bucket is empty, or a window. */
        d->retry_after = (water ? (apr_interval_time_t)ceil_div128(water,
                                                                   s->quota)
                          : s->window) + back;
    }
    d->remaining = (apr_uint64_t)((cap - water) / (u128)s->window);
    d->reset = (apr_interval_time_t)ceil_div128(water, s->quota) + back;
    d->expires = stamp + (apr_interval_time_t)ceil_div128(water, s->quota);
}

static void ref_leaky_commit(ref_leaky *r, apr_time_t now, apr_uint64_t cost,
                             int allowed)
{
    u128 water;
    apr_time_t stamp;

    ref_leaky_at(r, now, &water, &stamp);
    if (allowed) {
        water += (u128)cost * (u128)r->spec->window;
    }
    r->valid = 1;
    r->water = water;
    r->stamp = stamp;
}

static void leaky_trace(const mg_limit_spec *spec, apr_uint64_t seed,
                        int steps, int backwards)
{
    ref_leaky ref;
    gen g;
    st_buf st;
    int i, admitted = 0, rejected = 0, delayed = 0;

    memset(&ref, 0, sizeof(ref));
    ref.spec = spec;
    gen_init(&g, seed, MG_T0, spec->quota, spec->window, spec->burst,
             backwards);
    fresh(&st);
    for (i = 0; i < steps; i++) {
        apr_uint64_t cost;
        int cor;
        mg_limit_decision di, dr;
        st_buf next;

        gen_step(&g, &cost, &cor);
        ref_leaky_decide(&ref, g.now, cost, &dr);
        checked(decide_any, spec, &st, g.now, cost, &next, &di);
        if (di.allowed != dr.allowed) {
            trace_fail("leaky bucket", i, g.now, cost, di.allowed,
                       dr.allowed);
        }
        mg_test_assert_decision_equal(&di, &dr);
        if (di.allowed || cor) {
            st = next;
            ref_leaky_commit(&ref, g.now, cost, di.allowed);
        }
        admitted += di.allowed;
        rejected += !di.allowed;
        delayed += di.delay > 0;
    }
    assert_true(admitted > steps / 20);
    assert_true(rejected > steps / 100);
    print_message("leaky bucket q=%llu w=%lld b=%llu max_delay=%lld: %d "
                  "admitted, %d delayed, %d rejected\n",
                  (unsigned long long)spec->quota, (long long)spec->window,
                  (unsigned long long)spec->burst, (long long)spec->max_delay,
                  admitted, delayed, rejected);
    /* The queue held some (few when max_delay is a microsecond); the
     * meter none. */
    assert_true(spec->max_delay ? delayed > 100 : delayed == 0);
}

static void test_leaky_bucket_random(void **state)
{
    mg_limit_spec s;

    (void)state;
    s = spec_of(MG_ALGO_LEAKY_BUCKET, 10, MG_MIN(1), 10);
    leaky_trace(&s, 51, 60000, 1);
    s = leaky_queue(10, MG_SEC(1), 10, MG_MSEC(450));
    leaky_trace(&s, 52, 60000, 0);
    leaky_trace(&s, 53, 60000, 1);
    s = leaky_queue(7, MG_SEC(13), 3, MG_SEC(5));
    leaky_trace(&s, 54, 60000, 1);
    s = leaky_queue(100, MG_SEC(1), 50, MG_SEC(60));
    leaky_trace(&s, 55, 60000, 0);
    s = leaky_queue(999983, MG_SEC(7), 1000, 1);
    leaky_trace(&s, 56, 60000, 1);
    s = leaky_queue(1, MG_MIN(1), 5, MG_SEC(30));
    leaky_trace(&s, 57, 60000, 1);
}

/* ---- mg_limit_combine with shadow layers ------------------------------------------------------ */

/* Give each layer a limit that holds what its decision's limit says, as
 * the store's layers have: the combination compares shares of it. */
static void combine(mg_layer *layers, mg_decision *d)
{
    static mg_limit_spec specs[MG_LIMIT_MAX_LAYERS];
    int i;

    for (i = 0; i < d->nlayers; i++) {
        specs[i] = mg_test_spec(d->layer[i].limit, MG_MIN(1),
                                d->layer[i].limit);
        layers[i].spec = &specs[i];
    }
    mg_limit_combine(layers, d);
}

static void test_combine_shadow(void **state)
{
    mg_layer layers[MG_LIMIT_MAX_LAYERS];
    mg_decision d;
    int i;

    (void)state;
    memset(layers, 0, sizeof(layers));
    memset(&d, 0xab, sizeof(d));

    /* A shadow layer that rejects does not block: the request goes on,
     * its bit is set, and the binding layer is an enforced one. */
    layers[1].shadow = 1;
    d.nlayers = 3;
    d.layer[0] = mg_test_ld(1, 10, 5, 0, 0);
    d.layer[1] = mg_test_ld(0, 10, 0, MG_SEC(30), 0);
    d.layer[2] = mg_test_ld(1, 10, 2, 0, 0);
    combine(layers, &d);
    assert_int_equal(d.allowed, 1);
    assert_int_equal(d.shadow_rejected, 0x2);
    assert_int_equal(d.binding, 2);
    assert_int_equal(d.delay, 0);

    /* The same numbers enforced: it blocks and binds. */
    layers[1].shadow = 0;
    combine(layers, &d);
    assert_int_equal(d.allowed, 0);
    assert_int_equal(d.shadow_rejected, 0);
    assert_int_equal(d.binding, 1);

    /* An enforced rejection binds even when a shadow layer would make
     * the client wait longer; the delay of an allowing layer is dropped
     * when the request is refused. */
    memset(layers, 0, sizeof(layers));
    layers[2].shadow = 1;
    d.nlayers = 3;
    d.layer[0] = mg_test_ld(1, 10, 5, 0, MG_SEC(5));
    d.layer[1] = mg_test_ld(0, 10, 0, MG_SEC(2), 0);
    d.layer[2] = mg_test_ld(0, 10, 0, MG_SEC(60), 0);
    combine(layers, &d);
    assert_int_equal(d.allowed, 0);
    assert_int_equal(d.binding, 1);
    assert_int_equal(d.shadow_rejected, 0x4);
    assert_int_equal(d.delay, 0);

    /* Several enforced rejections among shadow ones: the longest enforced
     * wait binds. */
    memset(layers, 0, sizeof(layers));
    layers[0].shadow = 1;
    layers[3].shadow = 1;
    d.nlayers = 4;
    d.layer[0] = mg_test_ld(0, 10, 0, MG_MIN(5), 0);
    d.layer[1] = mg_test_ld(0, 10, 0, MG_SEC(6), 0);
    d.layer[2] = mg_test_ld(0, 10, 0, MG_SEC(9), 0);
    d.layer[3] = mg_test_ld(0, 10, 0, MG_MIN(9), 0);
    combine(layers, &d);
    assert_int_equal(d.allowed, 0);
    assert_int_equal(d.binding, 2);
    assert_int_equal(d.shadow_rejected, 0x9);

    /* The delay is the longest of the allowing layers'. */
    memset(layers, 0, sizeof(layers));
    layers[1].shadow = 1;
    d.nlayers = 3;
    d.layer[0] = mg_test_ld(1, 10, 5, 0, MG_SEC(3));
    d.layer[1] = mg_test_ld(0, 10, 0, MG_SEC(1), 0);
    d.layer[2] = mg_test_ld(1, 10, 8, 0, MG_SEC(7));
    combine(layers, &d);
    assert_int_equal(d.allowed, 1);
    assert_int_equal(d.delay, MG_SEC(7));
    assert_int_equal(d.binding, 0);
    assert_int_equal(d.shadow_rejected, 0x2);
    /* A shadow layer never acts on the request: its delay is not taken. */
    layers[2].shadow = 1;
    combine(layers, &d);
    assert_int_equal(d.delay, MG_SEC(3));

    /* Only shadow layers, all rejecting: allowed, the first is shown. */
    memset(layers, 0, sizeof(layers));
    layers[0].shadow = layers[1].shadow = 1;
    d.nlayers = 2;
    d.layer[0] = mg_test_ld(0, 10, 0, MG_SEC(6), 0);
    d.layer[1] = mg_test_ld(0, 10, 0, MG_SEC(60), 0);
    combine(layers, &d);
    assert_int_equal(d.allowed, 1);
    assert_int_equal(d.binding, 0);
    assert_int_equal(d.shadow_rejected, 0x3);
    assert_int_equal(d.delay, 0);

    /* A rejecting shadow layer before an allowing enforced one. */
    memset(layers, 0, sizeof(layers));
    layers[0].shadow = 1;
    d.layer[0] = mg_test_ld(0, 10, 0, MG_SEC(6), 0);
    d.layer[1] = mg_test_ld(1, 1000, 999, 0, 0);
    combine(layers, &d);
    assert_int_equal(d.allowed, 1);
    assert_int_equal(d.binding, 1);
    assert_int_equal(d.shadow_rejected, 0x1);

    /* Every layer shadow and rejecting: every bit. */
    d.nlayers = MG_LIMIT_MAX_LAYERS;
    for (i = 0; i < MG_LIMIT_MAX_LAYERS; i++) {
        layers[i].shadow = 1;
        d.layer[i] = mg_test_ld(0, 10, 0, MG_SEC(1), 0);
    }
    combine(layers, &d);
    assert_int_equal(d.allowed, 1);
    assert_int_equal(d.shadow_rejected, (1u << MG_LIMIT_MAX_LAYERS) - 1);
}

/* ---- mg_table_decide with mixed algorithms ------------------------------------------------------ */

static mg_table *new_table_for(apr_pool_t *p, apr_uint32_t capacity,
                               apr_size_t state_size)
{
    mg_table *t = apr_pcalloc(p, sizeof(*t));
    apr_size_t size = mg_table_bytes_for(capacity, state_size);
    void *mem = apr_palloc(p, size);

    memset(mem, 0xa5, size);
    mg_table_format_for(mem, capacity, state_size);
    assert_int_equal(mg_table_attach(t, mem, size), 1);
    assert_null(t->logs);
    return t;
}

static mg_layer mk_layer(const char *policy, const mg_limit_spec *spec,
                         const char *key, apr_uint64_t cost, int shadow)
{
    mg_layer l;

    memset(&l, 0, sizeof(l));
    l.policy = policy;
    l.spec = spec;
    l.fp = mg_table_fingerprint(key, strlen(key), spec);
    l.cost = cost;
    l.shadow = shadow;
    return l;
}

static mg_table_entry *entry_at(const mg_table *t, apr_uint32_t i)
{
    return (mg_table_entry *)(t->entries + (apr_size_t)i * t->entry_size);
}

static mg_table_entry *entry_of(mg_table *t, const mg_fingerprint *fp)
{
    apr_uint32_t i, n = t->hdr->nsets * t->hdr->ways, found = 0;
    mg_table_entry *e = NULL;

    for (i = 0; i < n; i++) {
        mg_table_entry *x = entry_at(t, i);
        /* 0 when empty; bit 0 cleared while exhausted (mg_table.h) */
        assert_int_equal(t->tags[i] | (t->tags[i] ? 1 : x->fp.lo & 1),
                         x->fp.lo);
        if (x->fp.hi == fp->hi && x->fp.lo == fp->lo) {
            e = x;
            found++;
        }
    }
    assert_true(found <= 1);
    return e;
}

static int used_entries(const mg_table *t)
{
    apr_uint32_t i, n = t->hdr->nsets * t->hdr->ways;
    int used = 0;

    for (i = 0; i < n; i++) {
        const mg_table_entry *x = entry_at(t, i);
        /* 0 when empty; bit 0 cleared while exhausted (mg_table.h) */
        assert_int_equal(t->tags[i] | (t->tags[i] ? 1 : x->fp.lo & 1),
                         x->fp.lo);
        used += x->fp.hi != 0 || x->fp.lo != 0;
    }
    return used;
}

/* The tags and the entries: everything a decision may write but the
 * header's statistics. */
static apr_size_t entries_bytes(const mg_table *t)
{
    return (apr_size_t)t->hdr->nsets * t->hdr->ways
           * (t->entry_size + sizeof(apr_uint64_t));
}

/* Nothing charged since `snap` (entries_bytes of t->tags): every counter
 * holds the state and expiry it held.  A refused decision still marks the
 * entries it consulted as used, and those that refused as exhausted
 * (mg_table.h), so `touched` and the tags' bit 0 may differ. */
static void assert_charged_nothing(const mg_table *t,
                                   const unsigned char *snap)
{
    apr_uint32_t i, n = t->hdr->nsets * t->hdr->ways;
    const apr_uint64_t *tags = (const apr_uint64_t *)snap;
    const unsigned char *entries = snap + (apr_size_t)n * sizeof(apr_uint64_t);

    for (i = 0; i < n; i++) {
        const mg_table_entry *x = entry_at(t, i);
        const mg_table_entry *y = (const mg_table_entry *)
                                  (entries + (apr_size_t)i * t->entry_size);
        assert_int_equal(t->tags[i] | 1, tags[i] | 1);
        assert_int_equal(x->fp.hi, y->fp.hi);
        assert_int_equal(x->fp.lo, y->fp.lo);
        assert_int_equal(x->expires, y->expires);
        assert_memory_equal(&x->state, &y->state,
                            t->entry_size - offsetof(mg_table_entry, state));
    }
}

static apr_status_t decide_at(mg_table *t, const mg_layer *layers, int n,
                              apr_time_t now, mg_decision *d)
{
    return mg_table_decide(t, layers, n, mg_now_at(now), d);
}

static void test_table_layout_for_logs(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec log256 = spec_of(MG_ALGO_SLIDING_LOG, 256, MG_MIN(1), 1);
    mg_table *t;

    /* An entry is 32 bytes of bookkeeping and the state. */
    assert_int_equal(sizeof(mg_table_entry), 64);
    assert_int_equal(mg_table_bytes_for(8, sizeof(mg_limit_state)),
                     mg_table_bytes(8));
    /* The header, a line of tags per set, the entries. */
    assert_int_equal(mg_table_bytes_for(8, 40), 64 + 64 + 8 * 72);
    assert_int_equal(mg_table_bytes_for(9, 2080), 64 + 2 * 64 + 16 * 2112);
    /* States smaller than the head still take a whole entry. */
    assert_int_equal(mg_table_bytes_for(8, 8), mg_table_bytes(8));

    t = new_table_for(p, 16, log256.state_size);
    assert_int_equal(t->hdr->entry_size, 2112);
    assert_int_equal(t->entry_size, 2112);
    assert_int_equal(t->state_size, 2080);
    t = new_table_for(p, 16, 44);              /* rounded up to 8 */
    assert_int_equal(t->entry_size, 80);
    assert_int_equal(t->state_size, 48);
    t = new_table_for(p, 16, sizeof(mg_limit_state));
    assert_int_equal(t->entry_size, 64);
    assert_int_equal(t->state_size, 32);
}

static void test_table_sliding_log_goes_to_logs(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec log3 = spec_of(MG_ALGO_SLIDING_LOG, 3, MG_MIN(1), 1);
    mg_limit_spec log10 = spec_of(MG_ALGO_SLIDING_LOG, 10, MG_MIN(1), 1);
    mg_limit_spec tb = spec_of(MG_ALGO_TOKEN_BUCKET, 10, MG_MIN(1), 10);
    mg_table *t = new_table_for(p, 64, sizeof(mg_limit_state));
    mg_table *logs = new_table_for(p, 16, log3.state_size);
    mg_layer two[2], many[MG_LIMIT_MAX_LAYERS + 1];
    mg_table_entry *e;
    mg_decision d;
    int i;

    two[0] = mk_layer("key", &tb, "key:demo", 1, 0);
    two[1] = mk_layer("tenant", &log3, "tenant:acme", 1, 0);
    assert_int_equal(log3.state_size, 56);
    assert_true(log3.state_size > t->state_size);

    /* No table for logs: refused, nothing decided, nothing stored. */
    memset(&d, 0x5a, sizeof(d));
    assert_int_equal(decide_at(t, &two[1], 1, MG_T0, &d), APR_ENOSPC);
    assert_int_equal(decide_at(t, two, 2, MG_T0, &d), APR_ENOSPC);
    assert_int_equal(t->hdr->stats.decisions, 0);
    assert_int_equal(used_entries(t), 0);

    /* With one: the log's counter lives there, the bucket's here. */
    t->logs = logs;
    for (i = 0; i < 3; i++) {
        assert_int_equal(decide_at(t, two, 2, MG_T0 + i * MG_SEC(1), &d),
                         APR_SUCCESS);
        assert_true(d.allowed);
        assert_int_equal(d.layer[1].remaining, (apr_uint64_t)(2 - i));
    }
    assert_null(entry_of(t, &two[1].fp));
    assert_null(entry_of(logs, &two[0].fp));
    e = entry_of(logs, &two[1].fp);
    assert_non_null(e);
    assert_int_equal(e->state.count, 3);
    assert_int_equal(((mg_limit_log_state *)&e->state)->t[0], MG_T0);
    assert_int_equal(((mg_limit_log_state *)&e->state)->t[2],
                     MG_T0 + MG_SEC(2));
    assert_int_equal(e->touched, MG_T0 + MG_SEC(2));
    assert_int_equal(e->expires, MG_T0 + MG_SEC(2) + MG_MIN(1));
    assert_non_null(entry_of(t, &two[0].fp));
    assert_int_equal(used_entries(t), 1);
    assert_int_equal(used_entries(logs), 1);
    assert_int_equal(logs->hdr->stats.inserted, 1);
    assert_int_equal(t->hdr->stats.inserted, 1);
    assert_int_equal(t->hdr->stats.decisions, 3);

    /* The 4th is refused by the log; the bucket is not charged. */
    assert_int_equal(decide_at(t, two, 2, MG_T0 + MG_SEC(3), &d),
                     APR_SUCCESS);
    assert_false(d.allowed);
    assert_int_equal(d.binding, 1);
    assert_int_equal(d.layer[1].retry_after, MG_SEC(57));
    assert_int_equal(d.layer[0].remaining, 6);
    /* 60e6 - 6e6 at 0 s, + 1e6 - 6e6 at 1 s and at 2 s: 44e6. */
    assert_int_equal(entry_of(t, &two[0].fp)->state.level, 44000000);
    assert_true(decide_at(t, two, 2, MG_T0 + MG_MIN(1), &d) == APR_SUCCESS
                && d.allowed);

    /* A log larger than the logs table's entries fits nowhere. */
    two[1] = mk_layer("tenant", &log10, "tenant:big", 1, 0);
    assert_int_equal(decide_at(t, two, 2, MG_T0 + MG_MIN(2), &d), APR_ENOSPC);
    assert_null(entry_of(logs, &two[1].fp));

    /* More layers than a request may have. */
    for (i = 0; i <= MG_LIMIT_MAX_LAYERS; i++) {
        many[i] = mk_layer("k", &tb, apr_psprintf(p, "key:%d", i), 1, 0);
    }
    assert_int_equal(decide_at(t, many, MG_LIMIT_MAX_LAYERS + 1, MG_T0, &d),
                     APR_ENOSPC);
    assert_int_equal(decide_at(t, many, MG_LIMIT_MAX_LAYERS, MG_T0, &d),
                     APR_SUCCESS);

    /* A table of large entries holds small states too. */
    two[0] = mk_layer("key", &tb, "key:in-logs", 1, 0);
    assert_int_equal(decide_at(logs, two, 1, MG_T0, &d), APR_SUCCESS);
    assert_non_null(entry_of(logs, &two[0].fp));
}

/* One request over all six algorithms: either every layer is charged once
 * or none is. */
static void test_table_mixed_atomic(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec tb = spec_of(MG_ALGO_TOKEN_BUCKET, 10, MG_MIN(1), 10);
    mg_limit_spec lq = leaky_queue(10, MG_MIN(1), 10, MG_SEC(30));
    mg_limit_spec fw = spec_of(MG_ALGO_FIXED_WINDOW, 5, MG_MIN(1), 1);
    mg_limit_spec sl = spec_of(MG_ALGO_SLIDING_LOG, 3, MG_MIN(1), 1);
    mg_limit_spec sw = spec_of(MG_ALGO_SLIDING_WINDOW, 20, MG_MIN(1), 1);
    mg_limit_spec gc = spec_of(MG_ALGO_GCRA, 4, MG_MIN(1), 4);
    mg_table *t = new_table_for(p, 64, sizeof(mg_limit_state));
    mg_table *logs = new_table_for(p, 16, sl.state_size);
    mg_layer l[6];
    mg_decision d;
    unsigned char *snap_t, *snap_l;
    int i;

    t->logs = logs;
    l[0] = mk_layer("key", &tb, "key:demo", 1, 0);
    l[1] = mk_layer("queue", &lq, "route:/v1/chat", 1, 0);
    l[2] = mk_layer("model", &fw, "model:big", 1, 0);
    l[3] = mk_layer("tenant", &sl, "tenant:acme", 1, 0);
    l[4] = mk_layer("global", &sw, "global", 1, 0);
    l[5] = mk_layer("ip", &gc, "ip:192.0.2.1", 1, 0);

    /* Three at M0 + 5 s, + 6 s, + 7 s: all allowed; the queue (10/min,
     * 6 s a unit) holds them 0, 5 s and 10 s (its water leaked 1 s
     * between each). */
    for (i = 0; i < 3; i++) {
        assert_int_equal(decide_at(t, l, 6, M0 + MG_SEC(5 + i), &d),
                         APR_SUCCESS);
        assert_true(d.allowed);
        assert_int_equal(d.delay, i * MG_SEC(5));
        assert_int_equal(d.shadow_rejected, 0);
    }
    assert_int_equal(used_entries(t), 5);
    assert_int_equal(used_entries(logs), 1);

    /* The 4th at 8 s: the log (3/min) refuses, and only the log; the
     * decision shows it, and no layer is charged. */
    snap_t = apr_pmemdup(p, t->tags, entries_bytes(t));
    snap_l = apr_pmemdup(p, logs->tags, entries_bytes(logs));
    for (i = 0; i < 20; i++) {
        assert_int_equal(decide_at(t, l, 6, M0 + MG_SEC(8) + i, &d),
                         APR_SUCCESS);
        assert_false(d.allowed);
        assert_int_equal(d.binding, 3);
        assert_int_equal(d.delay, 0);
        assert_false(d.layer[3].allowed);
        assert_int_equal(d.layer[3].retry_after, MG_SEC(57) - i);
        assert_true(d.layer[0].allowed && d.layer[1].allowed
                    && d.layer[2].allowed && d.layer[4].allowed
                    && d.layer[5].allowed);
        assert_charged_nothing(t, snap_t);
        assert_charged_nothing(logs, snap_l);
    }

    /* At 65 s the log's first entry has left (5 s + 60 s), the minute is
     * new for the fixed window, and the request is charged once
     * everywhere. */
    assert_int_equal(decide_at(t, l, 6, M0 + MG_SEC(65), &d), APR_SUCCESS);
    assert_true(d.allowed);
    assert_int_equal(d.layer[2].remaining, 4);       /* a new minute */
    assert_int_equal(d.layer[3].remaining, 0);
    assert_int_equal(entry_of(logs, &l[3].fp)->state.count, 3);
    assert_int_equal(entry_of(t, &l[2].fp)->state.level, 1);
    assert_int_equal(entry_of(t, &l[4].fp)->state.level, 1);
    assert_int_equal(entry_of(t, &l[4].fp)->state.aux, 3);
    assert_int_equal(t->hdr->stats.decisions, 3 + 20 + 1);
}

/* Wall-clock layers decide on the wall clock, the others on the monotonic
 * one; entries expire on the monotonic clock. */
static void test_table_two_clocks(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec fw = spec_of(MG_ALGO_FIXED_WINDOW, 5, MG_MIN(1), 1);
    mg_limit_spec tb = spec_of(MG_ALGO_TOKEN_BUCKET, 10, MG_MIN(1), 10);
    mg_table *t = new_table_for(p, 64, sizeof(mg_limit_state));
    mg_layer l[2];
    mg_now now;
    mg_decision d;
    mg_table_entry *e;

    l[0] = mk_layer("model", &fw, "model:big", 1, 0);
    l[1] = mk_layer("key", &tb, "key:demo", 1, 0);
    now.mono = MG_SEC(1000);               /* 1000 s since boot */
    now.wall = M0 + MG_SEC(50);            /* 10 s before the minute ends */
    assert_int_equal(mg_limit_clock(&fw, &now), now.wall);
    assert_int_equal(mg_limit_clock(&tb, &now), now.mono);
    assert_int_equal(mg_table_decide(t, l, 2, now, &d), APR_SUCCESS);
    assert_true(d.allowed);
    assert_int_equal(d.layer[0].reset, MG_SEC(10));
    assert_int_equal(d.layer[1].reset, MG_SEC(6));
    e = entry_of(t, &l[0].fp);
    assert_int_equal(e->state.stamp, M0);
    assert_int_equal(e->touched, now.mono);
    assert_int_equal(e->expires, now.mono + MG_SEC(10));
    e = entry_of(t, &l[1].fp);
    assert_int_equal(e->state.stamp, now.mono);
    assert_int_equal(e->expires, now.mono + MG_SEC(6));
}

/* A shadow layer counts while it allows and consumes nothing once it would
 * reject: no entry, no charge, and the request goes on. */
static void test_table_shadow_layer(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec tb = spec_of(MG_ALGO_TOKEN_BUCKET, 10, MG_MIN(1), 10);
    mg_limit_spec fw = spec_of(MG_ALGO_FIXED_WINDOW, 2, MG_MIN(1), 1);
    mg_limit_spec sl = spec_of(MG_ALGO_SLIDING_LOG, 2, MG_MIN(1), 1);
    mg_table *t = new_table_for(p, 64, sizeof(mg_limit_state));
    mg_table *logs = new_table_for(p, 16, sl.state_size);
    mg_layer l[3];
    mg_decision d;
    mg_table_entry *se, before;
    int i;

    t->logs = logs;
    l[0] = mk_layer("key", &tb, "key:demo", 1, 0);
    l[1] = mk_layer("trial", &fw, "model:trial", 1, 1);
    for (i = 0; i < 2; i++) {
        assert_int_equal(decide_at(t, l, 2, M0 + MG_SEC(10 + i), &d),
                         APR_SUCCESS);
        assert_true(d.allowed);
        assert_int_equal(d.shadow_rejected, 0);
    }
    se = entry_of(t, &l[1].fp);
    assert_non_null(se);
    assert_int_equal(se->state.level, 2);
    before = *se;
    /* The 3rd: the shadow layer would reject; the request is allowed and
     * the enforced layer charged, the shadow one not charged (only marked
     * used, and exhausted). */
    /* The bucket: 49e6 at 11 s, 58e6 at 20 s, less 6e6 a request. */
    for (i = 0; i < 5; i++) {
        assert_int_equal(decide_at(t, l, 2, M0 + MG_SEC(20), &d),
                         APR_SUCCESS);
        assert_true(d.allowed);
        assert_int_equal(d.shadow_rejected, 0x2);
        assert_int_equal(d.binding, 0);
        assert_false(d.layer[1].allowed);
        assert_int_equal(d.layer[1].retry_after, MG_SEC(40));
        assert_int_equal(d.layer[0].remaining, (apr_uint64_t)(8 - i));
        assert_memory_equal(&se->state, &before.state, sizeof(before.state));
        assert_int_equal(se->expires, before.expires);
        assert_int_equal(se->touched, M0 + MG_SEC(20));
    }
    assert_int_equal(t->hdr->stats.inserted, 2);

    /* A shadow layer on a new counter that would reject adds no entry:
     * a fixed window with a cost above its quota, a log in the logs
     * table. */
    l[1] = mk_layer("trial", &fw, "model:other", 3, 1);
    l[2] = mk_layer("trial-log", &sl, "tenant:other", 3, 1);
    assert_int_equal(decide_at(t, l, 3, M0 + MG_SEC(30), &d), APR_SUCCESS);
    assert_true(d.allowed);
    assert_int_equal(d.shadow_rejected, 0x6);
    assert_null(entry_of(t, &l[1].fp));
    assert_null(entry_of(logs, &l[2].fp));
    assert_int_equal(t->hdr->stats.inserted, 2);
    assert_int_equal(logs->hdr->stats.inserted, 0);
    assert_int_equal(used_entries(logs), 0);

    /* An allowing shadow layer is charged with the request ... */
    l[2] = mk_layer("trial-log", &sl, "tenant:other", 1, 1);
    assert_int_equal(decide_at(t, &l[2], 1, M0 + MG_SEC(31), &d),
                     APR_SUCCESS);
    assert_true(d.allowed);
    assert_int_equal(entry_of(logs, &l[2].fp)->state.count, 1);
    /* ... but not when an enforced layer refuses it. */
    l[0].cost = 11;
    assert_int_equal(decide_at(t, l, 3, M0 + MG_SEC(32), &d), APR_SUCCESS);
    assert_false(d.allowed);
    assert_int_equal(d.binding, 0);
    assert_true(d.layer[2].allowed);
    assert_int_equal(entry_of(logs, &l[2].fp)->state.count, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_spec_algorithms),
        MG_TEST(test_spec_sliding_log_bound),
        MG_TEST(test_spec_delay_and_calendar_errors),
        MG_TEST(test_leaky_meter_is_token_bucket),
        MG_TEST(test_leaky_queue_delays),
        MG_TEST(test_leaky_queue_releases_at_rate),
        MG_TEST(test_fixed_window_aligned),
        MG_TEST(test_fixed_window_calendar_day),
        MG_TEST(test_fixed_window_calendar_month),
        MG_TEST(test_sliding_log_exact),
        MG_TEST(test_sliding_log_full_ring),
        MG_TEST(test_sliding_window_counter),
        MG_TEST(test_gcra_exact),
        MG_TEST(test_gcra_equals_token_bucket),
        MG_TEST(test_classic_twenty_in_one_second),
        MG_TEST(test_boundary_burst),
        MG_TEST(test_windows_clock_backwards),
        MG_TEST(test_gcra_clock_backwards),
        MG_TEST(test_cost_above_quota_never_fits),
        MG_TEST(test_calendar_reference_sane),
        MG_TEST(test_fixed_window_random),
        MG_TEST(test_fixed_window_calendar_random),
        MG_TEST(test_sliding_window_random),
        MG_TEST(test_sliding_log_random),
        MG_TEST(test_leaky_bucket_random),
        MG_TEST(test_combine_shadow),
        MG_TEST(test_table_layout_for_logs),
        MG_TEST(test_table_sliding_log_goes_to_logs),
        MG_TEST(test_table_mixed_atomic),
        MG_TEST(test_table_two_clocks),
        MG_TEST(test_table_shadow_layer),
    };

    return MG_RUN(tests);
}
