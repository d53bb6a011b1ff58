/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_limit_sliding_log.c -- the sliding window log: the exact definition of
 * "at most quota units in any interval of one window".  It keeps the time of
 * every admitted unit of the last window in a ring of `quota` entries, so
 * its quota is bounded (MG_LIMIT_LOG_MAX); the sliding window counter is its
 * cheap approximation for large quotas.
 */
#include <string.h>
#include "mg_limit.h"

MG_LIMIT_ALGORITHM(mg_limit_sliding_log)
{
    const mg_limit_log_state *in = (const mg_limit_log_state *)state;
    mg_limit_log_state *out = (mg_limit_log_state *)next;
    const apr_uint64_t q = spec->quota;
    const apr_interval_time_t w = spec->window;
    apr_uint64_t count = 0, oldest = 0, i;
    apr_time_t newest = now;

    if (state->flags & MG_LIMIT_STATE_VALID) {
        count = state->count;
        oldest = state->aux;
        if (count > q || oldest >= q) {
            count = oldest = 0;      /* not a state of this limit */
        }
    }
    if (out != in) {
        memcpy(out->t, in->t, (apr_size_t)q * sizeof(apr_int64_t));
    }
    /* Units admitted a window or more ago no longer count. */
    while (count > 0 && out->t[oldest] + w <= now) {
        oldest = (oldest + 1) % q;
        count--;
    }
    if (count > 0) {
        apr_time_t last = out->t[(oldest + count - 1) % q];
        /* After a step back the log stays in order: new entries are
         * never older than the newest. */
        newest = last > now ? last : now;
    }

    d->limit = q;
    d->delay = 0;
    d->allowed = cost <= q && count + cost <= q;
    if (d->allowed) {
        for (i = 0; i < cost; i++) {
            out->t[(oldest + count + i) % q] = newest;
        }
        count += cost;
        d->retry_after = 0;
    }
    else if (cost <= q) {
        /* The entry whose expiry makes room for `cost` units. */
        apr_time_t t = out->t[(oldest + (count + cost - q) - 1) % q];
        d->retry_after = t + w - now;
    }
    else {
        d->retry_after = w;
    }
    out->head.flags = MG_LIMIT_STATE_VALID;
    out->head.count = (apr_uint32_t)count;
    out->head.aux = count ? oldest : 0;
    out->head.level = count;
    out->head.stamp = 0;
    d->remaining = q - count;
    /* Whole again once the newest entry kept has left (`newest` is only
     * the stamp new entries get: it is `now` when nothing was added). */
    if (count > 0) {
        newest = out->t[(oldest + count - 1) % q];
    }
    d->reset = count ? newest + w - now : 0;
    d->expires = count ? newest + w : now;
}
