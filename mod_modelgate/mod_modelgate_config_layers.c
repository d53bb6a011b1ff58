/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_config_layers.c -- the start-up check that no request can
 * meet more than MG_LIMIT_MAX_LAYERS limit layers.
 *
 * A request's layers are assembled per request (mod_modelgate_layers.c):
 * its tier's, the tier's tokens= layer, the server-wide limits that apply
 * to its tier and model, then those of every section merged for its URL
 * (several <Location>s stack: limits accumulate, never replace).  Found
 * only there, one layer too many refuses every such request with 500
 * (MG00202) for as long as the configuration stands; here it stops
 * `apache2 -t` instead, naming the tier, the model, the section and the
 * count.
 *
 * The worst case is taken over every declared tier and every model a
 * request can be decided for (none, or each ModelGateModel: models= and
 * scope model only ever apply to those), and over the sections one URL
 * can merge: for each <Location>, itself with every literal <Location>
 * that is a prefix of its path and every <LocationMatch> that matches
 * it (a <Directory> likewise with its parent directories).  What a
 * .htaccess adds is checked when it is read (mod_modelgate_config.c).
 */
#include <apr_strings.h>
#include <http_core.h>
#include "mod_modelgate_private.h"

/* How many of `limits` apply to a request of `tier` for `model`: the same
 * filters mg_layers_for_request applies. */
static int applying(const apr_array_header_t *limits, const mg_tier *tier,
                    const char *model, const mg_limit_def **last)
{
    int i, n = 0;

    for (i = 0; limits && i < limits->nelts; i++) {
        const mg_limit_def *def = APR_ARRAY_IDX(limits, i, mg_limit_def *);
        if (mg_policy_limit_applies(def, tier->name)
            && mg_policy_limit_applies_to_model(def, model)
            && !(def->scope == MG_SCOPE_MODEL && !model)) {
            n++;
            *last = def;
        }
    }
    return n;
}

/* The limits of one section, as written in it. */
static const apr_array_header_t *section_limits(ap_conf_vector_t *v)
{
    const mg_dir_conf *dc = ap_get_module_config(v, &modelgate_module);

    return dc ? dc->limits : NULL;
}

/* Does section `other` merge into a request at section `at`'s own path? */
static int stacks(const core_dir_config *at, const core_dir_config *other)
{
    if (other == at) {
        return 1;
    }
    if (!at->d || at->r || at->d_is_fnmatch) {
        /* A pattern's URLs cannot be listed: it is checked on its own
         * (the runtime check still catches what it merges with). */
        return 0;
    }
    if (other->r) {
        return !ap_regexec(other->r, at->d, 0, NULL, 0);
    }
    return other->d && !other->d_is_fnmatch
           && !strncmp(at->d, other->d, strlen(other->d));
}

typedef struct worst {
    int n;                    /* layers */
    const mg_tier *tier;
    const char *model;
    int tier_layers, server, section;
    const mg_limit_def *last; /* the last layer counted: where to point */
} worst;

/* The most layers a request at section `at` (NULL: outside every section)
 * of the array `secs` can meet. */
static void worst_at(const mg_server_conf *sc,
                     const apr_array_header_t *secs, int at, worst *w)
{
    const core_dir_config *here = at < 0 ? NULL : ap_get_core_module_config(
        APR_ARRAY_IDX(secs, at, ap_conf_vector_t *));
    apr_hash_index_t *hi;
    int m, i;

    for (hi = apr_hash_first(NULL, sc->policy->tiers); hi;
         hi = apr_hash_next(hi)) {
        const mg_tier *tier = apr_hash_this_val(hi);
        for (m = -1; m < sc->model_list->nelts; m++) {
            const char *model = m < 0 ? NULL
                : APR_ARRAY_IDX(sc->model_list, m, mg_model *)->name;
            const mg_limit_def *last = tier->tokens ? tier->tokens : tier;
            int own = tier->tokens ? 2 : 1;
            int server = applying(sc->policy->limits, tier, model, &last);
            int section = 0;
            for (i = 0; here && i < secs->nelts; i++) {
                ap_conf_vector_t *v = APR_ARRAY_IDX(secs, i,
                                                    ap_conf_vector_t *);
                if (stacks(here, ap_get_core_module_config(v))) {
                    section += applying(section_limits(v), tier, model,
                                        &last);
                }
            }
            if (own + server + section > w->n) {
                w->n = own + server + section;
                w->tier = tier;
                w->model = model;
                w->tier_layers = own;
                w->server = server;
                w->section = section;
                w->last = last;
            }
        }
    }
}

static int refuse(server_rec *s, apr_pool_t *ptemp, const worst *w,
                  const char *section)
{
    ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, s,
                 MGLOGNO(00506) "%s: a request of tier '%s'%s%s%s%s meets "
                 "%d limit layers (the tier's %d, %d server-wide, %d of its "
                 "sections); at most %d apply to a request: merge some or "
                 "narrow them with tiers= or models= (%s line %d)",
                 w->last->unit == MG_UNIT_MONEY ? "ModelGateBudget"
                 : w->last == w->tier || w->last == w->tier->tokens
                 ? "ModelGateTier" : "ModelGateLimit",
                 w->tier->name, w->model ? " for model '" : "",
                 w->model ? w->model : "", w->model ? "'" : "",
                 section ? apr_pstrcat(ptemp, " at ", section, NULL) : "",
                 w->n, w->tier_layers, w->server, w->section,
                 MG_LIMIT_MAX_LAYERS, w->last->conf_file
                 ? w->last->conf_file : "?", w->last->conf_line);
    return 0;
}

/* One server's sections of one kind. */
static int check_sections(server_rec *s, const mg_server_conf *sc,
                          const apr_array_header_t *secs, const char *kind,
                          apr_pool_t *ptemp)
{
    int i;

    for (i = 0; secs && i < secs->nelts; i++) {
        ap_conf_vector_t *v = APR_ARRAY_IDX(secs, i, ap_conf_vector_t *);
        const apr_array_header_t *own = section_limits(v);
        worst w = { 0 };
        if (!own || own->nelts == 0) {
            continue;
        }
        worst_at(sc, secs, i, &w);
        if (w.n > MG_LIMIT_MAX_LAYERS) {
            const core_dir_config *cd = ap_get_core_module_config(v);
            return refuse(s, ptemp, &w, apr_psprintf(ptemp, "<%s%s %s>",
                          kind, cd->r ? "Match" : "", cd->d));
        }
    }
    return 1;
}

int mg_check_layers(server_rec *main_server, const mg_server_conf *sc,
                    apr_pool_t *ptemp)
{
    worst w = { 0 };
    server_rec *s;

    worst_at(sc, NULL, -1, &w);
    if (w.n > MG_LIMIT_MAX_LAYERS) {
        return refuse(main_server, ptemp, &w, NULL);
    }
    for (s = main_server; s; s = s->next) {
        core_server_config *core = ap_get_core_module_config(
            s->module_config);
        if (!check_sections(s, sc, core->sec_url, "Location", ptemp)
            || !check_sections(s, sc, core->sec_dir, "Directory", ptemp)) {
            return 0;
        }
    }
    return 1;
}
