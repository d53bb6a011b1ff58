/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate.c -- the hooks: where in httpd's request cycle the gateway
 * does what.  Decisions are made by the core (mg_*.c); this file moves
 * data between request_rec and the core.
 *
 *   translate_name  hand a routed request to mod_proxy (server config)
 *   access_checker  who is calling (API key), what they ask for (the JSON
 *                   body's model), may they, now (limits), and where it
 *                   goes (the model's upstream)
 *   fixups          hand it over when the route came from .htaccess
 *   error filter    error bodies are JSON, as API clients expect
 *
 * Who before how much, how much before where: a request is limited only
 * once its caller is known, and routed only once it is admitted.
 */
#include <apr_strings.h>
#include <ap_provider.h>
#include <http_core.h>
#include <http_protocol.h>
#include <http_request.h>
#include <util_filter.h>
#include <util_mutex.h>
#include "mod_modelgate_private.h"
#include "mg_error.h"
#include "mg_table.h"
#include "mg_clock.h"

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

/* Give `status` the body `json` should httpd answer with it. */
static void set_json_error(request_rec *r, int status, const char *json)
{
    mg_request *req = mg_request_get(r);
    unsigned bit, *bits = json_error_bits(req, status, &bit);

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
    { HTTP_INTERNAL_SERVER_ERROR, "More limits apply here than the gateway "
      "can check at once.", MG_ERRT_SERVER, MG_ERR_GATEWAY, NULL },
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

static void prepare_canned_errors(apr_pool_t *pconf)
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

static void insert_error_filter(request_rec *r)
{
    mg_request *req = ap_get_module_config(r->request_config,
                                           &modelgate_module);
    int i;

    /* Before the client can see it: the breaker learns of it first, and
     * a reservation of tokens comes back. */
    mg_upstream_error(r);
    mg_usage_settle(r);
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

/* ---- access_checker: identity, then the limit decision ---------------------- */

static int refuse_credential(request_rec *r, int missing)
{
    /* RFC 6750: a challenge on every 401; error= only when a token came. */
    apr_table_setn(r->err_headers_out, "WWW-Authenticate", missing
                   ? "Bearer realm=\"modelgate\""
                   : "Bearer realm=\"modelgate\", error=\"invalid_token\"");
    apr_table_setn(r->notes, "modelgate-decision",
                   missing ? "missing-key" : "invalid-key");
    return mg_respond_canned(r, missing ? CANNED_MISSING_KEY
                                     : CANNED_INVALID_KEY);
}

/* Wipes a connection's remembered credential when the connection ends. */
static apr_status_t clear_key_memo(void *memo)
{
    mg_keys_memo_clear(memo);
    return APR_SUCCESS;
}

/* The key `credential` names.  The last credential that found a key on
 * this connection is remembered with its key, so a keep-alive client's
 * requests after the first are not hashed again; the memo lives with the
 * connection, which one thread serves at a time (each HTTP/2 stream has a
 * connection of its own). */
static const mg_key *find_key(request_rec *r, const mg_server_conf *sc,
                              const char *credential, apr_size_t len)
{
    conn_rec *c = r->connection;
    mg_keys_memo *memo = ap_get_module_config(c->conn_config,
                                              &modelgate_module);

    if (!memo) {
        memo = apr_pcalloc(c->pool, sizeof(*memo));
        ap_set_module_config(c->conn_config, &modelgate_module, memo);
        apr_pool_cleanup_register(c->pool, memo, clear_key_memo,
                                  apr_pool_cleanup_null);
    }
    return mg_keys_lookup_memo(sc->keys, memo, credential, len);
}

/* The declared model the body names, if the server declares models. */
static int pick_model(request_rec *r, const mg_server_conf *sc,
                      mg_request *req)
{
    if (!req->body_read || !req->info.model
        || apr_hash_count(sc->models) == 0) {
        return OK;
    }
    req->model = mg_model_get(sc, req->info.model);
    if (!req->model) {
        apr_table_setn(r->notes, "modelgate-decision", "unknown-model");
        return mg_respond_error(r, HTTP_NOT_FOUND, apr_psprintf(r->pool,
            "The model '%s' does not exist or you do not have access to it.",
            req->info.model), MG_ERRT_REQUEST, MG_ERR_MODEL_NOT_FOUND);
    }
    apr_table_setn(r->notes, "modelgate-model", req->model->name);
    return OK;
}

/* The gate: who is calling, what they ask for, may they, now, and where
 * it goes.  Runs once per request; its outcome is kept in `req`. */
static int gate(request_rec *r, const mg_server_conf *sc,
                const mg_dir_conf *dc, mg_request *req)
{
    const char *credential, *version;
    const mg_key *key;
    apr_size_t len = 0;
    int rv;

    mg_identity_scrub(r);
    credential = mg_identity_take_credential(r, &len);
    if (!credential) {
        return refuse_credential(r, 1);
    }
    key = find_key(r, sc, credential, len);
    if (!key) {
        return refuse_credential(r, 0);
    }
    mg_identity_announce(r, key);
    if ((version = mg_route_unknown_version(r, dc)) != NULL) {
        apr_table_setn(r->notes, "modelgate-decision", "unknown-version");
        return mg_respond_error(r, HTTP_BAD_REQUEST, apr_psprintf(r->pool,
            "This endpoint has no API version '%s' (X-API-Version).",
            version), MG_ERRT_REQUEST, MG_ERR_UNKNOWN_VERSION);
    }
    if ((rv = mg_body_read(r, sc, dc, req)) != OK && rv != DECLINED) {
        return rv;
    }
    if ((rv = pick_model(r, sc, req)) != OK) {
        return rv;
    }
    return mg_decide_request(r, (mg_server_conf *)sc, dc, key, req);
}

/* Did a request before this one in its chain -- the one it was
 * redirected from, or the one it is a subrequest of -- pass the gate?
 * Then it may go on unchecked: it was counted there.  Otherwise (the
 * first request went elsewhere, or was refused) it is checked itself, or
 * an ErrorDocument or a RewriteRule into a gated path would be a way in
 * without a key. */
static int passed_earlier(const request_rec *r)
{
    const request_rec *p;

    for (p = r->prev ? r->prev : r->main; p; p = p->prev ? p->prev : p->main) {
        const mg_request *req = ap_get_module_config(p->request_config,
                                                     &modelgate_module);
        if (req && req->gated && req->gate_status == OK) {
            return 1;
        }
    }
    return 0;
}

/* Does the gate apply to `r`?  Where ModelGate is on, to every request
 * but one whose chain passed it already. */
static int gated_here(request_rec *r, const mg_dir_conf *dc)
{
    return dc->enabled == 1 && (ap_is_initial_req(r) || !passed_earlier(r));
}

/* The gate's outcome for `r`, deciding it the first time. */
static int run_gate(request_rec *r, const mg_dir_conf *dc)
{
    mg_request *req = mg_request_get(r);

    if (!req->gated) {
        req->gated = 1;
        req->gate_status = gate(r, ap_get_module_config(
            r->server->module_config, &modelgate_module), dc, req);
    }
    return req->gate_status;
}

/* Where httpd asks "may this request go on?": the gate decides here, before
 * authorization, so a later `Require` sees the caller (r->user). */
static int mg_access_checker(request_rec *r)
{
    mg_dir_conf *dc = ap_get_module_config(r->per_dir_config,
                                           &modelgate_module);

    return gated_here(r, dc) ? run_gate(r, dc) : DECLINED;
}

/* ---- routing: hand the request to mod_proxy ------------------------------ */

static int route_request(request_rec *r, const mg_dir_conf *dc)
{
    mg_server_conf *sc = ap_get_module_config(r->server->module_config,
                                              &modelgate_module);
    mg_request *req = mg_request_get(r);
    const mg_upstream *up = mg_route_upstream(r, sc, dc);

    if (!up) {
        /* Only versions, none of them asked for: nothing to route; or a
         * name only a .htaccess could give, and its parser refuses that. */
        return dc->route ? mg_respond_canned(r, CANNED_NO_UPSTREAM)
                         : DECLINED;
    }
    req->upstream = up;
    apr_table_setn(r->notes, "modelgate-upstream", up->name);
    mg_proxy_hand_off(r, up);
    return OK;
}

/* A route written in the server configuration (<Location>) is known
 * before the URL is mapped to the filesystem: hand off here, as ProxyPass
 * does, so mod_proxy's map_to_storage skips the directory walk -- an API
 * path has no file behind it, and stat()ing one per request is waste. */
static int mg_translate_name(request_rec *r)
{
    mg_dir_conf *dc = ap_get_module_config(r->per_dir_config,
                                           &modelgate_module);

    if ((!dc->route && !dc->versions) || !gated_here(r, dc)) {
        return DECLINED;
    }
    return route_request(r, dc);
}

/* Is the request's upstream the one `dc` routes to, known without a
 * lookup?  Without versions, the route is the upstream of that name, and
 * upstream names are unique in a server. */
static int routed_by(const mg_request *req, const mg_dir_conf *dc)
{
    return req->upstream && dc->route && !dc->versions
           && !strcmp(req->upstream->name, dc->route);
}

/* Fixups run for every request, whatever `Satisfy` says and also where
 * httpd skips the access hooks (an internal redirect with the same
 * configuration as the request before it): the gate's outcome is enforced
 * here, and decided here if no access hook ran.  With `Satisfy Any`, httpd
 * lets an access checker's refusal be overruled by `Require all granted`;
 * this is where the refusal holds anyway.
 *
 * A route chosen by .htaccess is known only after the directory walk that
 * read it: hand off here, as mod_rewrite's per-directory [P] does. */
static int mg_fixups(request_rec *r)
{
    mg_dir_conf *dc = ap_get_module_config(r->per_dir_config,
                                           &modelgate_module);
    mg_request *req;
    int rv;

    if (!gated_here(r, dc)) {
        return DECLINED;
    }
    if ((rv = run_gate(r, dc)) != OK) {
        return rv;
    }
    req = mg_request_get(r);
    if (req->cached) {
        /* on_limit=cache answered in the decision: nothing to route. */
        return OK;
    }
    rv = DECLINED;
    if ((dc->route || dc->versions) && !req->model
        && !routed_by(req, dc)
        && req->upstream != mg_route_upstream(r, ap_get_module_config(
               r->server->module_config, &modelgate_module), dc)) {
        /* Not routed yet: neither the body's model nor translate_name
         * picked this upstream. */
        rv = route_request(r, dc);
    }
    if ((rv == OK || rv == DECLINED) && mg_cached_answer(r, req, NULL)) {
        /* Answered here: never in flight at the upstream, never in its
         * health (a probe place it took goes back: the breaker waits for
         * a request that reaches the upstream); the reservation of tokens
         * comes back (settle). */
        if (req->probe && req->upstream) {
            mg_upstream_cancel_probe(r, req->upstream);
            req->probe = 0;
        }
        return OK;
    }
    if (rv == OK || rv == DECLINED) {
        /* Where it goes is final now: it is in flight there. */
        mg_upstream_enter(r, req);
        if (req->reservation) {
            mg_usage_watch(r, req);
        }
    }
    return rv;
}

/* ---- lifecycle ------------------------------------------------------------ */

static int mg_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                         apr_pool_t *ptemp)
{
    /* Registered every generation, so the admin's Mutex directive for
     * "modelgate-store" applies. */
    return ap_mutex_register(pconf, MG_STORE_MUTEX_TYPE, NULL,
                             APR_LOCK_DEFAULT, 0) == APR_SUCCESS
           ? OK : HTTP_INTERNAL_SERVER_ERROR;
}

/* httpd's core and http modules, and mod_http2, write request headers --
 * X-API-Key and Authorization among them -- to the error log at trace4
 * and above.  The gateway cannot hide them from there: say so at start. */
static void warn_header_logging(server_rec *main_server)
{
    static const char *const modules[] = { "core.c", "http_core.c",
                                           "mod_http2.c", NULL };
    server_rec *s;
    int i;

    for (s = main_server; s; s = s->next) {
        for (i = 0; modules[i]; i++) {
            module *m = ap_find_linked_module(modules[i]);
            if (m && APLOG_MODULE_IS_LEVEL(s, m->module_index,
                                           APLOG_TRACE4)) {
                ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, MGLOGNO(00007)
                             "LogLevel trace4 or above for %s (%s): httpd "
                             "writes request headers, API keys included, to "
                             "the error log; ModelGate cannot keep them out "
                             "of it", modules[i], s->defn_name
                             ? s->defn_name : "main server");
            }
        }
    }
}

static int mg_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                          apr_pool_t *ptemp, server_rec *s)
{
    mg_server_conf *sc = ap_get_module_config(s->module_config,
                                              &modelgate_module);

    /* The first pass over the configuration is a dry run: no shared
     * resources yet. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    prepare_canned_errors(pconf);
    if (sc->enabled_somewhere) {
        warn_header_logging(s);
    }
    if (sc->store->init(sc->store_inst, s, pconf, ptemp) != APR_SUCCESS
        || (sc->local && sc->local->init(sc->local_inst, s, pconf, ptemp)
                         != APR_SUCCESS)) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (mg_upstream_post_config(pconf, s, sc) != OK) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    ap_add_version_component(pconf, "mod_modelgate/" MODELGATE_VERSION);
    return OK;
}

static void mg_child_init(apr_pool_t *pchild, server_rec *s)
{
    mg_server_conf *sc = ap_get_module_config(s->module_config,
                                              &modelgate_module);

    mg_decide_child_init(sc);
    mg_upstream_child_init(s);
    sc->store->child_init(sc->store_inst, s, pchild);
    if (sc->local) {
        sc->local->child_init(sc->local_inst, s, pchild);
    }
}

static void mg_register_hooks(apr_pool_t *p)
{
    /* Before mod_proxy's translate (ProxyPass) and fixup (which
     * canonicalises "proxy:" URLs). */
    static const char *const before_proxy[] = { "mod_proxy.c", NULL };

    ap_register_provider(p, MG_STORE_PROVIDER_GROUP, "shm",
                         MG_STORE_PROVIDER_VERSION, &mg_store_shm_provider);
    ap_hook_pre_config(mg_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(mg_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(mg_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(mg_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_access_checker(mg_access_checker, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_translate_name(mg_translate_name, NULL, before_proxy,
                           APR_HOOK_FIRST);
    ap_hook_fixups(mg_fixups, NULL, before_proxy, APR_HOOK_FIRST);
    ap_hook_insert_error_filter(insert_error_filter, NULL, NULL,
                                APR_HOOK_MIDDLE);
    APR_REGISTER_OPTIONAL_FN(mg_request_body);
    mg_body_register(p);
    mg_upstream_register(p);
    mg_usage_register(p);
    ap_hook_log_transaction(mg_upstream_log, NULL, NULL, APR_HOOK_MIDDLE);
    /* Before mod_log_config's, so the access log has the token notes. */
    ap_hook_log_transaction(mg_usage_settle, NULL, NULL, APR_HOOK_FIRST);
    ap_register_output_filter(MG_JSON_ERROR_FILTER, json_error_filter, NULL,
                              AP_FTYPE_CONTENT_SET);
}

/* Declared plainly, not with AP_DECLARE_MODULE, whose APLOG_USE_MODULE
 * would repeat the one in mod_modelgate_private.h. */
module AP_MODULE_DECLARE_DATA modelgate_module = {
    STANDARD20_MODULE_STUFF,
    mg_create_dir_conf,
    mg_merge_dir_conf,
    mg_create_server_conf,
    mg_merge_server_conf,
    mg_cmds,
    mg_register_hooks,
    AP_MODULE_FLAG_NONE
};
