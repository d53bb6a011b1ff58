/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_store.h -- the counter-store provider interface.
 *
 * A counter store keeps the state of every limit counter and makes the
 * multi-layer decision atomically: all layers of a request are checked and,
 * only if all allow, all are committed.  The core module carries the "shm"
 * store (one host, shared memory); plugins register others ("redis") with
 *
 *     ap_register_provider(p, MG_STORE_PROVIDER_GROUP, "redis",
 *                          MG_STORE_PROVIDER_VERSION, &provider);
 *
 * and `ModelGateStore NAME [ARGS]` selects one.  The shape follows
 * ap_socache.h: create() parses the argument at configuration time,
 * init() makes shared resources in post_config, child_init() attaches in
 * each child, decide() runs per request in any thread.
 *
 * MG_STORE_PROVIDER_VERSION changes whenever this struct's layout or the
 * meaning of a member changes; a plugin built against another version is
 * not found by the lookup and the configuration says so.
 */
#ifndef MG_STORE_H
#define MG_STORE_H

#include <httpd.h>
#include <http_config.h>
#include "mg_limit.h"
#include "mg_sync.h"

#define MG_STORE_PROVIDER_GROUP   "modelgate_store"
#define MG_STORE_PROVIDER_VERSION "7"   /* 3: info.evicted_exhausted;
                                           4: settle;
                                           5: mg_decision.store_time;
                                           6: peek;
                                           7: info's round trips, breaker,
                                              sync_listed and sync_lag */

/** A store's private state; each provider defines it. */
typedef struct mg_store_instance mg_store_instance;

/** What a store tells about itself (status pages, metrics, docs). */
typedef struct mg_store_info {
    apr_uint64_t capacity;        /**< counters it can hold; 0: unbounded */
    apr_uint64_t bytes;           /**< memory it reserved */
    apr_uint64_t decisions;
    apr_uint64_t inserted;
    apr_uint64_t evicted_expired; /**< forgotten when their state was fresh */
    apr_uint64_t evicted_live;    /**< forgotten while partly used: the
                                       client gets back what it had used */
    apr_uint64_t evicted_exhausted; /**< forgotten while refusing, the last
                                       resort of a table too small: the
                                       client starts again full */
    /* local-sync (mg_sync.h); 0 in stores that do not sync */
    apr_uint64_t sync_exchanges;
    apr_uint64_t sync_failures;
    apr_uint64_t sync_units_pushed;
    apr_uint64_t sync_units_owed; /**< the others' units charged here */
    apr_uint64_t sync_listed;     /**< counters listed for the next
                                       exchange (pending units, or a live
                                       epoch whose total may change) */
    apr_interval_time_t sync_lag; /**< how long this gateway has been out
                                       of step: the time since an exchange
                                       last succeeded or a tick found
                                       nothing to exchange (since the
                                       start when neither happened yet) */
    /* A store that talks to a server (remote = 1; all 0 otherwise),
     * summed over every process of the gateway.  A round trip is one
     * operation the breaker let through: a decision, a settle, a peek, a
     * local-sync exchange (which may send several batches). */
    apr_uint32_t remote;
    apr_uint64_t round_trips;
    apr_uint64_t errors;          /**< round trips that failed: no
                                       connection, a timeout, an error or
                                       a malformed answer */
    apr_uint64_t fast_failures;   /**< operations the breaker failed
                                       without trying */
    apr_uint64_t breaker_opened;  /**< outages begun (a process's breaker
                                       closed -> open) */
    apr_uint32_t breaker_processes[3]; /**< live processes whose breaker is
                                       closed, open, half open */
} mg_store_info;

typedef struct mg_store_provider {
    /** Provider name, as in ModelGateStore. */
    const char *name;

    /**
     * Parse the arguments of ModelGateStore (everything after the name,
     * possibly empty).  Runs while the configuration is read, in the parent.
     * @param inst set to a new instance allocated from `p`
     * @return NULL, or an error message naming the bad argument
     */
    const char *(*create)(mg_store_instance **inst, const char *args,
                          apr_pool_t *ptemp, apr_pool_t *p);

    /**
     * Make shared resources (memory, mutexes).  Runs in the parent in
     * post_config on every start and restart, never in the dry run.  A
     * store whose counters must survive a graceful restart keeps them
     * outside `pconf` (see the shm store).
     */
    apr_status_t (*init)(mg_store_instance *inst, server_rec *s,
                         apr_pool_t *pconf, apr_pool_t *ptemp);

    /** Attach in a new child (reopen mutexes; never connect in init). */
    apr_status_t (*child_init)(mg_store_instance *inst, server_rec *s,
                               apr_pool_t *pchild);

    /**
     * The atomic decision over `n` layers (at most MG_LIMIT_MAX_LAYERS).
     * Safe to call from any thread of any child.  `now` holds the
     * gateway's monotonic and wall clocks (mg_clock.h); a store shared by
     * several hosts uses a clock of its own (Redis TIME) instead, and says
     * when in d->store_time (0: at `now`).  On error `d` is undefined and
     * the caller applies the failure policy.
     */
    apr_status_t (*decide)(mg_store_instance *inst, server_rec *s,
                           const mg_layer *layers, int n, mg_now now,
                           mg_decision *d);

    /** Fill `info`; cheap enough for a metrics scrape. */
    void (*info)(mg_store_instance *inst, mg_store_info *info);

    /**
     * Local-sync (mg_sync.h): NULL in stores that keep no local counters,
     * and in a store made without local-sync bookkeeping it collects
     * nothing.  If an exchange is due (once per `interval` for all the
     * processes of the gateway), take up to `max` counters into `items`.
     * Any thread of any child may call it.
     * @return the number of items; 0 when none or not due
     */
    apr_size_t (*sync_collect)(mg_store_instance *inst, server_rec *s,
                               mg_now now, apr_interval_time_t interval,
                               mg_sync_item *items, apr_size_t max);

    /** Give back what sync_collect took, with the totals the exchange
     *  answered (`ok`) or its failure (the units stay pending). */
    void (*sync_apply)(mg_store_instance *inst, server_rec *s,
                       const mg_sync_item *items, apr_size_t n, int ok);

    /**
     * Settle an admitted request to what it used (token limits): layer
     * i's counter is charged delta[i] more units, or given -delta[i] back,
     * the units having been charged by the decision at `then`: its `now`,
     * or in both clocks its store_time when it had one, so a store on its
     * own clock knows which window counted them (mg_table_settle says how
     * each algorithm takes them).  Layers with a
     * delta of 0 are not touched.  Safe from any thread of any child.
     * With n == 0 it only answers whether this instance can settle
     * (APR_SUCCESS, else APR_ENOTIMPL), and may be called as soon as
     * create() returned; the configuration refuses token limits with a
     * store that cannot.  NULL: never.
     */
    apr_status_t (*settle)(mg_store_instance *inst, server_rec *s,
                           const mg_layer *layers, const apr_int64_t *delta,
                           int n, mg_now then, mg_now now);

    /**
     * What decide() would answer now for these layers at cost 0, changing
     * nothing: no counter created, charged or kept alive (the quota
     * endpoint, where callers read their own limits).  `d` as decide()
     * fills it; each layer's `remaining` is what it has left now.  Safe
     * from any thread of any child.  NULL: this store cannot (the quota
     * endpoint says so).
     */
    apr_status_t (*peek)(mg_store_instance *inst, server_rec *s,
                         const mg_layer *layers, int n, mg_now now,
                         mg_decision *d);
} mg_store_provider;

#endif /* MG_STORE_H */
