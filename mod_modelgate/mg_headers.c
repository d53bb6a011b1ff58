/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_headers.c -- RateLimit header values (see mg_headers.h).
 */
#include <string.h>
#include <apr_strings.h>
#include "mg_headers.h"

apr_int64_t mg_headers_seconds(apr_interval_time_t usec)
{
    if (usec <= 0) {
        return 0;
    }
    return (usec + APR_USEC_PER_SEC - 1) / APR_USEC_PER_SEC;
}

void mg_headers_build(apr_pool_t *p, const mg_layer *layers,
                      const mg_decision *d, mg_headers *h)
{
    const mg_limit_decision *b;
    const char *policy = NULL;
    apr_int64_t t;
    int i;

    memset(h, 0, sizeof(*h));
    if (d->nlayers <= 0 || d->binding < 0) {
        return;
    }
    for (i = 0; i < d->nlayers; i++) {
        const char *item = apr_psprintf(p, "\"%s\";q=%" APR_UINT64_T_FMT
                                        ";w=%" APR_INT64_T_FMT,
                                        layers[i].policy,
                                        layers[i].spec->quota,
                                        mg_headers_seconds(layers[i].spec->window));
        policy = policy ? apr_pstrcat(p, policy, ", ", item, NULL) : item;
    }
    h->policy = policy;

    b = &d->layer[d->binding];
    t = mg_headers_seconds(d->allowed ? b->reset : b->retry_after);
    h->ratelimit = apr_psprintf(p, "\"%s\";r=%" APR_UINT64_T_FMT
                                ";t=%" APR_INT64_T_FMT,
                                layers[d->binding].policy, b->remaining, t);
    h->x_limit = apr_psprintf(p, "%" APR_UINT64_T_FMT, b->limit);
    h->x_remaining = apr_psprintf(p, "%" APR_UINT64_T_FMT, b->remaining);
    h->x_reset = apr_psprintf(p, "%" APR_INT64_T_FMT, t);
    if (!d->allowed) {
        h->retry_after = apr_psprintf(p, "%" APR_INT64_T_FMT, t);
        h->retry_after_ms = apr_psprintf(p, "%" APR_INT64_T_FMT,
                                         (b->retry_after + 999) / 1000);
        h->should_retry = b->retry_after > MG_HEADERS_RETRY_HORIZON
                          ? "false" : "true";
    }
}
