/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_health.h -- what the gateway knows about an upstream's health, from
 * the answers it forwarded: request and error counts and a latency
 * histogram over a sliding window, a circuit breaker, and whether the
 * upstream is degraded.
 *
 * The window is MG_HEALTH_SLOTS slots of window/MG_HEALTH_SLOTS each; a
 * slot older than the window counts for nothing and is reused.  Latency
 * goes into a log-linear histogram (four buckets per power of two, so a
 * percentile is within 19 % of the truth) from 1 us to 2^27 us (134 s).
 *
 * The breaker: CLOSED forwards everything.  It opens when, over the
 * window, at least min_requests were answered and error_pct percent or
 * more of them failed (5xx, or no answer); when `consecutive` answers in a
 * row failed, whatever the window holds (a server that dies after a busy
 * minute would otherwise need as many failures as the window held
 * successes; a success ends a run, and so does a pause of a whole window
 * between two failures); or when the upstream asks for a pause (429 or 503
 * with Retry-After, at most a minute).  OPEN refuses until its time is up,
 * then HALF_OPEN lets `probes` requests through: a success closes it, a
 * failure opens it again for twice as long (at most 16 times `open`).  A
 * probe that never reports back (its process died) is forgotten after
 * `open`.
 *
 * Degraded: the breaker is not closed, or over the window (with at least
 * min_requests) the p95 latency reaches degrade_p95 or the error share
 * reaches degrade_error_pct.  Tiers may then pay more per request
 * (degraded_cost=), which lowers their limits without touching counters.
 *
 * Plain data, no pointers: the state lives in shared memory.  The caller
 * serialises every call but two: mg_health_count (a successful answer
 * while the breaker is closed, the common case, counted with atomic
 * operations) and mg_health_closed.  Times are any one clock (the glue
 * passes the monotonic one); unit tests pass a fake one.
 */
#ifndef MG_HEALTH_H
#define MG_HEALTH_H

#include <apr.h>
#include <apr_time.h>

#define MG_HEALTH_SLOTS   10
#define MG_HEALTH_BUCKETS 108     /* 27 powers of two, 4 buckets each */

typedef enum {
    MG_BREAKER_CLOSED = 0,
    MG_BREAKER_OPEN,
    MG_BREAKER_HALF_OPEN
} mg_breaker_state;

/** An upstream's thresholds (ModelGateUpstream options). */
typedef struct mg_health_conf {
    apr_interval_time_t window;       /**< sliding window, default 10 s */
    apr_uint32_t min_requests;        /**< before any share is judged */
    apr_uint32_t error_pct;           /**< opens the breaker; 0: never */
    apr_uint32_t consecutive;         /**< failures in a row that open it
                                           (default 5); 0: never */
    apr_interval_time_t open;         /**< first time open */
    apr_uint32_t probes;              /**< half-open requests at once */
    apr_interval_time_t degrade_p95;  /**< 0: latency never degrades */
    apr_uint32_t degrade_error_pct;   /**< 0: errors never degrade */
} mg_health_conf;

/** Fill in the defaults. */
void mg_health_conf_default(mg_health_conf *c);

typedef struct mg_health_slot {
    apr_time_t start;                 /**< of the slot's interval */
    apr_uint32_t requests;
    apr_uint32_t errors;
    apr_uint32_t latency[MG_HEALTH_BUCKETS];
} mg_health_slot;

typedef struct mg_health {
    mg_health_slot slot[MG_HEALTH_SLOTS];
    apr_uint32_t state;               /**< mg_breaker_state */
    apr_uint32_t run;                 /**< failures in a row; a success
                                           zeroes it (next to `state`: the
                                           success path reads both) */
    apr_uint32_t refused;             /**< requests refused since it left
                                           CLOSED (for the log) */
    apr_time_t run_at;                /**< the run's last failure */
    apr_uint32_t probes;              /**< half-open probes out */
    apr_time_t open_until;
    apr_time_t probe_since;           /**< when the half-open state began */
    apr_interval_time_t open_for;     /**< the current open period */
    apr_uint64_t opened;              /**< times it opened (metrics) */
} mg_health;

/** The default of mg_health_conf.consecutive. */
#define MG_HEALTH_CONSECUTIVE 5

/** What recording an answer did to the breaker: the glue logs one line
 *  per change, never one per failed answer. */
typedef enum {
    MG_HEALTH_UNCHANGED = 0,
    MG_HEALTH_OPENED_SHARE,           /**< the window's error share */
    MG_HEALTH_OPENED_RUN,             /**< `consecutive` failures in a row */
    MG_HEALTH_OPENED_PAUSE,           /**< the upstream asked for a pause */
    MG_HEALTH_REOPENED,               /**< a half-open probe failed, or
                                           asked for a pause */
    MG_HEALTH_CLOSED                  /**< a half-open probe succeeded */
} mg_health_event;

/** What a window says, for headers, metrics and tests. */
typedef struct mg_health_stats {
    apr_uint32_t requests;
    apr_uint32_t errors;
    apr_interval_time_t p50, p95, p99; /**< 0 without requests */
} mg_health_stats;

/** May a request go to this upstream now?
 *  @param probe set to 1 when it goes as a half-open probe
 *  @param retry_after set, when refused, to when to ask again
 *  @return 1 to forward, 0 refused (the breaker is open) */
int mg_health_allow(mg_health *h, const mg_health_conf *c, apr_time_t now,
                    int *probe, apr_interval_time_t *retry_after);

/**
 * An answer came back (or none did).
 * @param failed      5xx, or no answer
 * @param latency     until the answer's headers
 * @param pause       the upstream's Retry-After on a 429 or 503; 0 if none
 * @param probe       it was let through as a half-open probe
 * @return what it did to the breaker
 */
mg_health_event mg_health_record(mg_health *h, const mg_health_conf *c,
                                 apr_time_t now, int failed,
                                 apr_interval_time_t latency,
                                 apr_interval_time_t pause, int probe);

/** Count an answer without changing the breaker; safe without the lock.
 *  Use it when mg_health_needs_lock() says no.  A success ends a run of
 *  failures: `run` is written only when it is not 0 already, so the
 *  common case only reads it. */
void mg_health_count(mg_health *h, const mg_health_conf *c, apr_time_t now,
                     int failed, apr_interval_time_t latency);

/** Must recording this answer take the lock (it may move the breaker)? */
int mg_health_needs_lock(const mg_health *h, int failed,
                         apr_interval_time_t pause, int probe);

/** Is the breaker closed?  Safe without the lock: a closed breaker lets
 *  every request through, so mg_health_allow needs no lock then. */
static APR_INLINE int mg_health_closed(const mg_health *h)
{
    return __atomic_load_n(&h->state, __ATOMIC_ACQUIRE) == MG_BREAKER_CLOSED;
}

/** A probe that mg_health_allow let through will not be forwarded after
 *  all (its request was refused by a limit): free its place. */
void mg_health_cancel_probe(mg_health *h);

/** Counts and latency percentiles over the window. */
void mg_health_stats_get(const mg_health *h, const mg_health_conf *c,
                         apr_time_t now, mg_health_stats *st);

/** Is the upstream degraded (see above)? */
int mg_health_degraded(const mg_health *h, const mg_health_conf *c,
                       apr_time_t now);

/** The histogram bucket of a latency, and the largest latency a bucket
 *  holds (exposed for the tests). */
int mg_health_bucket(apr_interval_time_t latency);
apr_interval_time_t mg_health_bucket_top(int bucket);

#endif /* MG_HEALTH_H */
