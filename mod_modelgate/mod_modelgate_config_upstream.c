/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_config_upstream.c -- the directives that declare where
 * requests go: ModelGateUpstream (with its health and capacity options)
 * and ModelGateModel (names, aliases, weighted targets).  Routes per
 * location are in mod_modelgate_config.c with the other per-directory
 * directives.
 */
#include <apr_strings.h>
#include <apr_uri.h>
#include <http_core.h>
#include "mod_modelgate_private.h"

/* "10s", "500ms", "2m": a duration from min to max. */
static const char *parse_duration(apr_pool_t *p, const char *opt,
                                  const char *v, apr_interval_time_t min,
                                  apr_interval_time_t max,
                                  apr_interval_time_t *out)
{
    char *end;
    apr_int64_t n = apr_strtoi64(v, &end, 10);
    apr_interval_time_t t;

    if (end == v || n < 0) {
        t = -1;
    }
    else if (!strcasecmp(end, "ms")) {
        t = n * 1000;
    }
    else if (!strcasecmp(end, "s") || !*end) {
        t = n * APR_USEC_PER_SEC;
    }
    else if (!strcasecmp(end, "m") || !strcasecmp(end, "min")) {
        t = n * 60 * APR_USEC_PER_SEC;
    }
    else {
        t = -1;
    }
    if (t < min || t > max) {
        return apr_psprintf(p, "'%s': a duration (500ms, 10s, 2m) from %"
                            APR_INT64_T_FMT " ms to %" APR_INT64_T_FMT " s",
                            opt, (apr_int64_t)(min / 1000),
                            (apr_int64_t)(max / APR_USEC_PER_SEC));
    }
    *out = t;
    return NULL;
}

/* "50%" or "50": 0 to 100. */
static const char *parse_pct(apr_pool_t *p, const char *opt, const char *v,
                             apr_uint32_t *out)
{
    char *end;
    apr_int64_t n = apr_strtoi64(v, &end, 10);

    if (end == v || (*end && strcmp(end, "%")) || n < 0 || n > 100) {
        return apr_psprintf(p, "'%s': a percentage from 0 to 100", opt);
    }
    *out = (apr_uint32_t)n;
    return NULL;
}

/* `consecutive_set`: breaker_consecutive= was given, so breaker=off
 * leaves it alone. */
static const char *parse_upstream_opt(apr_pool_t *p, mg_upstream *up,
                                      const char *opt, int *consecutive_set)
{
    const char *eq = strchr(opt, '=');
    const char *v = eq ? eq + 1 : "";
    apr_size_t klen = eq ? (apr_size_t)(eq - opt) : strlen(opt);
    char *end;
    apr_int64_t n;

#define KEY(k) (klen == sizeof(k) - 1 && !strncasecmp(opt, k, klen))
    if (KEY("max_inflight")) {
        n = apr_strtoi64(v, &end, 10);
        if (end == v || *end || n < 1 || n > 1000000) {
            return apr_psprintf(p, "'%s': a number of requests from 1 to "
                                "1000000", opt);
        }
        up->max_inflight = (apr_uint32_t)n;
        return NULL;
    }
    if (KEY("breaker")) {
        return !strcasecmp(v, "off") ? (up->health.error_pct = 0, NULL)
               : parse_pct(p, opt, v, &up->health.error_pct);
    }
    if (KEY("breaker_min")) {
        n = apr_strtoi64(v, &end, 10);
        if (end == v || *end || n < 1 || n > 1000000) {
            return apr_psprintf(p, "'%s': a number of requests from 1 to "
                                "1000000", opt);
        }
        up->health.min_requests = (apr_uint32_t)n;
        return NULL;
    }
    if (KEY("breaker_consecutive")) {
        *consecutive_set = 1;
        if (!strcasecmp(v, "off")) {
            up->health.consecutive = 0;
            return NULL;
        }
        n = apr_strtoi64(v, &end, 10);
        if (end == v || *end || n < 1 || n > 1000000) {
            return apr_psprintf(p, "'%s': a number of failures in a row "
                                "from 1 to 1000000, or off", opt);
        }
        up->health.consecutive = (apr_uint32_t)n;
        return NULL;
    }
    if (KEY("probes")) {
        n = apr_strtoi64(v, &end, 10);
        if (end == v || *end || n < 1 || n > 100) {
            return apr_psprintf(p, "'%s': from 1 to 100 requests", opt);
        }
        up->health.probes = (apr_uint32_t)n;
        return NULL;
    }
    if (KEY("open")) {
        return parse_duration(p, opt, v, 100 * 1000, 3600 * APR_USEC_PER_SEC,
                              &up->health.open);
    }
    if (KEY("window")) {
        return parse_duration(p, opt, v, APR_USEC_PER_SEC,
                              3600 * APR_USEC_PER_SEC, &up->health.window);
    }
    if (KEY("degrade_p95")) {
        return parse_duration(p, opt, v, 1000, 600 * APR_USEC_PER_SEC,
                              &up->health.degrade_p95);
    }
    if (KEY("degrade_errors")) {
        return parse_pct(p, opt, v, &up->health.degrade_error_pct);
    }
#undef KEY
    return apr_psprintf(p, "unknown option '%s' (known: max_inflight=, "
                        "breaker=, breaker_min=, breaker_consecutive=, open=, "
                        "probes=, window=, degrade_p95=, degrade_errors=)",
                        opt);
}

const char *mg_cmd_upstream(cmd_parms *cmd, void *dummy, int argc,
                                char *const argv[])
{
    mg_server_conf *sc = mg_server_conf_of(cmd);
    mg_upstream *up;
    apr_uri_t uri;
    const char *err, *name, *url;
    apr_size_t n;
    int i, consecutive_set = 0;

    if ((err = ap_check_cmd_context(cmd, GLOBAL_ONLY)) != NULL) {
        return err;
    }
    if (argc < 2) {
        return "ModelGateUpstream: expected NAME URL [options]";
    }
    name = argv[0];
    url = argv[1];
    if (!mg_policy_name_valid(name)) {
        return apr_psprintf(cmd->pool, "ModelGateUpstream: '%s' is not a "
                            "valid name (letters, digits, '.', '_', '-')",
                            name);
    }
    if (mg_upstream_get(sc, name)) {
        return apr_psprintf(cmd->pool, "ModelGateUpstream: '%s' is already "
                            "declared", name);
    }
    if (apr_uri_parse(cmd->pool, url, &uri) != APR_SUCCESS || !uri.scheme
        || (strcasecmp(uri.scheme, "http") && strcasecmp(uri.scheme, "https"))
        || !uri.hostname || uri.query || uri.fragment || uri.user) {
        return apr_psprintf(cmd->pool, "ModelGateUpstream: '%s' is not an "
                            "upstream URL (http[s]://host[:port][/path], no "
                            "query or credentials)", url);
    }
    up = apr_pcalloc(cmd->pool, sizeof(*up));
    up->name = apr_pstrdup(cmd->pool, name);
    up->url = apr_pstrdup(cmd->pool, url);
    n = strlen(up->url);
    while (n > 0 && up->url[n - 1] == '/') {
        ((char *)up->url)[--n] = '\0';
    }
    up->where = mg_where_of(cmd);
    up->index = -1;
    mg_health_conf_default(&up->health);
    for (i = 2; i < argc; i++) {
        if ((err = parse_upstream_opt(cmd->pool, up, argv[i],
                                      &consecutive_set)) != NULL) {
            return apr_pstrcat(cmd->pool, "ModelGateUpstream: ", err, NULL);
        }
    }
    if (!up->health.error_pct && !consecutive_set) {
        /* breaker=off turns the failure-driven breaker off, the run of
         * failures with it, unless breaker_consecutive= asks for it. */
        up->health.consecutive = 0;
    }
    if ((err = mg_proxy_define_worker(cmd, up->url)) != NULL) {
        return apr_pstrcat(cmd->pool, "ModelGateUpstream: ", err, NULL);
    }
    apr_hash_set(sc->upstreams, up->name, APR_HASH_KEY_STRING, up);
    return NULL;
}

/* ModelGateModel NAME UPSTREAM [alias=A,B] [served_as=NAME] */
const char *mg_cmd_model(cmd_parms *cmd, void *dummy, int argc,
                             char *const argv[])
{
    mg_server_conf *sc = mg_server_conf_of(cmd);
    mg_model *m;
    apr_array_header_t *names;
    const char *err;
    int i, j;

    if ((err = ap_check_cmd_context(cmd, GLOBAL_ONLY)) != NULL) {
        return err;
    }
    if (argc < 2) {
        return "ModelGateModel: expected NAME UPSTREAM [alias=A,B] "
               "[served_as=NAME], e.g. ModelGateModel gpt-4o-mini small";
    }
    if (!mg_policy_model_name_valid(argv[0])) {
        return apr_psprintf(cmd->pool, "ModelGateModel: '%s' is not a model "
                            "name (printable, no spaces, quotes or commas)",
                            argv[0]);
    }
    m = apr_pcalloc(cmd->pool, sizeof(*m));
    m->name = argv[0];
    m->served_as = argv[0];
    m->targets = apr_array_make(cmd->pool, 2, sizeof(mg_model_target));
    {
        /* UPSTREAM, or weighted: stable:90,canary:10 */
        char *list = apr_pstrdup(cmd->pool, argv[1]), *st = NULL, *t;
        for (t = apr_strtok(list, ",", &st); t;
             t = apr_strtok(NULL, ",", &st)) {
            mg_model_target *tg = apr_array_push(m->targets);
            char *colon = strchr(t, ':');
            tg->weight = 1;
            tg->up = NULL;
            if (colon) {
                char *end;
                apr_int64_t w = apr_strtoi64(colon + 1, &end, 10);
                *colon = '\0';
                if (end == colon + 1 || *end || w < 1 || w > 1000) {
                    return apr_psprintf(cmd->pool, "ModelGateModel: '%s': a "
                                        "weight is a whole number from 1 to "
                                        "1000", argv[1]);
                }
                tg->weight = (apr_uint32_t)w;
            }
            tg->name = t;
            if (!mg_policy_name_valid(t)) {
                return apr_psprintf(cmd->pool, "ModelGateModel: '%s' is not "
                                    "an upstream name", t);
            }
            m->total_weight += tg->weight;
        }
        if (m->targets->nelts == 0) {
            return "ModelGateModel: name at least one upstream";
        }
        m->upstream = APR_ARRAY_IDX(m->targets, 0, mg_model_target).name;
    }
    m->where = mg_where_of(cmd);
    names = apr_array_make(cmd->temp_pool, 4, sizeof(const char *));
    APR_ARRAY_PUSH(names, const char *) = m->name;
    for (i = 2; i < argc; i++) {
        if (!strncasecmp(argv[i], "alias=", 6)) {
            char *list = apr_pstrdup(cmd->pool, argv[i] + 6), *st = NULL, *t;
            for (t = apr_strtok(list, ",", &st); t;
                 t = apr_strtok(NULL, ",", &st)) {
                if (!mg_policy_model_name_valid(t)) {
                    return apr_psprintf(cmd->pool, "ModelGateModel: alias "
                                        "'%s' is not a model name", t);
                }
                APR_ARRAY_PUSH(names, const char *) = t;
            }
        }
        else if (!strncasecmp(argv[i], "served_as=", 10)) {
            if (!mg_policy_model_name_valid(argv[i] + 10)) {
                return apr_psprintf(cmd->pool, "ModelGateModel: '%s' is not "
                                    "a model name", argv[i]);
            }
            m->served_as = argv[i] + 10;
        }
        else if (!strncasecmp(argv[i], "price=", 6)) {
            const char *why = mg_policy_parse_price(cmd->pool, argv[i] + 6,
                                                    &m->price_in,
                                                    &m->price_out);
            if (why) {
                return apr_pstrcat(cmd->pool, "ModelGateModel: ", why, NULL);
            }
        }
        else {
            return apr_psprintf(cmd->pool, "ModelGateModel: unknown option "
                                "'%s' (known: alias=, served_as=, price=)",
                                argv[i]);
        }
    }
    for (i = 0; i < names->nelts; i++) {
        const char *n = APR_ARRAY_IDX(names, i, const char *);
        const mg_model *other = mg_model_get(sc, n);
        for (j = 0; j < i && !other; j++) {
            if (!strcmp(n, APR_ARRAY_IDX(names, j, const char *))) {
                other = m;
            }
        }
        if (other) {
            return apr_psprintf(cmd->pool, "ModelGateModel: '%s' already "
                                "names the model '%s'", n, other->name);
        }
    }
    for (i = 0; i < names->nelts; i++) {
        apr_hash_set(sc->models, APR_ARRAY_IDX(names, i, const char *),
                     APR_HASH_KEY_STRING, m);
    }
    APR_ARRAY_PUSH(sc->model_list, mg_model *) = m;
    return NULL;
}

