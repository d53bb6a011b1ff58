/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_limit_token_bucket.c -- the token bucket, in exact integer arithmetic.
 *
 * The bucket holds up to `burst` units and refills at quota/window units
 * per microsecond.  Units are kept as sub-units (see mg_limit_spec) so a
 * refill of, say, 10 per minute adds exactly 1 sub-unit each microsecond
 * with a unit being 6,000,000 sub-units: no rounding ever drifts.
 */
#include "mg_limit.h"

/* Microseconds until `deficit` sub-units have been refilled, rounded up so
 * a client that waits that long is admitted. */
static apr_interval_time_t refill_time(const mg_limit_spec *spec,
                                       apr_uint64_t deficit)
{
    return (apr_interval_time_t)((deficit + spec->refill_per_us - 1)
                                 / spec->refill_per_us);
}

void mg_limit_token_bucket(const mg_limit_spec *spec,
                           const mg_limit_state *state, apr_time_t now,
                           apr_uint64_t cost, mg_limit_state *next,
                           mg_limit_decision *d)
{
    apr_uint64_t level, need;
    apr_time_t stamp;

    if (!(state->flags & MG_LIMIT_STATE_VALID)) {
        level = spec->capacity;
        stamp = now;
    }
    else {
        level = state->level > spec->capacity ? spec->capacity : state->level;
        stamp = state->stamp;
        if (now > stamp) {
            /* Clamp before multiplying: the product cannot overflow. */
            apr_uint64_t room = spec->capacity - level;
            apr_uint64_t elapsed = (apr_uint64_t)(now - stamp);
            apr_uint64_t to_full = (room + spec->refill_per_us - 1)
                                   / spec->refill_per_us;
            if (elapsed >= to_full) {
                level = spec->capacity;
            }
            else {
                level += elapsed * spec->refill_per_us;
            }
            stamp = now;
        }
        /* now < stamp: the clock went back; keep the later stamp so the
         * time already credited is not credited twice. */
    }

    d->limit = spec->quota;
    next->flags = MG_LIMIT_STATE_VALID;
    next->reserved = 0;
    next->stamp = stamp;

    if (cost <= spec->burst && level >= cost * spec->unit_scale) {
        level -= cost * spec->unit_scale;
        d->allowed = 1;
        d->retry_after = 0;
    }
    else {
        d->allowed = 0;
        if (cost <= spec->burst) {
            need = cost * spec->unit_scale;
            d->retry_after = refill_time(spec, need - level);
        }
        else {
            /* Never fits: the best a client can do is wait for a full
             * bucket, and it will still be refused.  Say so honestly. */
            d->retry_after = refill_time(spec, spec->capacity - level);
            if (d->retry_after == 0) {
                d->retry_after = spec->window;
            }
        }
    }
    next->level = level;
    d->remaining = level / spec->unit_scale;
    d->reset = refill_time(spec, spec->capacity - level);
    d->expires = stamp + d->reset;
    if (stamp > now) {
        /* After a backwards step refill resumes only once the clock is back
         * at the stamp: waits told to the client count from its `now`. */
        d->reset += stamp - now;
        if (!d->allowed) {
            d->retry_after += stamp - now;
        }
    }
}
