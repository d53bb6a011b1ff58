/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_quota.c -- `SetHandler modelgate-quota`: a caller reads
 * its own limits without spending them.
 *
 *   GET /v1/modelgate/quota[?model=NAME]   (X-API-Key or Bearer)
 *
 * answers JSON listing every layer that applies to the caller at this
 * location (its tier, the server's limits for its tier, the location's;
 * with `model=`, that model's per-model limits too): name, scope, unit,
 * algorithm, quota, window, remaining, reset -- read through the counter
 * store's peek (mg_store.h), which changes nothing.
 *
 * Not a stage of the gate: this handler identifies the caller itself and
 * never forwards anything, so it needs no way around the gate's decision
 * and offers none.  Where `ModelGate` is on the gate would charge the
 * call, so the handler refuses to answer there (500, saying to put
 * `ModelGate Off` on its location); `.htaccess` may not say `ModelGate
 * Off`, so an .htaccess `SetHandler modelgate-quota` in a gated directory
 * can only produce that refusal, after the gate charged it.
 */
#include <apr_strings.h>
#include <http_core.h>
#include <http_protocol.h>
#include <http_request.h>
#include <jansson.h>
#include "mod_modelgate_private.h"
#include "mg_error.h"
#include "mg_clock.h"

#define QUOTA_HANDLER "modelgate-quota"

static const char *unit_name(const mg_layer *l)
{
    return l->tokens == MG_LAYER_MONEY ? "money"
           : l->tokens ? "tokens" : "requests";
}

/* The definition of layer `l`: the tier, its token limit, a server or a
 * location limit. */
static const mg_limit_def *def_of(const mg_server_conf *sc,
                                  const mg_dir_conf *dc, const mg_tier *tier,
                                  const mg_layer *l)
{
    const apr_array_header_t *lists[2] = { sc->policy->limits, dc->limits };
    int k, i;

    if (l->spec == &tier->spec) {
        return tier;
    }
    if (tier->tokens && l->spec == &tier->tokens->spec) {
        return tier->tokens;
    }
    for (k = 0; k < 2; k++) {
        for (i = 0; lists[k] && i < lists[k]->nelts; i++) {
            const mg_limit_def *def = APR_ARRAY_IDX(lists[k], i,
                                                    mg_limit_def *);
            if (l->spec == &def->spec) {
                return def;
            }
        }
    }
    return NULL;
}

static int answer(request_rec *r, const mg_server_conf *sc,
                  const mg_dir_conf *dc, const mg_key *key,
                  const mg_tier *tier, const mg_model *model,
                  const mg_layer *layers, const mg_decision *d)
{
    json_t *body = json_object(), *list = json_array();
    mg_headers h;
    char *text;
    int i;

    for (i = 0; i < d->nlayers; i++) {
        const mg_limit_def *def = def_of(sc, dc, tier, &layers[i]);
        const mg_limit_decision *ld = &d->layer[i];
        json_t *o = json_object();

        json_object_set_new(o, "name", json_string(layers[i].policy));
        json_object_set_new(o, "scope", json_string(
            def ? mg_policy_scope_name(def->scope) : "?"));
        json_object_set_new(o, "unit", json_string(unit_name(&layers[i])));
        json_object_set_new(o, "algorithm", json_string(
            mg_limit_algo_name(layers[i].spec->algo)));
        json_object_set_new(o, "quota", json_integer((json_int_t)ld->limit));
        json_object_set_new(o, "window", json_integer(
            (json_int_t)mg_headers_seconds(layers[i].spec->window)));
        json_object_set_new(o, "remaining",
                            json_integer((json_int_t)ld->remaining));
        json_object_set_new(o, "reset", json_integer(
            (json_int_t)mg_headers_seconds(ld->reset)));
        json_object_set_new(o, "shadow", json_boolean(layers[i].shadow));
        json_array_append_new(list, o);
    }
    json_object_set_new(body, "key_id", json_string(key->id));
    json_object_set_new(body, "tier", json_string(tier->name));
    if (model) {
        json_object_set_new(body, "model", json_string(model->name));
    }
    json_object_set_new(body, "limits", list);
    /* What the RateLimit headers of a request would say now. */
    if (d->nlayers > 0) {
        mg_headers_build(r->pool, layers, d, &h);
        json_object_set_new(body, "ratelimit_policy",
                            json_string(h.policy));
        json_object_set_new(body, "ratelimit", json_string(h.ratelimit));
    }
    text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);
    if (!text) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    ap_set_content_type(r, "application/json");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_rputs(text, r);
    ap_rputs("\n", r);
    free(text);
    return OK;
}

static int quota_handler(request_rec *r)
{
    const mg_server_conf *sc;
    const mg_dir_conf *dc;
    const mg_key *key;
    const mg_tier *tier;
    const mg_model *model = NULL;
    const char *credential, *q;
    mg_layer layers[MG_LIMIT_MAX_LAYERS];
    mg_decision d;
    apr_size_t len = 0;
    int n, rv, bearer = 0;

    if (!r->handler || strcmp(r->handler, QUOTA_HANDLER)) {
        return DECLINED;
    }
    r->allowed |= (AP_METHOD_BIT << M_GET);
    if (r->method_number != M_GET) {
        /* JSON like every other answer here, not httpd's HTML page; the
         * Allow header is httpd's, from the method list. */
        ap_allow_standard_methods(r, MERGE_ALLOW, M_GET, -1);
        return mg_respond_error(r, HTTP_METHOD_NOT_ALLOWED,
            "The quota endpoint answers GET only.", MG_ERRT_REQUEST,
            MG_ERR_METHOD_NOT_ALLOWED);
    }
    sc = ap_get_module_config(r->server->module_config, &modelgate_module);
    dc = ap_get_module_config(r->per_dir_config, &modelgate_module);
    if (dc->enabled == 1) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MGLOGNO(00701)
                      "modelgate-quota where ModelGate is on: the gate "
                      "charged this call; put ModelGate Off on its location");
        return mg_respond_error(r, HTTP_INTERNAL_SERVER_ERROR,
            "The quota endpoint is misconfigured (ModelGate is on here).",
            MG_ERRT_SERVER, MG_ERR_GATEWAY);
    }
    /* The same identity providers as the gate (API keys, JWTs). */
    mg_identity_scrub(r);
    credential = mg_identity_take_credential(r, &len, &bearer);
    if ((rv = mg_identify(r, sc, credential, len, bearer, &key)) != OK) {
        return rv;
    }
    mg_identity_announce(r, key);
    if (!(tier = mg_policy_tier(sc->policy, key->tier))) {
        return mg_respond_error(r, HTTP_INTERNAL_SERVER_ERROR,
                                "The gateway has no tier for this key.",
                                MG_ERRT_SERVER, MG_ERR_GATEWAY);
    }
    if (r->args && (q = ap_strstr_c(r->args, "model=")) != NULL
        && (q == r->args || q[-1] == '&')) {
        char *name = apr_pstrdup(r->pool, q + 6), *amp = strchr(name, '&');
        if (amp) {
            *amp = '\0';
        }
        ap_unescape_url(name);
        if (!(model = mg_model_get(sc, name))) {
            return mg_respond_error(r, HTTP_NOT_FOUND,
                "The model does not exist or you do not have access to it.",
                MG_ERRT_REQUEST, MG_ERR_MODEL_NOT_FOUND);
        }
    }
    if (!sc->store->peek) {
        return mg_respond_error(r, HTTP_NOT_IMPLEMENTED, apr_psprintf(r->pool,
            "The counter store '%s' cannot be read without charging it: "
            "the quota endpoint is not supported with it.", sc->store->name),
            MG_ERRT_SERVER, MG_ERR_NOT_SUPPORTED);
    }
    n = mg_layers_for_request(r, sc, dc, key, tier,
                              model ? model->name : NULL, mg_request_get(r),
                              layers);
    if (n < 0) {
        return mg_layers_too_many(r, sc, dc, tier, model ? model->name
                                                         : NULL);
    }
    if (sc->store->peek(sc->store_inst, r->server, layers, n, mg_clock_now(),
                        &d) != APR_SUCCESS) {
        apr_table_setn(r->err_headers_out, "Retry-After", "1");
        return mg_respond_canned(r, CANNED_STORE_DOWN);
    }
    return answer(r, sc, dc, key, tier, model, layers, &d);
}

void mg_quota_register(apr_pool_t *p)
{
    ap_hook_handler(quota_handler, NULL, NULL, APR_HOOK_MIDDLE);
}
