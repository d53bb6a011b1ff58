/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_limit_window.c -- window algorithms: the fixed window and the sliding
 * window counter.
 *
 * Windows are aligned, so every gateway and every client agrees where one
 * starts: to multiples of their length since the epoch (a per-minute window
 * starts at :00 UTC), or to calendar days and months in the limit's zone.
 * They run on the wall clock for that reason.  Should it step back into an
 * earlier window, the later window is kept: nothing is counted twice.
 */
#include <apr_time.h>
#include "mg_limit.h"
#include "mg_zone.h"

#ifndef __SIZEOF_INT128__
#error "the sliding window counter needs 128-bit integers (gcc or clang on a 64-bit target)"
#endif
typedef unsigned __int128 u128;

#define DAY_US (APR_INT64_C(86400) * APR_USEC_PER_SEC)

static apr_time_t floor_div(apr_time_t a, apr_time_t b)
{
    apr_time_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* The month containing `t` (a time already shifted into the zone). */
static void month_bounds(apr_time_t t, apr_time_t *start, apr_time_t *end)
{
    apr_time_exp_t tm;

    apr_time_exp_gmt(&tm, t);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = tm.tm_usec = 0;
    apr_time_exp_gmt_get(start, &tm);
    if (++tm.tm_mon == 12) {
        tm.tm_mon = 0;
        tm.tm_year++;
    }
    apr_time_exp_gmt_get(end, &tm);
}

/* Local calendar time of `t`, as microseconds since a local epoch. */
static apr_time_t to_local(const mg_limit_spec *spec, apr_time_t t)
{
    apr_int32_t off = spec->zone ? mg_zone_offset(spec->zone, t)
                                 : spec->utc_offset;
    return t + (apr_time_t)off * APR_USEC_PER_SEC;
}

static apr_time_t to_utc(const mg_limit_spec *spec, apr_time_t local)
{
    return spec->zone ? mg_zone_to_utc(spec->zone, local)
                      : local - (apr_time_t)spec->utc_offset * APR_USEC_PER_SEC;
}

/* The window of `spec` that contains `t`.  Calendar windows run from local
 * midnight to local midnight, so a day is 23 or 25 hours when daylight
 * saving time begins or ends in it. */
void mg_limit_window_bounds(const mg_limit_spec *spec, apr_time_t t,
                            apr_time_t *start, apr_time_t *end)
{
    apr_time_t local, ls, le;

    switch (spec->calendar) {
    case MG_CAL_MONTH:
        month_bounds(to_local(spec, t), &ls, &le);
        *start = to_utc(spec, ls);
        *end = to_utc(spec, le);
        break;
    case MG_CAL_DAY:
        local = to_local(spec, t);
        ls = floor_div(local, DAY_US) * DAY_US;
        *start = to_utc(spec, ls);
        *end = to_utc(spec, ls + DAY_US);
        break;
    case MG_CAL_NONE:
    default:
        *start = floor_div(t, spec->window) * spec->window;
        *end = *start + spec->window;
        break;
    }
}

MG_LIMIT_ALGORITHM(mg_limit_fixed_window)
{
    apr_time_t start, end;
    apr_uint64_t used = 0;

    mg_limit_window_bounds(spec, now, &start, &end);
    if ((state->flags & MG_LIMIT_STATE_VALID) && state->stamp >= start) {
        /* This window, or a later one the clock stepped back from. */
        used = state->level;
        if (state->stamp > start) {
            mg_limit_window_bounds(spec, state->stamp, &start, &end);
        }
    }
    d->limit = spec->quota;
    d->delay = 0;
    d->allowed = cost <= spec->quota && used + cost <= spec->quota;
    if (d->allowed) {
        used += cost;
        d->retry_after = 0;
    }
    else {
        /* A cost above the quota never fits; a window is the honest wait. */
        d->retry_after = cost <= spec->quota ? end - now
                                             : end - now + spec->window;
    }
    next->flags = MG_LIMIT_STATE_VALID;
    next->level = used;
    next->stamp = start;
    next->aux = 0;
    next->count = 0;
    d->remaining = spec->quota - used;
    d->reset = used ? end - now : 0;
    d->expires = end;
}

/* Microseconds into the window at which prev * (W - e) <= allowance * W,
 * i.e. the previous window's weighted share has shrunk enough. */
static apr_interval_time_t share_fits_at(apr_uint64_t prev,
                                         apr_uint64_t allowance,
                                         apr_interval_time_t w)
{
    u128 room;

    if (prev == 0) {
        return 0;
    }
    room = (u128)allowance * (u128)w / prev;
    return room >= (u128)w ? 0 : w - (apr_interval_time_t)room;
}

MG_LIMIT_ALGORITHM(mg_limit_sliding_window)
{
    const apr_interval_time_t w = spec->window;
    const apr_uint64_t q = spec->quota;
    apr_time_t start, end, e;
    apr_uint64_t cur = 0, prev = 0;
    u128 used, cap = (u128)q * (u128)w;

    mg_limit_window_bounds(spec, now, &start, &end);
    if (state->flags & MG_LIMIT_STATE_VALID) {
        if (state->stamp >= start) {
            /* This window, or a later one the clock stepped back from. */
            cur = state->level;
            prev = state->aux;
            start = state->stamp;
            end = start + w;
        }
        else if (state->stamp == start - w) {
            prev = state->level;
        }
    }
    e = now > start ? now - start : 0;
    used = (u128)prev * (u128)(w - e) + (u128)cur * (u128)w;

    d->limit = q;
    d->delay = 0;
    d->allowed = cost <= q && used + (u128)cost * (u128)w <= cap;
    if (d->allowed) {
        cur += cost;
        used += (u128)cost * (u128)w;
        d->retry_after = 0;
    }
    else if (cost > q) {
        d->retry_after = w;
    }
    else if (cur + cost <= q) {
        /* Later in this window the previous one weighs little enough.
         * From the caller's clock: after a step back it is before the
         * window's start (e is then 0), and that time counts too. */
        d->retry_after = start + share_fits_at(prev, q - cur - cost, w) - now;
    }
    else {
        /* Not before the next window, where this one is the previous. */
        d->retry_after = (end - now) + share_fits_at(cur, q - cost, w);
    }
    if (d->retry_after < 0) {
        d->retry_after = 0;
    }
    next->flags = MG_LIMIT_STATE_VALID;
    next->level = cur;
    next->aux = prev;
    next->stamp = start;
    next->count = 0;
    d->remaining = used >= cap ? 0 : (apr_uint64_t)((cap - used) / (u128)w);
    d->reset = cur ? (end - now) + w : prev ? end - now : 0;
    d->expires = now + d->reset;
}
