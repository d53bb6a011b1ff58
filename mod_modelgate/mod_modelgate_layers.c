/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_layers.c -- which limit layers a request meets, and whose
 * counter each one charges.
 *
 * In order: the caller's tier (per key), the server-wide limits, then the
 * location's (with its parents' and .htaccess's).  A limit restricted with
 * tiers= is skipped for other tiers, one restricted with models= for other
 * models, and one of scope model for requests that name no declared model.
 * The counter key is the scope, the limit's name and the subject the scope
 * picks (nobody, tier, tenant, key id, route, client address or model)
 * with the limit's numbers; all but the subject is hashed once, when the
 * configuration is read.
 */
#include <apr_atomic.h>
#include <apr_strings.h>
#include <http_core.h>
#include "mod_modelgate_private.h"
#include "mg_table.h"

static const char *subject_of(request_rec *r, const mg_dir_conf *dc,
                              const mg_key *key, const char *model,
                              mg_scope scope)
{
    switch (scope) {
    case MG_SCOPE_MODEL:
        return model ? model : "";
    case MG_SCOPE_TIER:
        return key->tier;
    case MG_SCOPE_TENANT:
        return key->tenant;
    case MG_SCOPE_KEY:
        return key->id;
    case MG_SCOPE_ROUTE:
        return dc->route ? dc->route : "";
    case MG_SCOPE_IP:
        /* mod_remoteip, when configured, has already replaced it with the
         * client behind trusted proxies. */
        return r->useragent_ip ? r->useragent_ip : "";
    case MG_SCOPE_GLOBAL:
    default:
        return "";
    }
}

void mg_layers_prepare(apr_pool_t *p, mg_limit_def *def)
{
    /* \x1f (unit separator) cannot occur in names. */
    const char *own = apr_pstrcat(p, mg_policy_scope_name(def->scope), "\x1f",
                                  def->name, NULL);

    def->fp_base = mg_table_fingerprint(own, strlen(own), &def->spec);
    def->global_hash = mg_table_subject_hash("", 0);
    def->policy_item = mg_headers_policy_item(p, def->name, &def->spec);
    def->quota_text = apr_psprintf(p, "%" APR_UINT64_T_FMT, def->spec.quota);
}

/* A token layer's cost: the part of the reservation it counts. */
static apr_uint64_t token_cost(const mg_limit_def *def, const mg_request *req)
{
    switch (def->count) {
    case MG_COUNT_PROMPT:
        return req->reserve_prompt;
    case MG_COUNT_COMPLETION:
        return req->reserve_completion;
    default:
        return req->reserve_prompt + req->reserve_completion;
    }
}

static void add_layer(request_rec *r, const mg_server_conf *sc,
                      const mg_dir_conf *dc, const mg_key *key,
                      const char *model, const mg_limit_def *def,
                      apr_uint64_t cost, const mg_request *req,
                      mg_layer *layer)
{
    const mg_fingerprint *known;
    mg_fingerprint h;

    /* A key's id, tenant and tier were hashed when the key file was read. */
    switch (def->scope) {
    case MG_SCOPE_TIER:
        known = &key->tier_hash;
        break;
    case MG_SCOPE_TENANT:
        known = &key->tenant_hash;
        break;
    case MG_SCOPE_KEY:
        known = &key->id_hash;
        break;
    case MG_SCOPE_GLOBAL:
        known = &def->global_hash;
        break;
    default: {
        const char *subject = subject_of(r, dc, key, model, def->scope);
        h = mg_table_subject_hash(subject, strlen(subject));
        known = &h;
        break;
    }
    }
    layer->policy = def->name;
    layer->spec = &def->spec;
    layer->fp = mg_table_fingerprint_hashed(&def->fp_base, known);
    if (def->unit == MG_UNIT_MONEY) {
        /* The reservation at the prices of the model it would be served
         * by; a request for no priced model spends nothing. */
        const mg_model *m = model ? mg_model_get(sc, model) : NULL;
        layer->cost = m ? mg_policy_spend(req->reserve_prompt,
                                          req->reserve_completion,
                                          m->price_in, m->price_out) : 0;
        layer->tokens = MG_LAYER_MONEY;
    }
    else if (def->unit == MG_UNIT_TOKENS) {
        layer->cost = token_cost(def, req);
        layer->tokens = (apr_uint32_t)def->count + 1;
    }
    else {
        layer->cost = cost;
        layer->tokens = 0;
    }
    layer->shadow = def->shadow;
    layer->policy_item = def->policy_item;
    layer->limit_text = def->quota_text;
}

/* Does a declared limit apply to a request of this tier and model?  (A
 * model-scoped limit needs a model to count.)  Both the decision and the
 * too-many report ask it, so they never disagree on the set. */
static APR_INLINE int limit_applies(const mg_limit_def *def,
                                    const char *tier, const char *model)
{
    return mg_policy_limit_applies(def, tier)
           && mg_policy_limit_applies_to_model(def, model)
           && (def->scope != MG_SCOPE_MODEL || model);
}

int mg_layers_for_request(request_rec *r, const mg_server_conf *sc,
                          const mg_dir_conf *dc, const mg_key *key,
                          const mg_tier *tier, const char *model,
                          const mg_request *req, mg_layer *layers)
{
    const apr_array_header_t *lists[2];
    apr_uint64_t cost = dc->cost == MG_UNSET ? 1 : (apr_uint64_t)dc->cost;
    int n = 0, l, i;

    add_layer(r, sc, dc, key, model, tier, cost, req, &layers[n++]);
    if (tier->tokens) {
        add_layer(r, sc, dc, key, model, tier->tokens, cost, req, &layers[n++]);
    }
    lists[0] = sc->policy->limits;
    lists[1] = dc->limits;
    for (l = 0; l < 2; l++) {
        for (i = 0; i < lists[l]->nelts; i++) {
            const mg_limit_def *def = APR_ARRAY_IDX(lists[l], i,
                                                    mg_limit_def *);
            if (!limit_applies(def, key->tier, model)) {
                continue;
            }
            if (n == MG_LIMIT_MAX_LAYERS) {
                return -1;
            }
            add_layer(r, sc, dc, key, model, def, cost, req, &layers[n++]);
        }
    }
    return n;
}

/* Which sets of layers were reported too many, and when (seconds): a line
 * a minute per set in each child, however many requests meet it, so that
 * a configuration mistake names itself without flooding the log.  Racing
 * threads may both log, or one slot's key and time may mix: a duplicate
 * or a skipped line, nothing worse. */
#define MG_TOO_MANY_SLOTS 16
#define MG_TOO_MANY_EVERY 60
static apr_uint32_t too_many_key[MG_TOO_MANY_SLOTS];
static apr_uint32_t too_many_at[MG_TOO_MANY_SLOTS];

/* The same filters as mg_layers_for_request, every limit that applies
 * (not only the first MG_LIMIT_MAX_LAYERS): their names and where they
 * are written. */
static const char *applying_text(request_rec *r, const mg_server_conf *sc,
                                 const mg_dir_conf *dc, const mg_tier *tier,
                                 const char *model, int *n)
{
    const apr_array_header_t *lists[2] = { sc->policy->limits, dc->limits };
    const mg_limit_def *defs[2];
    const char *text = "";
    int l, i;

    *n = 0;
    defs[0] = tier;
    defs[1] = tier->tokens;
    for (l = -1; l < 2; l++) {
        for (i = 0; i < (l < 0 ? 2 : lists[l]->nelts); i++) {
            const mg_limit_def *def = l < 0 ? defs[i]
                : APR_ARRAY_IDX(lists[l], i, mg_limit_def *);
            if (!def || (l >= 0 && !limit_applies(def, tier->name, model))) {
                continue;
            }
            text = apr_psprintf(r->pool, "%s%s%s (%s line %d)", text,
                                (*n)++ ? ", " : "", def->name,
                                def->conf_file ? def->conf_file : "?",
                                def->conf_line);
        }
    }
    return text;
}

int mg_layers_too_many(request_rec *r, const mg_server_conf *sc,
                       const mg_dir_conf *dc, const mg_tier *tier,
                       const char *model)
{
    apr_uint32_t key = 2166136261u;
    apr_uint32_t now = (apr_uint32_t)apr_time_sec(r->request_time);
    const char *text, *c;
    int n, slot;

    /* Keyed by the text, not the definitions' addresses: a .htaccess's are
     * made anew for every request. */
    text = applying_text(r, sc, dc, tier, model, &n);
    for (c = text; *c; c++) {
        key = (key ^ (unsigned char)*c) * 16777619u;
    }
    slot = (int)(key % MG_TOO_MANY_SLOTS);
    if (apr_atomic_read32(&too_many_key[slot]) != key
        || now - apr_atomic_read32(&too_many_at[slot]) >= MG_TOO_MANY_EVERY) {
        apr_atomic_set32(&too_many_key[slot], key);
        apr_atomic_set32(&too_many_at[slot], now);
        /* The start-up check (MG00506) counts <Location>s and
         * <Directory>s; what it cannot see ends here. */
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MGLOGNO(00202)
                      "a request of tier '%s'%s%s%s to %s meets %d limit "
                      "layers, more than the %d a request can be decided "
                      "over, so it is refused with 500 rather than decided "
                      "without some: %s; merge some, narrow them with "
                      "tiers= or models=, or move them out of the "
                      ".htaccess, <Files>, <If> or <Proxy> sections the "
                      "start-up check cannot count (logged once a minute "
                      "per set of layers in each child)", tier->name,
                      model ? " for model '" : "", model ? model : "",
                      model ? "'" : "", r->uri, n, MG_LIMIT_MAX_LAYERS,
                      text);
    }
    return mg_respond_canned(r, CANNED_TOO_MANY_LAYERS);
}
