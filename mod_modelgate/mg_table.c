/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_table.c -- the fixed-size counter table (see mg_table.h).
 */
#include <string.h>
#include "mg_table.h"
#include "mg_sync.h"

/* ---- fingerprints ------------------------------------------------------ */

/* The finaliser of MurmurHash3: a bijection that spreads every input bit. */
static apr_uint64_t mix64(apr_uint64_t x)
{
    x ^= x >> 33;
    x *= APR_UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= APR_UINT64_C(0xc4ceb9fe1a85ec53);
    x ^= x >> 33;
    return x;
}

static apr_uint64_t rotl64(apr_uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

/* Two of these with unrelated seeds give the 128-bit fingerprint.  Not a
 * cryptographic hash: counter keys are key ids and names from the
 * configuration, not attacker-chosen strings that could be searched for
 * collisions at scale, and a collision costs a shared counter, not access. */
static apr_uint64_t hash64(const unsigned char *p, apr_size_t len,
                           apr_uint64_t seed)
{
    apr_uint64_t h = seed ^ ((apr_uint64_t)len * APR_UINT64_C(0x9e3779b97f4a7c15));
    apr_uint64_t k;

    while (len >= 8) {
        memcpy(&k, p, 8);
        h = rotl64(h ^ mix64(k + seed), 27) * APR_UINT64_C(0x9e3779b97f4a7c15)
            + APR_UINT64_C(0x52dce729);
        p += 8;
        len -= 8;
    }
    k = 0;
    memcpy(&k, p, len);
    h = rotl64(h ^ mix64(k + seed + len), 31) * APR_UINT64_C(0x9e3779b97f4a7c15);
    return mix64(h);
}

mg_fingerprint mg_table_fingerprint(const char *key, apr_size_t len,
                                    const mg_limit_spec *spec)
{
    static const apr_uint64_t seed_hi = APR_UINT64_C(0x243f6a8885a308d3);
    static const apr_uint64_t seed_lo = APR_UINT64_C(0x13198a2e03707344);
    mg_fingerprint fp;
    apr_uint64_t s[4];

    s[0] = (apr_uint64_t)spec->algo;
    s[1] = spec->quota;
    s[2] = (apr_uint64_t)spec->window;
    s[3] = spec->burst;
    fp.hi = hash64((const unsigned char *)key, len, seed_hi)
            ^ hash64((const unsigned char *)s, sizeof(s), seed_lo);
    fp.lo = hash64((const unsigned char *)key, len, seed_lo)
            ^ mix64(hash64((const unsigned char *)s, sizeof(s), seed_hi));
    /* {0, 0} marks an empty entry. */
    fp.lo |= 1;
    return fp;
}

mg_fingerprint mg_table_subject_hash(const char *subject, apr_size_t len)
{
    static const apr_uint64_t seed_hi = APR_UINT64_C(0xa4093822299f31d0);
    static const apr_uint64_t seed_lo = APR_UINT64_C(0x082efa98ec4e6c89);
    mg_fingerprint h;

    h.hi = hash64((const unsigned char *)subject, len, seed_hi);
    h.lo = hash64((const unsigned char *)subject, len, seed_lo);
    return h;
}

mg_fingerprint mg_table_fingerprint_hashed(const mg_fingerprint *base,
                                           const mg_fingerprint *subject)
{
    mg_fingerprint fp;

    fp.hi = mix64(base->hi ^ subject->hi);
    fp.lo = mix64(base->lo + subject->lo) | 1;
    return fp;
}

mg_fingerprint mg_table_fingerprint_subject(const mg_fingerprint *base,
                                            const char *subject,
                                            apr_size_t len)
{
    mg_fingerprint h = mg_table_subject_hash(subject, len);

    return mg_table_fingerprint_hashed(base, &h);
}

/* ---- layout ------------------------------------------------------------ */

static apr_uint32_t nsets_for(apr_uint32_t capacity)
{
    apr_uint32_t nsets = (capacity + MG_TABLE_WAYS - 1) / MG_TABLE_WAYS;
    return nsets ? nsets : 1;
}

apr_uint32_t mg_table_capacity(apr_uint32_t capacity)
{
    return nsets_for(capacity) * MG_TABLE_WAYS;
}

/* Entries start on a 64-byte boundary after the header. */
static apr_size_t header_bytes(void)
{
    return (sizeof(mg_table_header) + 63) & ~(apr_size_t)63;
}

static apr_size_t entry_size_for(apr_size_t state_size)
{
    apr_size_t n = sizeof(mg_table_entry) - sizeof(mg_limit_state)
                   + (state_size > sizeof(mg_limit_state)
                      ? state_size : sizeof(mg_limit_state));
    return (n + 7) & ~(apr_size_t)7;
}

/* After the header, one 64-byte line of tags per set (the low word of each
 * way's fingerprint, 0 when empty): a lookup reads that line and then only
 * the entry whose tag matches, two cache lines instead of eight. */
static apr_size_t tags_bytes(apr_uint32_t nsets)
{
    return (apr_size_t)nsets * MG_TABLE_WAYS * sizeof(apr_uint64_t);
}

apr_size_t mg_table_bytes_for(apr_uint32_t capacity, apr_size_t state_size)
{
    apr_uint32_t nsets = nsets_for(capacity);
    return header_bytes() + tags_bytes(nsets)
           + (apr_size_t)nsets * MG_TABLE_WAYS * entry_size_for(state_size);
}

apr_size_t mg_table_bytes(apr_uint32_t capacity)
{
    return mg_table_bytes_for(capacity, sizeof(mg_limit_state));
}

void mg_table_format_for(void *mem, apr_uint32_t capacity,
                         apr_size_t state_size)
{
    mg_table_header *hdr = mem;

    memset(mem, 0, mg_table_bytes_for(capacity, state_size));
    hdr->nsets = nsets_for(capacity);
    hdr->ways = MG_TABLE_WAYS;
    hdr->entry_size = entry_size_for(state_size);
    hdr->version = MG_TABLE_VERSION;
    hdr->magic = MG_TABLE_MAGIC;
}

void mg_table_format(void *mem, apr_uint32_t capacity)
{
    mg_table_format_for(mem, capacity, sizeof(mg_limit_state));
}

int mg_table_attach(mg_table *t, void *mem, apr_size_t size)
{
    mg_table_header *hdr = mem;

    if (size < header_bytes() || hdr->magic != MG_TABLE_MAGIC
        || hdr->version != MG_TABLE_VERSION || hdr->ways != MG_TABLE_WAYS
        || hdr->entry_size < sizeof(mg_table_entry)
        || hdr->entry_size % 8 != 0
        /* nsets * ways could wrap 32 bits; 0 sets would divide by zero */
        || hdr->nsets == 0
        || hdr->nsets > (size - header_bytes())
                        / (MG_TABLE_WAYS * (hdr->entry_size
                                            + sizeof(apr_uint64_t)))) {
        return 0;
    }
    t->hdr = hdr;
    t->tags = (apr_uint64_t *)((char *)mem + header_bytes());
    t->entries = (char *)t->tags + tags_bytes(hdr->nsets);
    t->entry_size = (apr_size_t)hdr->entry_size;
    t->state_size = t->entry_size - (sizeof(mg_table_entry)
                                     - sizeof(mg_limit_state));
    t->logs = NULL;
    t->sync = NULL;
    return 1;
}

typedef char mg_table_ways_exceed_layers
    [(MG_LIMIT_MAX_LAYERS < MG_TABLE_WAYS) ? 1 : -1];

/* ---- decisions --------------------------------------------------------- */

static int fp_equal(const mg_fingerprint *a, const mg_fingerprint *b)
{
    return a->hi == b->hi && a->lo == b->lo;
}

static int fp_empty(const mg_fingerprint *fp)
{
    return fp->hi == 0 && fp->lo == 0;
}

static mg_table_entry *entry_at(mg_table *t, apr_size_t i)
{
    return mg_table_entry_at(t, i);
}

static apr_uint32_t index_of(const mg_table *t, const mg_table_entry *e)
{
    return (apr_uint32_t)(((const char *)e - t->entries) / t->entry_size);
}

static apr_size_t set_of(mg_table *t, const mg_fingerprint *fp)
{
    return (apr_size_t)(fp->hi % t->hdr->nsets) * MG_TABLE_WAYS;
}

/* Tags: the low word of the entry's fingerprint, whose bit 0 every
 * fingerprint has set (mg_table_fingerprint*); that bit cleared marks an
 * exhausted counter.  So a lookup compares tags with bit 0 set, and the
 * choice of a victim learns which entries are exhausted from the tag line
 * it already reads. */
#define TAG_LIVE APR_UINT64_C(1)

static int tag_exhausted(apr_uint64_t tag)
{
    return !(tag & TAG_LIVE);
}

static void set_tag(mg_table *t, apr_size_t slot, const mg_fingerprint *fp,
                    int exhausted)
{
    t->tags[slot] = (fp->lo | TAG_LIVE) ^ (apr_uint64_t)(exhausted != 0);
}

/* The entry of `fp` and its index in *slot, or NULL. */
static mg_table_entry *find(mg_table *t, const mg_fingerprint *fp,
                            apr_size_t *slot)
{
    apr_size_t base = set_of(t, fp);
    const apr_uint64_t *tags = t->tags + base;
    apr_uint64_t want = fp->lo | TAG_LIVE;
    int i;

    for (i = 0; i < MG_TABLE_WAYS; i++) {
        if ((tags[i] | TAG_LIVE) == want) {
            mg_table_entry *e = entry_at(t, base + i);
            if (fp_equal(&e->fp, fp)) {
                *slot = base + i;
                return e;
            }
        }
    }
    return NULL;
}

static int is_claimed(mg_table_entry *e, mg_table_entry **claimed, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        if (claimed[i] == e) {
            return 1;
        }
    }
    return 0;
}

/* An entry for a counter not in the table, never one that a layer of the
 * same decision holds: empty, else expired, else the least recently used
 * partly used one, and only when every other entry of the set is
 * exhausted, the least recently used exhausted one (mg_table.h).  One pass
 * over the set. */
static mg_table_entry *claim(mg_table *t, const mg_fingerprint *fp,
                             apr_time_t now, mg_table_entry **held, int nheld,
                             apr_size_t *slot)
{
    apr_size_t base = set_of(t, fp);
    mg_table_entry *empty = NULL, *expired = NULL, *live = NULL;
    mg_table_entry *exhausted = NULL, *victim;
    int i;

    for (i = 0; i < MG_TABLE_WAYS; i++) {
        mg_table_entry *e = entry_at(t, base + i);
        if (is_claimed(e, held, nheld)) {
            continue;
        }
        if (fp_empty(&e->fp)) {
            empty = e;
            break;
        }
        if (e->expires <= now) {
            if (!expired) {
                expired = e;
            }
        }
        else if (tag_exhausted(t->tags[base + i])) {
            if (!exhausted || e->touched < exhausted->touched) {
                exhausted = e;
            }
        }
        else if (!live || e->touched < live->touched) {
            live = e;
        }
    }
    if (empty) {
        victim = empty;
    }
    else if (expired) {
        victim = expired;
        t->hdr->stats.evicted_expired++;
    }
    else if (live) {
        victim = live;
        t->hdr->stats.evicted_live++;
    }
    else {
        /* The other layers of this decision hold at most
         * MG_LIMIT_MAX_LAYERS - 1 < MG_TABLE_WAYS entries of the set (checked
         * at compile time above), so some entry is left here. */
        victim = exhausted;
        t->hdr->stats.evicted_exhausted++;
    }
    *slot = index_of(t, victim);
    memset(victim, 0, t->entry_size);
    victim->fp = *fp;
    set_tag(t, *slot, fp, 0);
    if (t->sync) {
        mg_sync_reset(t->sync, *slot);
    }
    t->hdr->stats.inserted++;
    return victim;
}

/* A state blob big enough for any algorithm's state. */
typedef union state_buf {
    mg_limit_state head;
    mg_limit_log_state log;
} state_buf;

static apr_status_t decide_duplicates(mg_table *t, const mg_layer *layers,
                                      int n, mg_now now, mg_decision *d);

apr_status_t mg_table_peek(mg_table *t, const mg_layer *layers, int n,
                           mg_now now, mg_decision *d)
{
    static const state_buf fresh;
    state_buf scratch;
    int i;

    if (n > MG_LIMIT_MAX_LAYERS) {
        return APR_ENOSPC;
    }
    d->nlayers = n;
    d->store_time = 0;
    for (i = 0; i < n; i++) {
        mg_table *tab = layers[i].spec->state_size <= t->state_size
                        ? t : t->logs;
        const mg_table_entry *e;
        apr_size_t slot;

        if (!tab || layers[i].spec->state_size > tab->state_size) {
            return APR_ENOSPC;
        }
        e = find(tab, &layers[i].fp, &slot);
        /* The next state goes to scratch: nothing is written back. */
        mg_limit_decide(layers[i].spec, e ? &e->state : &fresh.head,
                        mg_limit_clock(layers[i].spec, &now), 0,
                        &scratch.head, &d->layer[i]);
    }
    mg_limit_combine(layers, d);
    return APR_SUCCESS;
}

apr_status_t mg_table_decide(mg_table *t, const mg_layer *layers, int n,
                             mg_now now, mg_decision *d)
{
    static const state_buf fresh;
    mg_table *tab[MG_LIMIT_MAX_LAYERS];
    mg_table_entry *found[MG_LIMIT_MAX_LAYERS];
    apr_size_t slot[MG_LIMIT_MAX_LAYERS];
    state_buf next[MG_LIMIT_MAX_LAYERS];
    apr_time_t alg_now[MG_LIMIT_MAX_LAYERS];
    int i, j;

    if (n > MG_LIMIT_MAX_LAYERS) {
        return APR_ENOSPC;
    }
    for (i = 0; i < n; i++) {
        tab[i] = layers[i].spec->state_size <= t->state_size ? t : t->logs;
        if (!tab[i] || layers[i].spec->state_size > tab[i]->state_size) {
            return APR_ENOSPC;
        }
        for (j = 0; j < i; j++) {
            if (fp_equal(&layers[j].fp, &layers[i].fp)) {
                /* Rare (a limit repeated in the configuration), so out
                 * of this path, and before anything is decided. */
                return decide_duplicates(t, layers, n, now, d);
            }
        }
    }
    d->nlayers = n;
    d->store_time = 0;        /* the gateway's clock */
    for (i = 0; i < n; i++) {
        found[i] = find(tab[i], &layers[i].fp, &slot[i]);
        alg_now[i] = mg_limit_clock(layers[i].spec, &now);
        if (found[i] && tab[i]->sync) {
            /* What the other gateways used counts before this request. */
            apr_time_t exp = mg_sync_settle(tab[i]->sync, slot[i],
                                            layers[i].spec, now,
                                            &found[i]->state);
            if (exp) {
                found[i]->expires = now.mono + (exp - alg_now[i]);
            }
        }
        mg_limit_decide(layers[i].spec,
                        found[i] ? &found[i]->state : &fresh.head,
                        alg_now[i], layers[i].cost, &next[i].head,
                        &d->layer[i]);
    }
    mg_limit_combine(layers, d);
    t->hdr->stats.decisions++;
    if (!d->allowed) {
        /* Nothing is charged and no entry added, but every entry consulted
         * was used (issue 10: else a counter that keeps refusing becomes
         * the least recently used and is evicted, its client starting
         * again full), and those that refused are exhausted; one that
         * could have paid is not. */
        for (i = 0; i < n; i++) {
            if (found[i]) {
                found[i]->touched = now.mono;
                set_tag(tab[i], slot[i], &layers[i].fp, !d->layer[i].allowed);
            }
        }
        return APR_SUCCESS;
    }
    for (i = 0; i < n; i++) {
        mg_table_entry *e = found[i];
        const mg_limit_decision *ld = &d->layer[i];

        if (!ld->allowed) {
            /* A shadow layer that would refuse: it consumes nothing and
             * adds no entry; an entry it has is used, and exhausted. */
            if (e) {
                e->touched = now.mono;
                set_tag(tab[i], slot[i], &layers[i].fp, 1);
            }
            continue;
        }
        if (!e) {
            e = found[i] = claim(tab[i], &layers[i].fp, now.mono, found, n,
                                 &slot[i]);
        }
        memcpy(&e->state, &next[i], layers[i].spec->state_size);
        e->touched = now.mono;
        e->expires = now.mono + (ld->expires - alg_now[i]);
        /* Exhausted if what it kept cannot pay for another such request. */
        set_tag(tab[i], slot[i], &layers[i].fp,
                ld->remaining < layers[i].cost);
        if (tab[i]->sync) {
            mg_sync_commit(tab[i]->sync, slot[i], layers[i].spec, now,
                           layers[i].cost);
        }
    }
    return APR_SUCCESS;
}

/* Layers naming one counter more than once (mg_table.h): decided as one
 * layer per counter, enforced if any of its layers is, with the largest
 * of their costs; each layer then reports its counter's decision.  Out of
 * the common path: only a configuration that repeats a limit comes here. */
static apr_status_t decide_duplicates(mg_table *t, const mg_layer *layers,
                                      int n, mg_now now, mg_decision *d)
{
    mg_layer one[MG_LIMIT_MAX_LAYERS] = {{0}};
    int counter[MG_LIMIT_MAX_LAYERS];
    mg_decision once;
    apr_status_t rv;
    int i, j, m = 0;

    for (i = 0; i < n; i++) {
        for (j = 0; j < m; j++) {
            if (fp_equal(&one[j].fp, &layers[i].fp)) {
                break;
            }
        }
        if (j == m) {
            one[m++] = layers[i];
        }
        else {
            if (layers[i].cost > one[j].cost) {
                one[j].cost = layers[i].cost;
            }
            one[j].shadow = one[j].shadow && layers[i].shadow;
        }
        counter[i] = j;
    }
    /* No two of `one` name one counter: this does not come back here. */
    if ((rv = mg_table_decide(t, one, m, now, &once)) != APR_SUCCESS) {
        return rv;
    }
    /* Every enforced counter allowed exactly when every enforced layer
     * did: the same answer, with each layer's own index. */
    d->nlayers = n;
    d->store_time = 0;
    for (i = 0; i < n; i++) {
        d->layer[i] = once.layer[counter[i]];
    }
    mg_limit_combine(layers, d);
    return APR_SUCCESS;
}

apr_status_t mg_table_settle(mg_table *t, const mg_layer *layers,
                             const apr_int64_t *delta, int n, mg_now then,
                             mg_now now)
{
    mg_table_entry *held[MG_LIMIT_MAX_LAYERS];
    int i, nheld = 0;

    for (i = 0; i < n && i < MG_LIMIT_MAX_LAYERS; i++) {
        const mg_limit_spec *spec = layers[i].spec;
        mg_table *tab = spec->state_size <= t->state_size ? t : t->logs;
        apr_time_t alg_now = mg_limit_clock(spec, &now), exp;
        mg_table_entry *e;
        apr_size_t slot;

        if (delta[i] == 0) {
            continue;
        }
        if (!tab || spec->state_size > tab->state_size) {
            return APR_ENOSPC;
        }
        e = find(tab, &layers[i].fp, &slot);
        if (e && tab->sync) {
            apr_time_t owed = mg_sync_settle(tab->sync, (apr_uint32_t)slot,
                                             spec, now, &e->state);
            if (owed) {
                e->expires = now.mono + (owed - alg_now);
            }
        }
        if (delta[i] < 0) {
            if (!e) {
                continue;
            }
            exp = mg_limit_refund(spec, &e->state, mg_limit_clock(spec, &then),
                                  alg_now, (apr_uint64_t)-delta[i]);
            if (tab->sync) {
                /* Or the syncer would still push them to the others. */
                mg_sync_refund(tab->sync, (apr_uint32_t)slot, then,
                               (apr_uint64_t)-delta[i]);
            }
        }
        else {
            if (!e) {
                e = claim(tab, &layers[i].fp, now.mono, held, nheld, &slot);
            }
            exp = mg_limit_charge(spec, &e->state, alg_now,
                                  (apr_uint64_t)delta[i]);
            if (tab->sync) {
                mg_sync_commit(tab->sync, (apr_uint32_t)slot, spec, now,
                               (apr_uint64_t)delta[i]);
            }
        }
        held[nheld++] = e;
        e->touched = now.mono;
        e->expires = now.mono + (exp - alg_now);
        /* A refund may leave room again; a charge may exhaust it. */
        {
            mg_limit_decision d;
            state_buf probe;
            mg_limit_decide(spec, &e->state, alg_now, layers[i].cost,
                            &probe.head, &d);
            set_tag(tab, slot, &layers[i].fp, !d.allowed);
        }
    }
    return APR_SUCCESS;
}
