/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_config.c -- directives, and the checks that need the whole
 * configuration.  Parsing proper is in the core (mg_policy.c, mg_keys.c);
 * this file reads files, picks contexts and prefixes messages.
 *
 * Contexts: tiers, keys, upstreams and the store are server-wide (main
 * server only).  `ModelGate` and `ModelGateRoute` are per location and,
 * under AllowOverride AuthConfig, per .htaccess -- where they can only
 * pick among declared upstreams and cannot switch the gateway off.
 */
#include <apr_strings.h>
#include <apr_uri.h>
#include <apr_file_io.h>
#include <ap_provider.h>
#include <http_core.h>
#include "mod_modelgate_private.h"

/* The store used when none is configured. */
#define MG_DEFAULT_STORE "shm"

int mg_in_htaccess(cmd_parms *cmd)
{
    /* ap_parse_htaccess gives the directive the request pool for both. */
    return cmd->pool == cmd->temp_pool;
}

mg_where mg_where_of(cmd_parms *cmd)
{
    mg_where w;
    w.file = cmd->directive ? cmd->directive->filename : "?";
    w.line = cmd->directive ? cmd->directive->line_num : 0;
    return w;
}

mg_server_conf *mg_server_conf_of(cmd_parms *cmd)
{
    return ap_get_module_config(cmd->server->module_config, &modelgate_module);
}

/* ---- create and merge ---------------------------------------------------- */

void *mg_create_server_conf(apr_pool_t *p, server_rec *s)
{
    mg_server_conf *sc = apr_pcalloc(p, sizeof(*sc));

    sc->policy = mg_policy_create(p);
    sc->zones = mg_zone_cache_make(p);
    sc->upstreams = apr_hash_make(p);
    sc->route_refs = apr_array_make(p, 8, sizeof(mg_route_ref));
    sc->name_refs = apr_array_make(p, 8, sizeof(mg_name_ref));
    sc->models = apr_hash_make(p);
    sc->queue_limit = MG_UNSET;
    sc->model_list = apr_array_make(p, 8, sizeof(mg_model *));
    return sc;
}

void *mg_merge_server_conf(apr_pool_t *p, void *basev, void *addv)
{
    mg_server_conf *base = basev, *add = addv;

    /* Every server-level directive is main-server only (GLOBAL_ONLY), so a
     * virtual host sees the main server's policy, keys and store.  What its
     * <Location>s noted for the checks over the whole configuration (routes
     * and names to look up, a gate on, a token limit) joins the main
     * server's: httpd merges before check_config, and a virtual host's
     * typo must stop the start as the main server's does. */
    if (add != base) {
        apr_array_cat(base->route_refs, add->route_refs);
        apr_array_cat(base->name_refs, add->name_refs);
        base->enabled_somewhere |= add->enabled_somewhere;
        if (!base->token_limit_at.file) {
            base->token_limit_at = add->token_limit_at;
        }
    }
    return basev;
}

void *mg_create_dir_conf(apr_pool_t *p, char *dir)
{
    mg_dir_conf *dc = apr_pcalloc(p, sizeof(*dc));

    dc->enabled = MG_UNSET;
    dc->cost = MG_UNSET;
    dc->body_limit = MG_UNSET;
    dc->opaque_bodies = MG_UNSET;
    dc->trace = MG_UNSET;
    dc->limits = apr_array_make(p, 2, sizeof(mg_limit_def *));
    return dc;
}

void *mg_merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    mg_dir_conf *base = basev, *add = addv;
    mg_dir_conf *dc = apr_palloc(p, sizeof(*dc));

    dc->enabled = add->enabled != MG_UNSET ? add->enabled : base->enabled;
    dc->route = add->route ? add->route : base->route;
    dc->versions = !add->versions ? base->versions
                   : !base->versions ? add->versions
                   : apr_table_overlay(p, add->versions, base->versions);
    dc->cost = add->cost != MG_UNSET ? add->cost : base->cost;
    dc->cost_raises = base->cost_raises || add->cost_raises;
    if (dc->cost_raises) {
        /* .htaccess may raise a cost, never lower it: not below the
         * server's <Directory>, a parent .htaccess's or, once .htaccess
         * set one, a <Location> merged after it. */
        apr_int64_t b = base->cost != MG_UNSET ? base->cost : 1;
        apr_int64_t a = add->cost != MG_UNSET ? add->cost : 1;
        dc->cost = a > b ? a : b;
    }
    dc->body_limit = add->body_limit != MG_UNSET ? add->body_limit
                                                 : base->body_limit;
    dc->body_limit_lowers = base->body_limit_lowers || add->body_limit_lowers;
    dc->opaque_bodies = add->opaque_bodies != MG_UNSET ? add->opaque_bodies
                                                       : base->opaque_bodies;
    dc->trace = add->trace != MG_UNSET ? add->trace : base->trace;
    if (dc->body_limit_lowers) {
        /* .htaccess may lower the server's limit, never raise it; and a
         * <Location>, merged after .htaccess, does not undo its lowering:
         * where one side came from .htaccess, the smaller limit holds. */
        apr_off_t b = base->body_limit != MG_UNSET ? base->body_limit
                                                   : MG_BODY_LIMIT_DEFAULT;
        apr_off_t a = add->body_limit != MG_UNSET ? add->body_limit
                                                  : MG_BODY_LIMIT_DEFAULT;
        dc->body_limit = a < b ? a : b;
    }
    /* Limits accumulate: a nested section or .htaccess can add layers,
     * never drop one, so it can only tighten. */
    dc->limits = add->limits->nelts == 0 ? base->limits
                 : base->limits->nelts == 0 ? add->limits
                 : apr_array_append(p, base->limits, add->limits);
    return dc;
}

const mg_upstream *mg_upstream_get(const mg_server_conf *sc, const char *name)
{
    return apr_hash_get(sc->upstreams, name, APR_HASH_KEY_STRING);
}

const mg_model *mg_model_get(const mg_server_conf *sc, const char *name)
{
    return apr_hash_get(sc->models, name, APR_HASH_KEY_STRING);
}

/* Can the configured store settle token reservations? */
static int store_settles(const mg_server_conf *sc)
{
    mg_now never = { 0, 0 };

    return sc->store && sc->store->settle
           && sc->store->settle(sc->store_inst, NULL, NULL, NULL, 0, never,
                                never) == APR_SUCCESS;
}

/* ---- per location ---------------------------------------------------------- */

static const char *cmd_enable(cmd_parms *cmd, void *dcv, int flag)
{
    mg_dir_conf *dc = dcv;

    if (!flag && mg_in_htaccess(cmd)) {
        return "ModelGate Off cannot be used in .htaccess: limits may only "
               "be tightened there";
    }
    dc->enabled = flag;
    if (flag && !mg_in_htaccess(cmd)) {
        mg_server_conf_of(cmd)->enabled_somewhere = 1;
    }
    return NULL;
}

/* An upstream a location (or .htaccess) names, for `directive`: .htaccess
 * may only pick a declared one, checked at once (the server configuration
 * is complete by then); the server configuration's are checked once it is
 * all read (check_config). */
static const char *check_route_name(cmd_parms *cmd, const char *directive,
                                    const char *name)
{
    mg_server_conf *sc = mg_server_conf_of(cmd);

    if (!mg_policy_name_valid(name)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not an upstream name "
                            "(declare upstreams with ModelGateUpstream NAME "
                            "URL)", directive, name);
    }
    if (mg_in_htaccess(cmd)) {
        if (!mg_upstream_get(sc, name)) {
            return apr_psprintf(cmd->pool, "%s: unknown upstream '%s': "
                                ".htaccess may only pick among the upstreams "
                                "the server declares", directive, name);
        }
    }
    else {
        mg_route_ref *ref = apr_array_push(sc->route_refs);
        ref->directive = directive;
        ref->upstream = apr_pstrdup(cmd->pool, name);
        ref->where = mg_where_of(cmd);
    }
    return NULL;
}

static const char *cmd_route(cmd_parms *cmd, void *dcv, const char *name)
{
    mg_dir_conf *dc = dcv;
    const char *err = check_route_name(cmd, "ModelGateRoute", name);

    if (!err) {
        dc->route = name;
    }
    return err;
}

/* ModelGateVersionRoute VERSION UPSTREAM: requests with X-API-Version:
 * VERSION go to UPSTREAM instead of the location's ModelGateRoute. */
static const char *cmd_version_route(cmd_parms *cmd, void *dcv,
                                     const char *version, const char *name)
{
    mg_dir_conf *dc = dcv;
    const char *err;

    if (!mg_policy_name_valid(version)) {
        return apr_psprintf(cmd->pool, "ModelGateVersionRoute: '%s' is not a "
                            "version (letters, digits, '.', '_', '-')",
                            version);
    }
    if ((err = check_route_name(cmd, "ModelGateVersionRoute", name))) {
        return err;
    }
    if (!dc->versions) {
        dc->versions = apr_table_make(cmd->pool, 2);
    }
    apr_table_setn(dc->versions, version, name);
    return NULL;
}

/* ---- server wide ------------------------------------------------------------- */

static const char *cmd_tier(cmd_parms *cmd, void *dummy, int argc,
                            char *const argv[])
{
    mg_server_conf *sc = mg_server_conf_of(cmd);
    const char *err;
    mg_tier *tier;
    int i;

    if ((err = ap_check_cmd_context(cmd, GLOBAL_ONLY)) != NULL) {
        return err;
    }
    if (argc < 2) {
        return "ModelGateTier: expected NAME RATE [options], e.g. "
               "ModelGateTier free 10/min";
    }
    err = mg_policy_parse_tier(cmd->pool, argv[0], argv[1], argc - 2,
                               (const char *const *)argv + 2, sc->zones,
                               &tier);
    if (!err) {
        tier->conf_file = mg_where_of(cmd).file;
        tier->conf_line = mg_where_of(cmd).line;
        mg_layers_prepare(cmd->pool, tier);
        if (tier->tokens) {
            tier->tokens->conf_file = tier->conf_file;
            tier->tokens->conf_line = tier->conf_line;
            mg_layers_prepare(cmd->pool, tier->tokens);
            if (!sc->token_limit_at.file) {
                sc->token_limit_at = mg_where_of(cmd);
            }
        }
        err = mg_policy_add_tier(sc->policy, tier);
    }
    if (err) {
        return apr_pstrcat(cmd->pool, "ModelGateTier: ", err, NULL);
    }
    for (i = 0; tier->on_limit && i < tier->on_limit->nelts; i++) {
        const mg_limit_action *a = &APR_ARRAY_IDX(tier->on_limit, i,
                                                  mg_limit_action);
        if (a->type == MG_ACTION_FALLBACK) {
            /* decided again as a request for that model, alias or not */
            mg_config_names(cmd, MG_NAMES_MODEL_OR_ALIAS,
                            apr_pstrcat(cmd->temp_pool, "ModelGateTier ",
                                        tier->name, NULL),
                            "on_limit=fallback:", a->model);
        }
    }
    return NULL;
}

/* ModelGateLimit NAME SCOPE RATE [options]: server-wide in the server
 * configuration, else for the location (or .htaccess) it appears in. */
/* ModelGateLimit NAME SCOPE RATE [options] and ModelGateBudget NAME SCOPE
 * AMOUNT/PERIOD [options] (cmd->info is the directive's name):
 * server-wide in the server configuration, else for the location (or
 * .htaccess) it appears in. */
static const char *cmd_limit(cmd_parms *cmd, void *dcv, int argc,
                             char *const argv[])
{
    mg_server_conf *sc = mg_server_conf_of(cmd);
    mg_dir_conf *dc = dcv;
    const char *directive = cmd->info;
    int budget = !strcmp(directive, "ModelGateBudget");
    mg_limit_def *def;
    mg_scope scope;
    const char *err, *named;
    int i;

    if (argc < 3) {
        return budget
               ? "ModelGateBudget: expected NAME SCOPE AMOUNT/PERIOD "
                 "[options], e.g. ModelGateBudget acme tenant 50.00/month"
               : "ModelGateLimit: expected NAME SCOPE RATE [options], e.g. "
                 "ModelGateLimit per-tenant tenant 1000/min";
    }
    if ((err = mg_policy_parse_scope(cmd->temp_pool, argv[1], &scope))
        || (err = (budget ? mg_policy_parse_budget : mg_policy_parse_limit_ex)(
                cmd->pool, argv[0], scope, argv[2], argc - 3,
                (const char *const *)argv + 3, sc->zones, !mg_in_htaccess(cmd),
                &def))) {
        return apr_pstrcat(cmd->pool, directive, ": ", err, NULL);
    }
    if (def->on_store_failure != MG_FAIL_UNSET || def->on_limit
        || def->share_pct || def->degraded_cost || def->tokens
        || def->max_tokens) {
        return apr_pstrcat(cmd->pool, directive, ": on_store_failure=, "
                           "on_limit=, share=, degraded_cost=, tokens= and "
                           "max_tokens= are a tier's options (ModelGateTier; "
                           "a limit counts tokens with unit=tokens)", NULL);
    }
    /* A limit for no declared tier or model never applies: the operator
     * believes a limit holds that does not. */
    named = apr_pstrcat(cmd->temp_pool, directive, " ", def->name, NULL);
    for (i = 0; def->tiers && i < def->tiers->nelts; i++) {
        if ((err = mg_config_names(cmd, MG_NAMES_TIER, named, "tiers=",
                                   APR_ARRAY_IDX(def->tiers, i,
                                                 const char *)))) {
            return err;
        }
    }
    for (i = 0; def->models && i < def->models->nelts; i++) {
        if ((err = mg_config_names(cmd, MG_NAMES_MODEL, named, "models=",
                                   APR_ARRAY_IDX(def->models, i,
                                                 const char *)))) {
            return err;
        }
    }
    def->conf_file = mg_where_of(cmd).file;
    def->conf_line = mg_where_of(cmd).line;
    mg_layers_prepare(cmd->pool, def);
    if (def->unit != MG_UNIT_REQUESTS) {
        if (!mg_in_htaccess(cmd)) {
            if (!sc->token_limit_at.file) {
                sc->token_limit_at = mg_where_of(cmd);
            }
        }
        else if (!store_settles(sc)) {
            return apr_pstrcat(cmd->pool, directive, ": token limits and "
                               "budgets need a counter store that settles "
                               "reservations (shm or redis)", NULL);
        }
    }
    if (cmd->path == NULL) {
        if (cmd->server->is_virtual) {
            return apr_pstrcat(cmd->pool, directive, ": server-wide limits "
                               "belong to the main server; inside a virtual "
                               "host put them in a <Location>", NULL);
        }
        err = mg_policy_add_limit(sc->policy, def);
        return err ? apr_pstrcat(cmd->pool, directive, ": ", err, NULL)
                   : NULL;
    }
    if (mg_in_htaccess(cmd) && sc->policy->limits->nelts + dc->limits->nelts
                            + 2 > MG_LIMIT_MAX_LAYERS) {
        /* The server's sections are checked at start-up, over every tier
         * and model (mod_modelgate_config_layers.c); a .htaccess is read
         * per request, so it is checked here, roughly. */
        return apr_psprintf(cmd->pool, "%s: at most %d limit layers apply "
                            "to a request (the tier's, the server-wide ones "
                            "and the location's)", directive,
                            MG_LIMIT_MAX_LAYERS);
    }
    APR_ARRAY_PUSH(dc->limits, mg_limit_def *) = def;
    return NULL;
}

static const char *cmd_cost(cmd_parms *cmd, void *dcv, const char *arg)
{
    mg_dir_conf *dc = dcv;
    char *end;
    apr_int64_t n = apr_strtoi64(arg, &end, 10);

    if (*end || end == arg || n < 1 || n > 1000000) {
        return apr_psprintf(cmd->pool, "ModelGateCost: '%s' must be a whole "
                            "number of units from 1 to 1000000", arg);
    }
    if (mg_in_htaccess(cmd) && dc->cost != MG_UNSET && n < dc->cost) {
        return "ModelGateCost: .htaccess may raise a cost, not lower it";
    }
    dc->cost = n;
    dc->cost_raises = mg_in_htaccess(cmd);
    return NULL;
}

static const char *cmd_body_limit(cmd_parms *cmd, void *dcv, const char *arg)
{
    mg_dir_conf *dc = dcv;
    char *end;
    apr_off_t n;

    if (apr_strtoff(&n, arg, &end, 10) != APR_SUCCESS || end == arg
        || (*end && strcasecmp(end, "k") && strcasecmp(end, "m"))) {
        return apr_psprintf(cmd->pool, "ModelGateBodyLimit: '%s' is not a "
                            "size (bytes, or with K or M)", arg);
    }
    if (!strcasecmp(end, "k")) {
        n *= 1024;
    }
    else if (!strcasecmp(end, "m")) {
        n *= 1024 * 1024;
    }
    if (n < 1 || n > MG_BODY_LIMIT_MAX) {
        return apr_psprintf(cmd->pool, "ModelGateBodyLimit: '%s' must be "
                            "from 1 byte to %d MiB (a body is held in memory "
                            "while it is read)", arg,
                            MG_BODY_LIMIT_MAX / (1024 * 1024));
    }
    dc->body_limit = n;
    dc->body_limit_lowers = mg_in_htaccess(cmd);
    return NULL;
}

static const char *cmd_opaque_bodies(cmd_parms *cmd, void *dcv, int flag)
{
    /* ACCESS_CONF without an override class: never from .htaccess, which
     * could otherwise walk around per-model limits with it. */
    ((mg_dir_conf *)dcv)->opaque_bodies = flag;
    return NULL;
}

static const char *cmd_trace(cmd_parms *cmd, void *dcv, int flag)
{
    ((mg_dir_conf *)dcv)->trace = flag;
    return NULL;
}

static const char *cmd_queue_limit(cmd_parms *cmd, void *dummy,
                                   const char *arg)
{
    mg_server_conf *sc = mg_server_conf_of(cmd);
    const char *err;
    char *end;
    apr_int64_t n;

    if ((err = ap_check_cmd_context(cmd, GLOBAL_ONLY)) != NULL) {
        return err;
    }
    n = apr_strtoi64(arg, &end, 10);
    if (*end || end == arg || n < 0 || n > 100000) {
        return apr_psprintf(cmd->pool, "ModelGateQueueLimit: '%s' must be a "
                            "number of requests from 0 to 100000", arg);
    }
    sc->queue_limit = (int)n;
    return NULL;
}

static const char *cmd_keyfile(cmd_parms *cmd, void *dummy, const char *arg)
{
    mg_server_conf *sc = mg_server_conf_of(cmd);
    const char *path, *err;
    apr_file_t *f;
    apr_finfo_t finfo;
    apr_size_t len;
    apr_status_t rv;
    char *text, buf[256];

    if ((err = ap_check_cmd_context(cmd, GLOBAL_ONLY)) != NULL) {
        return err;
    }
    if (sc->keys) {
        return "ModelGateKeyFile: only one key file may be configured";
    }
    path = ap_server_root_relative(cmd->pool, arg);
    if (!path) {
        return apr_psprintf(cmd->pool, "ModelGateKeyFile: invalid path '%s'",
                            arg);
    }
    rv = apr_file_open(&f, path, APR_FOPEN_READ, APR_OS_DEFAULT, cmd->temp_pool);
    if (rv == APR_SUCCESS) {
        rv = apr_file_info_get(&finfo, APR_FINFO_SIZE, f);
    }
    if (rv != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "ModelGateKeyFile: cannot read '%s': "
                            "%s", path, apr_strerror(rv, buf, sizeof(buf)));
    }
    if (finfo.size > 64 * 1024 * 1024) {
        apr_file_close(f);
        return apr_psprintf(cmd->pool, "ModelGateKeyFile: '%s' is larger "
                            "than 64 MiB", path);
    }
    len = (apr_size_t)finfo.size;
    text = apr_palloc(cmd->temp_pool, len + 1);
    rv = apr_file_read_full(f, text, len, &len);
    apr_file_close(f);
    if (rv != APR_SUCCESS && rv != APR_EOF) {
        return apr_psprintf(cmd->pool, "ModelGateKeyFile: cannot read '%s': "
                            "%s", path, apr_strerror(rv, buf, sizeof(buf)));
    }
    if ((err = mg_keys_parse(cmd->pool, path, text, len, &sc->keys)) != NULL) {
        return apr_pstrcat(cmd->pool, "ModelGateKeyFile: ", err, NULL);
    }
    sc->keys_where = mg_where_of(cmd);
    return NULL;
}

static const char *cmd_store_failure(cmd_parms *cmd, void *dummy,
                                     const char *arg)
{
    mg_server_conf *sc = mg_server_conf_of(cmd);
    const char *err;

    if ((err = ap_check_cmd_context(cmd, GLOBAL_ONLY)) != NULL) {
        return err;
    }
    err = mg_policy_parse_failure(cmd->pool, arg, &sc->store_failure);
    return err ? apr_pstrcat(cmd->pool, "ModelGateStoreFailure: ", err, NULL)
               : NULL;
}

static const char *cmd_store(cmd_parms *cmd, void *dummy, const char *args)
{
    mg_server_conf *sc = mg_server_conf_of(cmd);
    const char *err, *name;

    if ((err = ap_check_cmd_context(cmd, GLOBAL_ONLY)) != NULL) {
        return err;
    }
    if (sc->store) {
        return "ModelGateStore: only one counter store may be configured";
    }
    name = ap_getword_conf(cmd->temp_pool, &args);
    sc->store = ap_lookup_provider(MG_STORE_PROVIDER_GROUP, name,
                                   MG_STORE_PROVIDER_VERSION);
    if (!sc->store) {
        return apr_psprintf(cmd->pool, "ModelGateStore: no counter store "
                            "called '%s' (built in: shm; 'redis' needs "
                            "LoadModule modelgate_redis_module first)", name);
    }
    err = sc->store->create(&sc->store_inst, args, cmd->temp_pool, cmd->pool);
    return err ? apr_pstrcat(cmd->pool, "ModelGateStore ", name, ": ", err,
                             NULL) : NULL;
}

const command_rec mg_cmds[] = {
    AP_INIT_FLAG("ModelGate", cmd_enable, NULL, ACCESS_CONF | OR_AUTHCFG,
        "On to authenticate, limit and route requests here; Off (not in "
        ".htaccess) to leave them alone"),
    AP_INIT_TAKE1("ModelGateRoute", cmd_route, NULL, ACCESS_CONF | OR_AUTHCFG,
        "the declared upstream (ModelGateUpstream) that serves this location"),
    AP_INIT_TAKE2("ModelGateVersionRoute", cmd_version_route, NULL,
        ACCESS_CONF | OR_AUTHCFG,
        "VERSION UPSTREAM: requests with X-API-Version: VERSION go to this "
        "declared upstream"),
    AP_INIT_TAKE_ARGV("ModelGateTier", cmd_tier, NULL, RSRC_CONF,
        "NAME RATE [options]: a tier and its per-key limit, e.g. free 10/min"),
    AP_INIT_TAKE_ARGV("ModelGateLimit", cmd_limit, "ModelGateLimit",
        RSRC_CONF | ACCESS_CONF | OR_AUTHCFG,
        "NAME SCOPE RATE [options]: a limit layer; server-wide, or for this "
        "location"),
    AP_INIT_TAKE_ARGV("ModelGateBudget", cmd_limit, "ModelGateBudget",
        RSRC_CONF | ACCESS_CONF | OR_AUTHCFG,
        "NAME SCOPE AMOUNT/PERIOD [options]: a spend budget (the served "
        "model's price= times the tokens), e.g. acme tenant 50.00/month"),
    AP_INIT_TAKE1("ModelGateCost", cmd_cost, NULL, ACCESS_CONF | OR_AUTHCFG,
        "units a request here costs in every limit (default 1)"),
    AP_INIT_TAKE1("ModelGateBodyLimit", cmd_body_limit, NULL,
        ACCESS_CONF | OR_AUTHCFG,
        "largest JSON request body read here, in bytes (or with K or M; "
        "default 1M): past it, 413"),
    AP_INIT_FLAG("ModelGateTrace", cmd_trace, NULL, ACCESS_CONF,
        "Off to neither take nor make W3C trace context and X-Request-Id "
        "here (default On: every gated request carries a trace)"),
    AP_INIT_FLAG("ModelGateOpaqueBodies", cmd_opaque_bodies, NULL,
        ACCESS_CONF,
        "On to let request bodies the gateway cannot read (not JSON, "
        "compressed) pass unread where models are declared; Off (default): "
        "415, so per-model limits cannot be walked around"),
    AP_INIT_TAKE_ARGV("ModelGateModel", mg_cmd_model, NULL, RSRC_CONF,
        "NAME UPSTREAM [alias=A,B] [served_as=NAME]: a model the gateway "
        "serves, and which upstream serves it"),
    AP_INIT_FLAG("ModelGateMetrics", mg_cmd_metrics, NULL, RSRC_CONF,
        "Off to record no metrics (and answer no scrape); default On"),
    AP_INIT_TAKE1("ModelGateQueueLimit", cmd_queue_limit, NULL, RSRC_CONF,
        "requests one child process lets wait in on_limit=queue: at once "
        "(default: a quarter of its threads; 0 turns queueing off)"),
    AP_INIT_TAKE1("ModelGateKeyFile", cmd_keyfile, NULL, RSRC_CONF,
        "file of API key digests: sha256:HEX key-id tenant tier [scopes]"),
    AP_INIT_TAKE_ARGV("ModelGateIdentity", mg_cmd_identity, NULL, RSRC_CONF,
        "identity providers asked in order: key (the key file, the "
        "default), jwt (mod_modelgate_jwt.so)"),
    AP_INIT_TAKE_ARGV("ModelGateUpstream", mg_cmd_upstream, NULL, RSRC_CONF,
        "NAME URL [options]: an upstream model server that routes may name, "
        "with its breaker, degraded thresholds and max_inflight"),
    AP_INIT_TAKE1("ModelGateStoreFailure", cmd_store_failure, NULL, RSRC_CONF,
        "closed (503, the default), open (admit unlimited) or local (count "
        "on this host): what to do while the counter store fails"),
    AP_INIT_RAW_ARGS("ModelGateStore", cmd_store, NULL, RSRC_CONF,
        "the counter store and its arguments: shm [capacity=N]"),
    { NULL }
};

/* ---- checks over the whole configuration ------------------------------------ */

static void config_error(server_rec *s, const mg_where *w, const char *msg)
{
    ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, s,
                 MGLOGNO(00001) "%s (%s line %d)", msg, w->file, w->line);
}

/* Does a failure policy anywhere ask for this host's counters? */
static int needs_local_store(const mg_server_conf *sc)
{
    apr_hash_index_t *hi;

    if (sc->store_failure == MG_FAIL_LOCAL) {
        return 1;
    }
    for (hi = apr_hash_first(NULL, sc->policy->tiers); hi;
         hi = apr_hash_next(hi)) {
        const mg_tier *tier = apr_hash_this_val(hi);
        if (tier->on_store_failure == MG_FAIL_LOCAL) {
            return 1;
        }
    }
    return 0;
}

/* Runs after the configuration is read and before `apache2 -t` says
 * "Syntax OK", so cross-references fail the syntax check too. */
int mg_check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                    server_rec *s)
{
    mg_server_conf *sc = ap_get_module_config(s->module_config,
                                              &modelgate_module);
    int i, ok = 1;

    if (sc->keys) {
        for (i = 0; i < sc->keys->keys->nelts; i++) {
            const mg_key *key = APR_ARRAY_IDX(sc->keys->keys, i, mg_key *);
            const char *why = mg_policy_unknown_tier(ptemp, sc->policy,
                                                     key->tier);
            if (why) {
                config_error(s, &sc->keys_where, apr_psprintf(ptemp,
                    "ModelGateKeyFile: %s line %d: key '%s' names %s",
                    sc->keys->source, key->line, key->id, why));
                ok = 0;
            }
        }
    }
    if (sc->keys && !sc->keys->keys->nelts && sc->enabled_somewhere
        && mg_identity_uses_keys(sc)) {
        /* An empty file is valid (keys may be added, then a graceful
         * restart), but a typo'd path to the wrong file looks the same. */
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_WARNING, 0, s,
                     MGLOGNO(00013) "ModelGateKeyFile %s holds no key "
                     "(%s line %d): every API key will be refused with 401",
                     sc->keys->source, sc->keys_where.file,
                     sc->keys_where.line);
    }
    else if (!sc->keys && sc->enabled_somewhere && mg_identity_uses_keys(sc)) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_WARNING, 0, s,
                     MGLOGNO(00002) "ModelGate is On but no ModelGateKeyFile "
                     "is configured: every request there will be refused "
                     "with 401");
    }
    for (i = 0; i < sc->route_refs->nelts; i++) {
        const mg_route_ref *ref = &APR_ARRAY_IDX(sc->route_refs, i,
                                                 mg_route_ref);
        if (!mg_upstream_get(sc, ref->upstream)) {
            config_error(s, &ref->where, apr_psprintf(ptemp,
                "%s: unknown upstream '%s' (declare it with "
                "ModelGateUpstream NAME URL)", ref->directive, ref->upstream));
            ok = 0;
        }
    }
    for (i = 0; i < sc->name_refs->nelts; i++) {
        const mg_name_ref *ref = &APR_ARRAY_IDX(sc->name_refs, i,
                                                mg_name_ref);
        const char *why = mg_config_unknown_name(ptemp, sc, ref);
        if (why) {
            config_error(s, &ref->where, why);
            ok = 0;
        }
    }
    for (i = 0; i < sc->model_list->nelts; i++) {
        const mg_model *m = APR_ARRAY_IDX(sc->model_list, i, mg_model *);
        int t;
        for (t = 0; t < m->targets->nelts; t++) {
            mg_model_target *tg = &APR_ARRAY_IDX(m->targets, t,
                                                 mg_model_target);
            if (!(tg->up = mg_upstream_get(sc, tg->name))) {
                config_error(s, &m->where, apr_psprintf(ptemp,
                    "ModelGateModel: model '%s' names the unknown upstream "
                    "'%s' (declare it with ModelGateUpstream NAME URL)",
                    m->name, tg->name));
                ok = 0;
            }
        }
    }
    {
        apr_hash_index_t *hi;
        for (hi = apr_hash_first(ptemp, sc->policy->tiers); hi;
             hi = apr_hash_next(hi)) {
            const mg_tier *tier = apr_hash_this_val(hi);
            for (i = 0; tier->on_limit && i < tier->on_limit->nelts; i++) {
                const mg_limit_action *a = &APR_ARRAY_IDX(tier->on_limit, i,
                                                          mg_limit_action);
                if (a->type == MG_ACTION_CACHE && !mg_cache_listening()) {
                    ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0,
                                 s, MGLOGNO(00008) "ModelGateTier %s: "
                                 "on_limit=cache needs the response cache: "
                                 "load mod_modelgate_cache.so (and "
                                 "mod_socache_shmcb) (%s line %d)",
                                 tier->name, tier->conf_file,
                                 tier->conf_line);
                    ok = 0;
                }
            }
        }
    }
    if (!mg_check_layers(s, sc, ptemp)) {
        ok = 0;
    }
    if (!mg_identity_check_config(s, sc, pconf, ptemp)) {
        ok = 0;
    }
    if (apr_hash_count(sc->upstreams) && !mg_proxy_available()) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, s,
                     MGLOGNO(00003) "ModelGateUpstream needs mod_proxy and "
                     "mod_proxy_http: load them (a2enmod proxy_http)");
        ok = 0;
    }
    if (!sc->store) {
        sc->store = ap_lookup_provider(MG_STORE_PROVIDER_GROUP,
                                       MG_DEFAULT_STORE,
                                       MG_STORE_PROVIDER_VERSION);
        if (!sc->store
            || sc->store->create(&sc->store_inst, "", ptemp, pconf)) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, s,
                         MGLOGNO(00004) "the default counter store could "
                         "not be created");
            ok = 0;
        }
    }
    if (ok && sc->token_limit_at.file && !store_settles(sc)) {
        config_error(s, &sc->token_limit_at, apr_psprintf(ptemp,
            "token limits need a counter store that settles reservations: "
            "the shm store or redis ('%s' cannot)",
            sc->store->name));
        ok = 0;
    }
    if (ok && sc->store && strcmp(sc->store->name, MG_DEFAULT_STORE)
        && needs_local_store(sc)) {
        sc->local = ap_lookup_provider(MG_STORE_PROVIDER_GROUP,
                                       MG_DEFAULT_STORE,
                                       MG_STORE_PROVIDER_VERSION);
        if (!sc->local
            || sc->local->create(&sc->local_inst, "", ptemp, pconf)) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, s,
                         MGLOGNO(00005) "the shm store that stands in for "
                         "a failing store could not be created");
            ok = 0;
        }
    }
    return ok ? OK : HTTP_INTERNAL_SERVER_ERROR;
}
