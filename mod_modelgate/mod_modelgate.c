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
 *   fixups          enforce the gate's outcome whatever Satisfy says, run
 *                   it where httpd skipped the access hooks, hand over a
 *                   route that came from .htaccess, or a cached answer
 *   error filter    the breaker and the token settle learn of an error
 *                   response first; error bodies are JSON
 *   log_transaction what was not recorded or settled before
 *
 * Per-request state, what plugins may ask, and the gateway's own answers
 * are in mod_modelgate_request.c, below these hooks: the other glue files
 * call down into it, never up into this one.
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

/* ---- error responses ------------------------------------------------------- */

static void insert_error_filter(request_rec *r)
{
    /* Before the client can see it: the breaker learns of it first, and
     * a reservation of tokens comes back. */
    mg_upstream_error(r);
    mg_usage_settle(r);
    mg_identity_error_response(r);
    mg_respond_error_response(r);
}

/* ---- access_checker: identity, then the limit decision ---------------------- */

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
    int rv, bearer = 0;

    mg_identity_scrub(r);
    credential = mg_identity_take_credential(r, &len, &bearer);
    if ((rv = mg_identify(r, sc, credential, len, bearer, &key)) != OK) {
        return rv;
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
static int passed(const mg_request *req)
{
    return req->gated && req->gate_status == OK;
}

static int passed_earlier(const request_rec *r)
{
    return mg_request_earlier(r, passed) != NULL;
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
         * comes back (settle), and the request layers' units too when the
         * listener says the answer is free. */
        if (req->probe && req->upstream) {
            mg_upstream_cancel_probe(r, req->upstream);
            req->probe = 0;
        }
        mg_decide_cached(r, req);
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
    mg_respond_prepare(pconf);
    /* Read per request: whether an admission must be recorded for a
     * cached answer to give back. */
    mg_cache_loaded = mg_cache_listening();
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
    mg_request_register(p);
    mg_identity_register(p);
    mg_body_register(p);
    mg_upstream_register(p);
    mg_usage_register(p);
    mg_metrics_register(p);
    mg_trace_register(p);
    mg_quota_register(p);
    ap_hook_log_transaction(mg_upstream_log, NULL, NULL, APR_HOOK_MIDDLE);
    /* Before mod_log_config's, so the access log has the token notes. */
    ap_hook_log_transaction(mg_usage_settle, NULL, NULL, APR_HOOK_FIRST);
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
