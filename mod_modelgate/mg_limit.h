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
    MG_ALGO_TOKEN_BUCKET = 1,   /**< burst at once, then quota/window */
    MG_ALGO_LEAKY_BUCKET = 2,   /**< a meter, or with max_delay a queue that
                                     releases requests at quota/window */
    MG_ALGO_FIXED_WINDOW = 3,   /**< quota per aligned window (or calendar
                                     day/month) */
    MG_ALGO_SLIDING_LOG = 4,    /**< quota in any window-long interval, exact,
                                     one timestamp per unit */
    MG_ALGO_SLIDING_WINDOW = 5, /**< sliding window counter: the previous
                                     window weighted by its overlap */
    MG_ALGO_GCRA = 6            /**< generic cell rate algorithm: the token
                                     bucket's admissions, kept as a
                                     theoretical arrival time */
} mg_limit_algo;

/** Calendar alignment of window algorithms. */
typedef enum {
    MG_CAL_NONE = 0,            /**< windows aligned to multiples of their
                                     length since the epoch (UTC) */
    MG_CAL_DAY = 1,             /**< calendar days in the limit's zone */
    MG_CAL_MONTH = 2            /**< calendar months in the limit's zone */
} mg_limit_calendar;

/** Largest value any counter, quota or burst may take.  Keeps every
 *  intermediate product inside 64 bits (see mg_limit_spec_init). */
#define MG_LIMIT_MAX_QUOTA   APR_UINT64_C(1000000000000)   /* 1e12 */
/** Largest quota of a fixed window: it scales nothing, and 2^53 is exact
 *  in the doubles of a Redis script too (budgets in nano-units count up
 *  to about nine million of a currency). */
#define MG_LIMIT_MAX_WINDOW_QUOTA (APR_UINT64_C(1) << 53)
/** Longest window: 366 days. */
#define MG_LIMIT_MAX_WINDOW  (APR_INT64_C(366) * 86400 * APR_USEC_PER_SEC)
/** Largest quota of a sliding log: it keeps one timestamp per unit. */
#define MG_LIMIT_LOG_MAX     256

/**
 * A limit: `quota` units per `window`, with a bucket of `burst` units.
 * Build it with mg_limit_spec_init(), which derives the scaled fields.
 */
typedef struct mg_limit_spec {
    mg_limit_algo algo;
    apr_uint64_t quota;       /**< units per window (RateLimit-Policy q) */
    apr_int64_t window;       /**< window, microseconds (RateLimit-Policy w);
                                   for calendar months the longest, 31 days */
    apr_uint64_t burst;       /**< bucket capacity, units; >= 1 (buckets and
                                   GCRA; window algorithms use the quota) */
    apr_interval_time_t max_delay; /**< leaky bucket: longest a request may
                                   be held to conform; 0 makes it a meter */
    mg_limit_calendar calendar;    /**< fixed window: align to days/months */
    apr_int32_t utc_offset;   /**< seconds east of UTC of the calendar */
    const struct mg_zone *zone; /**< a named zone (mg_zone.h) instead of
                                   utc_offset; NULL: the fixed offset */
    /* derived: one unit is `unit_scale` sub-units and the bucket gains
     * `refill_per_us` sub-units every microsecond.  With g = gcd(quota,
     * window): unit_scale = window / g, refill_per_us = quota / g, so the
     * refill is exact to the microsecond with integers only. */
    apr_uint64_t unit_scale;
    apr_uint64_t refill_per_us;
    apr_uint64_t capacity;    /**< burst * unit_scale, sub-units */
    apr_size_t state_size;    /**< bytes of state a counter needs */
    int wall_clock;           /**< 1: decide on the wall clock (aligned
                                   windows); 0: on the monotonic clock */
} mg_limit_spec;

/**
 * The stored state of one counter.  Zero-filled means "never seen", which
 * every algorithm treats as a full allowance.  A sliding log keeps this
 * head followed by its timestamps (mg_limit_log_state); every other
 * algorithm fits in the head.
 */
typedef struct mg_limit_state {
    apr_uint64_t level;       /**< buckets: sub-units; windows: units used
                                   in the current window; GCRA: sub-unit
                                   remainder of the arrival time */
    apr_int64_t stamp;        /**< buckets: last update; windows: start of
                                   the current window; GCRA: arrival time;
                                   log: unused */
    apr_uint64_t aux;         /**< sliding window: units of the previous
                                   window; log: index of the oldest entry */
    apr_uint32_t flags;       /**< MG_LIMIT_STATE_* */
    apr_uint32_t count;       /**< log: entries held */
} mg_limit_state;

typedef struct mg_limit_log_state {
    mg_limit_state head;
    apr_int64_t t[MG_LIMIT_LOG_MAX];  /**< ring of admission times */
} mg_limit_log_state;

#define MG_LIMIT_STATE_VALID 0x1u

/** What an algorithm answers for one limit. */
typedef struct mg_limit_decision {
    int allowed;              /**< 1 if the cost fits now */
    apr_uint64_t limit;       /**< the quota (q) */
    apr_uint64_t remaining;   /**< whole units left after this request
                                   (before it, when rejected) */
    apr_interval_time_t reset;       /**< until the allowance is whole again */
    apr_interval_time_t retry_after; /**< until this cost would fit; 0 if allowed */
    apr_interval_time_t delay;       /**< allowed, but hold the request this
                                          long first (leaky bucket queue) */
    apr_time_t expires;       /**< from then on (on the algorithm's clock)
                                   the state equals a fresh one and the
                                   store may forget it */
} mg_limit_decision;

/**
 * The most units `spec` can ever hold, and so the largest cost it can ever
 * admit: a bucket's (and GCRA's) burst, a window's or a log's quota (which
 * mg_limit_spec_init copies into `burst`).  A decision's `remaining` is at
 * most this, and may exceed the quota (a burst above it) or stay far below
 * it (a burst below it).
 */
static APR_INLINE apr_uint64_t mg_limit_holds(const mg_limit_spec *spec)
{
    return spec->burst;
}

/** The two clocks a decision may need (see mg_clock.h). */
typedef struct mg_now {
    apr_time_t mono;          /**< buckets and GCRA */
    apr_time_t wall;          /**< aligned and calendar windows */
} mg_now;

/** The same instant on both clocks: for tests with a fake clock. */
static APR_INLINE mg_now mg_now_at(apr_time_t t)
{
    mg_now now;
    now.mono = t;
    now.wall = t;
    return now;
}

/** The time `spec` decides on. */
static APR_INLINE apr_time_t mg_limit_clock(const mg_limit_spec *spec,
                                            const mg_now *now)
{
    return spec->wall_clock ? now->wall : now->mono;
}

/** Parse an algorithm's name (token_bucket, leaky_bucket, fixed_window,
 *  sliding_log, sliding_window, gcra); 0 if unknown. */
mg_limit_algo mg_limit_algo_parse(const char *name);

/** The name of an algorithm. */
const char *mg_limit_algo_name(mg_limit_algo algo);

/**
 * Fill the derived fields of a limit.  For MG_CAL_DAY and MG_CAL_MONTH the
 * window is set from the calendar (one day; 31 days for the bound) and the
 * quota is per calendar period; `window` is then ignored.
 * @return NULL, or a message saying why the numbers cannot be used.
 */
const char *mg_limit_spec_init(mg_limit_spec *spec, mg_limit_algo algo,
                               apr_uint64_t quota, apr_int64_t window,
                               apr_uint64_t burst);

/** Align a fixed window to the calendar in a zone `utc_offset` seconds
 *  east of UTC (a sliding window over calendar months is refused). */
const char *mg_limit_spec_calendar(mg_limit_spec *spec,
                                   mg_limit_calendar calendar,
                                   apr_int32_t utc_offset);

/** Make a leaky bucket hold requests up to `max_delay` to conform. */
const char *mg_limit_spec_delay(mg_limit_spec *spec,
                                apr_interval_time_t max_delay);

/**
 * Decide whether `cost` units fit under `spec` at `now` (on the clock
 * mg_limit_clock() picks), given `state` (spec->state_size bytes).  Writes
 * the decision to `d` and, in every case, the state to store if the caller
 * commits to `next` (spec->state_size bytes; it may alias `state` only when
 * the caller commits unconditionally).  A rejected request leaves the
 * allowance as it was: committing `next` after a rejection consumes
 * nothing.  Time going backwards is treated as no time passing.
 */
void mg_limit_decide(const mg_limit_spec *spec, const mg_limit_state *state,
                     apr_time_t now, apr_uint64_t cost,
                     mg_limit_state *next, mg_limit_decision *d);

/**
 * Consume `units` from `state` at `now` without an admission check: units
 * another gateway already admitted (local-sync, mg_sync.h), or tokens an
 * answer used beyond its estimate.  Buckets and GCRA go into debt, at most
 * one full bucket (a longer wait than that is not worth remembering: the
 * units that caused it were admitted elsewhere, under the same limit);
 * windows and logs fill up to their quota.  `state` is updated in place
 * (spec->state_size bytes).
 * @return when the state equals a fresh one again (the algorithm's clock)
 */
apr_time_t mg_limit_charge(const mg_limit_spec *spec, mg_limit_state *state,
                           apr_time_t now, apr_uint64_t units);

/**
 * Give back `units` that were charged at `then` and not used (a token
 * reservation larger than what the answer spent), at `now`.  Buckets and
 * GCRA take them back, paying off debt first and never past a full bucket;
 * a fraction of a microsecond of debt stays (never more is given back than
 * was taken).  Windows take them off the window they were counted in while
 * that window still counts: the current one, or for the sliding window
 * counter also the previous one, which still weighs; a window that has
 * passed took them with it.  A sliding log cannot tell its units apart and
 * ignores refunds (the configuration refuses it for tokens).  `state` is
 * updated in place.
 * @return when the state equals a fresh one again (the algorithm's clock)
 */
apr_time_t mg_limit_refund(const mg_limit_spec *spec, mg_limit_state *state,
                           apr_time_t then, apr_time_t now,
                           apr_uint64_t units);

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
/** mg_layer.tokens of a budget: it counts spend (nano-units). */
#define MG_LAYER_MONEY 16u

typedef struct mg_layer {
    const char *policy;       /**< policy name, shown in RateLimit headers */
    const mg_limit_spec *spec;
    mg_fingerprint fp;        /**< counter identity (stores that want a
                                   text key use its hex, as Redis does) */
    apr_uint64_t cost;        /**< units this request consumes */
    int shadow;               /**< counts and reports, never rejects */
    const char *policy_item;  /**< this layer's RateLimit-Policy item, made
                                   once per limit; NULL: formatted per call */
    const char *limit_text;   /**< the quota as text, likewise */
    apr_uint32_t tokens;      /**< 0: counts requests; MG_LAYER_MONEY:
                                   spend; else it counts tokens, which ones
                                   being mg_token_count + 1 (mg_policy.h):
                                   `cost` is then the reservation, settled
                                   later */
} mg_layer;

/** The combined decision over every layer that applies to a request. */
typedef struct mg_decision {
    int allowed;              /**< 1 if every enforced layer allowed */
    int nlayers;
    int binding;              /**< the layer whose numbers the client is
                                   told in RateLimit and Retry-After: the
                                   rejecting enforced layer with the longest
                                   wait, or, when all allow, the layer
                                   with the smallest share left of what it
                                   can hold (mg_limit_holds: a burst below
                                   the quota is what runs out first); -1
                                   with no layers */
    int never;                /**< an enforced layer that refused a cost
                                   above what it can ever hold
                                   (mg_limit_holds): no wait admits this
                                   request.  Of several, the one holding
                                   least, and it is `binding`; -1 if none */
    unsigned shadow_rejected; /**< bit i: shadow layer i would have
                                   rejected (it consumed nothing) */
    apr_interval_time_t delay; /**< hold the request this long (the longest
                                   delay an enforced layer asks) */
    apr_time_t store_time;    /**< when a store with a clock of its own
                                   (Redis TIME) decided, on that clock;
                                   0: at the gateway's `now`.  A settle
                                   gets it back as `then` (mg_store.h) */
    mg_limit_decision layer[MG_LIMIT_MAX_LAYERS];
} mg_decision;

/** Of the enforced layers that refused, the one whose cost divided by
 *  `divisor` is above what it can ever hold (mg_limit_holds; the smallest
 *  such) becomes d->never and binds; -1 when none.  mg_limit_combine calls
 *  it with 1; a caller whose costs carry a passing factor (degraded_cost)
 *  asks again with it, so a cost too large only K-fold is a wait. */
void mg_limit_never(const mg_layer *layers, mg_decision *d,
                    apr_uint64_t divisor);

/** Is layer `a` (its decision `a` over `la`) nearer to running out than
 *  `b`: the smaller share left of what each can hold (mg_limit_holds)?
 *  How mg_limit_combine picks the binding layer among admitting ones, and
 *  the headers the binding one of a kind. */
int mg_limit_nearer(const mg_limit_decision *a, const mg_layer *la,
                    const mg_limit_decision *b, const mg_layer *lb);

/**
 * Fill `allowed`, `binding`, `never`, `shadow_rejected` and `delay` from
 * the per-layer decisions in d->layer and the layers' costs.  A layer is
 * committed when the request is allowed and the layer itself allowed: a
 * shadow layer that would have rejected consumes nothing, and the request
 * goes on.
 */
void mg_limit_combine(const mg_layer *layers, mg_decision *d);

/** Can mg_limit_refund give units back to this limit's counter?  Not a
 *  sliding log's: it keeps one timestamp per unit (a refund there only
 *  ages the state). */
int mg_limit_refundable(const mg_limit_spec *spec);

/**
 * What the allowed decision `d` says had the layers in `mask` (bit i:
 * layer i) not charged this request -- a cached answer they are given back
 * for: each such committed layer's `remaining` grows by its cost (at most
 * to what it can hold, mg_limit_holds), and `binding` is picked again.
 * Only the numbers: the store's counters are given back with its settle.
 */
void mg_limit_uncharge(const mg_layer *layers, mg_decision *d,
                       unsigned mask);

/** The window of a window algorithm that contains `t` (wall clock):
 *  aligned to its length, or the calendar day or month in its zone. */
void mg_limit_window_bounds(const mg_limit_spec *spec, apr_time_t t,
                            apr_time_t *start, apr_time_t *end);

/* The algorithms; mg_limit_decide dispatches to them. */
#define MG_LIMIT_ALGORITHM(name) \
    void name(const mg_limit_spec *spec, const mg_limit_state *state, \
              apr_time_t now, apr_uint64_t cost, mg_limit_state *next, \
              mg_limit_decision *d)
MG_LIMIT_ALGORITHM(mg_limit_token_bucket);
MG_LIMIT_ALGORITHM(mg_limit_leaky_bucket);
MG_LIMIT_ALGORITHM(mg_limit_fixed_window);
MG_LIMIT_ALGORITHM(mg_limit_sliding_log);
MG_LIMIT_ALGORITHM(mg_limit_sliding_window);
MG_LIMIT_ALGORITHM(mg_limit_gcra);

/* Debt for the bucket algorithms (mg_limit_charge dispatches to them). */
apr_time_t mg_limit_bucket_charge(const mg_limit_spec *spec,
                                  mg_limit_state *state, apr_time_t now,
                                  apr_uint64_t units);
apr_time_t mg_limit_gcra_charge(const mg_limit_spec *spec,
                                mg_limit_state *state, apr_time_t now,
                                apr_uint64_t units);
/* Refunds of the bucket algorithms and GCRA (mg_limit_refund). */
apr_time_t mg_limit_bucket_refund(const mg_limit_spec *spec,
                                  mg_limit_state *state, apr_time_t now,
                                  apr_uint64_t units);
apr_time_t mg_limit_gcra_refund(const mg_limit_spec *spec,
                                mg_limit_state *state, apr_time_t now,
                                apr_uint64_t units);

#endif /* MG_LIMIT_H */
