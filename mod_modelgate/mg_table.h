/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_table.h -- a fixed-size table of limit counters in one memory region.
 *
 * The region is shared memory in the gateway and a plain buffer in the unit
 * tests: the table holds offsets-free, pointer-free records only, so any
 * process may map it anywhere.  It never grows.  A counter is found by a
 * 128-bit fingerprint of its key and its limit, in a set of MG_TABLE_WAYS
 * entries chosen by the fingerprint (set-associative, like a CPU cache).
 *
 * Eviction, when a new counter needs an entry in a full set, takes the
 * first of, in this order:
 *
 *   1. an empty entry, else an expired one: its state equals a fresh one
 *      (`expires`: a full bucket, a window that has ended), so forgetting
 *      it changes no decision (`evicted_expired`);
 *   2. the least recently used of the entries whose counter would still
 *      admit a request like its last one (partly used): forgetting one
 *      gives its client back at most what it had used (`evicted_live`);
 *   3. only then, the least recently used of the entries whose counter
 *      refuses (an exhausted window, an empty bucket or one in debt):
 *      forgetting one turns refusals into admissions, a client over its
 *      limit starting again full (`evicted_exhausted`; the store reports
 *      it, see mod_modelgate_store_shm.c).
 *
 * "Used" means consulted by a decision, admitting or refusing: a counter
 * that keeps being refused is in use, and stays.  The set's line of tags
 * tells which entries are exhausted (see mg_table), so choosing a victim
 * reads nothing beyond the set it examines.  A counter that is still in
 * the table is never confused with another.
 *
 * The table does no locking: the caller (the store) serialises access.
 */
#ifndef MG_TABLE_H
#define MG_TABLE_H

#include <apr.h>
#include <apr_time.h>
#include "mg_limit.h"

#define MG_TABLE_WAYS 8
#define MG_TABLE_MAGIC 0x4d475442u   /* "MGTB" */
/** Changes whenever the layout of the region changes. */
#define MG_TABLE_VERSION 4u

/**
 * An entry: 32 bytes of bookkeeping, then the counter's state.  In the
 * standard table the state is one mg_limit_state (64 bytes an entry); a
 * table for sliding logs has larger entries (hdr->entry_size), whose state
 * continues past this struct.
 */
typedef struct mg_table_entry {
    mg_fingerprint fp;        /**< {0, 0}: empty */
    apr_time_t touched;       /**< last decision that consulted it, admitted
                                   or refused (monotonic) */
    apr_time_t expires;       /**< state equals a fresh one from then on
                                   (monotonic) */
    mg_limit_state state;
} mg_table_entry;

/** Counters the table keeps about itself, read by status and metrics. */
typedef struct mg_table_stats {
    apr_uint64_t decisions;
    apr_uint64_t inserted;
    apr_uint64_t evicted_expired;
    apr_uint64_t evicted_live;       /**< partly used: tier 2 above */
    apr_uint64_t evicted_exhausted;  /**< refusing: tier 3, the last resort */
} mg_table_stats;

typedef struct mg_table_header {
    apr_uint32_t magic;
    apr_uint32_t version;
    apr_uint32_t nsets;
    apr_uint32_t ways;
    apr_uint64_t entry_size;
    mg_table_stats stats;
} mg_table_header;

/** A process's handle on a table region. */
typedef struct mg_table {
    mg_table_header *hdr;
    apr_uint64_t *tags;       /**< per way: fp.lo of its entry, 0 if empty;
                                   bit 0, which every fingerprint has set,
                                   cleared while its counter is exhausted
                                   as of the last decision that consulted
                                   it (it refused, or left less than that
                                   request's cost) */
    char *entries;
    apr_size_t entry_size;
    apr_size_t state_size;    /**< the largest state an entry holds */
    struct mg_table *logs;    /**< where counters with larger states go
                                   (sliding logs); NULL if none */
    struct mg_sync *sync;     /**< local-sync bookkeeping (mg_sync.h);
                                   NULL if the store does not sync */
} mg_table;

/** Entries in the table. */
static APR_INLINE apr_uint32_t mg_table_slots(const mg_table *t)
{
    return t->hdr->nsets * MG_TABLE_WAYS;
}

/** The entry at `index` (0 to mg_table_slots(t) - 1). */
static APR_INLINE mg_table_entry *mg_table_entry_at(const mg_table *t,
                                                    apr_size_t index)
{
    return (mg_table_entry *)(t->entries + index * t->entry_size);
}

/** Bytes a table of at least `capacity` counters needs. */
apr_size_t mg_table_bytes(apr_uint32_t capacity);

/** The same, for states of up to `state_size` bytes. */
apr_size_t mg_table_bytes_for(apr_uint32_t capacity, apr_size_t state_size);

/** Capacity rounded up to whole sets. */
apr_uint32_t mg_table_capacity(apr_uint32_t capacity);

/** Format `mem` (mg_table_bytes(capacity) bytes) as an empty table. */
void mg_table_format(void *mem, apr_uint32_t capacity);

/** The same, for states of up to `state_size` bytes. */
void mg_table_format_for(void *mem, apr_uint32_t capacity,
                         apr_size_t state_size);

/**
 * Attach to a formatted region.
 * @return 1, or 0 if the region does not hold a table of this layout.
 */
int mg_table_attach(mg_table *t, void *mem, apr_size_t size);

/** The fingerprint of a counter key under a limit.  The limit's numbers
 *  are part of it, so a changed limit starts from fresh counters instead of
 *  reading state kept in another scale. */
mg_fingerprint mg_table_fingerprint(const char *key, apr_size_t len,
                                    const mg_limit_spec *spec);

/** The fingerprint of one subject's counter (a key id, a tenant, an
 *  address) under a limit whose own part, `base` (its scope, name and
 *  numbers through mg_table_fingerprint), was computed once: per request
 *  only the subject is hashed. */
mg_fingerprint mg_table_fingerprint_subject(const mg_fingerprint *base,
                                            const char *subject,
                                            apr_size_t len);

/** The subject's own part of mg_table_fingerprint_subject(), for subjects
 *  known before any request (a key's id, tenant and tier): made once, it
 *  leaves two mixes per layer and request. */
mg_fingerprint mg_table_subject_hash(const char *subject, apr_size_t len);

/** mg_table_fingerprint_subject() from a subject's mg_table_subject_hash():
 *  the same fingerprint. */
mg_fingerprint mg_table_fingerprint_hashed(const mg_fingerprint *base,
                                           const mg_fingerprint *subject);

/**
 * Check every layer and, only if all enforced layers allow, commit every
 * layer that allowed: one atomic decision when the caller holds the store's
 * lock.  A rejected request consumes from no layer and adds no entry, but
 * marks every entry it consulted as used (see eviction above); a shadow
 * layer that would reject consumes nothing.  Layers whose state is larger
 * than t's go to t->logs.
 *
 * Layers naming the same counter (equal fingerprints, which
 * mg_table_fingerprint* give only to one scope, name, numbers and subject)
 * are one counter: it holds one entry, is decided once and charged at most
 * once, with the largest of their costs, and each of those layers reports
 * that decision (as enforced if any of them is).  Such duplicates come from
 * the configuration: limits accumulate down the location tree, and "limits
 * of one name and numbers share counters wherever used" (mg_policy.h), so
 * the same limit declared at two levels that both apply (server and
 * location, nested locations, a location and its .htaccess) is named twice
 * by one request.  It is still one limit: charging it once per declaration
 * would divide its quota by the number of places that repeat it.  Every
 * layer of a request has the same cost (mod_modelgate_layers.c), so this
 * is the request's cost, once; the largest is what a caller with unequal
 * costs gets, never less than any of them asked.
 *
 * @return APR_SUCCESS, or APR_ENOSPC if a layer's state fits no table (the
 *         decision is then not made)
 */
apr_status_t mg_table_decide(mg_table *t, const mg_layer *layers, int n,
                             mg_now now, mg_decision *d);

/**
 * What a decision of cost 0 would answer now, changing nothing: no entry
 * added, used, charged or marked, no statistic counted (a caller reading
 * its own limits must not keep its counters alive or move them).  Each
 * layer is read alone (duplicates read the same entry).  With local-sync
 * bookkeeping, units owed by other gateways are not charged first: the
 * next decision does that.  Call with the store's lock held.
 * @return APR_SUCCESS, or APR_ENOSPC if a layer's state fits no table
 */
apr_status_t mg_table_peek(mg_table *t, const mg_layer *layers, int n,
                           mg_now now, mg_decision *d);

/**
 * Settle the counters of an admitted request to what it turned out to
 * use: layer i's counter is charged delta[i] more units (mg_limit_charge:
 * into debt where the algorithm has it) or given -delta[i] back
 * (mg_limit_refund, for units charged at `then`, the decision's time).
 * Layers with a delta of 0 are not touched; shadow layers are settled as
 * they were charged.  A counter no longer in the table has nothing to give
 * back and is not added for a refund; for a charge it is added.  With
 * local-sync bookkeeping, charges are pending for the other gateways like
 * any admission; refunds stay local (the others keep counting the
 * reservation: over, never under).  One atomic step when the caller holds
 * the store's lock.
 * @return APR_SUCCESS, or APR_ENOSPC if a layer's state fits no table
 */
apr_status_t mg_table_settle(mg_table *t, const mg_layer *layers,
                             const apr_int64_t *delta, int n, mg_now then,
                             mg_now now);

#endif /* MG_TABLE_H */
