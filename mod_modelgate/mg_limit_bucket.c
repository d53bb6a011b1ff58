/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_limit_bucket.c -- the token bucket and the leaky bucket, in exact
 * integer arithmetic.
 *
 * The token bucket holds up to `burst` units and refills at quota/window
 * units per microsecond.  Units are kept as sub-units (see mg_limit_spec) so
 * a refill of, say, 10 per minute adds exactly 1 sub-unit each microsecond
 * with a unit being 6,000,000 sub-units: no rounding ever drifts.
 *
 * The leaky bucket as a meter (water poured in per request, leaking at the
 * rate, overflow refused) admits exactly what the token bucket admits: its
 * water is the token bucket's missing tokens, so both share one state and
 * one refill.  What sets it apart is the queue: with max_delay, a request is
 * held until the water ahead of it has leaked, so requests leave at the
 * rate instead of in a burst, and one that would wait longer than max_delay
 * is refused rather than tying up a worker.
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

/* The bucket's tokens at `now` and the stamp to keep. */
static void refill(const mg_limit_spec *spec, const mg_limit_state *state,
                   apr_time_t now, apr_uint64_t *levelp, apr_time_t *stampp)
{
    apr_uint64_t level;
    apr_time_t stamp;

    if (!(state->flags & MG_LIMIT_STATE_VALID)) {
        *levelp = spec->capacity;
        *stampp = now;
        return;
    }
    level = state->level > spec->capacity ? spec->capacity : state->level;
    stamp = state->stamp;
    if (now > stamp) {
        /* Clamp before multiplying: the product cannot overflow. */
        apr_uint64_t room = spec->capacity - level;
        apr_uint64_t elapsed = (apr_uint64_t)(now - stamp);
        apr_uint64_t to_full = (room + spec->refill_per_us - 1)
                               / spec->refill_per_us;
        level = elapsed >= to_full ? spec->capacity
                                   : level + elapsed * spec->refill_per_us;
        stamp = now;
    }
    /* now < stamp: the clock went back; keep the later stamp so the time
     * already credited is not credited twice. */
    *levelp = level;
    *stampp = stamp;
}

/* Take `cost` from a bucket holding `level` tokens, or explain the wait. */
static void take(const mg_limit_spec *spec, apr_uint64_t level,
                 apr_time_t stamp, apr_time_t now, apr_uint64_t cost,
                 int allowed, mg_limit_state *next, mg_limit_decision *d)
{
    d->limit = spec->quota;
    d->delay = 0;             /* the leaky bucket's queue sets it after */
    next->flags = MG_LIMIT_STATE_VALID;
    next->count = 0;
    next->aux = 0;
    next->stamp = stamp;

    if (allowed) {
        level -= cost * spec->unit_scale;
        d->allowed = 1;
        d->retry_after = 0;
    }
    else {
        d->allowed = 0;
        if (cost <= spec->burst && level < cost * spec->unit_scale) {
            d->retry_after = refill_time(spec, cost * spec->unit_scale - level);
        }
        else if (cost <= spec->burst) {
            /* Refused for another reason (a queue too long to wait in):
             * the caller sets the wait. */
            d->retry_after = 0;
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

static int fits(const mg_limit_spec *spec, apr_uint64_t level,
                apr_uint64_t cost)
{
    return cost <= spec->burst && level >= cost * spec->unit_scale;
}

MG_LIMIT_ALGORITHM(mg_limit_token_bucket)
{
    apr_uint64_t level;
    apr_time_t stamp;

    refill(spec, state, now, &level, &stamp);
    take(spec, level, stamp, now, cost, fits(spec, level, cost), next, d);
}

MG_LIMIT_ALGORITHM(mg_limit_leaky_bucket)
{
    apr_uint64_t level;
    apr_time_t stamp;
    apr_interval_time_t wait = 0;
    int allowed;

    refill(spec, state, now, &level, &stamp);
    allowed = fits(spec, level, cost);
    if (spec->max_delay > 0) {
        /* The water already in the bucket must leak before this request
         * may leave: that is its place in the queue. */
        wait = refill_time(spec, spec->capacity - level);
        if (stamp > now) {
            wait += stamp - now;
        }
        if (wait > spec->max_delay) {
            allowed = 0;
        }
    }
    take(spec, level, stamp, now, cost, allowed, next, d);
    if (allowed) {
        d->delay = wait;
    }
    else if (spec->max_delay > 0 && wait > spec->max_delay
             && (fits(spec, level, cost)
                 || d->retry_after < wait - spec->max_delay)) {
        /* Fits in the bucket but not in the time one may wait: the queue
         * must shrink to max_delay (`wait` already counts a clock step
         * back; take() offered only that step).  Or fits in neither: the
         * longer of the two waits. */
        d->retry_after = wait - spec->max_delay;
    }
}

/* Charging past empty moves the stamp into the future: refill() credits
 * nothing until the clock reaches it, which is exactly a debt of
 * (stamp - now) * refill_per_us sub-units.  The debt in all, not each
 * charge's, is at most one bucket, as GCRA's. */
apr_time_t mg_limit_bucket_charge(const mg_limit_spec *spec,
                                  mg_limit_state *state, apr_time_t now,
                                  apr_uint64_t units)
{
    apr_uint64_t level, add, debt;
    apr_time_t stamp;

    refill(spec, state, now, &level, &stamp);
    /* units * unit_scale may not fit in 64 bits; more than two buckets is
     * never needed (the debt is capped at one). */
    add = units > 2 * spec->burst ? 2 * spec->capacity
                                  : units * spec->unit_scale;
    if (add <= level) {
        level -= add;
    }
    else {
        apr_uint64_t owed = 0;
        if (stamp > now) {
            /* Compared in microseconds first: the product cannot wrap. */
            apr_uint64_t gap = (apr_uint64_t)(stamp - now);
            owed = gap >= (apr_uint64_t)refill_time(spec, spec->capacity)
                   ? spec->capacity : gap * spec->refill_per_us;
        }
        debt = add - level;
        if (debt > spec->capacity - owed) {
            debt = spec->capacity - owed;
        }
        level = 0;
        stamp += refill_time(spec, debt);
    }
    state->flags = MG_LIMIT_STATE_VALID;
    state->level = level;
    state->stamp = stamp;
    state->aux = 0;
    state->count = 0;
    return stamp + refill_time(spec, spec->capacity - level);
}

/* A refund first pays off debt -- a stamp ahead of now, moved back by the
 * whole microseconds the units buy -- and then fills the bucket. */
apr_time_t mg_limit_bucket_refund(const mg_limit_spec *spec,
                                  mg_limit_state *state, apr_time_t now,
                                  apr_uint64_t units)
{
    apr_uint64_t level, back;
    apr_time_t stamp;

    refill(spec, state, now, &level, &stamp);
    back = units > 2 * spec->burst ? 2 * spec->capacity
                                   : units * spec->unit_scale;
    if (stamp > now) {
        apr_uint64_t owed_us = (apr_uint64_t)(stamp - now);
        apr_uint64_t paid_us = back / spec->refill_per_us;
        if (paid_us < owed_us) {
            stamp -= (apr_time_t)paid_us;
            back = 0;
        }
        else {
            back -= owed_us * spec->refill_per_us;
            stamp = now;
        }
    }
    level = back >= spec->capacity - level ? spec->capacity : level + back;
    state->flags = MG_LIMIT_STATE_VALID;
    state->level = level;
    state->stamp = stamp;
    state->aux = 0;
    state->count = 0;
    return stamp + refill_time(spec, spec->capacity - level);
}
