/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_summary.c -- the `mg_request_summarize` optional function
 * (mod_modelgate.h): what became of a request, for plugins that listen to
 * log_transaction (the OTLP span exporter, plugins/otlp).
 *
 * Pulled, not pushed: a plugin that wants it asks from its own
 * log_transaction hook, so with no such plugin loaded the core does
 * nothing more per request (no hook call, no struct filled).  The request
 * and its outcome come from the functions the metrics use
 * (mg_request_gated, mg_request_outcome), so a span and the counters
 * never disagree on what a request was.
 */
#include "mod_modelgate_private.h"
#include "mg_metrics.h"
#include "mg_trace.h"

/* Did the gateway (httpd's error path, mod_proxy failing) make this
 * status's body rather than the upstream?  The error path gives every
 * such answer a JSON body (mod_modelgate_request.c) and says so in the
 * request's bits. */
static int gateway_made(request_rec *last, const mg_request *req, int status)
{
    const mg_request *lreq = ap_get_module_config(last->request_config,
                                                  &modelgate_module);
    unsigned bits;

    if (status >= 500 && status < 532) {
        bits = req->json_5xx | (lreq ? lreq->json_5xx : 0);
        return (bits >> (status - 500)) & 1;
    }
    if (status >= 400 && status < 432) {
        bits = req->json_4xx | (lreq ? lreq->json_4xx : 0);
        return (bits >> (status - 400)) & 1;
    }
    return 0;
}

static int mg_request_summarize(request_rec *r, mg_request_summary *out)
{
    request_rec *last;
    const mg_request *req = mg_request_gated(r, &last);
    mg_outcome outcome;

    memset(out, 0, sizeof(*out));
    if (!req) {
        return 0;
    }
    if (req->trace_id) {
        /* mod_modelgate_trace.c keeps the mg_trace at the address
         * req->trace_id points to (checked there at compile time). */
        const mg_trace *t = (const mg_trace *)(const void *)req->trace_id;
        out->trace_id = t->trace_id;
        out->span_id = t->span_id;
        out->parent_id = t->parent_id[0] ? t->parent_id : NULL;
    }
    out->request_id = apr_table_get(r->notes, "modelgate-request-id");
    out->start = r->request_time;
    out->end = apr_time_now();
    out->method = r->method;
    out->status = last->status;
    outcome = (mg_outcome)mg_request_outcome(req, out->status);
    out->outcome = outcome;
    out->decision = outcome < MG_OUT_COUNT ? mg_metrics_outcome_names[outcome]
                                           : NULL;
    if (outcome == MG_OUT_DEGRADED && req->action > MG_ACT_NONE
        && req->action < MG_ACT_COUNT) {
        out->action = mg_metrics_action_names[req->action];
    }
    if (outcome == MG_OUT_REJECTED) {
        out->limit = apr_table_get(r->notes, "modelgate-limit");
    }
    if (req->entered && !req->cached
        && !gateway_made(last, req, out->status)) {
        out->upstream_status = out->status;
    }
    out->route = req->upstream ? req->upstream->name : NULL;
    out->model = req->model ? req->model->name : NULL;
    out->tier = req->tier ? req->tier->name : NULL;
    out->tenant = req->identity ? req->identity->tenant : NULL;
    out->prompt_tokens = -1;
    out->completion_tokens = -1;
    if (req->reservation && req->reservation->usage_read) {
        const mg_reservation *res = req->reservation;
        apr_uint64_t prompt = res->usage.prompt > 0
                              ? (apr_uint64_t)res->usage.prompt : 0;
        apr_uint64_t completion = res->usage.completion > 0
                                  ? (apr_uint64_t)res->usage.completion : 0;
        out->prompt_tokens = (apr_int64_t)prompt;
        out->completion_tokens = (apr_int64_t)completion;
        out->spend = mg_policy_spend(prompt, completion, res->price_in,
                                     res->price_out);
    }
    return 1;
}

/* ---- mg_metrics_scrape: plugins' families in the core's exposition ----- */

/* By hand: APR's optional-hook runners return a value; this one has
 * none, and every listener runs. */
MG_DECLARE(void) modelgate_run_mg_metrics_scrape(request_rec *r,
                                                 struct mg_metrics_out *out)
{
    apr_array_header_t *hooks = apr_optional_hook_get("mg_metrics_scrape");
    const modelgate_LINK_mg_metrics_scrape_t *h;
    int i;

    if (!hooks) {
        return;
    }
    h = (const modelgate_LINK_mg_metrics_scrape_t *)hooks->elts;
    for (i = 0; i < hooks->nelts; i++) {
        h[i].pFunc(r, out);
    }
}

void mg_summary_register(apr_pool_t *p)
{
    APR_REGISTER_OPTIONAL_FN(mg_request_summarize);
}
