/* Unit tests of mg_limit_refund: a reservation settled to what an answer
 * used.  The property: reserving R and giving back R - A at once leaves
 * the counter as charging A would have; later, what was given back is
 * never more than what was taken. */
#include <string.h>
#include "mg_test.h"
#include "mg_table.h"

static mg_limit_spec spec_of(mg_limit_algo algo, apr_uint64_t quota,
                             apr_int64_t window, apr_uint64_t burst)
{
    mg_limit_spec spec;
    const char *err = mg_limit_spec_init(&spec, algo, quota, window, burst);

    if (err) {
        fail_msg("spec: %s", err);
    }
    return spec;
}

static const mg_limit_algo settled_algos[] = {
    MG_ALGO_TOKEN_BUCKET, MG_ALGO_LEAKY_BUCKET, MG_ALGO_FIXED_WINDOW,
    MG_ALGO_SLIDING_WINDOW, MG_ALGO_GCRA
};
#define NALGOS (sizeof(settled_algos) / sizeof(settled_algos[0]))

/* Reserve, then settle at once == charge what was used, for every
 * algorithm that settles, over random traffic. */
static void test_reserve_then_settle_equals_the_charge(void **state)
{
    mg_test_rng rng = { 42 };
    apr_size_t a;

    (void)state;
    for (a = 0; a < NALGOS; a++) {
        mg_limit_spec spec = spec_of(settled_algos[a], 40000, MG_MIN(1),
                                     40000);
        mg_limit_state settled, charged;
        apr_time_t now = MG_T0;
        int i, admitted = 0;

        memset(&settled, 0, sizeof(settled));
        memset(&charged, 0, sizeof(charged));
        for (i = 0; i < 20000; i++) {
            apr_uint64_t reserve = 1 + mg_test_below(&rng, 4000);
            apr_uint64_t used = mg_test_below(&rng, reserve + 1);
            mg_limit_decision dr, du;
            mg_limit_state next;

            now += (apr_time_t)mg_test_below(&rng, MG_MSEC(400));
            mg_limit_decide(&spec, &settled, now, reserve, &next, &dr);
            if (!dr.allowed) {
                continue;
            }
            admitted++;
            settled = next;
            mg_limit_refund(&spec, &settled, now, now, reserve - used);
            /* The charge of what was used, on a counter that saw the same
             * history; it must fit, as more did. */
            mg_limit_decide(&spec, &charged, now, used, &next, &du);
            assert_true(du.allowed);
            charged = next;
            mg_test_assert_state_equal(&settled, &charged);
        }
        assert_true(admitted > 1000);
    }
}

/* Given back later: never more than a full allowance, and never more than
 * was taken (a refund of everything is a request that never happened). */
static void test_late_refunds_never_give_more(void **state)
{
    apr_size_t a;

    (void)state;
    for (a = 0; a < NALGOS; a++) {
        mg_limit_spec spec = spec_of(settled_algos[a], 1000, MG_MIN(1), 1000);
        mg_limit_state st, next;
        mg_limit_decision d;
        apr_time_t t = MG_T0 - MG_T0 % MG_MIN(1) + MG_SEC(1);

        memset(&st, 0, sizeof(st));
        mg_limit_decide(&spec, &st, t, 800, &next, &d);
        assert_true(d.allowed);
        st = next;
        /* 10 s later the whole reservation comes back: as if nothing had
         * been taken, so 1000 fit again, and not 1001. */
        mg_limit_refund(&spec, &st, t, t + MG_SEC(10), 800);
        mg_limit_decide(&spec, &st, t + MG_SEC(10), 1001, &next, &d);
        assert_false(d.allowed);
        mg_limit_decide(&spec, &st, t + MG_SEC(10), 1000, &next, &d);
        assert_true(d.allowed);
        /* A refund larger than any charge still tops out at full. */
        st = next;
        mg_limit_refund(&spec, &st, t + MG_SEC(10), t + MG_SEC(10),
                        MG_LIMIT_MAX_QUOTA);
        mg_limit_decide(&spec, &st, t + MG_SEC(10), 1000, &next, &d);
        assert_true(d.allowed);
        assert_int_equal(d.remaining, 0);
    }
}

/* Debt from an answer that used more than its reservation is paid off
 * first by a later refund. */
static void test_refund_pays_debt_first(void **state)
{
    mg_limit_spec spec = spec_of(MG_ALGO_TOKEN_BUCKET, 60, MG_MIN(1), 60);
    mg_limit_spec gcra = spec_of(MG_ALGO_GCRA, 60, MG_MIN(1), 60);
    const mg_limit_spec *specs[] = { &spec, &gcra };
    int i;

    (void)state;
    for (i = 0; i < 2; i++) {
        mg_limit_state st;
        mg_limit_decision d;
        mg_limit_state next;

        memset(&st, 0, sizeof(st));
        /* 90 used of 60: 30 in debt, half a minute at one a second. */
        mg_limit_charge(specs[i], &st, MG_T0, 90);
        mg_limit_decide(specs[i], &st, MG_T0, 1, &next, &d);
        assert_false(d.allowed);
        assert_int_equal(d.retry_after, MG_SEC(31));
        /* 20 back: 10 of debt left. */
        mg_limit_refund(specs[i], &st, MG_T0, MG_T0, 20);
        mg_limit_decide(specs[i], &st, MG_T0, 1, &next, &d);
        assert_false(d.allowed);
        assert_int_equal(d.retry_after, MG_SEC(11));
        /* 15 more: the debt is gone and 5 are in the bucket. */
        mg_limit_refund(specs[i], &st, MG_T0, MG_T0, 15);
        mg_limit_decide(specs[i], &st, MG_T0, 5, &next, &d);
        assert_true(d.allowed);
        mg_limit_decide(specs[i], &st, MG_T0, 6, &next, &d);
        assert_false(d.allowed);
    }
}

/* However many charges come, the debt is at most one bucket: a full
 * bucket's wait after the bucket is empty, for every bucket algorithm
 * alike (the Redis store keeps them in one encoding and caps them so). */
static void test_debt_is_at_most_one_bucket(void **state)
{
    static const mg_limit_algo algos[] = {
        MG_ALGO_TOKEN_BUCKET, MG_ALGO_LEAKY_BUCKET, MG_ALGO_GCRA
    };
    apr_size_t a;

    (void)state;
    for (a = 0; a < sizeof(algos) / sizeof(algos[0]); a++) {
        mg_limit_spec spec = spec_of(algos[a], 60, MG_MIN(1), 60);
        mg_limit_state st, next;
        mg_limit_decision d;
        int i;

        memset(&st, 0, sizeof(st));
        for (i = 0; i < 3; i++) {
            mg_limit_charge(&spec, &st, MG_T0, 90);
        }
        mg_limit_decide(&spec, &st, MG_T0, 1, &next, &d);
        assert_false(d.allowed);
        assert_int_equal(d.retry_after, MG_SEC(61));
        /* A refund of one bucket leaves an empty one. */
        mg_limit_refund(&spec, &st, MG_T0, MG_T0, 60);
        mg_limit_decide(&spec, &st, MG_T0, 1, &next, &d);
        assert_int_equal(d.retry_after, MG_SEC(1));
    }
}

/* A window takes back only what it still counts. */
static void test_windows_refund_only_while_they_count(void **state)
{
    mg_limit_spec fixed = spec_of(MG_ALGO_FIXED_WINDOW, 100, MG_MIN(1), 100);
    mg_limit_spec sliding = spec_of(MG_ALGO_SLIDING_WINDOW, 100, MG_MIN(1),
                                    100);
    apr_time_t start = MG_T0 - MG_T0 % MG_MIN(1);
    mg_limit_state st, next;
    mg_limit_decision d;

    (void)state;
    /* Fixed: charged at :50, settled at :70 -- that window is over. */
    memset(&st, 0, sizeof(st));
    mg_limit_decide(&fixed, &st, start + MG_SEC(50), 100, &next, &d);
    st = next;
    mg_limit_decide(&fixed, &st, start + MG_SEC(70), 60, &next, &d);
    st = next;
    mg_limit_refund(&fixed, &st, start + MG_SEC(50), start + MG_SEC(70), 90);
    mg_limit_decide(&fixed, &st, start + MG_SEC(70), 41, &next, &d);
    assert_false(d.allowed);               /* the new window keeps its 60 */
    /* Sliding: the same charge still weighs in the next window, so the
     * refund comes off the previous window's count. */
    memset(&st, 0, sizeof(st));
    mg_limit_decide(&sliding, &st, start + MG_SEC(50), 100, &next, &d);
    st = next;
    mg_limit_decide(&sliding, &st, start + MG_SEC(60), 0, &next, &d);
    st = next;
    assert_int_equal(st.aux, 100);
    mg_limit_refund(&sliding, &st, start + MG_SEC(50), start + MG_SEC(60), 90);
    assert_int_equal(st.aux, 10);
    assert_int_equal(st.level, 0);
    mg_limit_decide(&sliding, &st, start + MG_SEC(60), 90, &next, &d);
    assert_true(d.allowed);
    /* Two windows on, nothing of it is left to give back. */
    memset(&st, 0, sizeof(st));
    mg_limit_decide(&sliding, &st, start + MG_SEC(50), 100, &next, &d);
    st = next;
    mg_limit_refund(&sliding, &st, start + MG_SEC(50), start + MG_SEC(130),
                    100);
    mg_limit_decide(&sliding, &st, start + MG_SEC(130), 100, &next, &d);
    assert_true(d.allowed);
}

static mg_table *new_table(apr_pool_t *p, apr_uint32_t capacity)
{
    mg_table *t = apr_pcalloc(p, sizeof(*t));
    apr_size_t size = mg_table_bytes(capacity);
    void *mem = apr_palloc(p, size);

    mg_table_format(mem, capacity);
    assert_int_equal(mg_table_attach(t, mem, size), 1);
    return t;
}

static mg_layer layer_of(const char *key, const mg_limit_spec *spec,
                         apr_uint64_t cost)
{
    mg_layer l;

    memset(&l, 0, sizeof(l));
    l.policy = key;
    l.spec = spec;
    l.fp = mg_table_fingerprint(key, strlen(key), spec);
    l.cost = cost;
    return l;
}

static apr_uint64_t table_entries_used(const mg_table *t)
{
    apr_uint32_t i, used = 0;

    for (i = 0; i < mg_table_slots(t); i++) {
        used += mg_table_entry_at(t, i)->fp.lo != 0;
    }
    return used;
}

/* The table applies a settle to the counters a decision charged: the
 * reservation of 3000 tokens becomes the 1200 the answer used, and an
 * answer that used more leaves a debt the next request waits out. */
static void test_table_settle(void **state)
{
    apr_pool_t *p = *state;
    mg_table *t = new_table(p, 64);
    mg_limit_spec tpm = spec_of(MG_ALGO_TOKEN_BUCKET, 6000, MG_MIN(1), 6000);
    mg_limit_spec day = spec_of(MG_ALGO_FIXED_WINDOW, 100000, MG_DAY(1),
                                100000);
    mg_layer layers[2];
    apr_int64_t delta[2];
    mg_decision d;
    mg_now now = mg_now_at(MG_T0);

    layers[0] = layer_of("key-a", &tpm, 3000);
    layers[1] = layer_of("tenant-a", &day, 3000);
    assert_int_equal(mg_table_decide(t, layers, 2, now, &d), APR_SUCCESS);
    assert_true(d.allowed);
    assert_int_equal(d.layer[0].remaining, 3000);
    delta[0] = delta[1] = 1200 - 3000;
    assert_int_equal(mg_table_settle(t, layers, delta, 2, now, now),
                     APR_SUCCESS);
    layers[0].cost = layers[1].cost = 0;
    mg_table_decide(t, layers, 2, now, &d);
    assert_int_equal(d.layer[0].remaining, 4800);
    assert_int_equal(d.layer[1].remaining, 100000 - 1200);
    /* 4800 more than reserved: 0 left and 1 minute of debt (6000 over a
     * minute is one token each 10 ms). */
    delta[0] = delta[1] = 4800 + 600;
    mg_table_settle(t, layers, delta, 2, now, now);
    layers[0].cost = layers[1].cost = 1;
    mg_table_decide(t, layers, 2, now, &d);
    assert_false(d.allowed);
    assert_int_equal(d.binding, 0);
    assert_int_equal(d.layer[0].retry_after, MG_SEC(6) + MG_MSEC(10));
    /* A refund for a counter the table no longer holds adds nothing. */
    {
        mg_layer gone = layer_of("key-gone", &tpm, 1);
        apr_int64_t back = -500;
        apr_uint64_t before = table_entries_used(t);
        mg_table_settle(t, &gone, &back, 1, now, now);
        assert_int_equal(table_entries_used(t), before);
    }
}

/* A cached answer's units given back at once: the decision's numbers with
 * them added back (mg_limit_uncharge) are what the counter shows after
 * the refund (a decision at cost 0), for every algorithm that settles;
 * layers outside the mask keep theirs. */
static void test_uncharge_says_what_the_refund_leaves(void **state)
{
    mg_test_rng rng = { 7 };
    apr_size_t a;

    (void)state;
    {
        mg_limit_spec log = spec_of(MG_ALGO_SLIDING_LOG, 5, MG_MIN(1), 5);
        assert_false(mg_limit_refundable(&log));
    }
    for (a = 0; a < NALGOS; a++) {
        mg_limit_spec spec = spec_of(settled_algos[a], 5, MG_MIN(1), 5);
        assert_true(mg_limit_refundable(&spec));
        mg_limit_state st;
        apr_time_t now = MG_T0;
        int i, checked = 0;

        memset(&st, 0, sizeof(st));
        for (i = 0; i < 2000; i++) {
            mg_layer layers[2];
            mg_decision d;
            mg_limit_decision after;
            mg_limit_state next, peek;
            apr_uint64_t cost = 1 + mg_test_below(&rng, 2);

            now += (apr_time_t)mg_test_below(&rng, MG_SEC(20));
            memset(layers, 0, sizeof(layers));
            layers[0].spec = layers[1].spec = &spec;
            layers[0].cost = layers[1].cost = cost;
            d.nlayers = 2;
            mg_limit_decide(&spec, &st, now, cost, &next, &d.layer[0]);
            d.layer[1] = d.layer[0];
            mg_limit_combine(layers, &d);
            if (!d.allowed) {
                /* nothing was charged: nothing changes */
                apr_uint64_t before = d.layer[0].remaining;
                mg_limit_uncharge(layers, &d, 3);
                assert_int_equal(d.layer[0].remaining, before);
                continue;
            }
            if (mg_test_below(&rng, 2)) {
                st = next;      /* a forwarded request: it stays charged */
                continue;
            }
            mg_limit_refund(&spec, &next, now, now, cost);
            mg_limit_decide(&spec, &next, now, 0, &peek, &after);
            mg_limit_uncharge(layers, &d, 1);
            assert_int_equal(d.layer[0].remaining, after.remaining);
            assert_int_equal(d.layer[1].remaining + cost > spec.quota
                             ? spec.quota : d.layer[1].remaining + cost,
                             after.remaining);
            assert_int_equal(d.binding, 1);   /* the one still charged */
            st = next;
            checked++;
        }
        assert_true(checked > 100);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_reserve_then_settle_equals_the_charge),
        MG_TEST(test_late_refunds_never_give_more),
        MG_TEST(test_refund_pays_debt_first),
        MG_TEST(test_debt_is_at_most_one_bucket),
        MG_TEST(test_windows_refund_only_while_they_count),
        MG_TEST(test_table_settle),
        MG_TEST(test_uncharge_says_what_the_refund_leaves),
    };

    return MG_RUN(tests);
}
