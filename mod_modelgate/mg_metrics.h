/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_metrics.h -- the gateway's metrics as plain data: which counters
 * there are, where each sits in a process slot, and the Prometheus text
 * exposition of their sums.  No httpd here: the glue
 * (mod_modelgate_metrics.c) keeps the slots in shared memory, adds to
 * them per request and calls mg_metrics_write() at a scrape.
 *
 * A slot is an array of `mg_metrics_layout.cells` 64-bit counters.  Every
 * process adds to its own slot with relaxed atomic additions (no lock, no
 * allocation, no string per request); a scrape sums the slots.  Two
 * processes may share a slot (more processes than slots): the additions
 * are atomic, so the sums stay exact; only the cache line is contended.
 *
 * Labels are indices computed when the configuration is read: route
 * (declared upstream), model (declared model), tier and limit (declared
 * names).  Index 0 of each is "none": a request with no route, an
 * unauthenticated one without a tier, a limit not declared in the server
 * configuration (.htaccess).  No label is ever a key, a subject or a path.
 */
#ifndef MG_METRICS_H
#define MG_METRICS_H

#include <apr_pools.h>
#include <apr_time.h>

/** What became of a request the gate saw. */
typedef enum {
    MG_OUT_NONE = 0,          /**< not decided: refused before (400, 404...) */
    MG_OUT_ALLOWED,
    MG_OUT_REJECTED,          /**< a limit refused it (429) */
    MG_OUT_DEGRADED,          /**< admitted by an on_limit action, or by the
                                   local stand-in store */
    MG_OUT_CACHED,            /**< admitted, answered by the response cache */
    MG_OUT_SHED,              /**< its tier's share of max_inflight was full */
    MG_OUT_BREAKER,           /**< its upstream's breaker was open */
    MG_OUT_STORE_FAILURE,     /**< the store failed, policy closed (503) */
    MG_OUT_UNENFORCED,        /**< the store failed, policy open: admitted */
    MG_OUT_UNAUTHENTICATED,   /**< no or no valid credential (401) */
    MG_OUT_INVALID,           /**< refused before the decision otherwise */
    MG_OUT_COUNT
} mg_outcome;

/** How a degraded request was admitted. */
typedef enum {
    MG_ACT_NONE = 0,
    MG_ACT_FALLBACK,
    MG_ACT_QUEUED,
    MG_ACT_FALLBACK_QUEUED,
    MG_ACT_CACHE,
    MG_ACT_STORE_LOCAL,       /**< decided by the local stand-in store */
    MG_ACT_COUNT
} mg_degrade_action;

/** The label values of outcomes and actions (index 0 of each unused). */
extern const char *const mg_metrics_outcome_names[MG_OUT_COUNT];
extern const char *const mg_metrics_action_names[MG_ACT_COUNT];

/** The finite upper bounds of the latency histograms' buckets, in
 *  microseconds; one more bucket (+Inf) follows them. */
#define MG_METRICS_BOUNDS 16
extern const apr_interval_time_t mg_metrics_bounds[MG_METRICS_BOUNDS];

/** Cells of one histogram: a count per bucket (not cumulative; +Inf last)
 *  and the sum in microseconds. */
#define MG_METRICS_HIST_CELLS (MG_METRICS_BOUNDS + 2)

/** Status classes counted: 1xx to 5xx. */
#define MG_METRICS_CLASSES 5

/** Where each family starts in a slot, and the slot's size. */
typedef struct mg_metrics_layout {
    apr_uint32_t routes;      /**< label values, "none" (index 0) included */
    apr_uint32_t models;
    apr_uint32_t tiers;
    apr_uint32_t limits;
    apr_size_t requests;      /**< [route][model][tier][outcome] */
    apr_size_t rejections;    /**< [tier][limit] */
    apr_size_t degradations;  /**< [tier][action] */
    apr_size_t responses;     /**< [route][class] */
    apr_size_t gw_latency;    /**< [route][MG_METRICS_HIST_CELLS] */
    apr_size_t up_latency;    /**< [route][MG_METRICS_HIST_CELLS] */
    apr_size_t tokens;        /**< [model][tier][prompt, completion] */
    apr_size_t spend;         /**< [model][tier], nano-units */
    apr_size_t cells;         /**< per slot, a multiple of 8 (64 bytes) */
} mg_metrics_layout;

/** Lay out a slot for this many declared routes, models, tiers and limits
 *  (without "none", which is added). */
void mg_metrics_layout_init(mg_metrics_layout *l, apr_uint32_t routes,
                            apr_uint32_t models, apr_uint32_t tiers,
                            apr_uint32_t limits);

static APR_INLINE apr_size_t mg_metrics_requests_cell(
    const mg_metrics_layout *l, apr_uint32_t route, apr_uint32_t model,
    apr_uint32_t tier, mg_outcome outcome)
{
    return l->requests
           + (((apr_size_t)route * l->models + model) * l->tiers + tier)
             * MG_OUT_COUNT + outcome;
}

/** The bucket of a latency (MG_METRICS_BOUNDS for +Inf). */
int mg_metrics_bucket(apr_interval_time_t usec);

/** Add `v` to a cell of a slot: relaxed and atomic, never a lock. */
static APR_INLINE void mg_metrics_add(apr_uint64_t *slot, apr_size_t cell,
                                      apr_uint64_t v)
{
    __atomic_fetch_add(&slot[cell], v, __ATOMIC_RELAXED);
}

/** Add a latency to the histogram at `cell`. */
static APR_INLINE void mg_metrics_observe(apr_uint64_t *slot, apr_size_t cell,
                                          apr_interval_time_t usec)
{
    if (usec < 0) {
        usec = 0;
    }
    mg_metrics_add(slot, cell + mg_metrics_bucket(usec), 1);
    mg_metrics_add(slot, cell + MG_METRICS_BOUNDS + 1, (apr_uint64_t)usec);
}

/** Sum `nslots` slots (`l->cells` each, one after the other) into `out`. */
void mg_metrics_sum(const mg_metrics_layout *l, const apr_uint64_t *slots,
                    apr_uint32_t nslots, apr_uint64_t *out);

/** The label values, each an array of the layout's size; [0] is "". */
typedef struct mg_metrics_names {
    const char *const *routes;
    const char *const *models;
    const char *const *tiers;
    const char *const *limits;
} mg_metrics_names;

/** Where the exposition goes: text of `len` bytes. */
typedef void (*mg_metrics_emit_fn)(void *baton, const char *text,
                                   apr_size_t len);

typedef struct mg_metrics_out {
    apr_pool_t *p;            /**< for the lines' text */
    mg_metrics_emit_fn emit;
    void *baton;
} mg_metrics_out;

/** "# HELP" and "# TYPE" lines of a family. */
void mg_metrics_family(mg_metrics_out *o, const char *name, const char *type,
                       const char *help);

/** One sample: `labels` is NULL or pairs of name and value ending in
 *  NULL (values escaped here), `value` its text. */
void mg_metrics_sample(mg_metrics_out *o, const char *name,
                       const char *const *labels, const char *value);

/** The same with a count as its value. */
void mg_metrics_sample_u64(mg_metrics_out *o, const char *name,
                           const char *const *labels, apr_uint64_t value);

/** A label value escaped for the exposition (\\, \" and \n). */
const char *mg_metrics_escape(apr_pool_t *p, const char *value);

/** Write every family of the layout from summed cells `sum`. */
void mg_metrics_write(mg_metrics_out *o, const mg_metrics_layout *l,
                      const mg_metrics_names *n, const apr_uint64_t *sum);

#endif /* MG_METRICS_H */
