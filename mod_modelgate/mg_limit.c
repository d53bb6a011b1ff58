/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_limit.c -- limit construction and dispatch to the algorithms.
 */
#include <string.h>
#include <apr_general.h>
#include "mg_limit.h"

static apr_uint64_t gcd_u64(apr_uint64_t a, apr_uint64_t b)
{
    while (b) {
        apr_uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static const char *const algo_names[] = {
    NULL, "token_bucket", "leaky_bucket", "fixed_window", "sliding_log",
    "sliding_window", "gcra"
};
#define ALGO_COUNT (int)(sizeof(algo_names) / sizeof(algo_names[0]))

mg_limit_algo mg_limit_algo_parse(const char *name)
{
    int i;

    for (i = 1; i < ALGO_COUNT; i++) {
        if (!strcmp(name, algo_names[i])) {
            return (mg_limit_algo)i;
        }
    }
    return (mg_limit_algo)0;
}

const char *mg_limit_algo_name(mg_limit_algo algo)
{
    return (int)algo > 0 && (int)algo < ALGO_COUNT ? algo_names[algo] : "?";
}

const char *mg_limit_spec_init(mg_limit_spec *spec, mg_limit_algo algo,
                               apr_uint64_t quota, apr_int64_t window,
                               apr_uint64_t burst)
{
    apr_uint64_t g;
    int windowed = algo == MG_ALGO_FIXED_WINDOW
                   || algo == MG_ALGO_SLIDING_WINDOW
                   || algo == MG_ALGO_SLIDING_LOG;

    memset(spec, 0, sizeof(*spec));
    if ((int)algo < 1 || (int)algo >= ALGO_COUNT) {
        return "unknown algorithm";
    }
    if (quota < 1 || quota > (algo == MG_ALGO_FIXED_WINDOW
                              ? MG_LIMIT_MAX_WINDOW_QUOTA
                              : MG_LIMIT_MAX_QUOTA)) {
        return algo == MG_ALGO_FIXED_WINDOW
               ? "the quota must be between 1 and 2^53"
               : "the quota must be between 1 and 10^12";
    }
    if (window < APR_USEC_PER_SEC || window > MG_LIMIT_MAX_WINDOW) {
        return "the window must be between 1 second and 366 days";
    }
    if (windowed) {
        /* A window admits its quota; there is no separate bucket size. */
        burst = quota;
    }
    if (burst < 1 || (!windowed && burst > MG_LIMIT_MAX_QUOTA)) {
        return "the burst must be between 1 and 10^12";
    }
    if (algo == MG_ALGO_SLIDING_LOG && quota > MG_LIMIT_LOG_MAX) {
        return "a sliding log keeps one timestamp per unit: its quota must "
               "be at most " APR_STRINGIFY(MG_LIMIT_LOG_MAX)
               " (use sliding_window for larger quotas)";
    }
    g = gcd_u64(quota, (apr_uint64_t)window);
    spec->algo = algo;
    spec->quota = quota;
    spec->window = window;
    spec->burst = burst;
    spec->unit_scale = (apr_uint64_t)window / g;
    spec->refill_per_us = quota / g;
    /* The bucket holds burst * unit_scale sub-units; keep two bits of
     * headroom so sums of a level and a refill never wrap.  Window
     * algorithms count whole units and need no scale. */
    if (!windowed && burst > (APR_UINT64_C(1) << 62) / spec->unit_scale) {
        return "burst and window are too large together for exact "
               "arithmetic: lower the burst or pick a quota that divides "
               "the window more evenly";
    }
    spec->capacity = windowed ? 0 : burst * spec->unit_scale;
    spec->wall_clock = algo == MG_ALGO_FIXED_WINDOW
                       || algo == MG_ALGO_SLIDING_WINDOW;
    spec->state_size = sizeof(mg_limit_state);
    if (algo == MG_ALGO_SLIDING_LOG) {
        spec->state_size += (apr_size_t)quota * sizeof(apr_int64_t);
    }
    return NULL;
}

const char *mg_limit_spec_calendar(mg_limit_spec *spec,
                                   mg_limit_calendar calendar,
                                   apr_int32_t utc_offset)
{
    if (calendar == MG_CAL_NONE) {
        spec->calendar = calendar;
        return NULL;
    }
    if (spec->algo != MG_ALGO_FIXED_WINDOW) {
        return "calendar days and months are periods of fixed windows: "
               "use algorithm=fixed_window";
    }
    if (utc_offset <= -24 * 3600 || utc_offset >= 24 * 3600) {
        return "the zone's offset from UTC must be less than a day";
    }
    spec->calendar = calendar;
    spec->utc_offset = utc_offset;
    spec->window = (calendar == MG_CAL_DAY ? 1 : 31) * APR_INT64_C(86400)
                   * APR_USEC_PER_SEC;
    return NULL;
}

const char *mg_limit_spec_delay(mg_limit_spec *spec,
                                apr_interval_time_t max_delay)
{
    if (spec->algo != MG_ALGO_LEAKY_BUCKET) {
        return "only a leaky bucket can hold requests (delay=)";
    }
    if (max_delay < 0 || max_delay > 60 * APR_USEC_PER_SEC) {
        return "delay must be between 0 and 60 seconds: a held request "
               "holds an httpd worker";
    }
    spec->max_delay = max_delay;
    return NULL;
}

void mg_limit_decide(const mg_limit_spec *spec, const mg_limit_state *state,
                     apr_time_t now, apr_uint64_t cost,
                     mg_limit_state *next, mg_limit_decision *d)
{
    d->delay = 0;
    switch (spec->algo) {
    case MG_ALGO_LEAKY_BUCKET:
        mg_limit_leaky_bucket(spec, state, now, cost, next, d);
        break;
    case MG_ALGO_FIXED_WINDOW:
        mg_limit_fixed_window(spec, state, now, cost, next, d);
        break;
    case MG_ALGO_SLIDING_LOG:
        mg_limit_sliding_log(spec, state, now, cost, next, d);
        break;
    case MG_ALGO_SLIDING_WINDOW:
        mg_limit_sliding_window(spec, state, now, cost, next, d);
        break;
    case MG_ALGO_GCRA:
        mg_limit_gcra(spec, state, now, cost, next, d);
        break;
    case MG_ALGO_TOKEN_BUCKET:
    default:
        mg_limit_token_bucket(spec, state, now, cost, next, d);
        break;
    }
}

/* Not a share of the quota: a bucket of 120/min with a burst of 20
 * holding 19 is nearer than the quota says (19/120), and a burst above the
 * quota would make a share above one.  Exact: the products fit in 128
 * bits. */
int mg_limit_nearer(const mg_limit_decision *a, const mg_layer *la,
                    const mg_limit_decision *b, const mg_layer *lb)
{
    return (unsigned __int128)a->remaining * mg_limit_holds(lb->spec)
           < (unsigned __int128)b->remaining * mg_limit_holds(la->spec);
}

void mg_limit_never(const mg_layer *layers, mg_decision *d,
                    apr_uint64_t divisor)
{
    int i;

    d->never = -1;
    for (i = 0; i < d->nlayers; i++) {
        apr_uint64_t holds = mg_limit_holds(layers[i].spec);
        if (!d->layer[i].allowed && !layers[i].shadow
            && layers[i].cost / divisor > holds
            && (d->never < 0
                || holds < mg_limit_holds(layers[d->never].spec))) {
            /* No wait helps: the smallest such limit is what the
             * request must shrink below. */
            d->never = i;
        }
    }
    if (d->never >= 0) {
        /* It outranks any wait: the client is told what can never be. */
        d->binding = d->never;
    }
}

void mg_limit_combine(const mg_layer *layers, mg_decision *d)
{
    int i;

    d->allowed = 1;
    d->binding = -1;
    d->never = -1;
    d->shadow_rejected = 0;
    d->delay = 0;
    for (i = 0; i < d->nlayers; i++) {
        const mg_limit_decision *l = &d->layer[i];

        if (!l->allowed && layers[i].shadow) {
            d->shadow_rejected |= 1u << i;
            continue;
        }
        if (!l->allowed) {
            if (d->allowed || l->retry_after > d->layer[d->binding].retry_after) {
                d->binding = i;
            }
            d->allowed = 0;
        }
        else if (d->allowed && (d->binding < 0
                                || mg_limit_nearer(l, &layers[i],
                                                   &d->layer[d->binding],
                                                   &layers[d->binding]))) {
            d->binding = i;
        }
        if (l->delay > d->delay && !layers[i].shadow) {
            /* A shadow layer reports; it never holds the request. */
            d->delay = l->delay;
        }
    }
    if (!d->allowed) {
        mg_limit_never(layers, d, 1);
    }
    if (d->binding < 0 && d->nlayers > 0) {
        /* Only shadow layers, all rejecting: show the first. */
        d->binding = 0;
    }
    if (!d->allowed) {
        d->delay = 0;
    }
}

int mg_limit_refundable(const mg_limit_spec *spec)
{
    return spec->algo != MG_ALGO_SLIDING_LOG;
}

void mg_limit_uncharge(const mg_layer *layers, mg_decision *d,
                       unsigned mask)
{
    int i;

    if (!d->allowed) {
        return;                 /* nothing was charged */
    }
    for (i = 0; i < d->nlayers; i++) {
        mg_limit_decision *l = &d->layer[i];
        apr_uint64_t room, holds;

        if (!(mask & (1u << i)) || !l->allowed) {
            continue;           /* a shadow layer's refusal charged nothing */
        }
        holds = mg_limit_holds(layers[i].spec);
        room = holds > l->remaining ? holds - l->remaining : 0;
        l->remaining += layers[i].cost < room ? layers[i].cost : room;
    }
    mg_limit_combine(layers, d);
}

/* Windows and logs hold at most their quota: fill them up to it with the
 * algorithm's own step, so the state stays one it would have made. */
static apr_time_t fill_charge(const mg_limit_spec *spec,
                              mg_limit_state *state, apr_time_t now,
                              apr_uint64_t units)
{
    mg_limit_decision d;

    /* A cost of 0 always fits: it moves the state to `now` and tells what
     * is left; then as much of `units` as fits is taken. */
    mg_limit_decide(spec, state, now, 0, state, &d);
    if (units > d.remaining) {
        units = d.remaining;
    }
    if (units > 0) {
        mg_limit_decide(spec, state, now, units, state, &d);
    }
    return d.expires;
}

apr_time_t mg_limit_charge(const mg_limit_spec *spec, mg_limit_state *state,
                           apr_time_t now, apr_uint64_t units)
{
    switch (spec->algo) {
    case MG_ALGO_TOKEN_BUCKET:
    case MG_ALGO_LEAKY_BUCKET:
        return mg_limit_bucket_charge(spec, state, now, units);
    case MG_ALGO_GCRA:
        return mg_limit_gcra_charge(spec, state, now, units);
    default:
        return fill_charge(spec, state, now, units);
    }
}

/* Off the window that counted them, while it still counts. */
static apr_time_t window_refund(const mg_limit_spec *spec,
                                mg_limit_state *state, apr_time_t then,
                                apr_time_t now, apr_uint64_t units)
{
    apr_time_t start, end;
    mg_limit_decision d;

    mg_limit_window_bounds(spec, then, &start, &end);
    if (state->flags & MG_LIMIT_STATE_VALID) {
        if (state->stamp == start) {
            state->level -= units < state->level ? units : state->level;
        }
        else if (spec->algo == MG_ALGO_SLIDING_WINDOW
                 && state->stamp == end) {
            /* A new window began since: the charge is the previous one's,
             * which still weighs until this one ends. */
            state->aux -= units < state->aux ? units : state->aux;
        }
    }
    mg_limit_decide(spec, state, now, 0, state, &d);
    return d.expires;
}

apr_time_t mg_limit_refund(const mg_limit_spec *spec, mg_limit_state *state,
                           apr_time_t then, apr_time_t now,
                           apr_uint64_t units)
{
    mg_limit_decision d;

    switch (spec->algo) {
    case MG_ALGO_TOKEN_BUCKET:
    case MG_ALGO_LEAKY_BUCKET:
        return mg_limit_bucket_refund(spec, state, now, units);
    case MG_ALGO_GCRA:
        return mg_limit_gcra_refund(spec, state, now, units);
    case MG_ALGO_FIXED_WINDOW:
    case MG_ALGO_SLIDING_WINDOW:
        return window_refund(spec, state, then, now, units);
    default:
        mg_limit_decide(spec, state, now, 0, state, &d);
        return d.expires;
    }
}
