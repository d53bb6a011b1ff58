/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_cache_config.c -- the cache plugin's directives and their
 * merging (see mod_modelgate_cache.c for what the cache does).
 */
#include "mod_modelgate_cache.h"

const char *const mg_cache_scope_names[] = { "tenant", "key", "global" };

int mg_cache_cacheable_somewhere;
int mg_cache_lock_somewhere;

/* ---- configuration ------------------------------------------------------ */

void *mg_cache_create_server_conf(apr_pool_t *p, server_rec *s)
{
    return apr_pcalloc(p, sizeof(cache_server_conf));
}

void *mg_cache_merge_server_conf(apr_pool_t *p, void *basev, void *addv)
{
    /* ModelGateCache is global: every virtual host shares the main
     * server's cache. */
    return basev;
}

void *mg_cache_create_dir_conf(apr_pool_t *p, char *dir)
{
    cache_dir_conf *dc = apr_pcalloc(p, sizeof(*dc));

    dc->cacheable = dc->ttl = dc->scope = dc->stale = MG_CACHE_UNSET;
    dc->lock = dc->lock_wait = dc->hit_cost = dc->admin = MG_CACHE_UNSET;
    return dc;
}

void *mg_cache_merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    const cache_dir_conf *base = basev, *add = addv;
    cache_dir_conf *dc = apr_palloc(p, sizeof(*dc));

    dc->cacheable = add->cacheable != MG_CACHE_UNSET ? add->cacheable
                                                     : base->cacheable;
    dc->ttl = add->ttl != MG_CACHE_UNSET ? add->ttl : base->ttl;
    dc->scope = add->scope != MG_CACHE_UNSET ? add->scope : base->scope;
    dc->stale = add->stale != MG_CACHE_UNSET ? add->stale : base->stale;
    dc->lock = add->lock != MG_CACHE_UNSET ? add->lock : base->lock;
    dc->lock_wait = add->lock_wait != MG_CACHE_UNSET ? add->lock_wait
                                                     : base->lock_wait;
    dc->hit_cost = add->hit_cost != MG_CACHE_UNSET ? add->hit_cost
                                                   : base->hit_cost;
    dc->admin = add->admin != MG_CACHE_UNSET ? add->admin : base->admin;
    return dc;
}

cache_server_conf *mg_cache_main_conf(server_rec *s)
{
    return ap_get_module_config(s->module_config, &modelgate_cache_module);
}

/* ModelGateCache TYPE[:ARGS] [lock=shared|httpd], as CacheSocache and
 * SSLSessionCache, with the lock of the store's ModelGateStore shm. */
static const char *cmd_cache(cmd_parms *cmd, void *dummy, const char *arg,
                             const char *lock)
{
    cache_server_conf *sc = mg_cache_main_conf(cmd->server);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    const char *sep, *name, *args = "";

    if (err) {
        return err;
    }
    if (!lock || !strcasecmp(lock, "lock=shared")) {
        sc->httpd_mutex = 0;
    }
    else if (!strcasecmp(lock, "lock=httpd")) {
        sc->httpd_mutex = 1;
    }
    else {
        return apr_psprintf(cmd->pool, "ModelGateCache: unknown option "
                            "'%s' (lock=shared or lock=httpd)", lock);
    }
    sep = ap_strchr_c(arg, ':');
    name = sep ? apr_pstrmemdup(cmd->temp_pool, arg, sep - arg) : arg;
    if (sep) {
        args = sep + 1;
    }
    sc->provider = ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, name,
                                      AP_SOCACHE_PROVIDER_VERSION);
    if (!sc->provider) {
        return apr_psprintf(cmd->pool, "ModelGateCache: unknown socache "
                            "provider '%s': load mod_socache_%s before this "
                            "line (LoadModule socache_%s_module "
                            "modules/mod_socache_%s.so)", name, name, name,
                            name);
    }
    err = sc->provider->create(&sc->inst, args, cmd->temp_pool, cmd->pool);
    if (err) {
        return apr_psprintf(cmd->pool, "ModelGateCache %s: %s", arg, err);
    }
    sc->spec = arg;
    return NULL;
}

static const char *cmd_max_object(cmd_parms *cmd, void *dummy,
                                  const char *arg)
{
    cache_server_conf *sc = mg_cache_main_conf(cmd->server);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    apr_off_t n;
    char *end;

    if (err) {
        return err;
    }
    if (apr_strtoff(&n, arg, &end, 10) != APR_SUCCESS || *end || n < 1
        || n > MG_CACHE_MAX_OBJECT_MAX) {
        return apr_psprintf(cmd->pool, "ModelGateCacheMaxObject: '%s' must "
                            "be a number of bytes from 1 to %d", arg,
                            MG_CACHE_MAX_OBJECT_MAX);
    }
    sc->max_object = (apr_size_t)n;
    return NULL;
}

static const char *cmd_cacheable(cmd_parms *cmd, void *dcv, int on)
{
    cache_dir_conf *dc = dcv;

    dc->cacheable = on;
    if (on) {
        mg_cache_cacheable_somewhere = 1;
    }
    return NULL;
}

static const char *cmd_ttl(cmd_parms *cmd, void *dcv, const char *arg)
{
    cache_dir_conf *dc = dcv;
    char *end;
    apr_int64_t n = apr_strtoi64(arg, &end, 10);

    if (end == arg || *end || n < 1 || n > MG_CACHE_TTL_MAX) {
        return apr_psprintf(cmd->pool, "ModelGateCacheTTL: '%s' must be a "
                            "number of seconds from 1 to %d", arg,
                            MG_CACHE_TTL_MAX);
    }
    dc->ttl = (int)n;
    return NULL;
}

static const char *cmd_stale(cmd_parms *cmd, void *dcv, const char *arg)
{
    cache_dir_conf *dc = dcv;
    char *end;
    apr_int64_t n = apr_strtoi64(arg, &end, 10);

    if (end == arg || *end || n < 0 || n > MG_CACHE_STALE_MAX) {
        return apr_psprintf(cmd->pool, "ModelGateCacheStaleIfError: '%s' "
                            "must be a number of seconds from 0 (off) to %d",
                            arg, MG_CACHE_STALE_MAX);
    }
    dc->stale = (int)n;
    return NULL;
}

static const char *cmd_lock(cmd_parms *cmd, void *dcv, int on)
{
    cache_dir_conf *dc = dcv;

    dc->lock = on;
    if (on) {
        mg_cache_lock_somewhere = 1;
    }
    return NULL;
}

static const char *cmd_lock_wait(cmd_parms *cmd, void *dcv, const char *arg)
{
    cache_dir_conf *dc = dcv;
    char *end;
    apr_int64_t n = apr_strtoi64(arg, &end, 10);

    if (end == arg || *end || n < 1 || n > MG_CACHE_LOCK_WAIT_MAX) {
        return apr_psprintf(cmd->pool, "ModelGateCacheLockWait: '%s' must "
                            "be a number of milliseconds from 1 to %d", arg,
                            MG_CACHE_LOCK_WAIT_MAX);
    }
    dc->lock_wait = (int)n;
    return NULL;
}

/* Only where the server's configuration says so: an .htaccess author
 * with FileInfo may set a handler, and a purge makes every tenant's next
 * requests pay the model server again. */
static const char *cmd_admin(cmd_parms *cmd, void *dcv, int on)
{
    ((cache_dir_conf *)dcv)->admin = on;
    return NULL;
}

static const char *cmd_hit_cost(cmd_parms *cmd, void *dcv, const char *arg)
{
    cache_dir_conf *dc = dcv;

    if (strcmp(arg, "0") && strcmp(arg, "1")) {
        return apr_psprintf(cmd->pool, "ModelGateCacheHitCost: '%s' must be "
                            "0 (a hit costs nothing in request layers) or 1 "
                            "(a request, as any)", arg);
    }
    dc->hit_cost = *arg - '0';
    return NULL;
}

static const char *cmd_lock_path(cmd_parms *cmd, void *dummy,
                                 const char *arg)
{
    cache_server_conf *sc = mg_cache_main_conf(cmd->server);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    sc->lock_dir = ap_runtime_dir_relative(cmd->pool, arg);
    if (!sc->lock_dir) {
        return apr_psprintf(cmd->pool, "ModelGateCacheLockPath: '%s' is "
                            "not a valid path", arg);
    }
    return NULL;
}

static const char *cmd_scope(cmd_parms *cmd, void *dcv, const char *arg)
{
    cache_dir_conf *dc = dcv;
    int i;

    for (i = 0; i < 3; i++) {
        if (!strcasecmp(arg, mg_cache_scope_names[i])) {
            dc->scope = i;
            return NULL;
        }
    }
    return apr_psprintf(cmd->pool, "ModelGateCacheScope: '%s' is not a "
                        "scope (tenant, key or global)", arg);
}

const command_rec mg_cache_cmds[] = {
    AP_INIT_TAKE12("ModelGateCache", cmd_cache, NULL, RSRC_CONF,
        "where answers are kept: an ap_socache provider and its argument, "
        "as CacheSocache (shmcb, shmcb:/path(bytes), memcache:host:port, "
        "redis:host:port); then lock=shared (the default) or lock=httpd "
        "(the Mutex directive's modelgate-cache) for shmcb's lock"),
    AP_INIT_TAKE1("ModelGateCacheMaxObject", cmd_max_object, NULL, RSRC_CONF,
        "the largest answer stored, in bytes (default 32768)"),
    AP_INIT_FLAG("ModelGateCacheable", cmd_cacheable, NULL, ACCESS_CONF,
        "On: deterministic POST JSON requests here are answered from the "
        "cache and their answers stored"),
    AP_INIT_TAKE1("ModelGateCacheTTL", cmd_ttl, NULL, ACCESS_CONF,
        "seconds an answer stored here stays (default 300)"),
    AP_INIT_TAKE1("ModelGateCacheStaleIfError", cmd_stale, NULL, ACCESS_CONF,
        "seconds an answer stored here is kept past its TTL, served only "
        "while its upstream's breaker is open or it answers 5xx (default "
        "0: off)"),
    AP_INIT_FLAG("ModelGateCacheLock", cmd_lock, NULL, ACCESS_CONF,
        "On: while one request is forwarded, identical ones wait for its "
        "stored answer (default Off)"),
    AP_INIT_TAKE1("ModelGateCacheLockWait", cmd_lock_wait, NULL, ACCESS_CONF,
        "milliseconds an identical request waits before it forwards "
        "(default 5000)"),
    AP_INIT_TAKE1("ModelGateCacheLockPath", cmd_lock_path, NULL, RSRC_CONF,
        "the directory of ModelGateCacheLock's files (default "
        "modelgate-cache-lock under DefaultRuntimeDir)"),
    AP_INIT_TAKE1("ModelGateCacheHitCost", cmd_hit_cost, NULL, ACCESS_CONF,
        "what an answer from the cache costs in request layers: 0 "
        "(default: given back, as its tokens always are) or 1 request"),
    AP_INIT_FLAG("ModelGateCacheAdmin", cmd_admin, NULL, ACCESS_CONF,
        "On: SetHandler modelgate-cache-status purges here (DELETE); "
        "default Off: statistics only (not in .htaccess)"),
    AP_INIT_TAKE1("ModelGateCacheScope", cmd_scope, NULL, ACCESS_CONF,
        "whose requests share answers: tenant (default), key or global"),
    { NULL }
};

apr_size_t mg_cache_max_object(const cache_server_conf *sc)
{
    return sc->max_object ? sc->max_object : MG_CACHE_MAX_OBJECT_DEFAULT;
}
