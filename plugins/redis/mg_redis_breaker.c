/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_redis_breaker.c -- the redis store's circuit breaker (the states and
 * why: mg_redis_breaker.h).
 */
#include <string.h>
#include "mg_redis_breaker.h"

void mg_redis_breaker_init(mg_redis_breaker *b)
{
    memset(b, 0, sizeof(*b));
    b->state = MG_REDIS_BREAKER_CLOSED;
}

mg_redis_verdict mg_redis_breaker_allow(mg_redis_breaker *b, apr_time_t now)
{
    switch (b->state) {
    case MG_REDIS_BREAKER_CLOSED:
        return MG_REDIS_PASS;
    case MG_REDIS_BREAKER_OPEN:
        if (now < b->open_until) {
            return MG_REDIS_REFUSE;
        }
        b->state = MG_REDIS_BREAKER_HALF_OPEN;
        return MG_REDIS_PROBE;
    default:
        /* HALF_OPEN: the probe is out; no second one until it reports. */
        return MG_REDIS_REFUSE;
    }
}

/* Open for `backoff` from now, and retire every pooled connection. */
static void open_for(mg_redis_breaker *b, apr_time_t now,
                     apr_interval_time_t backoff)
{
    b->state = MG_REDIS_BREAKER_OPEN;
    b->backoff = backoff > MG_REDIS_BACKOFF_MAX ? MG_REDIS_BACKOFF_MAX
                                                : backoff;
    b->open_until = now + b->backoff;
    b->generation++;
}

mg_redis_event mg_redis_breaker_report(mg_redis_breaker *b, apr_time_t now,
                                       int ok, int probe)
{
    if (ok) {
        if (b->state == MG_REDIS_BREAKER_CLOSED) {
            return MG_REDIS_NO_CHANGE;
        }
        b->state = MG_REDIS_BREAKER_CLOSED;
        b->backoff = 0;
        b->open_until = 0;
        return MG_REDIS_CLOSED;
    }
    switch (b->state) {
    case MG_REDIS_BREAKER_CLOSED:
        /* The first failure of an outage; the requests that were in
         * flight with it report theirs while open and change nothing. */
        open_for(b, now, MG_REDIS_BACKOFF_FIRST);
        b->opened++;
        return MG_REDIS_OPENED;
    case MG_REDIS_BREAKER_HALF_OPEN:
        if (probe) {
            open_for(b, now, b->backoff * 2);
            b->probes_failed++;
            return MG_REDIS_REOPENED;
        }
        /* A command from before the breaker opened: the probe decides. */
        return MG_REDIS_NO_CHANGE;
    default:
        /* OPEN: already failing fast; only a probe may lengthen it. */
        return MG_REDIS_NO_CHANGE;
    }
}
