/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_limit.c -- limit construction and dispatch to the algorithms.
 */
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

const char *mg_limit_spec_init(mg_limit_spec *spec, mg_limit_algo algo,
                               apr_uint64_t quota, apr_int64_t window,
                               apr_uint64_t burst)
{
    apr_uint64_t g;

    if (algo != MG_ALGO_TOKEN_BUCKET) {
        return "unknown algorithm";
    }
    if (quota < 1 || quota > MG_LIMIT_MAX_QUOTA) {
        return "the quota must be between 1 and 10^12";
    }
    if (window < APR_USEC_PER_SEC || window > MG_LIMIT_MAX_WINDOW) {
        return "the window must be between 1 second and 366 days";
    }
    if (burst < 1 || burst > MG_LIMIT_MAX_QUOTA) {
        return "the burst must be between 1 and 10^12";
    }
    g = gcd_u64(quota, (apr_uint64_t)window);
    spec->algo = algo;
    spec->quota = quota;
    spec->window = window;
    spec->burst = burst;
    spec->unit_scale = (apr_uint64_t)window / g;
    spec->refill_per_us = quota / g;
    /* The bucket holds burst * unit_scale sub-units; keep two bits of
     * headroom so sums of a level and a refill never wrap. */
    if (burst > (APR_UINT64_C(1) << 62) / spec->unit_scale) {
        return "burst and window are too large together for exact "
               "arithmetic: lower the burst or pick a quota that divides "
               "the window more evenly";
    }
    spec->capacity = burst * spec->unit_scale;
    return NULL;
}

void mg_limit_decide(const mg_limit_spec *spec, const mg_limit_state *state,
                     apr_time_t now, apr_uint64_t cost,
                     mg_limit_state *next, mg_limit_decision *d)
{
    switch (spec->algo) {
    case MG_ALGO_TOKEN_BUCKET:
    default:
        mg_limit_token_bucket(spec, state, now, cost, next, d);
        break;
    }
}

/* Is layer a nearer to its limit than layer b, as a share of its quota?
 * Only picks which numbers the client is shown, so floating point is
 * precise enough (the integer products could exceed 64 bits). */
static int nearer_to_limit(const mg_limit_decision *a,
                           const mg_limit_decision *b)
{
    return (double)a->remaining / (double)a->limit
           < (double)b->remaining / (double)b->limit;
}

void mg_limit_combine(mg_decision *d)
{
    int i;

    d->allowed = 1;
    d->binding = d->nlayers > 0 ? 0 : -1;
    for (i = 0; i < d->nlayers; i++) {
        if (!d->layer[i].allowed) {
            if (d->allowed
                || d->layer[i].retry_after > d->layer[d->binding].retry_after) {
                d->binding = i;
            }
            d->allowed = 0;
        }
        else if (d->allowed && i > 0
                 && nearer_to_limit(&d->layer[i], &d->layer[d->binding])) {
            d->binding = i;
        }
    }
}
