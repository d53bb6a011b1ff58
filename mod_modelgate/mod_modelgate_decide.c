/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_decide.c -- the limit decision of a request, what happens
 * while the counter store fails, and what a tier's callers get when a
 * limit refuses them.
 *
 * The decision: every layer that applies (mod_modelgate_layers.c) goes to
 * the store's decide() at once.  While the store fails, the tier's
 * on_store_failure=, else ModelGateStoreFailure, says what to do.
 *
 * When a limit refuses, the tier's on_limit= actions are tried in order:
 *
 *   fallback:MODEL  the request is decided again as a request for MODEL
 *                   (its own per-model layers; the tier's and the other
 *                   model-independent layers again) and, if admitted,
 *                   served by MODEL's upstream with the body's model
 *                   renamed.  Only the served model's layers are charged:
 *                   the refused decision charged nothing.
 *   queue:MS        the request waits, in steps of the soonest wait of
 *                   the candidates refused (the requested model and the
 *                   fallbacks listed before it), up to MS, trying them
 *                   again after each step.  When that wait is longer than
 *                   what is left of MS -- or no wait admits it, a cost
 *                   above what a limit can ever hold -- the action is
 *                   skipped at once: holding a worker would only delay
 *                   the refusal.  At most ModelGateQueueLimit requests of
 *                   a child wait at once; past that the action is skipped
 *                   too, so waiting never takes every worker thread.
 *   cache           the response cache's answer for this same request
 *                   (plugins/cache, through the mg_cached_answer hook),
 *                   marked X-Modelgate-Degraded: cache; a miss goes on.
 *   reject          429 (also what happens after the last action).
 *                   A request a limit can never admit (mg_decision
 *                   `never`) is told so, final, without Retry-After.
 *
 * When nothing was admitted because the requested upstream's breaker is
 * open, the cache is asked once more (`why` "stale"): it may answer with
 * an entry kept past its TTL (ModelGateCacheStaleIfError), marked
 * X-Modelgate-Degraded: stale, instead of the 503.
 *
 * So a request is refused only once every candidate has refused it.
 *
 * Upstream health comes first for each candidate (mod_modelgate_upstream.c):
 * an upstream whose breaker is open, or whose max_inflight share for the
 * tier is full, refuses the candidate before any limit is charged, and the
 * actions above run as for a limit.  When nothing is admitted and it was
 * the requested upstream's health that refused, the answer is 503 with
 * Retry-After (upstream_unavailable or upstream_saturated), not 429.  A
 * tier with degraded_cost=K pays K times the cost while the candidate's
 * upstream is degraded: its limits shrink K-fold with the same counters.
 */
#include <apr_strings.h>
#include <apr_atomic.h>
#include <ap_mpm.h>
#include <http_core.h>
#include <http_protocol.h>
#include "mod_modelgate_private.h"
#include "mg_error.h"
#include "mg_clock.h"
#include "mg_metrics.h"

/* Requests of this child waiting in a queue action, and how many may. */
static volatile apr_uint32_t queue_waiting;
static apr_uint32_t queue_cap = 1;

void mg_decide_child_init(const mg_server_conf *sc)
{
    int threads = 1;

    if (sc->queue_limit != MG_UNSET) {
        queue_cap = (apr_uint32_t)sc->queue_limit;
        return;
    }
    if (ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads) != APR_SUCCESS
        || threads < 1) {
        threads = 1;
    }
    queue_cap = threads >= 4 ? (apr_uint32_t)threads / 4 : 1;
}

/* Returns 1 when the table was empty: then no header of the gate's is in
 * it, and set_openai_headers may add its own too. */
static int set_limit_headers(request_rec *r, const mg_headers *h)
{
    /* err_headers_out: kept on errors and not replaced by mod_proxy_http,
     * which overwrites headers_out with the upstream's. */
    apr_table_t *t = r->err_headers_out;
    /* The names are distinct: into an empty table, adding is setting,
     * without a scan of the table per name. */
    int fresh = apr_is_empty_table(t);
    void (*put)(apr_table_t *, const char *, const char *) =
        fresh ? apr_table_addn : apr_table_setn;

    if (!h->policy) {
        return fresh;
    }
    put(t, "RateLimit-Policy", h->policy);
    put(t, "RateLimit", h->ratelimit);
    put(t, "X-RateLimit-Limit", h->x_limit);
    put(t, "X-RateLimit-Remaining", h->x_remaining);
    put(t, "X-RateLimit-Reset", h->x_reset);
    if (h->retry_after) {
        put(t, "Retry-After", h->retry_after);
        put(t, "retry-after-ms", h->retry_after_ms);
    }
    if (h->should_retry) {
        put(t, "x-should-retry", h->should_retry);
    }
    return fresh;
}

/* OpenAI's x-ratelimit-* headers where a token or budget layer applied:
 * the routes tools written for OpenAI call.  Elsewhere they would only add
 * to every request's cost.  `fresh`: the table held none of the gate's
 * headers before set_limit_headers, so these are added without a scan
 * (apr_table_setn compares each name with every x-ratelimit-* already
 * there: six cost ~2,400 instructions). */
static void set_openai_headers(request_rec *r, const mg_layer *layers,
                               const mg_decision *d, int fresh)
{
    apr_table_t *t = r->err_headers_out;
    void (*put)(apr_table_t *, const char *, const char *) =
        fresh ? apr_table_addn : apr_table_setn;
    mg_headers_openai h;
    int i, tokens = 0;

    for (i = 0; i < d->nlayers; i++) {
        tokens |= layers[i].tokens != 0;
    }
    if (!tokens) {
        return;
    }
    mg_headers_build_openai(r->pool, layers, d, &h);
    if (h.limit_requests) {
        put(t, "x-ratelimit-limit-requests", h.limit_requests);
        put(t, "x-ratelimit-remaining-requests", h.remaining_requests);
        put(t, "x-ratelimit-reset-requests", h.reset_requests);
    }
    if (h.limit_tokens) {
        put(t, "x-ratelimit-limit-tokens", h.limit_tokens);
        put(t, "x-ratelimit-remaining-tokens", h.remaining_tokens);
        put(t, "x-ratelimit-reset-tokens", h.reset_tokens);
    }
}

/* Say which shadow layers would have refused this request: a log line at
 * LogLevel info, a note for the access log and a response header. */
static void report_shadow(request_rec *r, const mg_layer *layers,
                          const mg_decision *d, const mg_key *key)
{
    const char *names = NULL;
    int i;

    for (i = 0; i < d->nlayers; i++) {
        if (d->shadow_rejected & (1u << i)) {
            names = names ? apr_pstrcat(r->pool, names, ", ", layers[i].policy,
                                        NULL)
                          : layers[i].policy;
        }
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, MGLOGNO(00203)
                  "shadow limit(s) %s would have refused key '%s'", names,
                  key->id);
    apr_table_setn(r->notes, "modelgate-shadow", names);
    apr_table_setn(r->err_headers_out, "X-Modelgate-Shadow-Rejected", names);
}


/* One decision: for the requested model or a candidate. */
typedef struct attempt {
    const mg_model *model;
    const mg_upstream *up;    /* where it would go; NULL: not routed */
    mg_layer layers[MG_LIMIT_MAX_LAYERS];
    int n;
    mg_decision d;
    int probe;                /* admitted as the breaker's probe */
    mg_now now;               /* when it was decided */
    apr_uint32_t factor;      /* degraded_cost's K when it applied, else 1 */
    int local;                /* decided by the local stand-in store */
    mg_upstream_verdict verdict; /* when UNHEALTHY: why */
    apr_interval_time_t health_retry;
} attempt;

typedef enum {
    DECIDED,                  /* a->d holds the decision */
    ANSWERED,                 /* *status is the response (store down) */
    UNENFORCED,               /* the store fails and the policy admits */
    UNHEALTHY                 /* the upstream refused it (a->verdict) */
} decide_outcome;

static decide_outcome decide_for(request_rec *r, const mg_server_conf *sc,
                                 const mg_dir_conf *dc, const mg_key *key,
                                 const mg_tier *tier, attempt *a,
                                 int *status)
{
    mg_now now;
    apr_status_t rv;
    int i;

    if (a->model) {
        a->up = mg_model_pick(sc, a->model);
    }
    else {
        /* translate_name routed it already, unless .htaccess did. */
        const mg_request *req = mg_request_get(r);
        a->up = req->upstream ? req->upstream : mg_route_upstream(r, sc, dc);
    }
    a->probe = 0;
    a->n = 0;                 /* stays 0 when the upstream refuses */
    if (a->up && (a->verdict = mg_upstream_admit(r, a->up, tier, &a->probe,
                                                 &a->health_retry))
                 != MG_UPSTREAM_OK) {
        return UNHEALTHY;
    }
    a->local = 0;
    a->factor = 1;
    a->n = mg_layers_for_request(r, sc, dc, key, tier,
                                 a->model ? a->model->name : NULL,
                                 mg_request_get(r), a->layers);
    if (a->n < 0) {
        *status = mg_layers_too_many(r, sc, dc, tier, a->model
                                     ? a->model->name : NULL);
        return ANSWERED;
    }
    if (tier->degraded_cost > 1 && a->up && mg_upstream_degraded(r, a->up)) {
        /* The upstream struggles: this tier's requests count K times. */
        for (i = 0; i < a->n; i++) {
            a->layers[i].cost *= tier->degraded_cost;
        }
        a->factor = tier->degraded_cost;
        apr_table_setn(r->err_headers_out, "X-Modelgate-Cost-Factor",
                       apr_psprintf(r->pool, "%u", tier->degraded_cost));
    }
    a->now = now = mg_clock_now();
    rv = sc->store->decide(sc->store_inst, r->server, a->layers, a->n, now,
                           &a->d);
    if (rv == APR_SUCCESS) {
        if (a->d.store_time) {
            /* Decided on the store's own clock: settled on it too. */
            a->now.mono = a->now.wall = a->d.store_time;
        }
        if (!a->d.allowed && a->probe) {
            mg_upstream_cancel_probe(r, a->up);
            a->probe = 0;
        }
        return DECIDED;
    }
    /* Stores log their outages once, not per request; what happens to the
     * request is the tier's policy, else the server's. */
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, r, MGLOGNO(00201)
                  "counter store '%s' failed to decide", sc->store->name);
    switch (tier->on_store_failure != MG_FAIL_UNSET ? tier->on_store_failure
                                                    : sc->store_failure) {
    case MG_FAIL_LOCAL:
        if (sc->local) {
            apr_table_setn(r->notes, "modelgate-store", "local");
            if (sc->local->decide(sc->local_inst, r->server, a->layers, a->n,
                                  now, &a->d) == APR_SUCCESS) {
                a->local = 1;
                return DECIDED;
            }
        }
        break;
    case MG_FAIL_OPEN:
        apr_table_setn(r->notes, "modelgate-decision", "unenforced");
        apr_table_setn(r->err_headers_out, "X-Modelgate-Limits",
                       "unenforced");
        return UNENFORCED;
    default:
        break;
    }
    apr_table_setn(r->notes, "modelgate-decision", "store-down");
    mg_request_get(r)->outcome = MG_OUT_STORE_FAILURE;
    apr_table_setn(r->err_headers_out, "Retry-After", "1");
    *status = mg_respond_canned(r, CANNED_STORE_DOWN);
    return ANSWERED;
}

/* Let the request go on under attempt `a` (`enforced`: as its decision
 * says; else the store failed open); `how` says how it was degraded, if it
 * was. */
static int admit(request_rec *r, const mg_server_conf *sc, mg_request *req,
                 const mg_key *key, const attempt *a, int enforced,
                 const char *how)
{
    if (enforced) {
        mg_headers h;
        mg_headers_build(r->pool, a->layers, &a->d, &h);
        set_openai_headers(r, a->layers, &a->d, set_limit_headers(r, &h));
        if (a->d.shadow_rejected) {
            report_shadow(r, a->layers, &a->d, key);
        }
        apr_table_setn(r->notes, "modelgate-decision", how ? how : "allowed");
        if (a->d.delay > 0) {
            /* A leaky bucket's queue: bounded by the limit's delay=, at
             * most 60 s by configuration. */
            apr_table_setn(r->notes, "modelgate-delay-ms",
                           apr_psprintf(r->pool, "%" APR_INT64_T_FMT,
                                        (apr_int64_t)(a->d.delay / 1000)));
            apr_sleep(a->d.delay);
        }
    }
    req->probe = a->probe;
    /* For the metrics: the strings are this file's own literals. */
    req->outcome = !enforced ? MG_OUT_UNENFORCED
                   : how || a->local ? MG_OUT_DEGRADED : MG_OUT_ALLOWED;
    req->action = !how ? (a->local ? MG_ACT_STORE_LOCAL : MG_ACT_NONE)
                  : !strcmp(how, "fallback") ? MG_ACT_FALLBACK
                  : !strcmp(how, "queued") ? MG_ACT_QUEUED
                  : MG_ACT_FALLBACK_QUEUED;
    if (enforced && req->body_read && mg_cache_loaded) {
        /* The response cache may answer it: a cached answer gets these
         * units back and its headers said again (mg_decide_cached). */
        mg_admitted *k = req->admitted = apr_palloc(r->pool, sizeof(*k));
        memcpy(k->layers, a->layers, (apr_size_t)a->n * sizeof(*a->layers));
        k->d = a->d;
        k->decided_at = a->now;
        k->store = a->local ? sc->local : sc->store;
        k->inst = a->local ? sc->local_inst : sc->store_inst;
    }
    if (enforced) {
        /* Before a fallback renames the model: that rewrite starts from
         * the body as this leaves it. */
        mg_usage_reserve(r, req, a->layers, a->n, a->now,
                         a->local ? sc->local : sc->store,
                         a->local ? sc->local_inst : sc->store_inst,
                         a->factor, a->model ? a->model : req->model);
    }
    if (how) {
        apr_table_setn(r->err_headers_out, "X-Modelgate-Degraded", how);
        if (req->model) {
            /* The declared name, never the client's text: that could be
             * anything, CR and LF included. */
            apr_table_setn(r->err_headers_out, "X-Modelgate-Requested-Model",
                           req->model->name);
        }
    }
    return a->model ? mg_route_to_model(r, sc, req, a->model, a->up) : OK;
}

void mg_decide_cached(request_rec *r, mg_request *req)
{
    mg_admitted *k = req->admitted;
    apr_int64_t delta[MG_LIMIT_MAX_LAYERS];
    unsigned tokens = 0, requests = 0;
    mg_headers h;
    apr_status_t rv;
    int i;

    /* Its tokens and spend come back now, not at the end of the
     * transaction: the caller's next request meets settled counters. */
    mg_usage_settle(r);
    if (!k) {
        return;                 /* not enforced (the store failed open) */
    }
    for (i = 0; i < k->d.nlayers; i++) {
        delta[i] = 0;
        if (!k->d.layer[i].allowed) {
            continue;
        }
        if (k->layers[i].tokens) {
            tokens |= 1u << i;  /* given back by the settle above */
        }
        else if (req->cached_free
                 && mg_limit_refundable(k->layers[i].spec)) {
            /* A sliding log cannot give a unit back: its layer keeps the
             * hit charged, and its headers say so. */
            requests |= 1u << i;
            delta[i] = -(apr_int64_t)k->layers[i].cost;
        }
    }
    if (requests) {
        rv = k->store->settle
             ? k->store->settle(k->inst, r->server, k->layers, delta,
                                k->d.nlayers, k->decided_at, mg_clock_now())
             : APR_ENOTIMPL;
        if (rv != APR_SUCCESS) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, rv, r, MGLOGNO(00204)
                          "counter store '%s' could not give a cached "
                          "answer's request back: it stays charged",
                          k->store->name);
            requests = 0;
        }
        else {
            apr_table_setn(r->notes, "modelgate-cache-cost", "0");
        }
    }
    if (!(tokens | requests)) {
        return;
    }
    /* The headers say what remains once the answer's units are back. */
    mg_limit_uncharge(k->layers, &k->d, tokens | requests);
    mg_headers_build(r->pool, k->layers, &k->d, &h);
    set_openai_headers(r, k->layers, &k->d, set_limit_headers(r, &h));
}

/* The refusal of a request no wait admits: the binding layer (a->d.never)
 * can never hold its cost.  Still 429 rate_limit_exceeded, as OpenAI
 * answers a request above the TPM limit ("Request too large ... on tokens
 * per min"), so clients that map codes keep working; x-should-retry: false
 * and no Retry-After (mg_headers_build) make it final for the SDKs. */
static int never_fits(request_rec *r, const mg_key *key, const attempt *a)
{
    const mg_layer *b = &a->layers[a->d.binding];
    apr_uint64_t holds = mg_limit_holds(b->spec);

    apr_table_setn(r->notes, "modelgate-never-fits", b->policy);
    if (b->tokens == MG_LAYER_MONEY) {
        return mg_respond_error(r, HTTP_TOO_MANY_REQUESTS,
            apr_psprintf(r->pool, "Request too large for key '%s': its "
                         "reservation is more than the budget '%s' holds "
                         "in a whole period: it can never be admitted; "
                         "lower max_tokens or split the request.",
                         key->id, b->policy),
            MG_ERR_INSUFFICIENT_QUOTA, MG_ERR_INSUFFICIENT_QUOTA);
    }
    return mg_respond_error(r, HTTP_TOO_MANY_REQUESTS,
        apr_psprintf(r->pool, "Request too large for key '%s' on policy "
                     "'%s': this request needs %" APR_UINT64_T_FMT " %s "
                     "but limit '%s' holds at most %" APR_UINT64_T_FMT
                     ": it can never be admitted; %s", key->id, b->policy,
                     b->cost, b->tokens ? "tokens" : "request units",
                     b->policy, holds,
                     b->tokens ? "lower max_tokens or split the request."
                               : "this route costs more than the limit's "
                                 "burst; split the work or use a tier that "
                                 "allows it."),
        b->tokens ? MG_ERRT_TOKENS : MG_ERRT_REQUESTS, MG_ERR_RATE_LIMITED);
}

static int reject(request_rec *r, const mg_key *key, const attempt *a)
{
    const mg_layer *b = &a->layers[a->d.binding];
    mg_headers h;

    mg_headers_build(r->pool, a->layers, &a->d, &h);
    set_openai_headers(r, a->layers, &a->d, set_limit_headers(r, &h));
    if (a->d.shadow_rejected) {
        report_shadow(r, a->layers, &a->d, key);
    }
    apr_table_setn(r->notes, "modelgate-decision", "rejected");
    mg_request_get(r)->outcome = MG_OUT_REJECTED;
    apr_table_setn(r->notes, "modelgate-limit", b->policy);
    if (a->d.never >= 0) {
        return never_fits(r, key, a);
    }
    if (b->tokens == MG_LAYER_MONEY) {
        /* What OpenAI's SDKs treat as final: no retry until the period
         * (a month, say) has passed. */
        apr_table_setn(r->err_headers_out, "x-should-retry", "false");
        return mg_respond_error(r, HTTP_TOO_MANY_REQUESTS,
            apr_psprintf(r->pool, "You exceeded your current quota: the "
                         "budget '%s' is spent until its period ends in %s "
                         "seconds.", b->policy, h.retry_after),
            MG_ERR_INSUFFICIENT_QUOTA, MG_ERR_INSUFFICIENT_QUOTA);
    }
    return mg_respond_error(r, HTTP_TOO_MANY_REQUESTS,
        apr_psprintf(r->pool, "Rate limit reached for key '%s' on policy "
                     "'%s': %s %s per %" APR_INT64_T_FMT " seconds. "
                     "Retry after %s seconds.", key->id, b->policy,
                     h.x_limit, b->tokens ? "tokens" : "requests",
                     mg_headers_seconds(b->spec->window), h.retry_after),
        b->tokens ? MG_ERRT_TOKENS : MG_ERRT_REQUESTS, MG_ERR_RATE_LIMITED);
}

/* The fallback model of action `act`, if it can serve this request. */
static const mg_model *fallback_of(const mg_server_conf *sc,
                                   const mg_request *req,
                                   const mg_limit_action *act,
                                   const mg_model *requested)
{
    const mg_model *m;

    if (act->type != MG_ACTION_FALLBACK || !req->body_read) {
        return NULL;         /* no JSON body: no model to rename */
    }
    m = mg_model_get(sc, act->model);
    return m != requested ? m : NULL;
}

/* Nothing was admitted because the requested upstream is unhealthy: 503
 * with the time to come back, not 429. */
static int unavailable(request_rec *r, const attempt *a)
{
    apr_int64_t secs = (a->health_retry + APR_USEC_PER_SEC - 1)
                       / APR_USEC_PER_SEC;
    int saturated = a->verdict == MG_UPSTREAM_SATURATED;

    apr_table_setn(r->err_headers_out, "Retry-After",
                   apr_psprintf(r->pool, "%" APR_INT64_T_FMT,
                                secs > 0 ? secs : 1));
    apr_table_setn(r->notes, "modelgate-decision",
                   saturated ? "shed" : "upstream-open");
    mg_request_get(r)->outcome = saturated ? MG_OUT_SHED : MG_OUT_BREAKER;
    apr_table_setn(r->notes, "modelgate-upstream", a->up->name);
    return mg_respond_error(r, HTTP_SERVICE_UNAVAILABLE, saturated
        ? apr_psprintf(r->pool, "The model server '%s' is at capacity and "
                       "serves higher tiers first. Retry after %"
                       APR_INT64_T_FMT " seconds.", a->up->name,
                       secs > 0 ? secs : 1)
        : apr_psprintf(r->pool, "The model server '%s' is failing; the "
                       "gateway stopped sending it requests for now. Retry "
                       "after %" APR_INT64_T_FMT " seconds.", a->up->name,
                       secs > 0 ? secs : 1),
        MG_ERRT_SERVER, saturated ? MG_ERR_UPSTREAM_SATURATED
                                  : MG_ERR_UPSTREAM_DOWN);
}

/* How long until refused candidate `a` could be admitted: its upstream's
 * wait, or its binding limit's; NEVER when a limit can never hold it. */
#define NEVER APR_INT64_MAX
static apr_interval_time_t wait_of(const attempt *a)
{
    if (a->n == 0) {
        return a->health_retry;
    }
    if (a->d.never >= 0) {
        return NEVER;
    }
    return a->d.layer[a->d.binding].retry_after;
}

/* Decide candidate `a`; on admission answer for it.  Returns -1 when it
 * was refused (by a limit or by its upstream's health), else the status
 * to return from the access checker. */
static int try_candidate(request_rec *r, mg_server_conf *sc,
                         const mg_dir_conf *dc, const mg_key *key,
                         const mg_tier *tier, mg_request *req, attempt *a,
                         const char *how)
{
    int status = OK;

    switch (decide_for(r, sc, dc, key, tier, a, &status)) {
    case ANSWERED:
        return status;
    case UNENFORCED:
        return admit(r, sc, req, key, a, 0, how);
    case UNHEALTHY:
        return -1;
    case DECIDED:
        break;
    }
    if (a->d.never >= 0 && a->factor > 1) {
        /* degraded_cost's factor passes: a cost above a limit only
         * K-fold fits once the upstream recovers, and the client is told
         * to wait, not that it never will. */
        mg_limit_never(a->layers, &a->d, a->factor);
    }
    return a->d.allowed ? admit(r, sc, req, key, a, 1, how) : -1;
}

int mg_decide_request(request_rec *r, mg_server_conf *sc,
                      const mg_dir_conf *dc, const mg_key *key,
                      mg_request *req)
{
    const mg_tier *tier = mg_policy_tier(sc->policy, key->tier);
    const apr_array_header_t *acts;
    attempt first, alt;
    apr_interval_time_t soonest;  /* of the refused candidates' waits */
    int rv, i, j, first_unhealthy;

    if (!tier) {
        /* check_config refuses such key files; a key file is never
         * reloaded without a restart. */
        return mg_respond_error(r, HTTP_INTERNAL_SERVER_ERROR,
                                "The gateway has no tier for this key.",
                                MG_ERRT_SERVER, MG_ERR_GATEWAY);
    }
    req->tier = tier;
    if ((rv = mg_usage_prepare(r, tier, req)) != OK) {
        return rv;
    }
    first.model = req->model;
    first.n = 0;
    if ((rv = try_candidate(r, sc, dc, key, tier, req, &first, NULL)) >= 0) {
        return rv;
    }
    first_unhealthy = first.n == 0;
    soonest = wait_of(&first);
    acts = tier->on_limit;
    for (i = 0; acts && i < acts->nelts; i++) {
        const mg_limit_action *act = &APR_ARRAY_IDX(acts, i, mg_limit_action);
        const mg_model *fb;

        if (act->type == MG_ACTION_REJECT) {
            break;
        }
        if (act->type == MG_ACTION_CACHE) {
            /* The cache's answer for this same request: the refused
             * decision charged nothing, and neither does this. */
            if (mg_cached_answer(r, req, "cache")) {
                if (first.n > 0) {
                    mg_headers h;
                    mg_headers_build(r->pool, first.layers, &first.d, &h);
                    set_limit_headers(r, &h);
                }
                apr_table_setn(r->notes, "modelgate-decision", "cache");
                req->outcome = MG_OUT_DEGRADED;
                req->action = MG_ACT_CACHE;
                apr_table_setn(r->err_headers_out, "X-Modelgate-Degraded",
                               "cache");
                return OK;
            }
            continue;
        }
        if ((fb = fallback_of(sc, req, act, first.model)) != NULL) {
            alt.model = fb;
            if ((rv = try_candidate(r, sc, dc, key, tier, req, &alt,
                                    "fallback")) >= 0) {
                return rv;
            }
            if (wait_of(&alt) < soonest) {
                soonest = wait_of(&alt);
            }
            continue;
        }
        if (act->type == MG_ACTION_QUEUE) {
            apr_interval_time_t waited = 0;

            if (soonest > act->wait) {
                /* No candidate can be admitted within the wait (or ever):
                 * holding a worker would only delay the refusal. */
                apr_table_setn(r->notes, "modelgate-queue", "too-long");
                continue;
            }
            if (apr_atomic_inc32(&queue_waiting) >= queue_cap) {
                apr_atomic_dec32(&queue_waiting);
                apr_table_setn(r->notes, "modelgate-queue", "full");
                continue;
            }
            while (waited < act->wait && soonest <= act->wait - waited) {
                apr_interval_time_t step = soonest < 1000 ? 1000 : soonest;
                if (step > act->wait - waited) {
                    step = act->wait - waited;
                }
                apr_sleep(step);
                waited += step;
                apr_table_setn(r->err_headers_out, "X-Modelgate-Queued-Ms",
                               apr_psprintf(r->pool, "%" APR_INT64_T_FMT,
                                            (apr_int64_t)(waited / 1000)));
                /* Again: the requested model, then the fallbacks before
                 * this action; the soonest of their new waits is the next
                 * step, if the queue can hold the request that long. */
                soonest = NEVER;
                for (j = -1; j < i; j++) {
                    attempt *a = j < 0 ? &first : &alt;
                    apr_interval_time_t w;
                    if (j >= 0) {
                        const mg_limit_action *prev =
                            &APR_ARRAY_IDX(acts, j, mg_limit_action);
                        if (!(alt.model = fallback_of(sc, req, prev,
                                                      first.model))) {
                            continue;
                        }
                    }
                    a->n = 0;
                    rv = try_candidate(r, sc, dc, key, tier, req, a,
                                       j < 0 ? "queued" : "fallback,queued");
                    if (rv >= 0) {
                        apr_atomic_dec32(&queue_waiting);
                        return rv;
                    }
                    if (j < 0) {
                        first_unhealthy = first.n == 0;
                    }
                    if ((w = wait_of(a)) < soonest) {
                        soonest = w;
                    }
                }
            }
            if (waited < act->wait) {
                apr_table_setn(r->notes, "modelgate-queue", "too-long");
            }
            apr_atomic_dec32(&queue_waiting);
            apr_table_unset(r->err_headers_out, "X-Modelgate-Queued-Ms");
        }
    }
    if (first_unhealthy && first.verdict != MG_UPSTREAM_SATURATED
        && mg_cached_answer(r, req, "stale")) {
        /* The breaker is open: the cache may answer with what it kept,
         * expired or not (its stale-if-error grace), rather than 503. */
        apr_table_setn(r->notes, "modelgate-decision", "stale");
        apr_table_setn(r->notes, "modelgate-upstream", first.up->name);
        req->outcome = MG_OUT_DEGRADED;
        req->action = MG_ACT_CACHE;
        apr_table_setn(r->err_headers_out, "X-Modelgate-Degraded", "stale");
        return OK;
    }
    return first_unhealthy ? unavailable(r, &first) : reject(r, key, &first);
}
