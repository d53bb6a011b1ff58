/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_request.c -- what every glue file shares below the hooks:
 * a request's state (mg_request), what plugins may ask of it and be asked
 * about it, and the answers the gateway gives itself, as OpenAI-style JSON
 * error bodies.
 *
 * The hooks (mod_modelgate.c) and the stages they run (identity, bodies,
 * decisions, upstreams, tokens) call into this file; it calls none of
 * them, so the arrows point one way.
 */
#include <apr_strings.h>
#include <http_core.h>
#include <http_protocol.h>
#include <http_request.h>
#include <util_filter.h>
#include "mod_modelgate_private.h"
#include "mg_metrics.h"
#include "mg_error.h"

#define MG_JSON_ERROR_FILTER "MODELGATE_JSON_ERROR"

/* ---- per-request state --------------------------------------------------- */

mg_request *mg_request_get(request_rec *r)
{
    mg_request *req = ap_get_module_config(r->request_config,
                                           &modelgate_module);
    if (!req) {
        req = apr_pcalloc(r->pool, sizeof(*req));
        ap_set_module_config(r->request_config, &modelgate_module, req);
    }
    return req;
}

const mg_request *mg_request_earlier(const request_rec *r,
                                     int (*wanted)(const mg_request *req))
{
    const request_rec *p;

    for (p = r->prev ? r->prev : r->main; p; p = p->prev ? p->prev : p->main) {
        const mg_request *req = ap_get_module_config(p->request_config,
                                                     &modelgate_module);
        if (req && wanted(req)) {
            return req;
        }
    }
    return NULL;
}

mg_request *mg_request_gated(request_rec *r, request_rec **last)
{
    request_rec *g;
    mg_request *req, *gated = NULL;

    for (g = r; g->main; g = g->main) {
    }
    for (; g; g = g->next) {
        req = ap_get_module_config(g->request_config, &modelgate_module);
        if (!gated && req && req->gated) {
            gated = req;
        }
        *last = g;
    }
    return gated;
}

int mg_request_outcome(const mg_request *req, int status)
{
    if (req->outcome == MG_OUT_NONE) {
        return status == HTTP_UNAUTHORIZED ? MG_OUT_UNAUTHENTICATED
                                           : MG_OUT_INVALID;
    }
    if (req->outcome == MG_OUT_ALLOWED && req->cached) {
        return MG_OUT_CACHED;
    }
    return req->outcome;
}

/* ---- what plugins may ask and be asked ----------------------------------------- */

/* mg_request_body (mod_modelgate.h): the body, read-only, for a plugin. */
static int mg_request_body(request_rec *r, const char **body,
                           apr_size_t *len)
{
    const mg_request *req = ap_get_module_config(r->request_config,
                                                 &modelgate_module);

    if (!req || !req->body_read) {
        return 0;
    }
    *body = req->body;
    *len = req->body_len;
    return 1;
}

/* mg_request_caller (mod_modelgate.h): the identity the gate found. */
static int mg_request_caller(request_rec *r, const char **tenant,
                             const char **key_id)
{
    const mg_request *req = ap_get_module_config(r->request_config,
                                                 &modelgate_module);

    if (!req || !req->identity) {
        return 0;
    }
    *tenant = req->identity->tenant;
    *key_id = req->identity->id;
    return 1;
}

/* mg_cached_answer_free (mod_modelgate.h): mg_decide_cached acts on it. */
static void mg_cached_answer_free(request_rec *r)
{
    mg_request *req = ap_get_module_config(r->request_config,
                                           &modelgate_module);

    if (req) {
        req->cached_free = 1;
    }
}

/* An optional hook (as mod_proxy's request_status), so a plugin loaded
 * before this module can listen too.  Run by hand: APR has no RUN_FIRST
 * for optional hooks, and the first listener that answers must stop it. */
MG_DECLARE(int) modelgate_run_mg_cached_answer(request_rec *r,
                                               const char *why)
{
    apr_array_header_t *hooks = apr_optional_hook_get("mg_cached_answer");
    const modelgate_LINK_mg_cached_answer_t *h;
    int i, rv;

    if (!hooks) {
        return DECLINED;
    }
    h = (const modelgate_LINK_mg_cached_answer_t *)hooks->elts;
    for (i = 0; i < hooks->nelts; i++) {
        if ((rv = h[i].pFunc(r, why)) != DECLINED) {
            return rv;
        }
    }
    return DECLINED;
}

int mg_cache_loaded;

int mg_cache_listening(void)
{
    apr_array_header_t *hooks = apr_optional_hook_get("mg_cached_answer");

    return hooks && hooks->nelts > 0;
}

int mg_cached_answer(request_rec *r, mg_request *req, const char *why)
{
    /* The cache keys on the JSON body: without one there is nothing to
     * ask, and a hook call per request saved. */
    if (!req->body_read || modelgate_run_mg_cached_answer(r, why) != OK) {
        return 0;
    }
    req->cached = 1;
    return 1;
}

/* ---- JSON error bodies ------------------------------------------------------ */

/* The bit that says "status has a JSON body" for 4xx and 5xx statuses
 * below x32; NULL for any other status. */
static unsigned *json_error_bits(mg_request *req, int status, unsigned *bit)
{
    if (status >= 400 && status < 432) {
        *bit = 1u << (status - 400);
        return &req->json_4xx;
    }
    if (status >= 500 && status < 532) {
        *bit = 1u << (status - 500);
        return &req->json_5xx;
    }
    return NULL;
}

/* Give `status` the body `json` should httpd answer with it.  The
 * request's trace id goes in as error.trace_id: spliced here, on the error
 * path, so the canned bodies stay serialised once per generation. */
static void set_json_error(request_rec *r, int status, const char *json)
{
    mg_request *req = mg_request_get(r);
    unsigned bit, *bits = json_error_bits(req, status, &bit);
    apr_size_t n;

    if (req->trace_id) {
        /* mg_error_json's text: {"error":{...}} and a newline. */
        for (n = strlen(json); n > 0 && json[n - 1] == '\n'; n--) {
        }
        if (n >= 2 && json[n - 1] == '}' && json[n - 2] == '}') {
            json = apr_pstrcat(r->pool, apr_pstrmemdup(r->pool, json, n - 2),
                               ",\"trace_id\":\"", req->trace_id, "\"}}",
                               json + n, NULL);
        }
    }
    ap_custom_response(r, status, json);
    if (bits) {
        *bits |= bit;
    }
}

int mg_respond_json(request_rec *r, int status, const char *json)
{
    set_json_error(r, status, json);
    return status;
}

int mg_respond_error(request_rec *r, int status, const char *message,
                     const char *type, const char *code)
{
    set_json_error(r, status, mg_error_json(r->pool, message, type, code));
    return status;
}

/* Errors whose text never changes are serialised once per generation, in
 * post_config, not on every request that might need them. */
typedef struct canned_error {
    int status;
    const char *message, *type, *code;
    const char *json;
} canned_error;


static canned_error canned[] = {
    { HTTP_UNAUTHORIZED, "No API key provided: send it in the X-API-Key "
      "header or as Authorization: Bearer KEY.", MG_ERRT_REQUEST,
      MG_ERR_MISSING_KEY, NULL },
    { HTTP_UNAUTHORIZED, "Invalid API key provided.", MG_ERRT_REQUEST,
      MG_ERR_INVALID_KEY, NULL },
    { HTTP_INTERNAL_SERVER_ERROR, "The route names no declared upstream.",
      MG_ERRT_SERVER, MG_ERR_GATEWAY, NULL },
    { HTTP_SERVICE_UNAVAILABLE, "The gateway cannot check limits right now.",
      MG_ERRT_SERVER, MG_ERR_GATEWAY, NULL },
    { HTTP_INTERNAL_SERVER_ERROR, "More limit layers apply to this request "
      "than the gateway can check at once: its configuration must change "
      "(its error log names the layers, MG00202).", MG_ERRT_SERVER,
      MG_ERR_GATEWAY, NULL },
    /* From CANNED_PROXY_FIRST on: what mod_proxy's own failures become. */
    { HTTP_BAD_GATEWAY, "The model server could not be reached.",
      MG_ERRT_SERVER, MG_ERR_UPSTREAM_DOWN, NULL },
    { HTTP_SERVICE_UNAVAILABLE, "The model server is unavailable.",
      MG_ERRT_SERVER, MG_ERR_UPSTREAM_DOWN, NULL },
    { HTTP_GATEWAY_TIME_OUT, "The model server did not answer in time.",
      MG_ERRT_SERVER, MG_ERR_UPSTREAM_TIMEOUT, NULL },
    { HTTP_INTERNAL_SERVER_ERROR, "The gateway failed to forward the "
      "request.", MG_ERRT_SERVER, MG_ERR_GATEWAY, NULL },
};
#define CANNED_COUNT (int)(sizeof(canned) / sizeof(canned[0]))

void mg_respond_prepare(apr_pool_t *pconf)
{
    int i;

    for (i = 0; i < CANNED_COUNT; i++) {
        canned[i].json = mg_error_json(pconf, canned[i].message,
                                       canned[i].type, canned[i].code);
    }
}

int mg_respond_canned(request_rec *r, int which)
{
    set_json_error(r, canned[which].status, canned[which].json);
    return canned[which].status;
}

static int json_error_pending(request_rec *r)
{
    mg_request *req = ap_get_module_config(r->request_config,
                                           &modelgate_module);
    unsigned bit, *bits;

    if (!req) {
        return 0;
    }
    bits = json_error_bits(req, r->status, &bit);
    return bits && (*bits & bit);
}

/* ap_send_error_response labels every body text/html, custom text too;
 * this filter runs after that and before the headers go out. */
static apr_status_t json_error_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    ap_set_content_type(f->r, "application/json");
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

void mg_respond_error_response(request_rec *r)
{
    mg_request *req = ap_get_module_config(r->request_config,
                                           &modelgate_module);
    int i;

    /* mod_proxy answers a dead or silent upstream with an httpd error
     * page; make those JSON like every other answer of the API.  Done
     * here, on the error path only, not on every routed request. */
    if (req && req->upstream && !json_error_pending(r)) {
        for (i = CANNED_PROXY_FIRST; i < CANNED_COUNT; i++) {
            if (canned[i].status == r->status) {
                mg_respond_canned(r, i);
                break;
            }
        }
    }
    if (json_error_pending(r)) {
        ap_add_output_filter(MG_JSON_ERROR_FILTER, NULL, r, r->connection);
    }
}

void mg_request_register(apr_pool_t *p)
{
    APR_REGISTER_OPTIONAL_FN(mg_request_body);
    APR_REGISTER_OPTIONAL_FN(mg_request_caller);
    APR_REGISTER_OPTIONAL_FN(mg_cached_answer_free);
    ap_register_output_filter(MG_JSON_ERROR_FILTER, json_error_filter, NULL,
                              AP_FTYPE_CONTENT_SET);
}
