/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_health.c -- upstream health: windowed counts, latency histogram,
 * circuit breaker (see mg_health.h).
 */
#include <string.h>
#include "mg_health.h"

/* The open period never grows past this many times `open`. */
#define OPEN_MAX_FACTOR 16
/* An upstream's own pause request is honoured up to a minute. */
#define PAUSE_MAX (60 * APR_USEC_PER_SEC)

void mg_health_conf_default(mg_health_conf *c)
{
    c->window = 10 * APR_USEC_PER_SEC;
    c->min_requests = 20;
    c->error_pct = 50;
    c->consecutive = MG_HEALTH_CONSECUTIVE;
    c->open = 10 * APR_USEC_PER_SEC;
    c->probes = 1;
    c->degrade_p95 = 0;
    c->degrade_error_pct = 0;
}

/* ---- the histogram ---------------------------------------------------------- */

static int log2_floor(apr_uint64_t v)
{
    int e = 0;

    while (v >>= 1) {
        e++;
    }
    return e;
}

int mg_health_bucket(apr_interval_time_t latency)
{
    apr_uint64_t l = latency > 0 ? (apr_uint64_t)latency : 0;
    int e;

    if (l < 8) {
        return (int)l;
    }
    e = log2_floor(l);
    if (e > 27) {
        return MG_HEALTH_BUCKETS - 1;
    }
    return 4 * (e - 1) + (int)((l >> (e - 2)) & 3);
}

apr_interval_time_t mg_health_bucket_top(int bucket)
{
    int e, sub;

    if (bucket < 8) {
        return bucket;
    }
    e = bucket / 4 + 1;
    sub = bucket % 4;
    return ((apr_interval_time_t)(4 + sub) << (e - 2))
           + ((apr_interval_time_t)1 << (e - 2)) - 1;
}

/* ---- the window ------------------------------------------------------------- */

static apr_interval_time_t slot_len(const mg_health_conf *c)
{
    apr_interval_time_t len = c->window / MG_HEALTH_SLOTS;
    return len > 0 ? len : 1;
}

/* The slot for `now`, emptied if it held an older interval.  Lock-free:
 * the thread that moves the slot's start on empties it; a count another
 * thread adds meanwhile may be lost or land in the old interval, which a
 * health estimate can afford (the breaker's transitions are locked). */
static mg_health_slot *current_slot(mg_health *h, const mg_health_conf *c,
                                    apr_time_t now)
{
    apr_interval_time_t len = slot_len(c);
    apr_time_t start = now - (now % len);
    mg_health_slot *s = &h->slot[(start / len) % MG_HEALTH_SLOTS];
    apr_time_t seen = __atomic_load_n(&s->start, __ATOMIC_ACQUIRE);
    int b;

    if (seen != start && seen < start
        && __atomic_compare_exchange_n(&s->start, &seen, start, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&s->requests, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->errors, 0, __ATOMIC_RELAXED);
        for (b = 0; b < MG_HEALTH_BUCKETS; b++) {
            __atomic_store_n(&s->latency[b], 0, __ATOMIC_RELAXED);
        }
    }
    return s;
}

static void count_in(mg_health_slot *s, int failed,
                     apr_interval_time_t latency)
{
    __atomic_add_fetch(&s->requests, 1, __ATOMIC_RELAXED);
    if (failed) {
        __atomic_add_fetch(&s->errors, 1, __ATOMIC_RELAXED);
    }
    else {
        __atomic_add_fetch(&s->latency[mg_health_bucket(latency)], 1,
                           __ATOMIC_RELAXED);
    }
}

/* The run of failures in a row, after this answer.  A success only reads
 * it unless a run is under way: every good answer of every process passes
 * here, and a store would move the cache line each time.  A success racing
 * a failure may zero the run just after the failure added to it; the run
 * then restarts one failure late, which a breaker can afford. */
static apr_uint32_t count_run(mg_health *h, int failed)
{
    if (failed) {
        return __atomic_add_fetch(&h->run, 1, __ATOMIC_RELAXED);
    }
    if (__atomic_load_n(&h->run, __ATOMIC_RELAXED) != 0) {
        __atomic_store_n(&h->run, 0, __ATOMIC_RELAXED);
    }
    return 0;
}

void mg_health_count(mg_health *h, const mg_health_conf *c, apr_time_t now,
                     int failed, apr_interval_time_t latency)
{
    count_in(current_slot(h, c, now), failed, latency);
    count_run(h, failed);
}

int mg_health_needs_lock(const mg_health *h, int failed,
                         apr_interval_time_t pause, int probe)
{
    return failed || pause > 0 || probe
           || __atomic_load_n(&h->state, __ATOMIC_ACQUIRE)
              != MG_BREAKER_CLOSED;
}

static int slot_live(const mg_health_slot *s, const mg_health_conf *c,
                     apr_time_t now)
{
    return s->start > now - c->window && s->start <= now
           && (s->requests > 0);
}

void mg_health_stats_get(const mg_health *h, const mg_health_conf *c,
                         apr_time_t now, mg_health_stats *st)
{
    apr_uint64_t hist[MG_HEALTH_BUCKETS];
    apr_uint64_t total = 0;
    int i, b;

    memset(st, 0, sizeof(*st));
    memset(hist, 0, sizeof(hist));
    for (i = 0; i < MG_HEALTH_SLOTS; i++) {
        const mg_health_slot *s = &h->slot[i];
        if (!slot_live(s, c, now)) {
            continue;
        }
        st->requests += s->requests;
        st->errors += s->errors;
        for (b = 0; b < MG_HEALTH_BUCKETS; b++) {
            hist[b] += s->latency[b];
        }
    }
    for (b = 0; b < MG_HEALTH_BUCKETS; b++) {
        total += hist[b];
    }
    if (total) {
        /* The smallest bucket top under which at least p of the answers
         * fall: an upper bound within one bucket's width. */
        const apr_uint64_t need50 = (total * 50 + 99) / 100;
        const apr_uint64_t need95 = (total * 95 + 99) / 100;
        const apr_uint64_t need99 = (total * 99 + 99) / 100;
        apr_uint64_t seen = 0;
        for (b = 0; b < MG_HEALTH_BUCKETS; b++) {
            seen += hist[b];
            if (!st->p50 && seen >= need50) {
                st->p50 = mg_health_bucket_top(b);
            }
            if (!st->p95 && seen >= need95) {
                st->p95 = mg_health_bucket_top(b);
            }
            if (!st->p99 && seen >= need99) {
                st->p99 = mg_health_bucket_top(b);
                break;
            }
        }
    }
}

/* ---- the breaker ------------------------------------------------------------ */

static void open_breaker(mg_health *h, apr_time_t now,
                         apr_interval_time_t for_how_long)
{
    if (h->state == MG_BREAKER_CLOSED) {
        h->refused = 0;
    }
    if (h->state != MG_BREAKER_OPEN) {
        h->opened++;
    }
    __atomic_store_n(&h->state, MG_BREAKER_OPEN, __ATOMIC_RELEASE);
    h->probes = 0;
    h->open_for = for_how_long;
    if (now + for_how_long > h->open_until) {
        h->open_until = now + for_how_long;
    }
}

int mg_health_allow(mg_health *h, const mg_health_conf *c, apr_time_t now,
                    int *probe, apr_interval_time_t *retry_after)
{
    *probe = 0;
    *retry_after = 0;
    if (h->state == MG_BREAKER_OPEN) {
        if (now < h->open_until) {
            *retry_after = h->open_until - now;
            h->refused++;
            return 0;
        }
        h->state = MG_BREAKER_HALF_OPEN;
        h->probes = 0;
        h->probe_since = now;
    }
    if (h->state == MG_BREAKER_HALF_OPEN) {
        if (h->probes > 0 && now - h->probe_since >= c->open) {
            /* The probes never reported (their process died): try again. */
            h->probes = 0;
            h->probe_since = now;
        }
        if (h->probes >= c->probes) {
            *retry_after = APR_USEC_PER_SEC;
            h->refused++;
            return 0;
        }
        h->probes++;
        *probe = 1;
    }
    return 1;
}

void mg_health_cancel_probe(mg_health *h)
{
    if (h->state == MG_BREAKER_HALF_OPEN && h->probes > 0) {
        h->probes--;
    }
}

mg_health_event mg_health_record(mg_health *h, const mg_health_conf *c,
                                 apr_time_t now, int failed,
                                 apr_interval_time_t latency,
                                 apr_interval_time_t pause, int probe)
{
    mg_health_slot *s = current_slot(h, c, now);
    const apr_uint32_t was = h->state;
    apr_uint32_t run;

    count_in(s, failed, latency);
    if (failed && now - h->run_at >= c->window) {
        /* The run's last failure has left the window: start afresh. */
        __atomic_store_n(&h->run, 0, __ATOMIC_RELAXED);
    }
    run = count_run(h, failed);
    if (failed) {
        h->run_at = now;
    }
    if (pause > 0) {
        /* The upstream said when to come back: believe it (a minute at
         * most), whatever the counts say. */
        open_breaker(h, now, pause < PAUSE_MAX ? pause : PAUSE_MAX);
        return was == MG_BREAKER_CLOSED ? MG_HEALTH_OPENED_PAUSE
               : was == MG_BREAKER_HALF_OPEN ? MG_HEALTH_REOPENED
               : MG_HEALTH_UNCHANGED;
    }
    if (probe && h->state == MG_BREAKER_HALF_OPEN) {
        if (h->probes > 0) {
            h->probes--;
        }
        if (failed) {
            apr_interval_time_t next = h->open_for * 2;
            if (next > c->open * OPEN_MAX_FACTOR) {
                next = c->open * OPEN_MAX_FACTOR;
            }
            if (next < c->open) {
                next = c->open;
            }
            open_breaker(h, now, next);
            return MG_HEALTH_REOPENED;
        }
        __atomic_store_n(&h->state, MG_BREAKER_CLOSED, __ATOMIC_RELEASE);
        h->open_for = 0;
        __atomic_store_n(&h->run, 0, __ATOMIC_RELAXED);
        /* The failures that opened it are history now. */
        for (int i = 0; i < MG_HEALTH_SLOTS; i++) {
            if (&h->slot[i] != s) {
                memset(&h->slot[i], 0, sizeof(h->slot[i]));
            }
        }
        s->errors = 0;
        return MG_HEALTH_CLOSED;
    }
    if (h->state != MG_BREAKER_CLOSED || !failed) {
        return MG_HEALTH_UNCHANGED;
    }
    if (c->consecutive && run >= c->consecutive) {
        /* A dead server fails every request at once, while the window's
         * share would wait for as many failures as it holds successes. */
        open_breaker(h, now, c->open);
        return MG_HEALTH_OPENED_RUN;
    }
    if (c->error_pct) {
        mg_health_stats st;
        mg_health_stats_get(h, c, now, &st);
        if (st.requests >= c->min_requests
            && (apr_uint64_t)st.errors * 100
               >= (apr_uint64_t)c->error_pct * st.requests) {
            open_breaker(h, now, c->open);
            return MG_HEALTH_OPENED_SHARE;
        }
    }
    return MG_HEALTH_UNCHANGED;
}

int mg_health_degraded(const mg_health *h, const mg_health_conf *c,
                       apr_time_t now)
{
    mg_health_stats st;

    if (h->state != MG_BREAKER_CLOSED) {
        return 1;
    }
    if (!c->degrade_p95 && !c->degrade_error_pct) {
        return 0;
    }
    mg_health_stats_get(h, c, now, &st);
    if (st.requests < c->min_requests) {
        return 0;
    }
    return (c->degrade_p95 && st.p95 >= c->degrade_p95)
           || (c->degrade_error_pct
               && (apr_uint64_t)st.errors * 100
                  >= (apr_uint64_t)c->degrade_error_pct * st.requests);
}
