/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate.h -- what other modules (the plugins) may use.
 *
 * Plugins register providers (see mg_store.h); they reach the core only
 * through the optional functions declared here and fail in post_config
 * with a clear message when mod_modelgate is not loaded.
 */
#ifndef MOD_MODELGATE_H
#define MOD_MODELGATE_H

#include <httpd.h>
#include <apr_optional.h>
#include <apr_optional_hooks.h>
#include "mg_store.h"

#define MODELGATE_VERSION "0.1.0"

/** The name of the mutex type admins configure with `Mutex`. */
#define MG_STORE_MUTEX_TYPE "modelgate-store"

/* ---- what the core tells plugins about a request ----------------------- */

/**
 * The JSON body the gate read, as it goes to the model server (the model
 * renamed by an alias or a fallback, a tier's token cap applied).
 * Read-only; it lives as long as the request's pool.
 * @return 1 when the gate read a JSON body of this request (then *body and
 *         *len are set), 0 otherwise (no body, not JSON, not gated)
 */
APR_DECLARE_OPTIONAL_FN(int, mg_request_body,
                        (request_rec *r, const char **body, apr_size_t *len));

/**
 * Who the gate found for this request: its own record, not the
 * MODELGATE_* variables it also sets, which modules running later can
 * change (an .htaccess author's `RewriteRule ... [E=MODELGATE_TENANT:x]`
 * runs in fixups).  Whatever keys data on the caller -- a cache scoped to
 * a tenant -- must take these.  Strings live as long as the configuration.
 * @return 1 when the gate identified the caller (then *tenant and *key_id
 *         are set), 0 otherwise
 */
APR_DECLARE_OPTIONAL_FN(int, mg_request_caller,
                        (request_rec *r, const char **tenant,
                         const char **key_id));

/**
 * What became of a request, as the core recorded it: for listeners of
 * log_transaction (a span exporter, a log shipper).  Strings are the
 * request pool's or the configuration's; NULL where there is none.  Every
 * name is a declared one (upstream, model, tier, limit) or the key file's
 * tenant: never a credential, a subject or a raw path.
 */
typedef struct mg_request_summary {
    const char *trace_id;     /**< 32 hex digits (W3C); NULL: no trace */
    const char *span_id;      /**< the gateway's span, 16 hex digits */
    const char *parent_id;    /**< the client's span; NULL: a new trace */
    const char *request_id;   /**< X-Request-Id as forwarded */
    apr_time_t start;         /**< wall clock: the request line was read */
    apr_time_t end;           /**< wall clock: now (log_transaction) */
    const char *method;
    int status;               /**< the answer the client got */
    int upstream_status;      /**< what the upstream answered; 0: nothing
                                   (not forwarded, or it failed to answer) */
    int outcome;              /**< mg_outcome (mg_metrics.h) */
    const char *decision;     /**< mg_metrics_outcome_names[outcome] */
    const char *action;       /**< how a degraded request was admitted */
    const char *limit;        /**< the binding limit of a refusal */
    const char *route;        /**< the upstream it went (or would go) to */
    const char *model;        /**< the declared model that served it */
    const char *tier;
    const char *tenant;
    apr_int64_t prompt_tokens;     /**< -1: not known */
    apr_int64_t completion_tokens; /**< -1: not known */
    apr_uint64_t spend;       /**< nano-units, at the model's prices */
} mg_request_summary;

/**
 * Summarise `r` (any request of its chain) once it has ended.
 * @return 1 when the gate saw it (then *out is filled), 0 otherwise
 */
APR_DECLARE_OPTIONAL_FN(int, mg_request_summarize,
                        (request_rec *r, mg_request_summary *out));

/**
 * Called by a listener of mg_cached_answer that answers in fixups (`why`
 * NULL) before it returns OK: the answer costs nothing in request layers
 * either.  The core then gives back the units the admitted decision
 * charged there (the counter store's settle, with a negative delta) and
 * writes the RateLimit headers again with what remains after it.  Token
 * and budget layers are given back for every cached answer, called or
 * not.  Without this call a cached answer costs one request, as any.
 */
APR_DECLARE_OPTIONAL_FN(void, mg_cached_answer_free, (request_rec *r));

/* ---- hooks the core runs for whoever listens ---------------------------- */

#define MG_DECLARE(type) type

/**
 * mg_cached_answer: may a cached answer serve this request?  Run by the
 * core for a request the gate passed, at two points:
 *
 *   - in fixups, once the request is routed, with `why` NULL: a listener
 *     that has an answer sets r->handler to its own handler and returns OK;
 *     then the request is not forwarded, is not counted at its upstream
 *     (in flight, health), and its token reservation is given back.  On a
 *     miss it may add output filters (to store the answer) and returns
 *     DECLINED.
 *   - in the decision, when a limit refused a caller whose tier says
 *     on_limit=cache, with `why` "cache": OK only when it answers (the
 *     request is not forwarded either way; nothing was charged); DECLINED
 *     sends the request on to the tier's next action.
 *   - in the decision, when nothing was admitted because the requested
 *     upstream's breaker is open, with `why` "stale": OK answers instead
 *     of the 503 (with an entry still fresh, or one kept past its TTL for
 *     stale-if-error); DECLINED leaves the 503.
 *
 * The first listener to return OK answers; listeners are registered with
 * APR_OPTIONAL_HOOK(modelgate, mg_cached_answer, fn, pre, succ, order), so
 * a plugin may be loaded before or after mod_modelgate.
 */
APR_DECLARE_EXTERNAL_HOOK(modelgate, MG, int, mg_cached_answer,
                          (request_rec *r, const char *why))

/**
 * mg_metrics_scrape: a scrape of SetHandler modelgate-metrics is being
 * answered; a listener appends its own families with mg_metrics_family()
 * and mg_metrics_sample() (mg_metrics.h) on `out`.  Its figures must be
 * summed over every process already (shared memory): the scrape is served
 * by one of them.  Names start with `modelgate_`, as the core's do.
 * Every listener runs; registered with APR_OPTIONAL_HOOK(modelgate,
 * mg_metrics_scrape, fn, NULL, NULL, APR_HOOK_MIDDLE).
 */
struct mg_metrics_out;
APR_DECLARE_EXTERNAL_HOOK(modelgate, MG, void, mg_metrics_scrape,
                          (request_rec *r, struct mg_metrics_out *out))

#endif /* MOD_MODELGATE_H */
