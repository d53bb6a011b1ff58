/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_metrics.c -- the gateway's counters in shared memory, one
 * slot per process, and the `modelgate-metrics` handler that sums them
 * into Prometheus text at a scrape.
 *
 * In the core, not a plugin: every deployment wants them, they need only
 * what the core has (the request's outcome, route, model, tier, usage),
 * and recording is a few relaxed atomic additions into this process's
 * slot in log_transaction: a plugin would add a hook call per request and
 * a second module to load for nothing.  What a scrape reads from elsewhere
 * (upstream health, the counter store's statistics) it reads at the
 * scrape, from where it already lives.
 *
 * The segment: a header (magic, the layout's signature, slots, cells), the
 * pids that own the slots, then the slots (mg_metrics.h), each starting
 * on a cache line.  A child takes a slot in child_init: a free one or one
 * whose process is gone -- keeping its counts, which are part of the
 * totals -- else it shares one (the additions are atomic: sums stay
 * exact).  Label indices are computed here in post_config, from declared
 * names sorted (httpd's hashes iterate in a random order per generation);
 * per request the route is an array lookup by the upstream's index and the
 * model and tier a scan of a few pointers.
 *
 * Lifetime: like the shm store, the segment is made from the process pool
 * and kept in ap_retained_data, so a graceful restart (or `-k restart`)
 * keeps every count, old and new children adding to the same slots.  A
 * restart that changes the label set (a new upstream, model, tier or
 * limit) changes the layout's signature: the counts start again from zero
 * in a new segment (MG00603), the parent releases the old one, and old
 * children still finishing requests keep their own mapping of it.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <apr_strings.h>
#include <apr_shm.h>
#include <ap_mpm.h>
#include <http_core.h>
#include <http_protocol.h>
#include <http_request.h>
#include <mod_status.h>
#include "mod_modelgate_private.h"
#include "mg_metrics.h"
#include "mg_clock.h"

#define METRICS_RETAINED_KEY "mod_modelgate:metrics"
#define METRICS_MAGIC        APR_UINT64_C(0x6d676d6574726963) /* "mgmetric" */
#define METRICS_HANDLER      "modelgate-metrics"
/* The segment's ceiling: past it, processes share slots. */
#define METRICS_MAX_BYTES    ((apr_size_t)64 * 1024 * 1024)
#define HEAD_BYTES           64

typedef struct metrics_head {
    apr_uint64_t magic;
    apr_uint64_t signature;   /* of the layout and its label values */
    apr_uint32_t nslots;
    apr_uint32_t cells;
} metrics_head;

typedef struct metrics_retained {
    apr_shm_t *shm;
} metrics_retained;

/* This generation's view, set in post_config (children inherit it). */
static mg_metrics_layout layout;
static mg_metrics_names names;
static const mg_model **model_ptrs;  /* [1..] as names.models */
static const mg_tier **tier_ptrs;    /* [1..] as names.tiers */
static apr_uint32_t *route_of_up;    /* mg_upstream.index -> route label */
static int nroute_of_up;
static apr_hash_t *limit_ix;         /* limit name -> label index + 1 */
static metrics_head *head;
static pid_t *slot_pids;
static apr_uint64_t *slots;
/* This process's slot; NULL: not recording. */
static apr_uint64_t *my_slot;

/* ---- label values, from the configuration --------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The hash's keys sorted, "" first: label index 0 is "none". */
static const char **sorted_keys(apr_pool_t *p, apr_hash_t *h, int *n)
{
    apr_hash_index_t *hi;
    const char **out;
    int i = 1;

    *n = h ? (int)apr_hash_count(h) : 0;
    out = apr_pcalloc(p, sizeof(*out) * (*n + 1));
    out[0] = "";
    for (hi = h ? apr_hash_first(p, h) : NULL; hi; hi = apr_hash_next(hi)) {
        out[i++] = apr_hash_this_key(hi);
    }
    qsort(out + 1, *n, sizeof(*out), cmp_str);
    return out;
}

static apr_uint64_t fnv(apr_uint64_t h, const void *data, apr_size_t len)
{
    const unsigned char *p = data;

    while (len--) {
        h = (h ^ *p++) * APR_UINT64_C(0x100000001b3);
    }
    return h;
}

static apr_uint64_t names_hash(apr_uint64_t h, const char *const *v,
                               apr_uint32_t n)
{
    apr_uint32_t i;

    h = fnv(h, &n, sizeof(n));
    for (i = 0; i < n; i++) {
        h = fnv(h, v[i], strlen(v[i]) + 1);
    }
    return h;
}

static void make_labels(apr_pool_t *p, const mg_server_conf *sc)
{
    apr_hash_t *models = apr_hash_make(p);
    int nr, nm, nt, nl, i, u;

    /* Models once each, by their public names (aliases are not labels). */
    for (i = 0; sc->model_list && i < sc->model_list->nelts; i++) {
        const mg_model *m = APR_ARRAY_IDX(sc->model_list, i, const mg_model *);
        apr_hash_set(models, m->name, APR_HASH_KEY_STRING, m);
    }
    names.routes = sorted_keys(p, sc->upstreams, &nr);
    names.models = sorted_keys(p, models, &nm);
    names.tiers = sorted_keys(p, sc->policy->tiers, &nt);
    /* Every limit name the server configuration declares (tiers too: a
     * tier is a limit); one an .htaccess declares is "". */
    names.limits = sorted_keys(p, sc->policy->names, &nl);
    mg_metrics_layout_init(&layout, nr, nm, nt, nl);

    model_ptrs = apr_pcalloc(p, sizeof(*model_ptrs) * (nm + 1));
    for (i = 1; i <= nm; i++) {
        model_ptrs[i] = apr_hash_get(models, names.models[i],
                                     APR_HASH_KEY_STRING);
    }
    tier_ptrs = apr_pcalloc(p, sizeof(*tier_ptrs) * (nt + 1));
    for (i = 1; i <= nt; i++) {
        tier_ptrs[i] = apr_hash_get(sc->policy->tiers, names.tiers[i],
                                    APR_HASH_KEY_STRING);
    }
    /* mg_upstream.index was given in mod_modelgate_upstream.c's
     * post_config, which runs before this one. */
    nroute_of_up = nr;
    route_of_up = apr_pcalloc(p, sizeof(*route_of_up) * (nr + 1));
    for (i = 1; i <= nr; i++) {
        const mg_upstream *up = mg_upstream_get(sc, names.routes[i]);
        u = up ? up->index : -1;
        if (u >= 0 && u < nr) {
            route_of_up[u] = (apr_uint32_t)i;
        }
    }
    limit_ix = apr_hash_make(p);
    for (i = 1; i <= nl; i++) {
        apr_hash_set(limit_ix, names.limits[i], APR_HASH_KEY_STRING,
                     (void *)(apr_uintptr_t)i);
    }
}

const char *mg_cmd_metrics(cmd_parms *cmd, void *dummy, int on)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    mg_server_conf_of(cmd)->metrics_off = !on;
    return NULL;
}

/* ---- the segment ---------------------------------------------------------- */

static apr_size_t slots_offset(apr_uint32_t nslots)
{
    return (HEAD_BYTES + nslots * sizeof(pid_t) + 63) & ~(apr_size_t)63;
}

static apr_uint32_t wanted_slots(void)
{
    int daemons = 0;
    apr_size_t per = layout.cells * sizeof(apr_uint64_t);
    apr_uint32_t n, most;

    /* Old and new children overlap during a graceful restart. */
    if (ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &daemons) != APR_SUCCESS
        || daemons < 1) {
        daemons = 16;
    }
    n = (apr_uint32_t)daemons * 2;
    most = (apr_uint32_t)((METRICS_MAX_BYTES - slots_offset(n)) / per);
    return n < most ? n : (most > 0 ? most : 1);
}

static int metrics_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                               apr_pool_t *ptemp, server_rec *s)
{
    mg_server_conf *sc = ap_get_module_config(s->module_config,
                                              &modelgate_module);
    metrics_retained *kept;
    apr_uint64_t sig;
    apr_uint32_t nslots;
    apr_size_t bytes;
    apr_status_t rv;
    char *base;

    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    head = NULL;
    my_slot = NULL;
    if (sc->metrics_off) {
        /* Nothing mapped: log_transaction finds no slot and returns at
         * once, the handler answers 503. */
        return OK;
    }
    make_labels(pconf, sc);
    nslots = wanted_slots();
    sig = fnv(APR_UINT64_C(0xcbf29ce484222325), &layout, sizeof(layout));
    sig = fnv(sig, &nslots, sizeof(nslots));
    sig = names_hash(sig, names.routes, layout.routes);
    sig = names_hash(sig, names.models, layout.models);
    sig = names_hash(sig, names.tiers, layout.tiers);
    sig = names_hash(sig, names.limits, layout.limits);
    bytes = slots_offset(nslots) + (apr_size_t)nslots * layout.cells
                                   * sizeof(apr_uint64_t);

    kept = ap_retained_data_get(METRICS_RETAINED_KEY);
    if (!kept) {
        kept = ap_retained_data_create(METRICS_RETAINED_KEY, sizeof(*kept));
    }
    if (kept->shm) {
        metrics_head *h = apr_shm_baseaddr_get(kept->shm);
        if (h->magic != METRICS_MAGIC || h->signature != sig) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, MGLOGNO(00603)
                         "metrics: the declared upstreams, models, tiers or "
                         "limits changed; counting from zero");
            /* Old children keep their own mapping of it. */
            apr_shm_destroy(kept->shm);
            kept->shm = NULL;
        }
    }
    if (!kept->shm) {
        rv = apr_shm_create(&kept->shm, bytes, NULL, s->process->pool);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, MGLOGNO(00601)
                         "metrics: cannot create %" APR_SIZE_T_FMT " bytes "
                         "of shared memory", bytes);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        base = apr_shm_baseaddr_get(kept->shm);
        memset(base, 0, bytes);
        head = (metrics_head *)base;
        head->magic = METRICS_MAGIC;
        head->signature = sig;
        head->nslots = nslots;
        head->cells = (apr_uint32_t)layout.cells;
    }
    base = apr_shm_baseaddr_get(kept->shm);
    head = (metrics_head *)base;
    slot_pids = (pid_t *)(base + HEAD_BYTES);
    slots = (apr_uint64_t *)(base + slots_offset(head->nslots));
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, MGLOGNO(00602)
                 "metrics: %u slots of %" APR_SIZE_T_FMT " counters",
                 head->nslots, layout.cells);
    return OK;
}

static void metrics_child_init(apr_pool_t *pchild, server_rec *s)
{
    pid_t me = getpid();
    apr_uint32_t i;

    if (!head) {
        return;
    }
    for (i = 0; i < head->nslots; i++) {
        pid_t owner = __atomic_load_n(&slot_pids[i], __ATOMIC_RELAXED);
        if ((owner == 0 || (kill(owner, 0) != 0 && errno == ESRCH))
            && __atomic_compare_exchange_n(&slot_pids[i], &owner, me, 0,
                                           __ATOMIC_ACQ_REL,
                                           __ATOMIC_RELAXED)) {
            /* A dead owner's counts stay: they are part of the totals. */
            my_slot = slots + (apr_size_t)i * layout.cells;
            return;
        }
    }
    /* Every slot taken: share one; the additions are atomic. */
    my_slot = slots + (apr_size_t)((apr_uint32_t)me % head->nslots)
                      * layout.cells;
}

/* ---- per request ------------------------------------------------------------ */

static apr_uint32_t model_label(const mg_model *m)
{
    apr_uint32_t i;

    for (i = 1; m && i < layout.models; i++) {
        if (model_ptrs[i] == m) {
            return i;
        }
    }
    return 0;
}

static apr_uint32_t tier_label(const mg_tier *t)
{
    apr_uint32_t i;

    for (i = 1; t && i < layout.tiers; i++) {
        if (tier_ptrs[i] == t) {
            return i;
        }
    }
    return 0;
}

/* What became of a request the gate saw, into this process's slot: a few
 * relaxed atomic additions; strings only for a refused request. */
static int metrics_log(request_rec *r)
{
    request_rec *last;
    mg_request *req = mg_request_gated(r, &last);
    apr_uint64_t *slot = my_slot;
    apr_uint32_t route = 0, model, tier;
    mg_outcome outcome;
    mg_now now;
    apr_interval_time_t total;
    int status, cls;

    if (!slot) {
        return DECLINED;
    }
    if (!req) {
        return DECLINED;
    }
    status = last->status;
    if (req->upstream && req->upstream->index >= 0
        && req->upstream->index < nroute_of_up) {
        route = route_of_up[req->upstream->index];
    }
    model = model_label(req->model);
    tier = tier_label(req->tier);
    outcome = (mg_outcome)mg_request_outcome(req, status);
    mg_metrics_add(slot, mg_metrics_requests_cell(&layout, route, model, tier,
                                                  outcome), 1);
    if (outcome == MG_OUT_REJECTED) {
        const char *limit = apr_table_get(r->notes, "modelgate-limit");
        apr_uintptr_t ix = limit ? (apr_uintptr_t)apr_hash_get(
            limit_ix, limit, APR_HASH_KEY_STRING) : 0;
        mg_metrics_add(slot, layout.rejections
                             + (apr_size_t)tier * layout.limits + ix, 1);
    }
    else if (outcome == MG_OUT_DEGRADED && req->action < MG_ACT_COUNT) {
        mg_metrics_add(slot, layout.degradations
                             + (apr_size_t)tier * MG_ACT_COUNT + req->action,
                       1);
    }
    cls = status / 100 - 1;
    if (cls >= 0 && cls < MG_METRICS_CLASSES) {
        mg_metrics_add(slot, layout.responses
                             + (apr_size_t)route * MG_METRICS_CLASSES + cls,
                       1);
    }
    now = mg_clock_now();
    total = now.wall - r->request_time;
    if (req->entered) {
        /* The upstream held it from the hand-off to now; the rest is the
         * gateway's. */
        apr_interval_time_t held = now.mono - req->sent_at;
        mg_metrics_observe(slot, layout.gw_latency + (apr_size_t)route
                                                     * MG_METRICS_HIST_CELLS,
                           total > held ? total - held : 0);
        mg_metrics_observe(slot, layout.up_latency + (apr_size_t)route
                                                     * MG_METRICS_HIST_CELLS,
                           (req->first_byte_at ? req->first_byte_at
                                               : now.mono) - req->sent_at);
    }
    else {
        mg_metrics_observe(slot, layout.gw_latency + (apr_size_t)route
                                                     * MG_METRICS_HIST_CELLS,
                           total);
    }
    if (req->reservation && req->reservation->usage_read) {
        const mg_reservation *res = req->reservation;
        apr_uint64_t prompt = res->usage.prompt > 0
                              ? (apr_uint64_t)res->usage.prompt : 0;
        apr_uint64_t completion = res->usage.completion > 0
                                  ? (apr_uint64_t)res->usage.completion : 0;
        apr_size_t mt = (apr_size_t)model * layout.tiers + tier;

        mg_metrics_add(slot, layout.tokens + mt * 2, prompt);
        mg_metrics_add(slot, layout.tokens + mt * 2 + 1, completion);
        mg_metrics_add(slot, layout.spend + mt,
                       mg_policy_spend(prompt, completion, res->price_in,
                                       res->price_out));
    }
    return DECLINED;
}

/* ---- the scrape ------------------------------------------------------------- */

static void emit_to_client(void *baton, const char *text, apr_size_t len)
{
    ap_rwrite(text, (int)len, baton);
}


static void write_upstreams(mg_metrics_out *o, request_rec *r,
                            const mg_server_conf *sc)
{
    static const char *const states[3] = { "closed", "open", "half_open" };
    mg_upstream_snap *snap;
    apr_uint32_t i;
    int st;

    snap = apr_pcalloc(r->pool, sizeof(*snap) * layout.routes);
    for (i = 1; i < layout.routes; i++) {
        mg_upstream_snapshot(r->server, mg_upstream_get(sc, names.routes[i]),
                             &snap[i]);
    }
    mg_metrics_family(o, "modelgate_upstream_breaker_state", "gauge",
                      "1 for the upstream's circuit breaker's state.");
    for (i = 1; i < layout.routes; i++) {
        for (st = 0; st < 3; st++) {
            const char *labels[5] = { "upstream", names.routes[i], "state",
                                      states[st], NULL };
            mg_metrics_sample(o, "modelgate_upstream_breaker_state", labels,
                              snap[i].state == st ? "1" : "0");
        }
    }
    mg_metrics_family(o, "modelgate_upstream_in_flight", "gauge",
                      "Requests at the upstream now (counted only at "
                      "upstreams with a max_inflight).");
    for (i = 1; i < layout.routes; i++) {
        const char *labels[3] = { "upstream", names.routes[i], NULL };
        if (snap[i].inflight_counted) {
            mg_metrics_sample_u64(o, "modelgate_upstream_in_flight", labels,
                                  snap[i].inflight);
        }
    }
    mg_metrics_family(o, "modelgate_upstream_window_requests", "gauge",
                      "Answers in the upstream's health window.");
    for (i = 1; i < layout.routes; i++) {
        const char *labels[3] = { "upstream", names.routes[i], NULL };
        mg_metrics_sample_u64(o, "modelgate_upstream_window_requests", labels,
                              snap[i].stats.requests);
    }
    mg_metrics_family(o, "modelgate_upstream_error_ratio", "gauge",
                      "Share of failed answers (5xx, none) in the "
                      "upstream's health window.");
    for (i = 1; i < layout.routes; i++) {
        const char *labels[3] = { "upstream", names.routes[i], NULL };
        mg_metrics_sample(o, "modelgate_upstream_error_ratio", labels,
                          snap[i].stats.requests
                          ? apr_psprintf(r->pool, "%.6f",
                                         (double)snap[i].stats.errors
                                         / snap[i].stats.requests)
                          : "0");
    }
    mg_metrics_family(o, "modelgate_upstream_latency_p95_seconds", "gauge",
                      "95th percentile of the upstream's latency in its "
                      "health window (an upper bound within a quarter).");
    for (i = 1; i < layout.routes; i++) {
        const char *labels[3] = { "upstream", names.routes[i], NULL };
        mg_metrics_sample(o, "modelgate_upstream_latency_p95_seconds", labels,
                          apr_psprintf(r->pool, "%.6f",
                                       (double)snap[i].stats.p95
                                       / APR_USEC_PER_SEC));
    }
}

static int metrics_handler(request_rec *r)
{
    const mg_server_conf *sc;
    mg_metrics_out out;
    apr_uint64_t *sum;

    if (!r->handler || strcmp(r->handler, METRICS_HANDLER)) {
        return DECLINED;
    }
    r->allowed |= (AP_METHOD_BIT << M_GET);
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (!head) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    sc = ap_get_module_config(r->server->module_config, &modelgate_module);
    ap_set_content_type(r, "text/plain; version=0.0.4; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    if (r->header_only) {
        return OK;
    }
    sum = apr_palloc(r->pool, layout.cells * sizeof(*sum));
    mg_metrics_sum(&layout, slots, head->nslots, sum);
    out.p = r->pool;
    out.emit = emit_to_client;
    out.baton = r;
    mg_metrics_write(&out, &layout, &names, sum);
    write_upstreams(&out, r, sc);
    mg_metrics_write_store(&out, r, sc);
    /* The plugins' families (the span exporter's counters). */
    modelgate_run_mg_metrics_scrape(r, &out);
    return OK;
}

/* mod_status's server-status page (and its ?auto form): the headline
 * figures, from the same slots. */
static int metrics_status(request_rec *r, int flags)
{
    const mg_server_conf *sc;
    apr_uint64_t *sum, outcome[MG_OUT_COUNT], total = 0, rejected = 0;
    apr_uint32_t ro, m, t, x, i;
    int st;

    if (!head) {
        return OK;
    }
    sc = ap_get_module_config(r->server->module_config, &modelgate_module);
    sum = apr_palloc(r->pool, layout.cells * sizeof(*sum));
    mg_metrics_sum(&layout, slots, head->nslots, sum);
    memset(outcome, 0, sizeof(outcome));
    for (ro = 0; ro < layout.routes; ro++) {
        for (m = 0; m < layout.models; m++) {
            for (t = 0; t < layout.tiers; t++) {
                for (x = 1; x < MG_OUT_COUNT; x++) {
                    apr_uint64_t v = sum[mg_metrics_requests_cell(
                        &layout, ro, m, t, (mg_outcome)x)];
                    outcome[x] += v;
                    total += v;
                }
            }
        }
    }
    rejected = outcome[MG_OUT_REJECTED];
    if (flags & AP_STATUS_SHORT) {
        ap_rprintf(r, "ModelGateRequests: %" APR_UINT64_T_FMT "\n", total);
        for (x = 1; x < MG_OUT_COUNT; x++) {
            ap_rprintf(r, "ModelGateRequests_%s: %" APR_UINT64_T_FMT "\n",
                       mg_metrics_outcome_names[x], outcome[x]);
        }
        for (i = 1; i < layout.routes; i++) {
            mg_upstream_snap snap;
            mg_upstream_snapshot(r->server,
                                 mg_upstream_get(sc, names.routes[i]), &snap);
            ap_rprintf(r, "ModelGateUpstreamBreaker_%s: %s\n",
                       names.routes[i], snap.state == MG_BREAKER_OPEN
                       ? "open" : snap.state == MG_BREAKER_HALF_OPEN
                       ? "half_open" : "closed");
        }
        mg_metrics_status_store(r, sc, flags);
        return OK;
    }
    ap_rputs("<hr>\n<h2>mod_modelgate</h2>\n", r);
    ap_rprintf(r, "<dl><dt>Requests the gate saw: %" APR_UINT64_T_FMT
               " (rejected by a limit: %" APR_UINT64_T_FMT ")</dt>\n",
               total, rejected);
    for (x = 1; x < MG_OUT_COUNT; x++) {
        ap_rprintf(r, "<dt>%s: %" APR_UINT64_T_FMT "</dt>\n",
                   mg_metrics_outcome_names[x], outcome[x]);
    }
    ap_rputs("</dl>\n<table border=\"0\"><tr><th>upstream</th>"
             "<th>breaker</th><th>window answers</th><th>errors</th>"
             "<th>p95 ms</th></tr>\n", r);
    for (i = 1; i < layout.routes; i++) {
        mg_upstream_snap snap;
        mg_upstream_snapshot(r->server, mg_upstream_get(sc, names.routes[i]),
                             &snap);
        st = snap.state;
        ap_rprintf(r, "<tr><td>%s</td><td>%s</td><td>%u</td><td>%u</td>"
                   "<td>%" APR_INT64_T_FMT "</td></tr>\n",
                   ap_escape_html(r->pool, names.routes[i]),
                   st == MG_BREAKER_OPEN ? "open"
                   : st == MG_BREAKER_HALF_OPEN ? "half open" : "closed",
                   snap.stats.requests, snap.stats.errors,
                   (apr_int64_t)(snap.stats.p95 / 1000));
    }
    ap_rputs("</table>\n", r);
    mg_metrics_status_store(r, sc, flags);
    return OK;
}

void mg_metrics_register(apr_pool_t *p)
{
    mg_summary_register(p);
    /* mod_status's hook, by name: it may be loaded after this module, or
     * not at all. */
    APR_OPTIONAL_HOOK(ap, status_hook, metrics_status, NULL, NULL,
                      APR_HOOK_MIDDLE);
    /* After the core's post_config, which numbers the upstreams. */
    ap_hook_post_config(metrics_post_config, NULL, NULL, APR_HOOK_LAST);
    ap_hook_child_init(metrics_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_log_transaction(metrics_log, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(metrics_handler, NULL, NULL, APR_HOOK_MIDDLE);
}
