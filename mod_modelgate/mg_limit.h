/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_limit.h -- rate limit algorithms as pure functions.
 *
 * An algorithm sees a limit (what is allowed), the state one counter keeps
 * (a fixed-size blob, stored by whichever counter store is configured), the
 * time and the cost of the request.  It computes the decision and the state
 * that must be stored if the caller commits.  It never reads a clock, never
 * allocates and never locks: the store serialises access and the caller
 * passes the time, so unit tests drive every algorithm with a fake clock.
 *
 * All times are apr_time_t microseconds.  All arithmetic is integer and
 * exact: no rounding ever drifts, so what an algorithm admits is exactly
 * what its definition says (a token bucket: its burst at once, then one
 * unit each window/quota), and a store that serialises decisions admits
 * no more than that under any concurrency.
 */
#ifndef MG_LIMIT_H
#define MG_LIMIT_H

#include <apr.h>
#include <apr_time.h>

/** The algorithms.  The numeric values are stored in shared memory: append. */
typedef enum {
    MG_ALGO_TOKEN_BUCKET = 1
} mg_limit_algo;

/** Largest value any counter, quota or burst may take.  Keeps every
 *  intermediate product inside 64 bits (see mg_limit_spec_init). */
#define MG_LIMIT_MAX_QUOTA   APR_UINT64_C(1000000000000)   /* 1e12 */
/** Longest window: 366 days. */
#define MG_LIMIT_MAX_WINDOW  (APR_INT64_C(366) * 86400 * APR_USEC_PER_SEC)

/**
 * A limit: `quota` units per `window`, with a bucket of `burst` units.
 * Build it with mg_limit_spec_init(), which derives the scaled fields.
 */
typedef struct mg_limit_spec {
    mg_limit_algo algo;
    apr_uint64_t quota;       /**< units per window (RateLimit-Policy q) */
    apr_int64_t window;       /**< window, microseconds (RateLimit-Policy w) */
    apr_uint64_t burst;       /**< bucket capacity, units; >= 1 */
    /* derived: one unit is `unit_scale` sub-units and the bucket gains
     * `refill_per_us` sub-units every microsecond.  With g = gcd(quota,
     * window): unit_scale = window / g, refill_per_us = quota / g, so the
     * refill is exact to the microsecond with integers only. */
    apr_uint64_t unit_scale;
    apr_uint64_t refill_per_us;
    apr_uint64_t capacity;    /**< burst * unit_scale, sub-units */
} mg_limit_spec;

/**
 * The stored state of one counter.  Fixed size; zero-filled means "never
 * seen", which every algorithm treats as a full allowance.
 */
typedef struct mg_limit_state {
    apr_uint64_t level;       /**< token bucket: sub-units in the bucket */
    apr_int64_t stamp;        /**< time of the last update */
    apr_uint32_t flags;       /**< MG_LIMIT_STATE_* */
    apr_uint32_t reserved;
} mg_limit_state;

#define MG_LIMIT_STATE_VALID 0x1u

/** What an algorithm answers for one limit. */
typedef struct mg_limit_decision {
    int allowed;              /**< 1 if the cost fits now */
    apr_uint64_t limit;       /**< the quota (q) */
    apr_uint64_t remaining;   /**< whole units left after this request
                                   (before it, when rejected) */
    apr_interval_time_t reset;       /**< until the allowance is whole again */
    apr_interval_time_t retry_after; /**< until this cost would fit; 0 if allowed */
    apr_time_t expires;       /**< from then on the state equals a fresh one
                                   and the store may forget it */
} mg_limit_decision;

/**
 * Fill the derived fields of a limit.
 * @return NULL, or a message saying why the numbers cannot be used.
 */
const char *mg_limit_spec_init(mg_limit_spec *spec, mg_limit_algo algo,
                               apr_uint64_t quota, apr_int64_t window,
                               apr_uint64_t burst);

/**
 * Decide whether `cost` units fit under `spec` at `now`, given `state`.
 * Writes the decision to `d` and, in every case, the state to store if the
 * caller commits to `next` (which may alias `state` only when the caller
 * commits unconditionally).  A rejected request leaves the allowance as it
 * was: committing `next` after a rejection consumes nothing.
 * Time going backwards is treated as no time passing.
 */
void mg_limit_decide(const mg_limit_spec *spec, const mg_limit_state *state,
                     apr_time_t now, apr_uint64_t cost,
                     mg_limit_state *next, mg_limit_decision *d);

/** Most limit layers one request may be checked against: one of each
 *  kind (global, tier, tenant, key, route, model, client IP). */
#define MG_LIMIT_MAX_LAYERS 7

/** Identity of a counter in a store: 128 bits of hash over its key and its
 *  limit (see mg_table_fingerprint). */
typedef struct mg_fingerprint {
    apr_uint64_t hi, lo;
} mg_fingerprint;

/** One limit layer of a request: which counter, under which limit, and how
 *  much this request costs it. */
typedef struct mg_layer {
    const char *policy;       /**< policy name, shown in RateLimit headers */
    const mg_limit_spec *spec;
    const char *key;          /**< counter key, e.g. "key:demo" */
    mg_fingerprint fp;        /**< counter identity for fixed-size stores */
    apr_uint64_t cost;        /**< units this request consumes */
} mg_layer;

/** The combined decision over every layer that applies to a request. */
typedef struct mg_decision {
    int allowed;              /**< 1 if every layer allowed */
    int nlayers;
    int binding;              /**< the layer whose numbers the client is
                                   told in RateLimit and Retry-After: the
                                   rejecting layer with the longest wait, or,
                                   when all allow, the one nearest to its
                                   limit; -1 with no layers */
    mg_limit_decision layer[MG_LIMIT_MAX_LAYERS];
} mg_decision;

/**
 * Fill `allowed` and `binding` from the per-layer decisions in d->layer.
 */
void mg_limit_combine(mg_decision *d);

/** Token bucket; mg_limit_decide dispatches here. */
void mg_limit_token_bucket(const mg_limit_spec *spec,
                           const mg_limit_state *state, apr_time_t now,
                           apr_uint64_t cost, mg_limit_state *next,
                           mg_limit_decision *d);

#endif /* MG_LIMIT_H */
