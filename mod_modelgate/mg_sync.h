/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_sync.h -- local-sync bookkeeping: counters decided in a local table
 * (mg_table.h) and reconciled with the other gateways in batches.
 *
 * Each gateway decides on its own table, as the shm store does, and keeps
 * beside every entry a slot (this file): the units it consumed since it
 * last told the others (`pending`), and the others' units it has learnt of
 * but not yet charged (`owed`).  Every sync interval one thread of the
 * gateway collects the pending units of every listed counter, adds them to
 * a global total per counter and epoch (Redis INCRBY in the redis store),
 * and applies the totals it gets back: whatever part of a total is neither
 * its own nor already known is owed, and the counter's next decision
 * charges it (mg_limit_charge) before deciding.  Charging is lazy because
 * only a decision knows the counter's limit; a counter nobody asks about
 * needs no charge.
 *
 * Epochs.  A total counts one epoch of a counter: the limit's window for
 * window algorithms (calendar ones included), the time a bucket takes to
 * fill (at least a second) for buckets and GCRA, the window for logs.  A
 * gateway that starts counting mid-epoch so learns what the others used in
 * it, and no more than one epoch of the past.  Epochs are on the wall
 * clock, which gateways share to NTP precision.
 *
 * The bound.  With G gateways, a sync interval S and an exchange taking at
 * most L, a gateway learns of another's admission at most D = 2S + L after
 * it (the other pushes within S + L, this one pulls within S more).  In any
 * window a limit of quota Q admits at most
 *
 *     Q + (G - 1) * min(Q, A(D))
 *
 * units in total, where A(D) is what one gateway admits of that counter in
 * D: each other gateway can overrun only by what it admitted on a view that
 * lacked the last D of everyone's traffic, and never by more than its own
 * full allowance Q.  A burst that hits every gateway inside one interval
 * gets G * Q at worst; steady traffic at R units/s per gateway overruns by
 * (G - 1) * R * D.  While the exchange fails, every gateway enforces its
 * own full allowance (the bound is G * Q) and keeps its pending units,
 * which it pushes when the exchange works again.
 *
 * Approximations, all toward admitting less: owed units are charged at the
 * decision after they are learnt, not when they were admitted (a bucket
 * refills from then); units pending when an epoch ends are pushed into the
 * next one.  Units are lost, toward admitting more, only when an entry is
 * evicted with units pending or when the process doing an exchange dies
 * during it.
 *
 * Nothing here locks: the store holds its lock around every call.
 */
#ifndef MG_SYNC_H
#define MG_SYNC_H

#include <apr.h>
#include <apr_time.h>
#include "mg_limit.h"

struct mg_table;

#define MG_SYNC_MAGIC 0x4d475359u   /* "MGSY" */

/** The bookkeeping beside one table entry (same index). */
typedef struct mg_sync_slot {
    apr_int64_t pending;      /**< units admitted here, not yet pushed;
                                   negative: units given back here
                                   (mg_sync_refund) after they were
                                   pushed into the current epoch, to take
                                   off its total; never below -pushed */
    apr_uint64_t pushed;      /**< units pushed into the current epoch */
    apr_uint64_t remote;      /**< others' units of the epoch, known */
    apr_uint64_t owed;        /**< of those, not yet charged */
    apr_time_t epoch_start;   /**< wall clock; 0: no epoch yet */
    apr_time_t epoch_end;
    apr_uint32_t listed;      /**< 1 while in the list of counters to sync */
    apr_uint32_t unused;
} mg_sync_slot;

typedef struct mg_sync_header {
    apr_uint32_t magic;
    apr_uint32_t nslots;
    apr_uint32_t nlisted;
    apr_uint32_t cursor;      /**< where the next collect starts */
    apr_time_t next_exchange; /**< monotonic; see mg_sync_due */
    apr_uint64_t exchanges;
    apr_uint64_t failures;
    apr_uint64_t units_pushed;
    apr_uint64_t units_owed;
} mg_sync_header;

/** A process's handle on a table's sync area. */
typedef struct mg_sync {
    mg_sync_header *hdr;
    mg_sync_slot *slots;
    apr_uint32_t *list;       /**< indexes of listed slots, nlisted of them */
} mg_sync;

/** One counter in an exchange: what is pushed and what comes back. */
typedef struct mg_sync_item {
    mg_fingerprint fp;
    apr_uint32_t table;       /**< which of the store's tables (its own
                                   numbering) */
    apr_uint32_t index;       /**< the entry */
    apr_int64_t units;        /**< pushed: pending units (negative: taken
                                   off the total) */
    apr_time_t epoch_start;   /**< names the epoch's total */
    apr_int64_t ttl_ms;       /**< how long the total must be kept */
    apr_uint64_t total;       /**< answered: the epoch's total, all
                                   gateways, this push included */
} mg_sync_item;

/** Bytes a sync area for `nslots` entries needs. */
apr_size_t mg_sync_bytes(apr_uint32_t nslots);

/** Format `mem` (mg_sync_bytes(nslots) bytes) as an empty area. */
void mg_sync_format(void *mem, apr_uint32_t nslots);

/** Attach to a formatted area and give it to the table `t`, whose entries
 *  it must match in number.  @return 1, or 0 if it does not. */
int mg_sync_attach(mg_sync *s, struct mg_table *t, void *mem,
                   apr_size_t size);

/* ---- called by mg_table_decide ------------------------------------------ */

/** A new counter took entry `index`: its slot starts empty. */
void mg_sync_reset(mg_sync *s, apr_uint32_t index);

/** Before deciding on an existing entry: move its slot to the current
 *  epoch and charge what is owed to `state`.
 *  @return the state's new expiry (algorithm clock), or 0 if unchanged */
apr_time_t mg_sync_settle(mg_sync *s, apr_uint32_t index,
                          const mg_limit_spec *spec, mg_now now,
                          mg_limit_state *state);

/** After committing `cost` units to entry `index`: they are pending. */
void mg_sync_commit(mg_sync *s, apr_uint32_t index,
                    const mg_limit_spec *spec, mg_now now,
                    apr_uint64_t cost);

/** `units` of entry `index`, charged at `then`, were given back (a
 *  refund: a cached answer, a token reservation settled lower).  Units
 *  still pending are simply not pushed; units already pushed into the
 *  current epoch are taken off its total by the next exchange, down to
 *  what this gateway pushed there.  Units charged in an earlier epoch
 *  than the slot's stay in that epoch's total.  A gateway that already
 *  charged them keeps them charged: toward admitting less. */
void mg_sync_refund(mg_sync *s, apr_uint32_t index, mg_now then,
                    apr_uint64_t units);

/* ---- called by the store's syncer ---------------------------------------- */

/**
 * Is an exchange due?  The first caller at or after the due time gets 1
 * and the next one is due `interval` later; every other caller gets 0.
 * Several processes may tick; one exchanges per interval.
 */
int mg_sync_due(mg_sync *s, apr_time_t now_mono,
                apr_interval_time_t interval);

/**
 * Take up to `max` listed counters of table `t` into `items` (numbered
 * `table_no`), moving their pending units to `pushed`.  Counters with
 * nothing pending whose state is fresh again leave the list.  A counter
 * with nothing pending is still collected while it lives: its total tells
 * what the others did.  Starts where the last call stopped, so a list
 * longer than `max` is served in turn.
 * @return the number of items
 */
apr_size_t mg_sync_collect(struct mg_table *t, apr_uint32_t table_no,
                           mg_now now, apr_interval_time_t interval,
                           mg_sync_item *items, apr_size_t max);

/**
 * Take back the totals of an exchange (`ok`), or its failure (!`ok`: the
 * units become pending again).  Items of table_no other than `table_no`
 * are skipped, and so are counters whose entry or epoch changed meanwhile.
 */
void mg_sync_apply(struct mg_table *t, apr_uint32_t table_no,
                   const mg_sync_item *items, apr_size_t n, int ok);

#endif /* MG_SYNC_H */
