/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_table.c -- the fixed-size counter table (mg_table.c): layout,
 * multi-layer decisions, eviction, fingerprints.  The region is a plain
 * buffer from a pool; every time is a fake clock value.
 */
#include "mg_test.h"
#include <string.h>

#include <apr_hash.h>
#include <apr_strings.h>
#include "mg_table.h"

/* ---- helpers --------------------------------------------------------------- */

static mg_table *new_table(apr_pool_t *p, apr_uint32_t capacity)
{
    mg_table *t = apr_pcalloc(p, sizeof(*t));
    apr_size_t size = mg_table_bytes(capacity);
    void *mem = apr_palloc(p, size);

    memset(mem, 0xa5, size);            /* format must not rely on zeroes */
    mg_table_format(mem, capacity);
    assert_int_equal(mg_table_attach(t, mem, size), 1);
    return t;
}

static apr_uint32_t table_entries(const mg_table *t)
{
    return t->hdr->nsets * t->hdr->ways;
}

static mg_layer mk_layer(const char *policy, const mg_limit_spec *spec,
                         const char *key, apr_uint64_t cost)
{
    mg_layer l;

    memset(&l, 0, sizeof(l));           /* enforced: shadow = 0 */
    l.policy = policy;
    l.spec = spec;
    l.fp = mg_table_fingerprint(key, strlen(key), spec);
    l.cost = cost;
    return l;
}

/* Entry i of the table (entries are t->entry_size bytes apart). */
static mg_table_entry *entry_at(const mg_table *t, apr_uint32_t i)
{
    return (mg_table_entry *)(t->entries + (apr_size_t)i * t->entry_size);
}

/* The tag line mirrors the entries: 0 when empty, else fp.lo, with bit 0
 * (set in every fingerprint) cleared while the counter is exhausted. */
static void assert_tag(const mg_table *t, apr_uint32_t i)
{
    const mg_table_entry *x = entry_at(t, i);

    if (x->fp.hi == 0 && x->fp.lo == 0) {
        assert_int_equal(t->tags[i], 0);
    }
    else {
        assert_int_equal(t->tags[i] | 1, x->fp.lo);
    }
}

/* The entry holding `fp`, searched over the whole table. */
static mg_table_entry *entry_of(mg_table *t, const mg_fingerprint *fp)
{
    apr_uint32_t i, found = 0;
    mg_table_entry *e = NULL;

    for (i = 0; i < table_entries(t); i++) {
        mg_table_entry *x = entry_at(t, i);
        assert_tag(t, i);
        if (x->fp.hi == fp->hi && x->fp.lo == fp->lo) {
            e = x;
            found++;
        }
    }
    assert_true(found <= 1);            /* never two entries for a counter */
    return e;
}

/* Is the counter of `fp` in the table and marked exhausted? */
static int is_exhausted(mg_table *t, const mg_fingerprint *fp)
{
    mg_table_entry *e = entry_of(t, fp);

    assert_non_null(e);
    return !(t->tags[(apr_size_t)((char *)e - t->entries) / t->entry_size]
             & 1);
}

static int used_entries(const mg_table *t)
{
    apr_uint32_t i;
    int n = 0;

    for (i = 0; i < table_entries(t); i++) {
        const mg_table_entry *x = entry_at(t, i);
        assert_tag(t, i);
        n += x->fp.hi != 0 || x->fp.lo != 0;
    }
    return n;
}

/* mg_table_decide on one instant of both clocks; it must succeed. */
static void decide(mg_table *t, const mg_layer *layers, int n, apr_time_t now,
                   mg_decision *d)
{
    assert_int_equal(mg_table_decide(t, layers, n, mg_now_at(now), d),
                     APR_SUCCESS);
}

static mg_decision decide1(mg_table *t, const mg_layer *l, apr_time_t now)
{
    mg_decision d;

    decide(t, l, 1, now, &d);
    return d;
}

/* ---- layout ---------------------------------------------------------------- */

static void test_capacity_and_bytes(void **state)
{
    (void)state;
    assert_int_equal(MG_TABLE_WAYS, 8);
    assert_int_equal(mg_table_capacity(0), 8);
    assert_int_equal(mg_table_capacity(1), 8);
    assert_int_equal(mg_table_capacity(7), 8);
    assert_int_equal(mg_table_capacity(8), 8);
    assert_int_equal(mg_table_capacity(9), 16);
    assert_int_equal(mg_table_capacity(16), 16);
    assert_int_equal(mg_table_capacity(17), 24);
    assert_int_equal(mg_table_capacity(1000), 1000);
    assert_int_equal(mg_table_capacity(1001), 1008);
    assert_int_equal(mg_table_capacity(65536), 65536);
    assert_int_equal(mg_table_capacity(65537), 65544);
    assert_int_equal(mg_table_capacity(64u * 1024 * 1024),
                     64u * 1024 * 1024);

    /* The header takes one 64-byte line; then one 64-byte line of tags
     * per set (8 bytes a way); then whole sets of entries.  The entry size
     * is part of the shared memory layout: changing it must come with a
     * new MG_TABLE_VERSION (4: tags mark exhausted counters; the header
     * holds evicted_exhausted and is still one line). */
    assert_int_equal(sizeof(mg_table_entry), 64);
    assert_int_equal(sizeof(mg_limit_state), 32);
    assert_int_equal(sizeof(mg_table_header), 64);
    assert_int_equal(MG_TABLE_VERSION, 4);
    assert_int_equal(mg_table_bytes(1), 64 + 64 + 8 * sizeof(mg_table_entry));
    assert_int_equal(mg_table_bytes(8), 64 + 64 + 8 * sizeof(mg_table_entry));
    assert_int_equal(mg_table_bytes(9),
                     64 + 2 * 64 + 16 * sizeof(mg_table_entry));
    assert_int_equal(mg_table_bytes(65536),
                     64 + (apr_size_t)8192 * 64
                     + (apr_size_t)65536 * sizeof(mg_table_entry));
}

static void test_format_attach(void **state)
{
    apr_pool_t *p = *state;
    apr_size_t size = mg_table_bytes(100);
    unsigned char *mem = apr_palloc(p, size + 64);
    mg_table t, t2;
    apr_size_t i;

    /* Format writes its own bytes and nothing past them. */
    memset(mem, 0xa5, size + 64);
    mg_table_format(mem, 100);
    for (i = size; i < size + 64; i++) {
        assert_int_equal(mem[i], 0xa5);
    }
    memset(&t, 0, sizeof(t));
    assert_int_equal(mg_table_attach(&t, mem, size), 1);
    assert_ptr_equal(t.hdr, mem);
    /* 13 sets: 13 lines of tags, then the entries. */
    assert_ptr_equal((unsigned char *)t.tags, mem + 64);
    assert_ptr_equal((unsigned char *)t.entries, mem + 64 + 13 * 64);
    assert_int_equal(t.entry_size, sizeof(mg_table_entry));
    assert_int_equal(t.state_size, sizeof(mg_limit_state));
    assert_null(t.logs);
    assert_int_equal(t.hdr->magic, MG_TABLE_MAGIC);
    assert_int_equal(t.hdr->version, MG_TABLE_VERSION);
    assert_int_equal(t.hdr->nsets, 13);                /* 100 -> 104 */
    assert_int_equal(t.hdr->ways, MG_TABLE_WAYS);
    assert_int_equal(t.hdr->entry_size, sizeof(mg_table_entry));
    assert_int_equal(t.hdr->stats.decisions, 0);
    assert_int_equal(t.hdr->stats.inserted, 0);
    assert_int_equal(t.hdr->stats.evicted_expired, 0);
    assert_int_equal(t.hdr->stats.evicted_live, 0);
    assert_int_equal(used_entries(&t), 0);
    for (i = 0; i < 104; i++) {
        static const mg_table_entry zero;
        assert_memory_equal(entry_at(&t, (apr_uint32_t)i), &zero,
                            sizeof(zero));
        assert_int_equal(t.tags[i], 0);
    }

    /* A bigger region is fine; a smaller one is not. */
    assert_int_equal(mg_table_attach(&t2, mem, size + 64), 1);
    assert_int_equal(mg_table_attach(&t2, mem, size - 1), 0);
    assert_int_equal(mg_table_attach(&t2, mem, 64), 0);
    assert_int_equal(mg_table_attach(&t2, mem, 8), 0);
    assert_int_equal(mg_table_attach(&t2, mem, 0), 0);
    /* A table formatted for 16 counters, offered with the size of 8. */
    mg_table_format(mem, 16);
    assert_int_equal(mg_table_attach(&t2, mem, mg_table_bytes(8)), 0);
    assert_int_equal(mg_table_attach(&t2, mem, mg_table_bytes(16)), 1);

    /* Headers of another layout. */
    mg_table_format(mem, 100);
    ((mg_table_header *)mem)->magic ^= 1;
    assert_int_equal(mg_table_attach(&t2, mem, size), 0);
    mg_table_format(mem, 100);
    ((mg_table_header *)mem)->version = MG_TABLE_VERSION + 1;
    assert_int_equal(mg_table_attach(&t2, mem, size), 0);
    mg_table_format(mem, 100);
    ((mg_table_header *)mem)->ways = 4;
    assert_int_equal(mg_table_attach(&t2, mem, size), 0);
    mg_table_format(mem, 100);
    /* Entry sizes: smaller than an entry, not a multiple of 8, or larger
     * than the region holds for its sets (13 sets of 8 tags and 8 entries
     * of 72 bytes need 64 + 13 * 640 bytes, more than the 64 + 13 * 576
     * there are). */
    ((mg_table_header *)mem)->entry_size = 56;
    assert_int_equal(mg_table_attach(&t2, mem, size), 0);
    ((mg_table_header *)mem)->entry_size = 68;
    assert_int_equal(mg_table_attach(&t2, mem, size), 0);
    ((mg_table_header *)mem)->entry_size = 72;
    assert_int_equal(mg_table_attach(&t2, mem, size), 0);
    ((mg_table_header *)mem)->entry_size = 64;
    assert_int_equal(mg_table_attach(&t2, mem, size), 1);
    /* Zeroed memory is no table. */
    memset(mem, 0, size);
    assert_int_equal(mg_table_attach(&t2, mem, size), 0);
}

/* A header whose set count does not fit the region must be refused: with
 * nsets = 0 a decision would divide by zero, and with a count whose product
 * by the ways wraps 32 bits the sets would lie past the region. */
static void test_attach_refuses_bad_set_count(void **state)
{
    apr_pool_t *p = *state;
    apr_size_t size = mg_table_bytes(64);
    void *mem = apr_palloc(p, size);
    mg_table t;

    mg_table_format(mem, 64);
    ((mg_table_header *)mem)->nsets = 0;
    assert_int_equal(mg_table_attach(&t, mem, size), 0);

    mg_table_format(mem, 64);
    /* 0x20000001 * 8 = 0x100000008, which is 8 in 32 bits. */
    ((mg_table_header *)mem)->nsets = 0x20000001u;
    assert_int_equal(mg_table_attach(&t, mem, size), 0);

    mg_table_format(mem, 64);
    ((mg_table_header *)mem)->nsets = 9;
    assert_int_equal(mg_table_attach(&t, mem, size), 0);
    ((mg_table_header *)mem)->nsets = 8;
    assert_int_equal(mg_table_attach(&t, mem, size), 1);
    /* Fewer sets than the region could hold is a valid, smaller table. */
    ((mg_table_header *)mem)->nsets = 1;
    assert_int_equal(mg_table_attach(&t, mem, size), 1);
}

/* ---- decisions ------------------------------------------------------------- */

/* One layer through the table decides exactly as mg_limit_decide over a
 * state that is committed when allowed. */
static void test_single_layer_matches_direct(void **state)
{
    apr_pool_t *p = *state;
    mg_table *t = new_table(p, 64);
    mg_limit_spec spec = mg_test_spec(10, MG_MIN(1), 10);
    mg_layer l = mk_layer("free", &spec, "key:demo", 1);
    mg_limit_state direct;
    mg_test_rng rng = { 42 };
    apr_time_t now = MG_T0;
    int i, admitted = 0;

    memset(&direct, 0, sizeof(direct));
    for (i = 0; i < 20000; i++) {
        mg_limit_decision want;
        mg_limit_state next;
        mg_decision d;
        apr_uint64_t r = mg_test_below(&rng, 100);

        if (r < 80) {
            now += (apr_time_t)mg_test_below(&rng, 12000001);
        }
        else if (r < 90) {
            now += (apr_time_t)mg_test_below(&rng, MG_MIN(3));
        }
        else if (r < 95) {
            now -= (apr_time_t)mg_test_below(&rng, MG_SEC(10));
        }
        l.cost = mg_test_below(&rng, 100) < 80 ? 1
                 : mg_test_below(&rng, 13);

        mg_limit_decide(&spec, &direct, now, l.cost, &next, &want);
        d = decide1(t, &l, now);
        assert_int_equal(d.nlayers, 1);
        assert_int_equal(d.binding, 0);
        assert_int_equal(d.allowed, want.allowed);
        mg_test_assert_decision_equal(&d.layer[0], &want);
        if (want.allowed) {
            mg_table_entry *e = entry_of(t, &l.fp);
            direct = next;
            admitted++;
            assert_non_null(e);
            assert_memory_equal(&e->state, &direct, sizeof(direct));
            assert_int_equal(e->touched, now);
            assert_int_equal(e->expires, want.expires);
        }
    }
    assert_true(admitted > 1000);
    assert_true(admitted < 19000);
    assert_int_equal(t->hdr->stats.decisions, 20000);
    assert_int_equal(t->hdr->stats.inserted, 1);
    assert_int_equal(used_entries(t), 1);
}

/* Key 10/min and tenant 3/min: once the tenant rejects, the key layer is
 * not charged, however often the client retries. */
static void test_multi_layer_atomic(void **state)
{
    apr_pool_t *p = *state;
    mg_table *t = new_table(p, 1024);
    mg_limit_spec key_spec = mg_test_spec(10, MG_MIN(1), 10);
    mg_limit_spec tenant_spec = mg_test_spec(3, MG_MIN(1), 3);
    mg_layer layers[2], other[2];
    mg_table_entry *ke, *te;
    mg_decision d;
    int i;

    layers[0] = mk_layer("free", &key_spec, "key:demo", 1);
    layers[1] = mk_layer("tenant", &tenant_spec, "tenant:acme", 1);

    for (i = 0; i < 3; i++) {
        decide(t, layers, 2, MG_T0, &d);
        assert_true(d.allowed);
        assert_int_equal(d.nlayers, 2);
        assert_int_equal(d.layer[0].remaining, 9 - i);
        assert_int_equal(d.layer[1].remaining, 2 - i);
        assert_int_equal(d.binding, 1);               /* nearer its limit */
    }
    ke = entry_of(t, &layers[0].fp);
    te = entry_of(t, &layers[1].fp);
    assert_non_null(ke);
    assert_non_null(te);
    assert_int_equal(ke->state.level, 7 * 6000000);
    assert_int_equal(te->state.level, 0);
    assert_int_equal(t->hdr->stats.inserted, 2);

    for (i = 0; i < 50; i++) {
        decide(t, layers, 2, MG_T0 + i * MG_MSEC(100), &d);
        assert_false(d.allowed);
        assert_int_equal(d.binding, 1);
        assert_false(d.layer[1].allowed);
        /* The key layer on its own would allow, leaving 6; it is shown so,
         * but never charged: it reads 6 every time, not 6, 5, 4, ... */
        assert_true(d.layer[0].allowed);
        assert_int_equal(d.layer[0].remaining, 6);
        assert_int_equal(d.layer[1].retry_after,
                         MG_SEC(20) - i * MG_MSEC(100));
        assert_int_equal(ke->state.level, 7 * 6000000);
        assert_int_equal(ke->state.stamp, MG_T0);
        assert_int_equal(te->state.level, 0);
        /* Refused, but consulted: both entries count as used (issue 10),
         * the tenant's marked exhausted. */
        assert_int_equal(te->touched, MG_T0 + i * MG_MSEC(100));
        assert_int_equal(ke->touched, MG_T0 + i * MG_MSEC(100));
        assert_true(is_exhausted(t, &layers[1].fp));
        assert_false(is_exhausted(t, &layers[0].fp));
    }

    /* The same with the layers the other way round. */
    other[0] = layers[1];
    other[1] = layers[0];
    decide(t, other, 2, MG_T0 + MG_SEC(10), &d);
    assert_false(d.allowed);
    assert_int_equal(d.binding, 0);
    assert_int_equal(ke->state.level, 7 * 6000000);

    /* 20 s on, the tenant has one unit: admitted, and now the key layer is
     * charged once.  Key: 42e6 + 20e6 capped at 60e6, less 6e6 = 54e6. */
    decide(t, layers, 2, MG_T0 + MG_SEC(20), &d);
    assert_true(d.allowed);
    assert_int_equal(d.layer[0].remaining, 9);
    assert_int_equal(d.layer[1].remaining, 0);
    assert_int_equal(ke->state.level, 54000000);
    assert_int_equal(te->state.level, 0);
    assert_int_equal(t->hdr->stats.inserted, 2);
    assert_int_equal(t->hdr->stats.decisions, 3 + 50 + 1 + 1);
}

static void test_rejected_request_adds_no_entry(void **state)
{
    apr_pool_t *p = *state;
    mg_table *t = new_table(p, 64);
    mg_limit_spec spec = mg_test_spec(10, MG_MIN(1), 10);
    mg_limit_spec tenant_spec = mg_test_spec(1, MG_MIN(1), 1);
    mg_layer big = mk_layer("free", &spec, "key:big", 11);
    mg_layer a[2], b[2];
    mg_decision d;

    /* A cost that never fits, on a fresh counter. */
    d = decide1(t, &big, MG_T0);
    assert_false(d.allowed);
    assert_int_equal(t->hdr->stats.decisions, 1);
    assert_int_equal(t->hdr->stats.inserted, 0);
    assert_int_equal(used_entries(t), 0);
    assert_null(entry_of(t, &big.fp));

    /* Key A uses up the tenant; key B, new, is then refused: B gets no
     * entry, and the tenant's entry, charged nothing, counts as used. */
    a[0] = mk_layer("free", &spec, "key:a", 1);
    a[1] = mk_layer("tenant", &tenant_spec, "tenant:acme", 1);
    b[0] = mk_layer("free", &spec, "key:b", 1);
    b[1] = a[1];
    decide(t, a, 2, MG_T0, &d);
    assert_true(d.allowed);
    assert_int_equal(t->hdr->stats.inserted, 2);
    decide(t, b, 2, MG_T0 + MG_SEC(1), &d);
    assert_false(d.allowed);
    assert_int_equal(t->hdr->stats.inserted, 2);
    assert_int_equal(used_entries(t), 2);
    assert_null(entry_of(t, &b[0].fp));
    assert_int_equal(entry_of(t, &a[1].fp)->touched, MG_T0 + MG_SEC(1));
    assert_int_equal(entry_of(t, &a[1].fp)->state.level, 0);
    assert_int_equal(t->hdr->stats.decisions, 3);
}

/* ---- eviction ---------------------------------------------------------------
 *
 * Capacity 8 is one set, so every key competes for the same 8 entries.
 * "live" is 10/h, burst 10: one unit spent keeps an entry unexpired for 6
 * minutes.  "short" is 1/s, burst 1: its entry expires 1 s after use. */

static void test_eviction_order(void **state)
{
    apr_pool_t *p = *state;
    mg_table *t = new_table(p, 8);
    mg_limit_spec live = mg_test_spec(10, MG_HOUR(1), 10);
    mg_limit_spec brief = mg_test_spec(1, MG_SEC(1), 1);
    mg_layer k[12];
    mg_decision d;
    int i;

    assert_int_equal(t->hdr->nsets, 1);
    for (i = 0; i < 12; i++) {
        k[i] = mk_layer("p", i == 3 ? &brief : &live,
                        apr_psprintf(p, "key:k%d", i), 1);
    }

    /* Empty entries first: eight keys, no eviction. */
    for (i = 0; i < 8; i++) {
        d = decide1(t, &k[i], MG_T0 + i);
        assert_true(d.allowed);
    }
    assert_int_equal(t->hdr->stats.inserted, 8);
    assert_int_equal(t->hdr->stats.evicted_expired, 0);
    assert_int_equal(t->hdr->stats.evicted_live, 0);
    assert_int_equal(used_entries(t), 8);
    assert_int_equal(entry_of(t, &k[3].fp)->expires, MG_T0 + 3 + MG_SEC(1));

    /* Then an expired entry, though k0 is older: k3 went at t0 + 1 s. */
    d = decide1(t, &k[8], MG_T0 + MG_SEC(2));
    assert_true(d.allowed);
    assert_int_equal(t->hdr->stats.inserted, 9);
    assert_int_equal(t->hdr->stats.evicted_expired, 1);
    assert_int_equal(t->hdr->stats.evicted_live, 0);
    assert_null(entry_of(t, &k[3].fp));
    assert_non_null(entry_of(t, &k[0].fp));
    assert_non_null(entry_of(t, &k[8].fp));

    /* k0 is used again, so it is no longer the least recently used. */
    d = decide1(t, &k[0], MG_T0 + MG_SEC(3));
    assert_true(d.allowed);
    assert_int_equal(d.layer[0].remaining, 8);
    assert_int_equal(t->hdr->stats.inserted, 9);

    /* Then the least recently used live entry: k1 (t0 + 1 us), then k2. */
    d = decide1(t, &k[9], MG_T0 + MG_SEC(4));
    assert_true(d.allowed);
    assert_int_equal(t->hdr->stats.evicted_expired, 1);
    assert_int_equal(t->hdr->stats.evicted_live, 1);
    assert_null(entry_of(t, &k[1].fp));
    assert_non_null(entry_of(t, &k[0].fp));
    assert_non_null(entry_of(t, &k[9].fp));
    d = decide1(t, &k[10], MG_T0 + MG_SEC(5));
    assert_true(d.allowed);
    assert_int_equal(t->hdr->stats.evicted_live, 2);
    assert_null(entry_of(t, &k[2].fp));
    assert_int_equal(used_entries(t), 8);

    /* k0 kept its counter through all this: 2 spent, 1 more now. */
    d = decide1(t, &k[0], MG_T0 + MG_SEC(6));
    assert_int_equal(d.layer[0].remaining, 7);

    /* An evicted key comes back fresh, evicting the next LRU, k4. */
    d = decide1(t, &k[1], MG_T0 + MG_SEC(7));
    assert_true(d.allowed);
    assert_int_equal(d.layer[0].remaining, 9);
    assert_int_equal(t->hdr->stats.evicted_live, 3);
    assert_null(entry_of(t, &k[4].fp));
    assert_int_equal(t->hdr->stats.inserted, 12);
    assert_int_equal(t->hdr->stats.decisions, 14);
}

/* An empty entry is taken before an expired one: the expired counter stays
 * until the set is full. */
static void test_eviction_prefers_empty(void **state)
{
    apr_pool_t *p = *state;
    mg_table *t = new_table(p, 8);
    mg_limit_spec live = mg_test_spec(10, MG_HOUR(1), 10);
    mg_limit_spec brief = mg_test_spec(1, MG_SEC(1), 1);
    mg_layer s = mk_layer("p", &brief, "key:short", 1);
    mg_layer a = mk_layer("p", &live, "key:a", 1);
    mg_layer b = mk_layer("p", &live, "key:b", 1);

    assert_true(decide1(t, &s, MG_T0).layer[0].allowed);
    assert_true(decide1(t, &a, MG_T0 + 1).layer[0].allowed);
    assert_true(decide1(t, &b, MG_T0 + MG_SEC(10)).layer[0].allowed);
    assert_int_equal(t->hdr->stats.evicted_expired, 0);
    assert_non_null(entry_of(t, &s.fp));
    assert_int_equal(used_entries(t), 3);
}

/* The entries a decision holds for its other layers are never the victims,
 * even when they are the least recently used. */
static void test_eviction_spares_own_layers(void **state)
{
    apr_pool_t *p = *state;
    mg_table *t = new_table(p, 8);
    mg_limit_spec live = mg_test_spec(10, MG_HOUR(1), 10);
    mg_layer old[8], fresh[MG_LIMIT_MAX_LAYERS], two[2];
    mg_decision d;
    int i;

    for (i = 0; i < 8; i++) {
        old[i] = mk_layer("p", &live, apr_psprintf(p, "key:old%d", i), 1);
        assert_true(decide1(t, &old[i], MG_T0 + i).allowed);
    }

    /* old0 is the LRU; a decision over a new key and then old0 must evict
     * old1: old0 is claimed by the decision, though not yet committed when
     * the new key needs an entry. */
    two[0] = mk_layer("p", &live, "key:new", 1);
    two[1] = old[0];
    decide(t, two, 2, MG_T0 + MG_SEC(1), &d);
    assert_true(d.allowed);
    assert_non_null(entry_of(t, &old[0].fp));
    assert_null(entry_of(t, &old[1].fp));
    assert_non_null(entry_of(t, &two[0].fp));
    /* old0 charged twice, with 1 s of refill (1 sub-unit a us) between. */
    assert_int_equal(entry_of(t, &old[0].fp)->state.level,
                     8 * live.unit_scale + 1000000);
    assert_int_equal(t->hdr->stats.evicted_live, 1);
    /* key:new becomes the most recently used. */
    assert_true(decide1(t, &two[0], MG_T0 + MG_MSEC(1500)).allowed);

    /* Seven new keys in one decision: each claims a different entry, the
     * LRU ones (old2..old7, then old0) going first. */
    for (i = 0; i < MG_LIMIT_MAX_LAYERS; i++) {
        fresh[i] = mk_layer("p", &live, apr_psprintf(p, "key:fresh%d", i), 1);
    }
    decide(t, fresh, MG_LIMIT_MAX_LAYERS, MG_T0 + MG_SEC(2), &d);
    assert_true(d.allowed);
    assert_int_equal(d.nlayers, MG_LIMIT_MAX_LAYERS);
    for (i = 0; i < MG_LIMIT_MAX_LAYERS; i++) {
        mg_table_entry *e = entry_of(t, &fresh[i].fp);
        assert_non_null(e);
        assert_int_equal(e->touched, MG_T0 + MG_SEC(2));
        assert_int_equal(e->state.level, 9 * live.unit_scale);
    }
    /* The one survivor is the most recently used before: key:new. */
    assert_null(entry_of(t, &old[0].fp));
    assert_non_null(entry_of(t, &two[0].fp));
    assert_int_equal(t->hdr->stats.evicted_live, 1 + MG_LIMIT_MAX_LAYERS);
    assert_int_equal(used_entries(t), 8);
}

/* A held entry is spared even when it has expired, which would otherwise
 * make it the first victim. */
static void test_eviction_spares_own_expired_layer(void **state)
{
    apr_pool_t *p = *state;
    mg_table *t = new_table(p, 8);
    mg_limit_spec live = mg_test_spec(10, MG_HOUR(1), 10);
    mg_limit_spec brief = mg_test_spec(1, MG_SEC(1), 1);
    mg_layer two[2], o;
    mg_decision d;
    int i;

    two[1] = mk_layer("p", &brief, "key:brief", 1);
    assert_true(decide1(t, &two[1], MG_T0).allowed);
    for (i = 1; i < 8; i++) {
        o = mk_layer("p", &live, apr_psprintf(p, "key:live%d", i), 1);
        assert_true(decide1(t, &o, MG_T0 + i).allowed);
    }
    two[0] = mk_layer("p", &live, "key:new", 1);
    decide(t, two, 2, MG_T0 + MG_SEC(5), &d);
    assert_true(d.allowed);
    assert_non_null(entry_of(t, &two[0].fp));
    assert_non_null(entry_of(t, &two[1].fp));
    assert_int_equal(t->hdr->stats.evicted_expired, 0);
    assert_int_equal(t->hdr->stats.evicted_live, 1);
    assert_int_equal(entry_of(t, &two[1].fp)->state.level, 0);
}

/* An entry expires at its `expires` exactly, not a microsecond earlier. */
static void test_expiry_boundary(void **state)
{
    apr_pool_t *p = *state;
    mg_table *t = new_table(p, 8);
    mg_limit_spec live = mg_test_spec(10, MG_HOUR(1), 10);
    mg_limit_spec brief = mg_test_spec(1, MG_SEC(1), 1);
    mg_layer b = mk_layer("p", &brief, "key:brief", 1);
    mg_layer l[7], n1, n2;
    int i;

    for (i = 0; i < 7; i++) {
        l[i] = mk_layer("p", &live, apr_psprintf(p, "key:live%d", i), 1);
        assert_true(decide1(t, &l[i], MG_T0 + i).allowed);
    }
    assert_true(decide1(t, &b, MG_T0 + 7).allowed);
    assert_int_equal(entry_of(t, &b.fp)->expires, MG_T0 + 7 + MG_SEC(1));

    /* 1 us before: the brief counter is live and not the LRU. */
    n1 = mk_layer("p", &live, "key:n1", 1);
    assert_true(decide1(t, &n1, MG_T0 + 7 + MG_SEC(1) - 1).allowed);
    assert_int_equal(t->hdr->stats.evicted_live, 1);
    assert_int_equal(t->hdr->stats.evicted_expired, 0);
    assert_null(entry_of(t, &l[0].fp));
    assert_non_null(entry_of(t, &b.fp));

    /* At its expiry: gone before any live counter. */
    n2 = mk_layer("p", &live, "key:n2", 1);
    assert_true(decide1(t, &n2, MG_T0 + 7 + MG_SEC(1)).allowed);
    assert_int_equal(t->hdr->stats.evicted_live, 1);
    assert_int_equal(t->hdr->stats.evicted_expired, 1);
    assert_null(entry_of(t, &b.fp));
    assert_non_null(entry_of(t, &l[1].fp));
}

/* While its set has room a counter is never reset by other keys. */
static void test_live_key_kept_while_room(void **state)
{
    apr_pool_t *p = *state;
    mg_table *t = new_table(p, 8);
    mg_limit_spec live = mg_test_spec(10, MG_HOUR(1), 10);
    mg_layer a = mk_layer("p", &live, "key:a", 3);
    mg_decision d;
    int i;

    assert_true(decide1(t, &a, MG_T0).allowed);
    for (i = 1; i < 8; i++) {
        mg_layer o = mk_layer("p", &live, apr_psprintf(p, "key:o%d", i), 1);
        assert_true(decide1(t, &o, MG_T0 + MG_SEC(i)).allowed);
    }
    assert_int_equal(t->hdr->stats.evicted_live, 0);
    assert_int_equal(t->hdr->stats.evicted_expired, 0);
    a.cost = 1;
    d = decide1(t, &a, MG_T0 + MG_SEC(8));
    assert_int_equal(d.layer[0].remaining, 6);

    /* A bigger table, 512 sets, with 256 counters all kept. */
    t = new_table(p, 4096);
    assert_int_equal(t->hdr->nsets, 512);
    for (i = 0; i < 256; i++) {
        mg_layer o = mk_layer("p", &live, apr_psprintf(p, "key:%d", i),
                              (apr_uint64_t)(i % 10) + 1);
        assert_true(decide1(t, &o, MG_T0 + i).allowed);
    }
    assert_int_equal(t->hdr->stats.inserted, 256);
    assert_int_equal(t->hdr->stats.evicted_live, 0);
    assert_int_equal(t->hdr->stats.evicted_expired, 0);
    for (i = 0; i < 256; i++) {
        mg_layer o = mk_layer("p", &live, apr_psprintf(p, "key:%d", i), 0);
        d = decide1(t, &o, MG_T0 + 1000);
        assert_int_equal(d.layer[0].remaining, 10 - (i % 10) - 1);
    }
    assert_int_equal(t->hdr->stats.inserted, 256);
}

/* ---- eviction under pressure -----------------------------------------------
 *
 * Issue 10: a refused request did not count as use, so an exhausted counter
 * that kept being refused became the least recently used of its set and was
 * evicted by newcomers, its client starting again full.  Counters at 3/day
 * (burst 3): a key used once keeps 2 and is partly used; a key used 3 times
 * is exhausted for hours. */

/* An exhausted key refused between every round of newcomers, 4 of them a
 * round over 8 sets: it stays exhausted, 3 admissions in all, and the
 * newcomers only evict each other. */
static void test_refused_counter_stays_under_churn(void **state)
{
    apr_pool_t *p = *state;
    mg_table *t = new_table(p, 64);
    mg_limit_spec day = mg_test_spec(3, MG_DAY(1), 3);
    mg_layer x = mk_layer("p", &day, "ip:198.51.100.1", 1);
    apr_time_t now = MG_T0;
    int round, i, admitted = 0, churn = 0;

    assert_int_equal(t->hdr->nsets, 8);
    for (round = 0; round < 500; round++) {
        mg_decision d;
        for (i = 0; i < 2; i++) {        /* it hammers: two a round */
            d = decide1(t, &x, now++);
            admitted += d.allowed;
        }
        for (i = 0; i < 4; i++) {
            mg_layer o = mk_layer("p", &day,
                                  apr_psprintf(p, "ip:churn%d", churn++), 1);
            d = decide1(t, &o, now++);
            assert_true(d.allowed);
            assert_int_equal(d.layer[0].remaining, 2);
        }
    }
    assert_int_equal(admitted, 3);
    assert_true(is_exhausted(t, &x.fp));
    assert_int_equal(t->hdr->stats.inserted, 1 + 2000);
    assert_int_equal(t->hdr->stats.evicted_live, 2001 - 64);
    assert_int_equal(t->hdr->stats.evicted_expired, 0);
    assert_int_equal(t->hdr->stats.evicted_exhausted, 0);
    assert_int_equal(used_entries(t), 64);
}

/* When every counter of the set is exhausted, a newcomer still gets an
 * entry (the last resort, counted), and the victim is the least recently
 * used: never the key that keeps being refused. */
static void test_refused_counter_is_recently_used(void **state)
{
    apr_pool_t *p = *state;
    mg_table *t = new_table(p, 8);
    mg_limit_spec once = mg_test_spec(1, MG_DAY(1), 1);
    mg_layer x = mk_layer("p", &once, "ip:198.51.100.1", 1);
    apr_time_t now = MG_T0;
    int round, i, admitted = 0, churn = 0;

    for (round = 0; round < 100; round++) {
        admitted += decide1(t, &x, now++).allowed;
        for (i = 0; i < 2; i++) {
            mg_layer o = mk_layer("p", &once,
                                  apr_psprintf(p, "ip:churn%d", churn++), 1);
            assert_true(decide1(t, &o, now++).allowed);
            assert_true(is_exhausted(t, &o.fp));  /* 0 left of 1 */
        }
    }
    assert_int_equal(admitted, 1);
    assert_true(is_exhausted(t, &x.fp));
    assert_int_equal(t->hdr->stats.inserted, 1 + 200);
    assert_int_equal(t->hdr->stats.evicted_exhausted, 201 - 8);
    assert_int_equal(t->hdr->stats.evicted_live, 0);
    assert_int_equal(t->hdr->stats.evicted_expired, 0);
}

/* The order: expired, then the least recently used partly used counter,
 * then (only then) the least recently used exhausted one; a decision that
 * finds a counter able to pay again clears its mark. */
static void test_eviction_tiers(void **state)
{
    apr_pool_t *p = *state;
    mg_table *t = new_table(p, 8);
    mg_limit_spec day = mg_test_spec(3, MG_DAY(1), 3);
    mg_limit_spec min = mg_test_spec(1, MG_MIN(1), 1);
    mg_limit_spec never = mg_test_spec(1, MG_DAY(1), 1);
    mg_limit_spec two_min = mg_test_spec(2, MG_MIN(1), 2);
    mg_layer ex = mk_layer("p", &day, "key:exhausted", 3);
    mg_layer m = mk_layer("p", &min, "key:minute", 1);
    mg_layer k[6], n[3], two[2];
    mg_decision d;
    int i;

    /* The oldest: one exhausted counter (3 of 3 at once), one that is
     * exhausted for a minute; then six partly used ones. */
    assert_true(decide1(t, &ex, MG_T0).allowed);
    assert_true(is_exhausted(t, &ex.fp));
    assert_true(decide1(t, &m, MG_T0 + 1).allowed);
    assert_true(is_exhausted(t, &m.fp));
    for (i = 0; i < 6; i++) {
        k[i] = mk_layer("p", &day, apr_psprintf(p, "key:k%d", i), 1);
        assert_true(decide1(t, &k[i], MG_T0 + 2 + i).allowed);
        assert_false(is_exhausted(t, &k[i].fp));
    }
    for (i = 0; i < 3; i++) {
        n[i] = mk_layer("p", &day, apr_psprintf(p, "key:n%d", i), 1);
    }

    /* A newcomer takes the LRU partly used entry, k0, not the older
     * exhausted ones. */
    assert_true(decide1(t, &n[0], MG_T0 + MG_SEC(10)).allowed);
    assert_null(entry_of(t, &k[0].fp));
    assert_non_null(entry_of(t, &ex.fp));
    assert_non_null(entry_of(t, &m.fp));
    assert_int_equal(t->hdr->stats.evicted_live, 1);

    /* At a minute the minute's counter has expired: it goes first,
     * though partly used ones are left. */
    assert_true(decide1(t, &n[1], MG_T0 + 1 + MG_MIN(1)).allowed);
    assert_null(entry_of(t, &m.fp));
    assert_int_equal(t->hdr->stats.evicted_expired, 1);
    assert_int_equal(t->hdr->stats.evicted_live, 1);

    /* A counter marked exhausted (2/min, 2 spent at once) is found able to
     * pay again 30 s on, by a decision another layer refuses (`never` at
     * 1/day is spent by the first): consulted, so used, and no longer
     * marked; the refusing one is marked and used too. */
    two[0] = mk_layer("p", &never, "tenant:z", 1);
    two[1] = mk_layer("p", &two_min, "key:pair", 2);
    decide(t, two, 2, MG_T0 + MG_MIN(2), &d);
    assert_true(d.allowed);
    assert_true(is_exhausted(t, &two[0].fp));
    assert_true(is_exhausted(t, &two[1].fp));
    two[1].cost = 1;
    decide(t, two, 2, MG_T0 + MG_MIN(2) + MG_SEC(30), &d);
    assert_false(d.allowed);
    assert_true(d.layer[1].allowed);
    assert_false(is_exhausted(t, &two[1].fp));
    assert_int_equal(entry_of(t, &two[1].fp)->touched,
                     MG_T0 + MG_MIN(2) + MG_SEC(30));
    assert_true(is_exhausted(t, &two[0].fp));
    assert_int_equal(entry_of(t, &two[0].fp)->touched,
                     MG_T0 + MG_MIN(2) + MG_SEC(30));
    assert_int_equal(entry_of(t, &two[1].fp)->state.level, 0);  /* as kept */
    assert_int_equal(t->hdr->stats.evicted_exhausted, 0);
}

/* ---- a counter named twice -------------------------------------------- */

/* Two layers with one fingerprint in one decision (the same limit declared
 * at two levels that both apply) are one counter: one entry, decided and
 * charged once, each layer reporting that decision. */
static void test_duplicate_layers_share_an_entry(void **state)
{
    apr_pool_t *p = *state;
    mg_table *t = new_table(p, 64);
    mg_limit_spec five = mg_test_spec(5, MG_HOUR(1), 5);
    mg_limit_spec ten = mg_test_spec(10, MG_HOUR(1), 10);
    mg_layer l[3];
    mg_decision d;
    int i;

    l[0] = mk_layer("loc", &five, "key:demo", 1);
    l[1] = mk_layer("other", &ten, "tenant:acme", 1);
    l[2] = l[0];
    for (i = 0; i < 5; i++) {
        decide(t, l, 3, MG_T0 + i, &d);
        assert_true(d.allowed);
        assert_int_equal(d.nlayers, 3);
        assert_int_equal(d.layer[0].remaining, (apr_uint64_t)(4 - i));
        mg_test_assert_decision_equal(&d.layer[2], &d.layer[0]);
        assert_int_equal(used_entries(t), 2);
    }
    decide(t, l, 3, MG_T0 + 5, &d);
    assert_false(d.allowed);
    assert_false(d.layer[0].allowed);
    assert_false(d.layer[2].allowed);
    assert_int_equal(d.layer[1].remaining, 4);    /* charged 5 times */
    assert_int_equal(t->hdr->stats.inserted, 2);
    assert_true(is_exhausted(t, &l[0].fp));

    /* Unequal costs: charged once, with the largest.  10 units at 3 a
     * request: 3 admitted, then 1 left. */
    l[0] = mk_layer("a", &ten, "key:costly", 3);
    l[1] = mk_layer("b", &ten, "key:costly", 1);
    for (i = 0; i < 3; i++) {
        decide(t, l, 2, MG_T0 + i, &d);
        assert_true(d.allowed);
        assert_int_equal(d.layer[0].remaining, (apr_uint64_t)(7 - 3 * i));
        assert_int_equal(d.layer[1].remaining, (apr_uint64_t)(7 - 3 * i));
    }
    decide(t, l, 2, MG_T0 + 3, &d);
    assert_false(d.allowed);
    assert_int_equal(d.layer[1].remaining, 1);
    assert_int_equal(entry_of(t, &l[0].fp)->state.level,
                     1 * ten.unit_scale + 2);   /* 2 us of refill */
    assert_int_equal(t->hdr->stats.inserted, 3);

    /* Shadow and enforced: enforced wins, and the shadow one says it
     * would have refused. */
    l[0] = mk_layer("seen", &ten, "key:both", 5);
    l[0].shadow = 1;
    l[1] = mk_layer("seen", &ten, "key:both", 5);
    for (i = 0; i < 2; i++) {
        decide(t, l, 2, MG_T0, &d);
        assert_true(d.allowed);
    }
    decide(t, l, 2, MG_T0, &d);
    assert_false(d.allowed);
    assert_int_equal(d.binding, 1);
    assert_int_equal(d.shadow_rejected, 0x1);
    assert_int_equal(t->hdr->stats.inserted, 4);
    assert_int_equal(used_entries(t), 4);
}

/* ---- fingerprints ------------------------------------------------------------ */

static int fp_eq(mg_fingerprint a, mg_fingerprint b)
{
    return a.hi == b.hi && a.lo == b.lo;
}

static mg_fingerprint fp_of(const char *key, const mg_limit_spec *spec)
{
    return mg_table_fingerprint(key, strlen(key), spec);
}

static void test_fingerprints(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_spec s = mg_test_spec(10, MG_MIN(1), 10);
    mg_limit_spec s_quota = mg_test_spec(11, MG_MIN(1), 10);
    mg_limit_spec s_window = mg_test_spec(10, MG_MIN(2), 10);
    mg_limit_spec s_burst = mg_test_spec(10, MG_MIN(1), 20);
    mg_limit_spec s_same = mg_test_spec(10, MG_SEC(60), 10);
    mg_fingerprint f = fp_of("key:demo", &s);
    char buf[32];
    apr_hash_t *seen = apr_hash_make(p);
    int i;

    /* The same key string and limit: the same fingerprint, whatever the
     * buffer. */
    strcpy(buf, "key:demo");
    assert_true(fp_eq(f, fp_of(buf, &s)));
    assert_true(fp_eq(f, fp_of(apr_pstrdup(p, "key:demo"), &s_same)));
    assert_true(fp_eq(f, mg_table_fingerprint("key:demo-and-more", 8, &s)));

    /* A different limit. */
    assert_false(fp_eq(f, fp_of("key:demo", &s_quota)));
    assert_false(fp_eq(f, fp_of("key:demo", &s_window)));
    assert_false(fp_eq(f, fp_of("key:demo", &s_burst)));

    /* A different key, including prefixes, case and a trailing NUL. */
    assert_false(fp_eq(f, fp_of("key:demO", &s)));
    assert_false(fp_eq(f, fp_of("key:dem", &s)));
    assert_false(fp_eq(f, fp_of("key:demo2", &s)));
    assert_false(fp_eq(f, fp_of("tenant:demo", &s)));
    assert_false(fp_eq(f, mg_table_fingerprint("key:demo", 9, &s)));
    assert_false(fp_eq(fp_of("", &s), fp_of("a", &s)));

    /* Many keys of every length up to 24 bytes, each with a fingerprint
     * of its own that is never the empty marker. */
    for (i = 0; i < 2000; i++) {
        mg_fingerprint g;
        const char *key = apr_psprintf(p, "%.*s%d", i % 17, "kkkkkkkkkkkkkkkkk",
                                       i);
        g = fp_of(key, &s);
        assert_true(g.lo & 1);
        assert_null(apr_hash_get(seen, &g, sizeof(g)));
        apr_hash_set(seen, apr_pmemdup(p, &g, sizeof(g)), sizeof(g), key);
    }
    assert_int_equal(apr_hash_count(seen), 2000);
}

/* A changed limit reads no state kept under the old one. */
static void test_changed_limit_starts_fresh(void **state)
{
    apr_pool_t *p = *state;
    mg_table *t = new_table(p, 64);
    mg_limit_spec s10 = mg_test_spec(10, MG_MIN(1), 10);
    mg_limit_spec s20 = mg_test_spec(20, MG_MIN(1), 20);
    mg_layer a = mk_layer("free", &s10, "key:demo", 10);
    mg_layer b = mk_layer("free", &s20, "key:demo", 1);
    mg_decision d;

    assert_true(decide1(t, &a, MG_T0).allowed);
    a.cost = 1;
    assert_false(decide1(t, &a, MG_T0).allowed);
    d = decide1(t, &b, MG_T0);
    assert_true(d.allowed);
    assert_int_equal(d.layer[0].remaining, 19);
    assert_int_equal(t->hdr->stats.inserted, 2);
}

static void test_subject_fingerprints(void **state)
{
    mg_limit_spec a = mg_test_spec(10, MG_MIN(1), 10);
    mg_limit_spec b = mg_test_spec(20, MG_MIN(1), 20);
    mg_fingerprint base_a = mg_table_fingerprint("key\x1f" "free", 8, &a);
    mg_fingerprint base_b = mg_table_fingerprint("key\x1f" "free", 8, &b);
    mg_fingerprint x1 = mg_table_fingerprint_subject(&base_a, "demo", 4);
    mg_fingerprint x2 = mg_table_fingerprint_subject(&base_a, "demo", 4);
    mg_fingerprint y = mg_table_fingerprint_subject(&base_a, "demp", 4);
    mg_fingerprint z = mg_table_fingerprint_subject(&base_b, "demo", 4);
    mg_fingerprint e = mg_table_fingerprint_subject(&base_a, "", 0);

    (void)state;
    /* the same subject under the same limit is the same counter */
    assert_true(x1.hi == x2.hi && x1.lo == x2.lo);
    /* another subject, or the same subject under other numbers, is not */
    assert_false(x1.hi == y.hi && x1.lo == y.lo);
    assert_false(x1.hi == z.hi && x1.lo == z.lo);
    /* never the empty marker, even for an empty subject */
    assert_true(x1.lo & 1);
    assert_true(e.lo & 1);
    assert_false(e.hi == base_a.hi && e.lo == base_a.lo);
}

/* A subject hashed in advance (a key's id, tenant, tier) names the same
 * counter as the subject hashed per request, and both name the counter
 * they named before the split: the values below were printed by the code
 * before it (tree 1bad6ff).  Counters in shared memory survive a graceful
 * restart and Redis keys are the fingerprint's hex: a changed scheme would
 * start every counter afresh on an upgrade. */
static void test_subject_hashed_in_advance(void **state)
{
    mg_limit_spec a = mg_test_spec(10, MG_MIN(1), 10);
    mg_fingerprint base = mg_table_fingerprint("tenant\x1f" "t", 8, &a);
    static const struct {
        const char *subject;
        apr_uint64_t hi, lo;
    } cases[] = {
        { "", APR_UINT64_C(0x14c2569f7abfeae1),
          APR_UINT64_C(0xb4d16ec3c6a859b7) },
        { "demo", APR_UINT64_C(0xe28923ec1c2ca5ff),
          APR_UINT64_C(0xb2fd611ebd1929ed) },
        { "acme-corp", APR_UINT64_C(0xca6a516191d03025),
          APR_UINT64_C(0xbd022bc67cc13d7b) },
        { "a-subject-longer-than-16", APR_UINT64_C(0x6cdf6f2486fd7e8b),
          APR_UINT64_C(0x515e3d44c1d40e55) },
    };
    int i;

    (void)state;
    for (i = 0; i < 4; i++) {
        apr_size_t len = strlen(cases[i].subject);
        mg_fingerprint h = mg_table_subject_hash(cases[i].subject, len);
        mg_fingerprint x = mg_table_fingerprint_hashed(&base, &h);
        mg_fingerprint y = mg_table_fingerprint_subject(&base,
                                                        cases[i].subject,
                                                        len);
        assert_true(x.hi == y.hi && x.lo == y.lo);
        assert_true(x.hi == cases[i].hi);
        assert_true(x.lo == cases[i].lo);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_capacity_and_bytes),
        MG_TEST(test_subject_hashed_in_advance),
        MG_TEST(test_format_attach),
        MG_TEST(test_attach_refuses_bad_set_count),
        MG_TEST(test_single_layer_matches_direct),
        MG_TEST(test_multi_layer_atomic),
        MG_TEST(test_rejected_request_adds_no_entry),
        MG_TEST(test_eviction_order),
        MG_TEST(test_eviction_prefers_empty),
        MG_TEST(test_eviction_spares_own_layers),
        MG_TEST(test_eviction_spares_own_expired_layer),
        MG_TEST(test_expiry_boundary),
        MG_TEST(test_live_key_kept_while_room),
        MG_TEST(test_refused_counter_stays_under_churn),
        MG_TEST(test_refused_counter_is_recently_used),
        MG_TEST(test_eviction_tiers),
        MG_TEST(test_duplicate_layers_share_an_entry),
        MG_TEST(test_fingerprints),
        MG_TEST(test_subject_fingerprints),
        MG_TEST(test_changed_limit_starts_fresh),
    };

    return MG_RUN(tests);
}
