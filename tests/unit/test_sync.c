/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_sync.c -- local-sync (mg_sync.c) and the charge it relies on
 * (mg_limit_charge).  Gateways are tables in plain buffers; "Redis" is a
 * hash of totals that the exchange adds to, as the Lua script does; every
 * time is a fake clock value.
 */
#include "mg_test.h"
#include <string.h>

#include <apr_hash.h>
#include <apr_strings.h>
#include "mg_table.h"
#include "mg_sync.h"

#define INTERVAL MG_MSEC(100)

/* ---- helpers --------------------------------------------------------------- */

typedef struct gateway {
    mg_table table;
    mg_sync sync;
} gateway;

/* A gateway's table for states of up to `state_size` bytes (larger for
 * sliding logs), with its sync area. */
static gateway *new_gateway_for(apr_pool_t *p, apr_uint32_t capacity,
                                apr_size_t state_size)
{
    gateway *g = apr_pcalloc(p, sizeof(*g));
    apr_size_t tsize = mg_table_bytes_for(capacity, state_size);
    apr_size_t ssize = mg_sync_bytes(mg_table_capacity(capacity));
    void *tmem = apr_palloc(p, tsize), *smem = apr_palloc(p, ssize);

    memset(smem, 0xa5, ssize);          /* format must not rely on zeroes */
    mg_table_format_for(tmem, capacity, state_size);
    mg_sync_format(smem, mg_table_capacity(capacity));
    assert_int_equal(mg_table_attach(&g->table, tmem, tsize), 1);
    assert_int_equal(mg_sync_attach(&g->sync, &g->table, smem, ssize), 1);
    assert_ptr_equal(g->table.sync, &g->sync);
    return g;
}

static gateway *new_gateway(apr_pool_t *p, apr_uint32_t capacity)
{
    return new_gateway_for(p, capacity, sizeof(mg_limit_state));
}

/* The shared store: one total per counter and epoch. */
typedef struct fake_redis {
    apr_pool_t *p;
    apr_hash_t *totals;
    int down;
    int exchanges;
} fake_redis;

static fake_redis *new_redis(apr_pool_t *p)
{
    fake_redis *r = apr_pcalloc(p, sizeof(*r));
    r->p = p;
    r->totals = apr_hash_make(p);
    return r;
}

static apr_uint64_t *total_of(fake_redis *r, const mg_sync_item *it)
{
    char *key = apr_psprintf(r->p, "%016" APR_UINT64_T_HEX_FMT "%016"
                             APR_UINT64_T_HEX_FMT ":%" APR_INT64_T_FMT,
                             it->fp.hi, it->fp.lo, it->epoch_start);
    apr_uint64_t *v = apr_hash_get(r->totals, key, APR_HASH_KEY_STRING);

    if (!v) {
        v = apr_pcalloc(r->p, sizeof(*v));
        apr_hash_set(r->totals, key, APR_HASH_KEY_STRING, v);
    }
    return v;
}

/* One exchange of gateway g: collect, INCRBY each total, apply. */
static apr_size_t exchange(gateway *g, fake_redis *r, apr_time_t now)
{
    mg_sync_item items[64];
    apr_size_t n, i;

    n = mg_sync_collect(&g->table, 0, mg_now_at(now), INTERVAL, items, 64);
    for (i = 0; i < n; i++) {
        assert_true(items[i].ttl_ms > 0);
        if (!r->down) {
            apr_uint64_t *v = total_of(r, &items[i]);
            *v += (apr_uint64_t)items[i].units;
            items[i].total = *v;
        }
    }
    mg_sync_apply(&g->table, 0, items, n, !r->down);
    r->exchanges++;
    return n;
}

static mg_layer mk_layer(const mg_limit_spec *spec, const char *key)
{
    mg_layer l;

    memset(&l, 0, sizeof(l));
    l.policy = "p";
    l.spec = spec;
    l.fp = mg_table_fingerprint(key, strlen(key), spec);
    l.cost = 1;
    return l;
}

static int admit(gateway *g, const mg_layer *l, apr_time_t now)
{
    mg_decision d;

    assert_int_equal(mg_table_decide(&g->table, l, 1, mg_now_at(now), &d),
                     APR_SUCCESS);
    return d.allowed;
}

/* Requests until the first refusal (at most `max`), all at `now`. */
static int admit_all(gateway *g, const mg_layer *l, apr_time_t now, int max)
{
    int n = 0;

    while (n < max && admit(g, l, now)) {
        n++;
    }
    return n;
}

static mg_limit_spec spec_of(mg_limit_algo algo, apr_uint64_t q,
                             apr_int64_t w, apr_uint64_t burst)
{
    mg_limit_spec spec;

    assert_null(mg_limit_spec_init(&spec, algo, q, w, burst));
    return spec;
}

/* ---- mg_limit_charge --------------------------------------------------------- */

/* A token bucket charged past empty owes the difference: it admits again
 * only once the debt and the next unit have refilled. */
static void test_charge_bucket_debt(void **state)
{
    mg_limit_spec spec = mg_test_spec(10, MG_SEC(10), 10);   /* 1/s */
    mg_limit_state st, next;
    mg_limit_decision d;
    apr_time_t t = MG_T0, exp;

    memset(&st, 0, sizeof(st));
    exp = mg_limit_charge(&spec, &st, t, 13);       /* 3 units of debt */
    assert_int_equal(exp, t + MG_SEC(13));
    mg_limit_decide(&spec, &st, t, 1, &next, &d);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after, MG_SEC(4));
    assert_int_equal(d.remaining, 0);
    mg_limit_decide(&spec, &st, t + MG_SEC(4) - 1, 1, &next, &d);
    assert_false(d.allowed);
    mg_limit_decide(&spec, &st, t + MG_SEC(4), 1, &next, &d);
    assert_true(d.allowed);

    /* The debt is at most one bucket. */
    memset(&st, 0, sizeof(st));
    exp = mg_limit_charge(&spec, &st, t, 1000000);
    assert_int_equal(exp, t + MG_SEC(20));
    mg_limit_decide(&spec, &st, t, 1, &next, &d);
    assert_int_equal(d.retry_after, MG_SEC(11));

    /* Within the bucket it is a plain take. */
    memset(&st, 0, sizeof(st));
    mg_limit_charge(&spec, &st, t, 4);
    mg_limit_decide(&spec, &st, t, 1, &next, &d);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 5);
}

/* GCRA owes as the token bucket does: same admissions afterwards. */
static void test_charge_gcra_matches_bucket(void **state)
{
    static const apr_uint64_t charges[] = { 0, 1, 7, 10, 13, 20, 25, 999 };
    mg_limit_spec tb = spec_of(MG_ALGO_TOKEN_BUCKET, 30, MG_MIN(1), 10);
    mg_limit_spec gc = spec_of(MG_ALGO_GCRA, 30, MG_MIN(1), 10);
    apr_size_t c;

    for (c = 0; c < sizeof(charges) / sizeof(charges[0]); c++) {
        mg_limit_state a, b, na, nb;
        mg_limit_decision da, db;
        apr_time_t t = MG_T0;
        int step;

        memset(&a, 0, sizeof(a));
        memset(&b, 0, sizeof(b));
        mg_limit_charge(&tb, &a, t, charges[c]);
        mg_limit_charge(&gc, &b, t, charges[c]);
        for (step = 0; step < 200; step++) {
            t += MG_MSEC(700);
            mg_limit_decide(&tb, &a, t, 1, &na, &da);
            mg_limit_decide(&gc, &b, t, 1, &nb, &db);
            assert_int_equal(da.allowed, db.allowed);
            assert_int_equal(da.remaining, db.remaining);
            assert_int_equal(da.retry_after, db.retry_after);
            if (da.allowed) {
                a = na;
                b = nb;
            }
        }
    }
}

/* Windows and logs fill up to their quota and no further. */
static void test_charge_fills_windows(void **state)
{
    static const mg_limit_algo algos[] = {
        MG_ALGO_FIXED_WINDOW, MG_ALGO_SLIDING_WINDOW, MG_ALGO_SLIDING_LOG
    };
    apr_size_t a;

    for (a = 0; a < sizeof(algos) / sizeof(algos[0]); a++) {
        mg_limit_spec spec = spec_of(algos[a], 10, MG_MIN(1), 0);
        mg_limit_log_state st, next;
        mg_limit_decision d;
        apr_time_t t = MG_T0;

        memset(&st, 0, sizeof(st));
        mg_limit_charge(&spec, &st.head, t, 4);
        mg_limit_decide(&spec, &st.head, t, 1, &next.head, &d);
        assert_true(d.allowed);
        assert_int_equal(d.remaining, 5);
        mg_limit_charge(&spec, &st.head, t, 50);
        mg_limit_decide(&spec, &st.head, t, 1, &next.head, &d);
        assert_false(d.allowed);
        assert_int_equal(d.remaining, 0);
    }
}

/* ---- two gateways, one limit ------------------------------------------------ */

/* Each gateway admits half the quota; after each has pushed and pulled,
 * both refuse: together they admitted exactly the quota. */
static void test_two_gateways_share_a_quota(void **state)
{
    apr_pool_t *p = *state;
    static const mg_limit_algo algos[] = {
        MG_ALGO_TOKEN_BUCKET, MG_ALGO_LEAKY_BUCKET, MG_ALGO_GCRA,
        MG_ALGO_FIXED_WINDOW, MG_ALGO_SLIDING_WINDOW, MG_ALGO_SLIDING_LOG
    };
    apr_size_t a;

    for (a = 0; a < sizeof(algos) / sizeof(algos[0]); a++) {
        /* 20 per hour: no refill worth a unit during the test. */
        mg_limit_spec spec = spec_of(algos[a], 20, MG_HOUR(1), 20);
        mg_layer l = mk_layer(&spec, "tenant:acme");
        gateway *ga = new_gateway_for(p, 64, spec.state_size);
        gateway *gb = new_gateway_for(p, 64, spec.state_size);
        fake_redis *r = new_redis(p);
        apr_time_t t = MG_T0;

        assert_int_equal(admit_all(ga, &l, t, 10), 10);
        assert_int_equal(admit_all(gb, &l, t, 10), 10);
        t += INTERVAL;
        assert_int_equal(exchange(ga, r, t), 1);    /* total 10 */
        assert_int_equal(exchange(gb, r, t), 1);    /* total 20: B owes 10 */
        t += INTERVAL;
        assert_int_equal(exchange(ga, r, t), 1);    /* A learns B's 10 */
        assert_false(admit(ga, &l, t));
        assert_false(admit(gb, &l, t));
        assert_int_equal(ga->sync.hdr->units_owed, 10);
        assert_int_equal(gb->sync.hdr->units_owed, 10);
        assert_int_equal(ga->sync.hdr->units_pushed, 10);
    }
}

/* Units given back on a gateway (a cached answer's, a token reservation
 * settled lower) never reach the others: pending ones are not pushed,
 * pushed ones come off the total, and another gateway that learnt of
 * them and has not charged them yet owes them no more. */
static void test_refunds_are_not_pushed(void **state)
{
    apr_pool_t *p = *state;
    static const mg_limit_algo algos[] = {
        MG_ALGO_TOKEN_BUCKET, MG_ALGO_GCRA, MG_ALGO_FIXED_WINDOW,
        MG_ALGO_SLIDING_WINDOW
    };
    apr_size_t a;

    for (a = 0; a < sizeof(algos) / sizeof(algos[0]); a++) {
        mg_limit_spec spec = spec_of(algos[a], 10, MG_HOUR(1), 10);
        mg_layer l = mk_layer(&spec, "tenant:acme");
        gateway *ga = new_gateway_for(p, 64, spec.state_size);
        gateway *gb = new_gateway_for(p, 64, spec.state_size);
        fake_redis *r = new_redis(p);
        apr_int64_t back = -1;
        apr_time_t t = MG_T0;
        mg_sync_item it;

        assert_int_equal(admit_all(ga, &l, t, 3), 3);
        /* one back before the exchange: only 2 go */
        assert_int_equal(mg_table_settle(&ga->table, &l, &back, 1,
                                         mg_now_at(t), mg_now_at(t)),
                         APR_SUCCESS);
        t += INTERVAL;
        assert_int_equal(exchange(ga, r, t), 1);
        it.fp = l.fp;
        it.epoch_start = ga->sync.slots[ga->sync.list[0]].epoch_start;
        assert_int_equal(*total_of(r, &it), 2);
        assert_int_equal(admit_all(gb, &l, t, 1), 1);
        assert_int_equal(exchange(gb, r, t), 1);    /* total 3: B owes 2 */
        /* one back after it was pushed: it comes off the total */
        assert_int_equal(mg_table_settle(&ga->table, &l, &back, 1,
                                         mg_now_at(t), mg_now_at(t)),
                         APR_SUCCESS);
        t += INTERVAL;
        assert_int_equal(exchange(ga, r, t), 1);
        assert_int_equal(*total_of(r, &it), 2);
        /* the metrics' figure is a counter: the take-back leaves it be */
        assert_int_equal(ga->sync.hdr->units_pushed, 2);
        assert_int_equal(exchange(gb, r, t), 1);    /* B owes 1 only */
        /* A used 1, B 1 and owes it: 8 left for B */
        assert_int_equal(admit_all(gb, &l, t, 20), 8);
        assert_int_equal(gb->sync.hdr->units_owed, 1);
    }
}

/* The documented worst case: a burst on both gateways inside one interval
 * gets G * Q, and then nothing more until the limit allows it. */
static void test_burst_within_one_interval_is_bounded(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec spec = spec_of(MG_ALGO_FIXED_WINDOW, 20, MG_HOUR(1), 0);
    mg_layer l = mk_layer(&spec, "key:k1");
    gateway *ga = new_gateway(p, 64), *gb = new_gateway(p, 64);
    fake_redis *r = new_redis(p);
    apr_time_t t = MG_T0;
    int total;

    total = admit_all(ga, &l, t, 100) + admit_all(gb, &l, t, 100);
    assert_int_equal(total, 40);
    t += INTERVAL;
    exchange(ga, r, t);
    exchange(gb, r, t);
    exchange(ga, r, t + 1);
    assert_int_equal(admit_all(ga, &l, t + 2, 100)
                     + admit_all(gb, &l, t + 2, 100), 0);
}

/* Steady traffic: each gateway admits a units per interval; the overrun
 * stays within (G - 1) * A(D), D = 2 intervals. */
static void test_steady_overrun_within_bound(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec spec = spec_of(MG_ALGO_FIXED_WINDOW, 100, MG_HOUR(1), 0);
    mg_layer l = mk_layer(&spec, "route:chat");
    gateway *ga = new_gateway(p, 64), *gb = new_gateway(p, 64);
    fake_redis *r = new_redis(p);
    apr_time_t t = MG_T0 - (MG_T0 % MG_HOUR(1)) + MG_SEC(1);
    int admitted = 0, step;
    const int per_interval = 3;

    for (step = 0; step < 200; step++) {
        int k;
        for (k = 0; k < per_interval; k++) {
            admitted += admit(ga, &l, t + k);
            admitted += admit(gb, &l, t + k);
        }
        t += INTERVAL;
        /* A exchanges at every interval, B half an interval later. */
        exchange(ga, r, t);
        exchange(gb, r, t + INTERVAL / 2);
    }
    assert_true(admitted >= 100);
    assert_true(admitted <= 100 + 1 * (2 * per_interval));
}

/* While the exchange fails every gateway keeps its units, and pushes them
 * when it works again. */
static void test_failed_exchange_keeps_units(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec spec = spec_of(MG_ALGO_TOKEN_BUCKET, 20, MG_HOUR(1), 20);
    mg_layer l = mk_layer(&spec, "key:k2");
    gateway *ga = new_gateway(p, 64), *gb = new_gateway(p, 64);
    fake_redis *r = new_redis(p);
    apr_time_t t = MG_T0;

    assert_int_equal(admit_all(ga, &l, t, 7), 7);
    r->down = 1;
    exchange(ga, r, t + INTERVAL);
    exchange(ga, r, t + 2 * INTERVAL);
    assert_int_equal(ga->sync.hdr->failures, 2);
    assert_int_equal(ga->sync.slots[0].pending
                     + ga->sync.slots[ga->sync.list[0]].pending, 7);
    r->down = 0;
    exchange(ga, r, t + 3 * INTERVAL);
    assert_int_equal(admit_all(gb, &l, t + 3 * INTERVAL, 1), 1);
    exchange(gb, r, t + 4 * INTERVAL);
    /* B learnt A's 7: 20 - 7 - 1 left. */
    assert_int_equal(admit_all(gb, &l, t + 4 * INTERVAL, 100), 12);
}

/* Redis lost the totals (restart, flush): the gateways count again from
 * what it has, without a flood of owed units or a negative count. */
static void test_lost_totals_rebase(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec spec = spec_of(MG_ALGO_FIXED_WINDOW, 50, MG_HOUR(1), 0);
    mg_layer l = mk_layer(&spec, "key:k3");
    gateway *ga = new_gateway(p, 64), *gb = new_gateway(p, 64);
    fake_redis *r = new_redis(p);
    apr_time_t t = MG_T0;

    admit_all(ga, &l, t, 10);
    exchange(ga, r, t + 1);
    r->totals = apr_hash_make(p);        /* FLUSHALL */
    admit_all(ga, &l, t + 2, 2);
    exchange(ga, r, t + 3);              /* total 2 < pushed 12 */
    admit_all(gb, &l, t + 4, 5);
    exchange(gb, r, t + 5);              /* total 7 */
    exchange(ga, r, t + 6);              /* A owes B's 5 */
    assert_int_equal(admit_all(ga, &l, t + 7, 100), 50 - 12 - 5);
    assert_int_equal(ga->sync.hdr->units_owed, 5);
}

/* A counter leaves the list once nothing is pending and its state is
 * fresh; a counter whose entry was taken by another is skipped. */
static void test_list_and_eviction(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec spec = spec_of(MG_ALGO_TOKEN_BUCKET, 10, MG_SEC(10), 10);
    mg_layer l = mk_layer(&spec, "ip:192.0.2.1");
    gateway *ga = new_gateway(p, 8);     /* one set */
    fake_redis *r = new_redis(p);
    apr_time_t t = MG_T0;
    mg_sync_item items[16];
    int i;

    assert_true(admit(ga, &l, t));
    assert_int_equal(ga->sync.hdr->nlisted, 1);
    assert_int_equal(exchange(ga, r, t + INTERVAL), 1);
    /* nothing pending, still refilling: still collected (0 units) */
    assert_int_equal(exchange(ga, r, t + 2 * INTERVAL), 1);
    assert_int_equal(ga->sync.hdr->nlisted, 1);
    /* full again after one second */
    assert_int_equal(exchange(ga, r, t + MG_SEC(1)), 0);
    assert_int_equal(ga->sync.hdr->nlisted, 0);

    /* Collected, then evicted by eight other counters before the answer. */
    assert_true(admit(ga, &l, t + MG_SEC(2)));
    assert_int_equal(mg_sync_collect(&ga->table, 0, mg_now_at(t + MG_SEC(3)),
                                     INTERVAL, items, 16), 1);
    for (i = 0; i < 8; i++) {
        mg_layer other = mk_layer(&spec, apr_psprintf(p, "ip:o%d", i));
        assert_true(admit(ga, &other, t + MG_SEC(3)));
    }
    items[0].total = 1000;
    mg_sync_apply(&ga->table, 0, items, 1, 1);
    for (i = 0; i < (int)mg_table_slots(&ga->table); i++) {
        assert_int_equal(ga->sync.slots[i].owed, 0);
    }
    /* Each index is listed once, whatever took it. */
    assert_int_equal(ga->sync.hdr->nlisted, 8);
}

/* A fixed window's owed units do not follow it into the next window. */
static void test_owed_units_of_an_ended_window_are_dropped(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec spec = spec_of(MG_ALGO_FIXED_WINDOW, 10, MG_MIN(1), 0);
    mg_layer l = mk_layer(&spec, "key:k4");
    gateway *ga = new_gateway(p, 64), *gb = new_gateway(p, 64);
    fake_redis *r = new_redis(p);
    apr_time_t t = MG_T0 - (MG_T0 % MG_MIN(1));   /* a window's start */

    admit_all(ga, &l, t, 1);
    admit_all(gb, &l, t, 8);
    exchange(gb, r, t + 1);
    exchange(ga, r, t + 2);                      /* A owes 8 */
    assert_int_equal(admit_all(ga, &l, t + MG_MIN(1), 100), 10);
}

/* One exchange per interval, whichever process ticks first. */
static void test_due(void **state)
{
    apr_pool_t *p = *state;
    gateway *g = new_gateway(p, 8);
    apr_time_t t = MG_T0;

    assert_true(mg_sync_due(&g->sync, t, INTERVAL));
    assert_false(mg_sync_due(&g->sync, t, INTERVAL));
    assert_false(mg_sync_due(&g->sync, t + INTERVAL - 1, INTERVAL));
    assert_true(mg_sync_due(&g->sync, t + INTERVAL, INTERVAL));
}

/* The area must match its table. */
static void test_attach_checks(void **state)
{
    apr_pool_t *p = *state;
    gateway *g = new_gateway(p, 64);
    apr_size_t ssize = mg_sync_bytes(mg_table_capacity(8));
    void *m = apr_palloc(p, ssize);
    mg_sync other;

    mg_sync_format(m, mg_table_capacity(8));
    assert_int_equal(mg_sync_attach(&other, &g->table, m, ssize), 0);
    assert_int_equal(mg_sync_attach(&other, &g->table, m, 10), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_charge_bucket_debt),
        MG_TEST(test_charge_gcra_matches_bucket),
        MG_TEST(test_charge_fills_windows),
        MG_TEST(test_two_gateways_share_a_quota),
        MG_TEST(test_refunds_are_not_pushed),
        MG_TEST(test_burst_within_one_interval_is_bounded),
        MG_TEST(test_steady_overrun_within_bound),
        MG_TEST(test_failed_exchange_keeps_units),
        MG_TEST(test_lost_totals_rebase),
        MG_TEST(test_list_and_eviction),
        MG_TEST(test_owed_units_of_an_ended_window_are_dropped),
        MG_TEST(test_due),
        MG_TEST(test_attach_checks),
    };
    return MG_RUN(tests);
}
