/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_config_layers.c -- the start-up check that no request can
 * meet more than MG_LIMIT_MAX_LAYERS limit layers.
 *
 * A request's layers are assembled per request (mod_modelgate_layers.c):
 * its tier's, the tier's tokens= layer, the server-wide limits that apply
 * to its tier and model, then those of every section merged for its URL
 * (several sections stack: limits accumulate, never replace).  Found
 * only there, one layer too many refuses every such request with 500
 * (MG00202) for as long as the configuration stands; here it stops
 * `apache2 -t` instead, naming the tier, the model, the sections and the
 * count.
 *
 * The worst case is taken over every declared tier and every model a
 * request can be decided for (none, or each ModelGateModel: models= and
 * scope model only ever apply to those), and over the sections one
 * request can merge.  Every section, literal or pattern, has a literal
 * prefix that every path it applies to starts with (a pattern's: what
 * its regex's ^ or its wildcard is followed by, else nothing); two
 * sections can apply to one path only if one prefix is a prefix of the
 * other, so the <Location>s one URL merges are at most a chain of them,
 * and likewise the <Directory>s of one file path.  Which URLs map into
 * which directory (DocumentRoot, Alias, RewriteRule, a route handed to
 * mod_proxy before any directory is walked) is not knowable here: the
 * worst <Directory> chain is counted with the worst <Location> chain, and
 * the message says so.  What a .htaccess adds is checked when it is read
 * (mod_modelgate_config.c); <Files>, <If> and <Proxy> sections are not
 * counted, and the run-time refusal remains for them.
 *
 * It also warns of a section's ModelGateCost above what a tier's request
 * limit can ever hold: those requests are refused as never admissible.
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

/* What every path section `cd` applies to starts with.  A regex gives its
 * literal start after ^ (a character a quantifier makes optional is not
 * part of it; an alternation may leave the anchor, so it gives nothing);
 * a wildcard path what comes before its first wildcard. */
static const char *literal_prefix(apr_pool_t *p, const core_dir_config *cd)
{
    const char *d = cd->d, *e;

    if (!d) {
        return "";
    }
    if (cd->r) {
        if (d[0] != '^' || strchr(d, '|')) {
            return "";
        }
        d++;
        e = d + strcspn(d, ".[]()*+?{}|\\$^");
        if (e > d && (*e == '*' || *e == '?' || *e == '{')) {
            e--;
        }
        return apr_pstrmemdup(p, d, e - d);
    }
    if (cd->d_is_fnmatch) {
        return apr_pstrmemdup(p, d, strcspn(d, "*?[\\"));
    }
    return d;
}

/* One server's sections of one kind, with their literal prefixes. */
typedef struct sections {
    const apr_array_header_t *secs;
    const char **prefix;
} sections;

static void sections_of(apr_pool_t *p, const apr_array_header_t *secs,
                        sections *out)
{
    int i;

    out->secs = secs;
    out->prefix = apr_pcalloc(p, sizeof(char *) * (secs ? secs->nelts : 1));
    for (i = 0; secs && i < secs->nelts; i++) {
        out->prefix[i] = literal_prefix(p, ap_get_core_module_config(
            APR_ARRAY_IDX(secs, i, ap_conf_vector_t *)));
    }
}

/* The worst chain of one kind of sections for a request of `tier` for
 * `model`: the most layers the sections whose prefixes are prefixes of
 * one section's prefix add, that section (the chain's deepest with layers
 * of its own) in *at, and whether a pattern with no literal prefix, which
 * meets every other section, is in it. */
typedef struct chain {
    int n;
    const core_dir_config *at;
    int open;
    const mg_limit_def *last;
} chain;

static void worst_chain(const sections *k, const mg_tier *tier,
                        const char *model, chain *c)
{
    int i, j;

    c->n = 0;
    c->at = NULL;
    c->open = 0;
    c->last = NULL;
    for (i = 0; k->secs && i < k->secs->nelts; i++) {
        const mg_limit_def *last = NULL;
        int n = 0, open = 0;
        if (!applying(section_limits(APR_ARRAY_IDX(k->secs, i,
                                                   ap_conf_vector_t *)),
                      tier, model, &last)) {
            continue;
        }
        for (j = 0; j < k->secs->nelts; j++) {
            ap_conf_vector_t *v = APR_ARRAY_IDX(k->secs, j,
                                                ap_conf_vector_t *);
            int m;
            if (strncmp(k->prefix[i], k->prefix[j], strlen(k->prefix[j]))) {
                continue;
            }
            m = applying(section_limits(v), tier, model, &last);
            n += m;
            if (m && !*k->prefix[j]) {
                open = 1;
            }
        }
        if (n > c->n) {
            c->n = n;
            c->at = ap_get_core_module_config(APR_ARRAY_IDX(
                k->secs, i, ap_conf_vector_t *));
            c->open = open;
            c->last = last;
        }
    }
}

typedef struct worst {
    int n;                    /* layers */
    const mg_tier *tier;
    const char *model;
    int tier_layers, server;
    chain loc, dir;
    const mg_limit_def *last; /* the last layer counted: where to point */
} worst;

/* The most layers a request to server `s` can meet. */
static void worst_of(const mg_server_conf *sc, const sections *locs,
                     const sections *dirs, worst *w)
{
    apr_hash_index_t *hi;
    int m;

    for (hi = apr_hash_first(NULL, sc->policy->tiers); hi;
         hi = apr_hash_next(hi)) {
        const mg_tier *tier = apr_hash_this_val(hi);
        for (m = -1; m < sc->model_list->nelts; m++) {
            const char *model = m < 0 ? NULL
                : APR_ARRAY_IDX(sc->model_list, m, mg_model *)->name;
            const mg_limit_def *last = tier->tokens ? tier->tokens : tier;
            int own = tier->tokens ? 2 : 1;
            int server = applying(sc->policy->limits, tier, model, &last);
            chain loc, dir;
            worst_chain(locs, tier, model, &loc);
            worst_chain(dirs, tier, model, &dir);
            if (own + server + loc.n + dir.n > w->n) {
                w->n = own + server + loc.n + dir.n;
                w->tier = tier;
                w->model = model;
                w->tier_layers = own;
                w->server = server;
                w->loc = loc;
                w->dir = dir;
                w->last = loc.last ? loc.last : dir.last ? dir.last : last;
            }
        }
    }
}

static const char *section_name(apr_pool_t *p, const char *kind,
                                const core_dir_config *cd)
{
    return apr_psprintf(p, "<%s%s %s>", kind, cd->r ? "Match" : "", cd->d);
}

static int refuse(server_rec *s, apr_pool_t *ptemp, const worst *w)
{
    const char *at = "", *why = "";

    if (w->loc.n) {
        at = apr_pstrcat(ptemp, " at ", section_name(ptemp, "Location",
                                                     w->loc.at), NULL);
    }
    if (w->dir.n) {
        at = apr_pstrcat(ptemp, at, w->loc.n ? " and " : " at ",
                         section_name(ptemp, "Directory", w->dir.at), NULL);
    }
    if (w->loc.n && w->dir.n) {
        why = "; a <Directory>'s limits are counted with every "
              "<Location>'s, as which URLs map into a directory is not "
              "known at start-up";
    }
    if (w->loc.open || w->dir.open) {
        why = apr_pstrcat(ptemp, why, "; a pattern section that does not "
                          "start with ^ and a literal path is counted with "
                          "every section of its kind", NULL);
    }
    ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, s,
                 MGLOGNO(00506) "%s: a request of tier '%s'%s%s%s%s meets "
                 "%d limit layers (the tier's %d, %d server-wide, %d of its "
                 "sections)%s; at most %d apply to a request: merge some or "
                 "narrow them with tiers= or models= (%s line %d)",
                 w->last->unit == MG_UNIT_MONEY ? "ModelGateBudget"
                 : w->last == w->tier || w->last == w->tier->tokens
                 ? "ModelGateTier" : "ModelGateLimit",
                 w->tier->name, w->model ? " for model '" : "",
                 w->model ? w->model : "", w->model ? "'" : "", at,
                 w->n, w->tier_layers, w->server, w->loc.n + w->dir.n, why,
                 MG_LIMIT_MAX_LAYERS, w->last->conf_file
                 ? w->last->conf_file : "?", w->last->conf_line);
    return 0;
}

/* A section's ModelGateCost above what a request limit can ever hold
 * (its burst; a window's quota): every request there of the limit's
 * callers is refused, with no wait that helps.  Only a warning: the cost
 * may be meant for other tiers, and those refusals say so themselves. */
static void warn_cost(server_rec *s, apr_pool_t *ptemp, const char *kind,
                      const apr_array_header_t *secs, const mg_policy *policy,
                      apr_hash_t *seen)
{
    int i, j;

    for (i = 0; secs && i < secs->nelts; i++) {
        ap_conf_vector_t *v = APR_ARRAY_IDX(secs, i, ap_conf_vector_t *);
        const mg_dir_conf *dc = ap_get_module_config(v, &modelgate_module);
        const core_dir_config *cd = ap_get_core_module_config(v);
        apr_hash_index_t *hi;

        if (!dc || dc->cost == MG_UNSET || dc->cost <= 1
            || apr_hash_get(seen, &dc, sizeof(dc))) {
            continue;       /* a virtual host repeats the main server's */
        }
        apr_hash_set(seen, apr_pmemdup(ptemp, &dc, sizeof(dc)), sizeof(dc),
                     dc);
        for (hi = apr_hash_first(ptemp, policy->tiers); hi;
             hi = apr_hash_next(hi)) {
            const mg_tier *tier = apr_hash_this_val(hi);
            const mg_limit_def *over = NULL;
            if (tier->unit == MG_UNIT_REQUESTS && !tier->shadow
                && (apr_uint64_t)dc->cost > mg_limit_holds(&tier->spec)) {
                over = tier;
            }
            for (j = 0; !over && policy->limits
                        && j < policy->limits->nelts; j++) {
                const mg_limit_def *def = APR_ARRAY_IDX(policy->limits, j,
                                                        mg_limit_def *);
                if (def->unit == MG_UNIT_REQUESTS && !def->shadow
                    && mg_policy_limit_applies(def, tier->name)
                    && (apr_uint64_t)dc->cost > mg_limit_holds(&def->spec)) {
                    over = def;
                }
            }
            if (!over) {
                continue;
            }
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_WARNING, 0, s,
                         MGLOGNO(00508) "ModelGateCost %" APR_INT64_T_FMT
                         " at %s is above the %" APR_UINT64_T_FMT " that "
                         "limit '%s' can ever hold: requests there of tier "
                         "'%s' can never be admitted (raise its burst= or "
                         "lower the cost)", (apr_int64_t)dc->cost,
                         section_name(ptemp, kind, cd),
                         mg_limit_holds(&over->spec), over->name, tier->name);
        }
    }
}

int mg_check_layers(server_rec *main_server, const mg_server_conf *sc,
                    apr_pool_t *ptemp)
{
    apr_hash_t *seen = apr_hash_make(ptemp);
    server_rec *s;

    /* A virtual host's sections include the main server's (httpd appends
     * them when it merges the servers). */
    for (s = main_server; s; s = s->next) {
        core_server_config *core = ap_get_core_module_config(
            s->module_config);
        sections locs, dirs;
        worst w = { 0 };
        warn_cost(s, ptemp, "Location", core->sec_url, sc->policy, seen);
        warn_cost(s, ptemp, "Directory", core->sec_dir, sc->policy, seen);
        sections_of(ptemp, core->sec_url, &locs);
        sections_of(ptemp, core->sec_dir, &dirs);
        worst_of(sc, &locs, &dirs, &w);
        if (w.n > MG_LIMIT_MAX_LAYERS) {
            return refuse(s, ptemp, &w);
        }
    }
    return 1;
}

/* ---- names a directive gives: tiers and models ------------------------- */

/* Why `ref` names nothing the server declares, or NULL if it does. */
const char *mg_config_unknown_name(apr_pool_t *p, const mg_server_conf *sc,
                                   const mg_name_ref *ref)
{
    const char *why;

    if (ref->kind == MG_NAMES_TIER) {
        why = mg_policy_unknown_tier(p, sc->policy, ref->name);
    }
    else {
        const mg_model *m = mg_model_get(sc, ref->name);
        if (m && (ref->kind == MG_NAMES_MODEL_OR_ALIAS
                  || !strcmp(m->name, ref->name))) {
            return NULL;
        }
        if (m) {
            why = apr_psprintf(p, "'%s', an alias of the model '%s': a "
                               "request is counted under its model's name, "
                               "so name '%s'", ref->name, m->name, m->name);
        }
        else {
            const char **names = apr_palloc(p, (sc->model_list->nelts + 1)
                                               * sizeof(*names));
            int i;
            for (i = 0; i < sc->model_list->nelts; i++) {
                names[i] = APR_ARRAY_IDX(sc->model_list, i, mg_model *)->name;
            }
            why = mg_policy_unknown_name(p, "model", "ModelGateModel",
                                         ref->name, names, i);
        }
    }
    return why ? apr_psprintf(p, "%s%s%s names %s", ref->directive,
                              ref->option ? ": " : "",
                              ref->option ? ref->option : "", why)
               : NULL;
}

const char *mg_config_names(cmd_parms *cmd, mg_names_kind kind,
                            const char *directive, const char *option,
                            const char *name)
{
    mg_server_conf *sc = mg_server_conf_of(cmd);
    mg_name_ref ref;

    ref.kind = kind;
    ref.directive = apr_pstrdup(cmd->pool, directive);
    ref.option = option;
    ref.name = apr_pstrdup(cmd->pool, name);
    ref.where = mg_where_of(cmd);
    if (mg_in_htaccess(cmd)) {
        return mg_config_unknown_name(cmd->pool, sc, &ref);
    }
    APR_ARRAY_PUSH(sc->name_refs, mg_name_ref) = ref;
    return NULL;
}
