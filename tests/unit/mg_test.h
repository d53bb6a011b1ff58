/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_test.h -- shared helpers of the cmocka unit tests.
 *
 * Everything here is `static inline` so that a test file using only part of
 * it builds clean under -Wall -Werror (unused static inline functions do not
 * warn).  There is no .c helper, so Makefile.am needs nothing for it.
 *
 * Time: no test reads a clock.  Every time is a fake clock value built from
 * MG_T0, an arbitrary base (2023-11-14 22:13:20 UTC in microseconds).
 */
#ifndef MG_TEST_H
#define MG_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_pools.h>
#include <apr_time.h>

#include "mg_limit.h"

/* ---- fake clock ---------------------------------------------------------- */

#define MG_T0      APR_INT64_C(1700000000000000)
#define MG_USEC(n) ((apr_interval_time_t)(n))
#define MG_MSEC(n) ((apr_interval_time_t)(n) * 1000)
#define MG_SEC(n)  ((apr_interval_time_t)(n) * APR_USEC_PER_SEC)
#define MG_MIN(n)  (MG_SEC(n) * 60)
#define MG_HOUR(n) (MG_SEC(n) * 3600)
#define MG_DAY(n)  (MG_SEC(n) * 86400)

/* ---- pools --------------------------------------------------------------- */

/* One root pool for the whole group; each test gets a subpool of it as its
 * *state, destroyed after the test so that valgrind sees no growth. */
static apr_pool_t *mg_test_root;

static inline int mg_test_group_setup(void **state)
{
    (void)state;
    if (apr_initialize() != APR_SUCCESS) {
        return -1;
    }
    if (apr_pool_create(&mg_test_root, NULL) != APR_SUCCESS) {
        return -1;
    }
    return 0;
}

static inline int mg_test_group_teardown(void **state)
{
    (void)state;
    apr_pool_destroy(mg_test_root);
    mg_test_root = NULL;
    apr_terminate();
    return 0;
}

static inline int mg_test_setup(void **state)
{
    apr_pool_t *p;

    if (apr_pool_create(&p, mg_test_root) != APR_SUCCESS) {
        return -1;
    }
    *state = p;
    return 0;
}

static inline int mg_test_teardown(void **state)
{
    apr_pool_destroy(*state);
    *state = NULL;
    return 0;
}

/** A unit test that receives its own pool as *state. */
#define MG_TEST(fn) cmocka_unit_test_setup_teardown(fn, mg_test_setup, \
                                                    mg_test_teardown)

/** Run every test of a file as one group. */
#define MG_RUN(tests) cmocka_run_group_tests(tests, mg_test_group_setup, \
                                             mg_test_group_teardown)

/* ---- limits -------------------------------------------------------------- */

/** A token bucket spec that must be valid: quota per window, with burst. */
static inline mg_limit_spec mg_test_spec(apr_uint64_t quota,
                                         apr_int64_t window,
                                         apr_uint64_t burst)
{
    mg_limit_spec spec;
    const char *err = mg_limit_spec_init(&spec, MG_ALGO_TOKEN_BUCKET, quota,
                                         window, burst);
    if (err) {
        fail_msg("mg_limit_spec_init(%llu, %lld, %llu): %s",
                 (unsigned long long)quota, (long long)window,
                 (unsigned long long)burst, err);
    }
    return spec;
}

/* ---- a deterministic pseudo-random generator (splitmix64) ---------------- */

typedef struct mg_test_rng {
    apr_uint64_t s;
} mg_test_rng;

static inline apr_uint64_t mg_test_rand(mg_test_rng *r)
{
    apr_uint64_t z = (r->s += APR_UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * APR_UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * APR_UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/** Uniform-enough in [0, n); n > 0. */
static inline apr_uint64_t mg_test_below(mg_test_rng *r, apr_uint64_t n)
{
    return mg_test_rand(r) % n;
}

/* ---- comparisons shared by the algorithm, table and bucket tests ---- */

static inline void mg_test_assert_decision_equal(const mg_limit_decision *a,
                                                 const mg_limit_decision *b)
{
    assert_int_equal(a->allowed, b->allowed);
    assert_int_equal(a->limit, b->limit);
    assert_int_equal(a->remaining, b->remaining);
    assert_int_equal(a->reset, b->reset);
    assert_int_equal(a->retry_after, b->retry_after);
    assert_int_equal(a->delay, b->delay);
    assert_int_equal(a->expires, b->expires);
}

static inline void mg_test_assert_state_equal(const mg_limit_state *a,
                                              const mg_limit_state *b)
{
    assert_int_equal(a->level, b->level);
    assert_int_equal(a->stamp, b->stamp);
    assert_int_equal(a->aux, b->aux);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->count, b->count);
}

/* A layer decision with the fields mg_limit_combine reads. */
static inline mg_limit_decision mg_test_ld(int allowed, apr_uint64_t limit,
                                           apr_uint64_t remaining,
                                           apr_interval_time_t retry_after,
                                           apr_interval_time_t delay)
{
    mg_limit_decision d;

    memset(&d, 0, sizeof(d));
    d.allowed = allowed;
    d.limit = limit;
    d.remaining = remaining;
    d.retry_after = retry_after;
    d.delay = delay;
    return d;
}

#endif /* MG_TEST_H */
