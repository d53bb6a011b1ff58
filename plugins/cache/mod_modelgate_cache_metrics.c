/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_cache_metrics.c -- the response cache's statistics in the
 * core's Prometheus exposition (SetHandler modelgate-metrics), through the
 * core's mg_metrics_scrape hook: the same figures as the
 * modelgate-cache-status page, read from the same shared counters, so a
 * dashboard needs no second scrape.
 *
 * The counters are summed over every process already (one shared set,
 * atomic additions).  They start again at 0 when a restart makes the
 * cache anew, as shmcb's entries do: a counter reset, which Prometheus'
 * rate() expects.
 */
#include <apr_strings.h>
#include <httpd.h>
#include "mod_modelgate.h"
#include "mg_metrics.h"
#include "mod_modelgate_cache.h"

/* A counter family of n samples, values as counts. */
static void family(mg_metrics_out *o, const char *name, const char *help,
                   const char *label, const char *const *values,
                   const apr_uint64_t *counts, int n)
{
    int i;

    mg_metrics_family(o, name, "counter", help);
    for (i = 0; i < n; i++) {
        const char *labels[3] = { label, values ? values[i] : NULL, NULL };
        mg_metrics_sample_u64(o, name, label ? labels : NULL, counts[i]);
    }
}

void mg_cache_metrics_scrape(request_rec *r, struct mg_metrics_out *o)
{
    mg_cache_stats *st = mg_cache_stats_shared;
    apr_uint64_t hits, stale, n[2];
    static const char *const freshness[] = { "fresh", "stale" };
    static const char *const result[] = { "stored", "refused" };

    /* No cache configured: no families, rather than a row of zeros that
     * looks like a cache nobody uses. */
    if (!st) {
        return;
    }
    n[0] = apr_atomic_read64(&st->lookups);
    family(o, "modelgate_cache_lookups_total",
           "Lookups of cacheable requests in the response cache.",
           NULL, NULL, n, 1);
    /* A stale answer is counted in hits too: fresh is the difference. */
    hits = apr_atomic_read64(&st->hits);
    stale = apr_atomic_read64(&st->stale_hits);
    n[0] = hits > stale ? hits - stale : 0;
    n[1] = stale;
    family(o, "modelgate_cache_hits_total",
           "Requests answered from the cache, by the answer's freshness "
           "(stale: served past its TTL while the upstream failed).",
           "freshness", freshness, n, 2);
    n[0] = apr_atomic_read64(&st->misses);
    family(o, "modelgate_cache_misses_total",
           "Lookups that found no answer.", NULL, NULL, n, 1);
    n[0] = apr_atomic_read64(&st->stores);
    n[1] = apr_atomic_read64(&st->store_failures);
    family(o, "modelgate_cache_stores_total",
           "Answers offered to the socache, by whether it took them.",
           "result", result, n, 2);
    n[0] = apr_atomic_read64(&st->bytes_stored);
    family(o, "modelgate_cache_stored_bytes_total",
           "Bytes of answers the socache took.", NULL, NULL, n, 1);
    n[0] = apr_atomic_read64(&st->purges);
    family(o, "modelgate_cache_purges_total",
           "Purges of a tenant's or a model's answers.", NULL, NULL, n, 1);
}
