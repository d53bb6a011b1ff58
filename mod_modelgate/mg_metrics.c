/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_metrics.c -- slot layout, histogram buckets, and the Prometheus text
 * exposition (version 0.0.4) of summed slots.
 *
 * Series whose count is zero are left out of the counter families (the
 * cross product of route, model, tier and outcome is mostly empty); a
 * histogram is written for every route that observed something.  A
 * scrape that finds a series missing reads it as 0, as Prometheus does.
 */
#include <string.h>
#include <apr_strings.h>
#include "mg_metrics.h"

const char *const mg_metrics_outcome_names[MG_OUT_COUNT] = {
    "", "allowed", "rejected", "degraded", "cached", "shed",
    "breaker_refused", "store_failure", "unenforced", "unauthenticated",
    "invalid"
};

const char *const mg_metrics_action_names[MG_ACT_COUNT] = {
    "", "fallback", "queued", "fallback_queued", "cache", "store_local"
};

/* From half a millisecond (what the gateway adds) to a minute (a long
 * completion's first byte). */
const apr_interval_time_t mg_metrics_bounds[MG_METRICS_BOUNDS] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000, 30000000, 60000000
};

/* The bounds as the exposition writes them (le="..."), in seconds. */
static const char *const bound_text[MG_METRICS_BOUNDS] = {
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25", "0.5", "1", "2.5", "5", "10", "30", "60"
};

void mg_metrics_layout_init(mg_metrics_layout *l, apr_uint32_t routes,
                            apr_uint32_t models, apr_uint32_t tiers,
                            apr_uint32_t limits)
{
    apr_size_t at = 0;

    memset(l, 0, sizeof(*l));
    l->routes = routes + 1;
    l->models = models + 1;
    l->tiers = tiers + 1;
    l->limits = limits + 1;
    l->requests = at;
    at += (apr_size_t)l->routes * l->models * l->tiers * MG_OUT_COUNT;
    l->rejections = at;
    at += (apr_size_t)l->tiers * l->limits;
    l->degradations = at;
    at += (apr_size_t)l->tiers * MG_ACT_COUNT;
    l->responses = at;
    at += (apr_size_t)l->routes * MG_METRICS_CLASSES;
    l->gw_latency = at;
    at += (apr_size_t)l->routes * MG_METRICS_HIST_CELLS;
    l->up_latency = at;
    at += (apr_size_t)l->routes * MG_METRICS_HIST_CELLS;
    l->tokens = at;
    at += (apr_size_t)l->models * l->tiers * 2;
    l->spend = at;
    at += (apr_size_t)l->models * l->tiers;
    /* Whole cache lines: processes' slots never share one. */
    l->cells = (at + 7) & ~(apr_size_t)7;
}

int mg_metrics_bucket(apr_interval_time_t usec)
{
    int i;

    /* Most requests land in the first buckets: a linear scan from the
     * bottom is a handful of compares. */
    for (i = 0; i < MG_METRICS_BOUNDS; i++) {
        if (usec <= mg_metrics_bounds[i]) {
            return i;
        }
    }
    return MG_METRICS_BOUNDS;
}

void mg_metrics_sum(const mg_metrics_layout *l, const apr_uint64_t *slots,
                    apr_uint32_t nslots, apr_uint64_t *out)
{
    apr_uint32_t s;
    apr_size_t c;

    memset(out, 0, l->cells * sizeof(*out));
    for (s = 0; s < nslots; s++) {
        const apr_uint64_t *slot = slots + (apr_size_t)s * l->cells;
        for (c = 0; c < l->cells; c++) {
            out[c] += __atomic_load_n(&slot[c], __ATOMIC_RELAXED);
        }
    }
}

const char *mg_metrics_escape(apr_pool_t *p, const char *value)
{
    apr_size_t n = 0;
    const char *s;
    char *out, *d;

    for (s = value; *s; s++) {
        n += (*s == '\\' || *s == '"' || *s == '\n') ? 2 : 1;
    }
    if (n == (apr_size_t)(s - value)) {
        return value;
    }
    d = out = apr_palloc(p, n + 1);
    for (s = value; *s; s++) {
        if (*s == '\\' || *s == '"') {
            *d++ = '\\';
            *d++ = *s;
        }
        else if (*s == '\n') {
            *d++ = '\\';
            *d++ = 'n';
        }
        else {
            *d++ = *s;
        }
    }
    *d = '\0';
    return out;
}

static void emit_str(mg_metrics_out *o, const char *s)
{
    o->emit(o->baton, s, strlen(s));
}

void mg_metrics_family(mg_metrics_out *o, const char *name, const char *type,
                       const char *help)
{
    emit_str(o, apr_pstrcat(o->p, "# HELP ", name, " ", help, "\n# TYPE ",
                            name, " ", type, "\n", NULL));
}

void mg_metrics_sample(mg_metrics_out *o, const char *name,
                       const char *const *labels, const char *value)
{
    const char *line = name;
    int i;

    if (labels && labels[0]) {
        line = apr_pstrcat(o->p, line, "{", NULL);
        for (i = 0; labels[i]; i += 2) {
            line = apr_pstrcat(o->p, line, i ? "," : "", labels[i], "=\"",
                               mg_metrics_escape(o->p, labels[i + 1]), "\"",
                               NULL);
        }
        line = apr_pstrcat(o->p, line, "}", NULL);
    }
    emit_str(o, apr_pstrcat(o->p, line, " ", value, "\n", NULL));
}

void mg_metrics_sample_u64(mg_metrics_out *o, const char *name,
                           const char *const *labels, apr_uint64_t value)
{
    mg_metrics_sample(o, name, labels,
                      apr_psprintf(o->p, "%" APR_UINT64_T_FMT, value));
}


/* A fixed-point number: `v` units of 10^-digits. */
static const char *fixed(apr_pool_t *p, apr_uint64_t v, apr_uint64_t unit,
                         int digits)
{
    return apr_psprintf(p, "%" APR_UINT64_T_FMT ".%0*" APR_UINT64_T_FMT,
                        v / unit, digits, v % unit);
}

static void write_histograms(mg_metrics_out *o, const mg_metrics_layout *l,
                             const mg_metrics_names *n,
                             const apr_uint64_t *sum, apr_size_t base,
                             const char *name, const char *help)
{
    const char *bucket = apr_pstrcat(o->p, name, "_bucket", NULL);
    const char *sum_name = apr_pstrcat(o->p, name, "_sum", NULL);
    const char *count_name = apr_pstrcat(o->p, name, "_count", NULL);
    apr_uint32_t r;
    int b;

    mg_metrics_family(o, name, "histogram", help);
    for (r = 0; r < l->routes; r++) {
        const apr_uint64_t *h = sum + base + (apr_size_t)r
                                              * MG_METRICS_HIST_CELLS;
        apr_uint64_t cum = 0;
        const char *labels[5] = { "route", n->routes[r], "le", NULL, NULL };

        for (b = 0; b <= MG_METRICS_BOUNDS; b++) {
            cum += h[b];
        }
        if (cum == 0) {
            continue;
        }
        cum = 0;
        for (b = 0; b <= MG_METRICS_BOUNDS; b++) {
            cum += h[b];
            labels[3] = b < MG_METRICS_BOUNDS ? bound_text[b] : "+Inf";
            mg_metrics_sample_u64(o, bucket, labels, cum);
        }
        labels[2] = NULL;
        mg_metrics_sample(o, sum_name, labels,
                          fixed(o->p, h[MG_METRICS_BOUNDS + 1],
                                APR_USEC_PER_SEC, 6));
        mg_metrics_sample_u64(o, count_name, labels, cum);
    }
}

void mg_metrics_write(mg_metrics_out *o, const mg_metrics_layout *l,
                      const mg_metrics_names *n, const apr_uint64_t *sum)
{
    apr_uint32_t r, m, t, x;
    apr_size_t c;

    mg_metrics_family(o, "modelgate_requests_total", "counter",
                      "Requests the gate saw, by route (declared upstream), "
                      "model (declared), tier and outcome.");
    for (r = 0; r < l->routes; r++) {
        for (m = 0; m < l->models; m++) {
            for (t = 0; t < l->tiers; t++) {
                for (x = 1; x < MG_OUT_COUNT; x++) {
                    const char *labels[9];
                    c = mg_metrics_requests_cell(l, r, m, t, (mg_outcome)x);
                    if (!sum[c]) {
                        continue;
                    }
                    labels[0] = "route";   labels[1] = n->routes[r];
                    labels[2] = "model";   labels[3] = n->models[m];
                    labels[4] = "tier";    labels[5] = n->tiers[t];
                    labels[6] = "outcome";
                    labels[7] = mg_metrics_outcome_names[x];
                    labels[8] = NULL;
                    mg_metrics_sample_u64(o, "modelgate_requests_total",
                                          labels, sum[c]);
                }
            }
        }
    }
    mg_metrics_family(o, "modelgate_rejections_total", "counter",
                      "Requests refused by a limit (429), by tier and the "
                      "refusing limit's name (empty: not declared in the "
                      "server configuration).");
    for (t = 0; t < l->tiers; t++) {
        for (x = 0; x < l->limits; x++) {
            const char *labels[5] = { "tier", n->tiers[t], "limit",
                                      n->limits[x], NULL };
            c = l->rejections + (apr_size_t)t * l->limits + x;
            if (sum[c]) {
                mg_metrics_sample_u64(o, "modelgate_rejections_total",
                                      labels, sum[c]);
            }
        }
    }
    mg_metrics_family(o, "modelgate_degradations_total", "counter",
                      "Requests admitted degraded, by tier and action.");
    for (t = 0; t < l->tiers; t++) {
        for (x = 1; x < MG_ACT_COUNT; x++) {
            const char *labels[5] = { "tier", n->tiers[t], "action",
                                      mg_metrics_action_names[x], NULL };
            c = l->degradations + (apr_size_t)t * MG_ACT_COUNT + x;
            if (sum[c]) {
                mg_metrics_sample_u64(o, "modelgate_degradations_total",
                                      labels, sum[c]);
            }
        }
    }
    mg_metrics_family(o, "modelgate_responses_total", "counter",
                      "Responses to gated requests, by route and status "
                      "class.");
    for (r = 0; r < l->routes; r++) {
        for (x = 0; x < MG_METRICS_CLASSES; x++) {
            static const char *const classes[MG_METRICS_CLASSES] = {
                "1xx", "2xx", "3xx", "4xx", "5xx"
            };
            const char *labels[5] = { "route", n->routes[r], "class",
                                      classes[x], NULL };
            c = l->responses + (apr_size_t)r * MG_METRICS_CLASSES + x;
            if (sum[c]) {
                mg_metrics_sample_u64(o, "modelgate_responses_total",
                                      labels, sum[c]);
            }
        }
    }
    write_histograms(o, l, n, sum, l->gw_latency,
                     "modelgate_gateway_latency_seconds",
                     "Time a gated request spent in the gateway itself: "
                     "all of it when not forwarded, else all but the time "
                     "the upstream held it.");
    write_histograms(o, l, n, sum, l->up_latency,
                     "modelgate_upstream_latency_seconds",
                     "Time from handing a request to the upstream to its "
                     "first response bytes.");
    mg_metrics_family(o, "modelgate_tokens_total", "counter",
                      "Tokens the answers reported (usage), by model, tier "
                      "and kind (prompt, completion); requests under a "
                      "token or budget limit only.");
    for (m = 0; m < l->models; m++) {
        for (t = 0; t < l->tiers; t++) {
            for (x = 0; x < 2; x++) {
                const char *labels[7] = { "model", n->models[m], "tier",
                                          n->tiers[t], "kind",
                                          x ? "completion" : "prompt",
                                          NULL };
                c = l->tokens + ((apr_size_t)m * l->tiers + t) * 2 + x;
                if (sum[c]) {
                    mg_metrics_sample_u64(o, "modelgate_tokens_total",
                                          labels, sum[c]);
                }
            }
        }
    }
    mg_metrics_family(o, "modelgate_spend_total", "counter",
                      "Spend at the models' declared prices, in units of "
                      "their currency, by model and tier.");
    for (m = 0; m < l->models; m++) {
        for (t = 0; t < l->tiers; t++) {
            const char *labels[5] = { "model", n->models[m], "tier",
                                      n->tiers[t], NULL };
            c = l->spend + (apr_size_t)m * l->tiers + t;
            if (sum[c]) {
                mg_metrics_sample(o, "modelgate_spend_total", labels,
                                  fixed(o->p, sum[c],
                                        APR_UINT64_C(1000000000), 9));
            }
        }
    }
}
