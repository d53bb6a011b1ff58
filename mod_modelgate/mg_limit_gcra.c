/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_limit_gcra.c -- the generic cell rate algorithm (ITU-T I.371).
 *
 * GCRA keeps one number per counter: the theoretical arrival time (TAT) of
 * the next conforming unit.  Each admitted unit pushes it one emission
 * interval T = window/quota further; a request is admitted when the TAT it
 * would leave is no more than the tolerance tau = burst * T ahead of now.
 * That admits exactly what a token bucket of `burst` admits (the TAT's lead
 * over now is the bucket's missing tokens), with a state that needs no
 * refill step: Redis rate limiters use it for that reason.
 *
 * T is rarely a whole number of microseconds, so the TAT is kept as whole
 * microseconds (stamp) plus a remainder in sub-units (level < refill_per_us):
 * one microsecond is refill_per_us sub-units and one unit unit_scale
 * sub-units, as in mg_limit_spec.
 */
#include "mg_limit.h"

static apr_interval_time_t ceil_div_us(apr_uint64_t subunits,
                                       apr_uint64_t per_us)
{
    return (apr_interval_time_t)((subunits + per_us - 1) / per_us);
}

MG_LIMIT_ALGORITHM(mg_limit_gcra)
{
    apr_uint64_t per_us = spec->refill_per_us;
    apr_uint64_t lead = 0, add = cost * spec->unit_scale, after;
    apr_time_t tat_us = now;
    apr_uint64_t tat_rem = 0;

    d->limit = spec->quota;
    d->delay = 0;
    *next = *state;
    if (state->flags & MG_LIMIT_STATE_VALID) {
        tat_us = state->stamp;
        tat_rem = state->level;
    }
    if (tat_us > now || (tat_us == now && tat_rem > 0)) {
        apr_uint64_t gap = (apr_uint64_t)(tat_us - now);
        if (gap > 2 * (spec->capacity / per_us) + 2) {
            /* Only a clock far behind the TAT gets here (a charge leaves
             * at most two buckets of lead): everything is in the future,
             * so nothing fits until the clock catches up. */
            d->allowed = 0;
            d->remaining = 0;
            d->retry_after = (apr_interval_time_t)gap
                             - (apr_interval_time_t)(spec->capacity / per_us);
            d->reset = (apr_interval_time_t)gap;
            d->expires = tat_us + 1;
            return;
        }
        lead = gap * per_us + tat_rem;
    }
    if (cost <= spec->burst && lead + add <= spec->capacity) {
        after = lead + add;
        d->allowed = 1;
        d->retry_after = 0;
        next->flags = MG_LIMIT_STATE_VALID;
        next->stamp = now + (apr_time_t)(after / per_us);
        next->level = after % per_us;
        next->aux = 0;
        next->count = 0;
    }
    else {
        after = lead;
        d->allowed = 0;
        if (cost <= spec->burst) {
            d->retry_after = ceil_div_us(lead + add - spec->capacity, per_us);
        }
        else {
            d->retry_after = lead ? ceil_div_us(lead, per_us) : spec->window;
        }
    }
    /* A charge may have left more lead than a bucket: nothing remains. */
    d->remaining = after >= spec->capacity
                   ? 0 : (spec->capacity - after) / spec->unit_scale;
    d->reset = ceil_div_us(after, per_us);
    d->expires = now + d->reset;
}

/* The TAT's lead over now in sub-units, at most two buckets (a charge
 * leaves no more); 0 for a fresh state or a TAT in the past. */
static apr_uint64_t lead_of(const mg_limit_spec *spec,
                            const mg_limit_state *state, apr_time_t now)
{
    apr_uint64_t per_us = spec->refill_per_us, gap;

    if (!(state->flags & MG_LIMIT_STATE_VALID) || state->stamp < now
        || (state->stamp == now && state->level == 0)) {
        return 0;
    }
    gap = (apr_uint64_t)(state->stamp - now);
    return gap > 2 * spec->capacity / per_us ? 2 * spec->capacity
                                             : gap * per_us + state->level;
}

/* Keep a lead of `lead` sub-units over `now`.
 * @return when the state equals a fresh one again */
static apr_time_t keep_lead(const mg_limit_spec *spec, mg_limit_state *state,
                            apr_time_t now, apr_uint64_t lead)
{
    apr_uint64_t per_us = spec->refill_per_us;

    state->flags = MG_LIMIT_STATE_VALID;
    state->stamp = now + (apr_time_t)(lead / per_us);
    state->level = lead % per_us;
    state->aux = 0;
    state->count = 0;
    return now + ceil_div_us(lead, per_us);
}

/* The TAT moves on by the units' emission intervals, whatever its lead:
 * GCRA has debt built in.  The lead is capped at two buckets (one of
 * debt), as the token bucket's is. */
apr_time_t mg_limit_gcra_charge(const mg_limit_spec *spec,
                                mg_limit_state *state, apr_time_t now,
                                apr_uint64_t units)
{
    apr_uint64_t lead = lead_of(spec, state, now), add, after;

    add = units > 2 * spec->burst ? 2 * spec->capacity
                                  : units * spec->unit_scale;
    after = lead + add;
    if (after > 2 * spec->capacity) {
        after = 2 * spec->capacity;
    }
    if (after < lead) {
        after = lead;       /* a lead already past the cap is kept */
    }
    return keep_lead(spec, state, now, after);
}

/* The TAT moves back by the units' emission intervals, but not behind now:
 * a lead of zero is a full bucket. */
apr_time_t mg_limit_gcra_refund(const mg_limit_spec *spec,
                                mg_limit_state *state, apr_time_t now,
                                apr_uint64_t units)
{
    apr_uint64_t lead = lead_of(spec, state, now), back;

    back = units > 2 * spec->burst ? 2 * spec->capacity
                                   : units * spec->unit_scale;
    lead = back >= lead ? 0 : lead - back;
    return keep_lead(spec, state, now, lead);
}
