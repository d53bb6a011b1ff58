/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_redis.c -- the "redis" counter store: many gateways, one
 * truth.  Every layer of a request is decided in one round trip by a
 * server-side script (mg_redis_script.h), with Redis's clock.
 *
 *   LoadModule modelgate_redis_module modules/mod_modelgate_redis.so
 *   ModelGateStore redis 127.0.0.1:6379 [connect_timeout=MS] [timeout=MS]
 *                  [db=N] [user=NAME] [password=SECRET]
 *                  [mode=exact|local-sync] [interval=MS] [name=GATEWAY]
 *                  [capacity=N] [logs=N] [lock=shared|httpd]
 *
 * Connections are made lazily in each child (never in the parent), kept in
 * an apr_reslist shared by the child's threads, and dropped after any
 * error.  A circuit breaker per child (mg_redis_breaker.h) stops requests
 * from paying the timeout once Redis fails: the first failure opens it for
 * 250 ms; then one request probes, and only a failed probe doubles the
 * open time, up to 1 s.  Opening drops every idle connection, so the probe
 * connects afresh rather than meeting a connection to a Redis that has
 * restarted.  Its transitions are logged once per child, not per request.
 * While it fails, decide() returns an error and the gateway applies its
 * failure policy (ModelGateStoreFailure, and per tier on_store_failure=).
 *
 * mode=local-sync trades exactness for no round trip per request: an shm
 * store (capacity=, logs=, lock= are its arguments) decides every request
 * on this host, and a syncer thread reconciles the counters with the other
 * gateways through Redis every interval= milliseconds (mg_redis_sync.c;
 * the over-admission bound is in mod_modelgate/mg_sync.h).  Decisions then
 * never wait for Redis and never fail because of it.
 *
 * Every algorithm runs in the script, and token limits settle in Redis
 * too (redis_settle, one more script per answer).  Not yet: TLS (Debian
 * 12's hiredis 0.14 has none).
 */
#include <stdlib.h>
#include <apr_strings.h>
#include <ap_provider.h>
#include <ap_mpm.h>
#include <http_log.h>
#include "mg_redis.h"
#include "mg_redis_script.h"
#include "mg_clock.h"

module AP_MODULE_DECLARE_DATA modelgate_redis_module;
APLOG_USE_MODULE(modelgate_redis);

#define MGRLOGNO(n) "MGR" #n ": "
/* What the scripts take and answer per layer (mg_redis_script.h). */
#define ARGS_PER_LAYER  11
#define REPLY_PER_LAYER 5
#define SETTLE_ARGS_PER_LAYER 10

static struct timeval to_timeval(apr_interval_time_t t)
{
    struct timeval tv;
    tv.tv_sec = (long)(t / APR_USEC_PER_SEC);
    tv.tv_usec = (long)(t % APR_USEC_PER_SEC);
    return tv;
}

static const char *parse_ms(apr_pool_t *p, const char *word, apr_size_t skip,
                            apr_interval_time_t *out)
{
    char *end;
    apr_int64_t ms = apr_strtoi64(word + skip, &end, 10);

    if (*end || end == word + skip || ms < 1 || ms > 60000) {
        return apr_psprintf(p, "'%s': milliseconds from 1 to 60000", word);
    }
    if (!strncasecmp(word, "interval=", 9) && ms < 10) {
        return apr_psprintf(p, "'%s': a sync interval of at least 10 ms",
                            word);
    }
    *out = ms * 1000;
    return NULL;
}

static const char *redis_create(mg_store_instance **instp, const char *args,
                                apr_pool_t *ptemp, apr_pool_t *p)
{
    mg_store_instance *inst = apr_pcalloc(p, sizeof(*inst));
    const char *word, *colon;
    char *end;
    const char *shm_args = "";
    apr_int64_t n;

    inst->connect_timeout = 100 * 1000;
    inst->timeout = 50 * 1000;
    inst->sync_interval = 100 * 1000;
    inst->decide_script.text = mg_redis_decide_lua;
    inst->settle_script.text = mg_redis_settle_lua;
    inst->sync_script.text = mg_redis_sync_lua;
    word = ap_getword_conf(p, &args);
    if (!*word) {
        return "expected HOST:PORT, e.g. ModelGateStore redis 127.0.0.1:6379";
    }
    colon = strrchr(word, ':');
    if (!colon || colon == word) {
        return apr_psprintf(p, "'%s' is not HOST:PORT", word);
    }
    inst->host = apr_pstrmemdup(p, word, (apr_size_t)(colon - word));
    n = apr_strtoi64(colon + 1, &end, 10);
    if (*end || n < 1 || n > 65535) {
        return apr_psprintf(p, "'%s' is not HOST:PORT", word);
    }
    inst->port = (int)n;
    while (*(word = ap_getword_conf(p, &args))) {
        const char *err = NULL;
        if (!strncasecmp(word, "connect_timeout=", 16)) {
            err = parse_ms(p, word, 16, &inst->connect_timeout);
        }
        else if (!strncasecmp(word, "timeout=", 8)) {
            err = parse_ms(p, word, 8, &inst->timeout);
        }
        else if (!strncasecmp(word, "db=", 3)) {
            n = apr_strtoi64(word + 3, &end, 10);
            if (*end || n < 0 || n > 1000) {
                err = apr_psprintf(p, "'%s': a database number", word);
            }
            inst->db = (int)n;
        }
        else if (!strncasecmp(word, "user=", 5)) {
            inst->user = word + 5;
        }
        else if (!strncasecmp(word, "password=", 9)) {
            inst->password = word + 9;
        }
        else if (!strcasecmp(word, "mode=exact")) {
            inst->local_sync = 0;
        }
        else if (!strcasecmp(word, "mode=local-sync")) {
            inst->local_sync = 1;
        }
        else if (!strncasecmp(word, "interval=", 9)) {
            err = parse_ms(p, word, 9, &inst->sync_interval);
        }
        else if (!strncasecmp(word, "name=", 5) && word[5]) {
            inst->name = word + 5;
        }
        else if (!strncasecmp(word, "capacity=", 9)
                 || !strncasecmp(word, "logs=", 5)
                 || !strncasecmp(word, "lock=", 5)) {
            /* the local shm store's; it checks them */
            shm_args = apr_pstrcat(p, shm_args, " ", word, NULL);
        }
        else if (!strncasecmp(word, "mode=", 5)) {
            err = apr_psprintf(p, "'%s': mode=exact (the default: every "
                               "request decided in Redis) or "
                               "mode=local-sync", word);
        }
        else {
            /* Never echo the argument: it may be a password. */
            err = "unknown argument (known: connect_timeout=, timeout=, db=, "
                  "user=, password=, mode=, and with mode=local-sync "
                  "interval=, name=, capacity=, logs=, lock=; what to do "
                  "while Redis fails is ModelGateStoreFailure's)";
        }
        if (err) {
            return err;
        }
    }
    if (!inst->local_sync && (*shm_args || inst->name)) {
        return "capacity=, logs=, lock= and name= belong to "
               "mode=local-sync (in exact mode Redis holds every counter)";
    }
    if (inst->local_sync) {
        const char *err;
        /* Local counters are an shm store's, with local-sync bookkeeping. */
        inst->local = ap_lookup_provider(MG_STORE_PROVIDER_GROUP, "shm",
                                         MG_STORE_PROVIDER_VERSION);
        if (!inst->local || !inst->local->sync_collect) {
            return "mode=local-sync needs mod_modelgate's shm store "
                   "(is mod_modelgate of the same version loaded?)";
        }
        err = inst->local->create(&inst->local_inst,
                                  apr_pstrcat(ptemp, shm_args, " sync", NULL),
                                  ptemp, p);
        if (err) {
            return err;
        }
    }
    *instp = inst;
    return NULL;
}

/* A new connection's AUTH and SELECT: APR_EACCES (AUTH refused) or
 * APR_EGENERAL with why in `why`, else APR_SUCCESS.  The password is never
 * in `why`. */
static apr_status_t session_start(mg_store_instance *inst, redisContext *c,
                                  char *why, apr_size_t n)
{
    redisReply *reply;
    const char *err;
    apr_status_t rv = APR_SUCCESS;

    if (inst->password) {
        reply = inst->user
                ? redisCommand(c, "AUTH %s %s", inst->user, inst->password)
                : redisCommand(c, "AUTH %s", inst->password);
        if ((err = mg_redis_reply_error(c, reply)) != NULL) {
            apr_snprintf(why, n, "AUTH refused: %s", err);
            rv = APR_EACCES;
        }
        if (reply) {
            freeReplyObject(reply);
        }
    }
    if (rv == APR_SUCCESS && inst->db) {
        reply = redisCommand(c, "SELECT %d", inst->db);
        if ((err = mg_redis_reply_error(c, reply)) != NULL) {
            apr_snprintf(why, n, "SELECT %d refused: %s", inst->db, err);
            rv = APR_EGENERAL;
        }
        if (reply) {
            freeReplyObject(reply);
        }
    }
    return rv;
}

/* Why Redis cannot be used now, or NULL: one connection, AUTH, SELECT and
 * PING, within connect_timeout and timeout.  Allocated from p. */
static const char *probe(mg_store_instance *inst, apr_pool_t *p)
{
    redisContext *c = redisConnectWithTimeout(inst->host, inst->port,
                                              to_timeval(inst->connect_timeout));
    redisReply *reply;
    const char *err;
    char why[256];

    if (!c || c->err) {
        err = apr_pstrdup(p, c ? c->errstr : "cannot make a connection");
        if (c) {
            redisFree(c);
        }
        return err;
    }
    redisSetTimeout(c, to_timeval(inst->timeout));
    if (session_start(inst, c, why, sizeof(why)) != APR_SUCCESS) {
        redisFree(c);
        return apr_pstrdup(p, why);
    }
    reply = redisCommand(c, "PING");
    err = mg_redis_reply_error(c, reply);
    err = err ? apr_pstrcat(p, "PING refused: ", err, NULL) : NULL;
    if (reply) {
        freeReplyObject(reply);
    }
    redisFree(c);
    return err;
}

static apr_status_t redis_init(mg_store_instance *inst, server_rec *s,
                               apr_pool_t *pconf, apr_pool_t *ptemp)
{
    apr_status_t rv;
    const char *why;

    if ((rv = mg_redis_stats_init(s)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, MGRLOGNO(00011)
                     "redis store: cannot create its shared statistics");
        return rv;
    }
    /* Each child connects when it first needs to; the parent only looks
     * once, at each start (the core's post_config calls this in the real
     * pass only), so that a wrong address, password or database shows in
     * the log at start and not only with the first request's 503.  Redis
     * may come up later: a warning, never a failed start. */
    if ((why = probe(inst, ptemp)) != NULL) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, MGRLOGNO(00012)
                     "redis store: %s:%d cannot be used now (%s); until it "
                     "can, requests meet ModelGateStoreFailure's policy",
                     inst->host, inst->port, why);
    }
    /* In local-sync mode the counters are shared memory. */
    if (inst->local_sync) {
        return inst->local->init(inst->local_inst, s, pconf, ptemp);
    }
    return APR_SUCCESS;
}

const char *mg_redis_reply_error(redisContext *c, redisReply *reply)
{
    if (!reply) {
        return c->errstr[0] ? c->errstr : "no reply";
    }
    return reply->type == REDIS_REPLY_ERROR ? reply->str : NULL;
}

const char *mg_redis_reply_type(int type)
{
    switch (type) {
    case REDIS_REPLY_STRING:
        return "a string";
    case REDIS_REPLY_ARRAY:
        return "an array";
    case REDIS_REPLY_INTEGER:
        return "an integer";
    case REDIS_REPLY_NIL:
        return "nil";
    case REDIS_REPLY_STATUS:
        return "a status";
    case REDIS_REPLY_ERROR:
        return "an error";
    default:
        return "of an unknown type";
    }
}

static apr_status_t conn_open(void **resource, void *params, apr_pool_t *pool)
{
    mg_store_instance *inst = params;
    mg_redis_conn *conn;
    redisContext *c;
    apr_uint64_t generation;
    apr_status_t rv;
    char why[256];

    /* Stamped before connecting: a connection that was being made while
     * the breaker opened counts as one of the old Redis. */
    apr_thread_mutex_lock(inst->mutex);
    generation = inst->breaker.generation;
    apr_thread_mutex_unlock(inst->mutex);
    c = redisConnectWithTimeout(inst->host, inst->port,
                                to_timeval(inst->connect_timeout));
    if (!c || c->err) {
        if (c) {
            redisFree(c);
        }
        return APR_ECONNREFUSED;
    }
    redisSetTimeout(c, to_timeval(inst->timeout));
    if ((rv = session_start(inst, c, why, sizeof(why))) != APR_SUCCESS) {
        if (rv == APR_EACCES) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, NULL, MGRLOGNO(00001)
                         "redis store: %s:%d: %s", inst->host, inst->port,
                         why);
        }
        redisFree(c);
        return rv;
    }
    /* malloc, as hiredis's own context: the child's pool would keep every
     * wrapper of every reconnection until the child exits. */
    conn = malloc(sizeof(*conn));
    if (!conn) {
        redisFree(c);
        return APR_ENOMEM;
    }
    conn->c = c;
    conn->generation = generation;
    *resource = conn;
    return APR_SUCCESS;
}

static apr_status_t conn_close(void *resource, void *params, apr_pool_t *pool)
{
    mg_redis_conn *conn = resource;

    redisFree(conn->c);
    free(conn);
    return APR_SUCCESS;
}

apr_status_t mg_redis_conn_acquire(mg_store_instance *inst,
                                   mg_redis_conn **connp)
{
    apr_uint64_t generation;
    apr_status_t rv;

    apr_thread_mutex_lock(inst->mutex);
    generation = inst->breaker.generation;
    apr_thread_mutex_unlock(inst->mutex);
    /* The pool hands out idle connections first, newest first, and makes
     * one only when none is idle: dropping the old ones as they come up
     * empties it of them before a new one is made.  A new one is of
     * `generation` or later, so this ends. */
    for (;;) {
        mg_redis_conn *conn;
        rv = apr_reslist_acquire(inst->conns, (void **)&conn);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        if (conn->generation >= generation) {
            *connp = conn;
            return APR_SUCCESS;
        }
        apr_reslist_invalidate(inst->conns, conn);
    }
}

void mg_redis_conn_release(mg_store_instance *inst, mg_redis_conn *conn,
                           int ok)
{
    apr_uint64_t generation;

    apr_thread_mutex_lock(inst->mutex);
    generation = inst->breaker.generation;
    apr_thread_mutex_unlock(inst->mutex);
    /* One that was out while the breaker opened is not kept either: the
     * Redis it talks to may be the one that went away. */
    if (ok && conn->generation >= generation) {
        apr_reslist_release(inst->conns, conn);
    }
    else {
        apr_reslist_invalidate(inst->conns, conn);
    }
}

static apr_status_t redis_child_init(mg_store_instance *inst, server_rec *s,
                                     apr_pool_t *pchild)
{
    apr_status_t rv;
    int threads = 0;

    inst->pool = pchild;
    mg_redis_breaker_init(&inst->breaker);
    mg_redis_stats_child_init(pchild);
    if ((rv = apr_thread_mutex_create(&inst->mutex, APR_THREAD_MUTEX_DEFAULT,
                                      pchild)) != APR_SUCCESS) {
        return rv;
    }
    /* No minimum: connections are made on first use.  At most one per
     * thread that can serve a request, so no thread waits for another's
     * connection; four are kept when idle.  In local-sync mode only the
     * syncer talks to Redis. */
    if (inst->local_sync
        || ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads) != APR_SUCCESS
        || threads < 1) {
        threads = 1;
    }
    rv = apr_reslist_create(&inst->conns, 0, threads < 4 ? threads : 4,
                            threads, 0, conn_open, conn_close, inst, pchild);
    if (rv != APR_SUCCESS || !inst->local_sync) {
        return rv;
    }
    if ((rv = inst->local->child_init(inst->local_inst, s, pchild))
        != APR_SUCCESS) {
        return rv;
    }
    return mg_redis_sync_start(inst, s, pchild);
}

/* The breaker (mg_redis_breaker.h), under the child's mutex: may this
 * command try Redis? */
int mg_redis_may_try(mg_store_instance *inst, int *probe)
{
    mg_redis_verdict v;

    apr_thread_mutex_lock(inst->mutex);
    v = mg_redis_breaker_allow(&inst->breaker, mg_clock_monotonic());
    if (v == MG_REDIS_PROBE) {
        mg_redis_stats_state(inst->breaker.state);
    }
    apr_thread_mutex_unlock(inst->mutex);
    *probe = v == MG_REDIS_PROBE;
    mg_redis_stats_count(v == MG_REDIS_REFUSE ? MG_REDIS_STAT_FAST
                                              : MG_REDIS_STAT_ROUND_TRIPS);
    return v != MG_REDIS_REFUSE;
}

void mg_redis_tried(mg_store_instance *inst, server_rec *s, int ok,
                    int probe, const char *why)
{
    mg_redis_event e;
    apr_interval_time_t backoff;

    apr_thread_mutex_lock(inst->mutex);
    e = mg_redis_breaker_report(&inst->breaker, mg_clock_monotonic(), ok,
                                probe);
    backoff = inst->breaker.backoff;
    if (e != MG_REDIS_NO_CHANGE) {
        mg_redis_stats_state(inst->breaker.state);
    }
    apr_thread_mutex_unlock(inst->mutex);
    if (!ok) {
        mg_redis_stats_count(MG_REDIS_STAT_ERRORS);
    }
    if (e == MG_REDIS_OPENED) {
        mg_redis_stats_count(MG_REDIS_STAT_OPENED);
    }
    /* Logged outside the lock; `why` is still the caller's. */
    switch (e) {
    case MG_REDIS_CLOSED:
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, MGRLOGNO(00002)
                     "redis store: %s:%d answers again; %s",
                     inst->host, inst->port, inst->local_sync
                     ? "the gateways share their counts again"
                     : "limits are enforced in Redis");
        break;
    case MG_REDIS_OPENED:
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, MGRLOGNO(00003)
                     "redis store: %s:%d failed (%s); %s until it "
                     "answers, probing it every %d ms at first",
                     inst->host, inst->port, why,
                     inst->local_sync
                     ? "this gateway enforces its own full allowance, "
                       "keeping its counts to push,"
                     : "failing fast, and so applying "
                       "ModelGateStoreFailure,",
                     (int)(backoff / 1000));
        break;
    case MG_REDIS_REOPENED:
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, MGRLOGNO(00004)
                     "redis store: probe of %s:%d failed (%s); next in "
                     "%d ms", inst->host, inst->port, why,
                     (int)(backoff / 1000));
        break;
    default:
        break;
    }
}

redisReply *mg_redis_run_script(mg_store_instance *inst, redisContext *c,
                                mg_redis_script *script, int argc,
                                const char **argv, size_t *argvlen)
{
    redisReply *reply;
    char sha[41];

    apr_thread_mutex_lock(inst->mutex);
    memcpy(sha, script->sha, sizeof(sha));
    apr_thread_mutex_unlock(inst->mutex);
    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    if (sha[0]) {
        argv[1] = sha;
        argvlen[1] = 40;
        reply = redisCommandArgv(c, argc, argv, argvlen);
        if (!reply || reply->type != REDIS_REPLY_ERROR
            || strncmp(reply->str, "NOSCRIPT", 8)) {
            return reply;
        }
        freeReplyObject(reply);
    }
    /* First use, or Redis restarted and lost its scripts. */
    reply = redisCommand(c, "SCRIPT LOAD %s", script->text);
    if (!reply || reply->type != REDIS_REPLY_STRING || reply->len != 40) {
        return reply;
    }
    apr_thread_mutex_lock(inst->mutex);
    memcpy(script->sha, reply->str, 40);
    script->sha[40] = '\0';
    memcpy(sha, script->sha, sizeof(sha));
    apr_thread_mutex_unlock(inst->mutex);
    freeReplyObject(reply);
    argv[1] = sha;
    argvlen[1] = 40;
    return redisCommandArgv(c, argc, argv, argvlen);
}

static void redis_info(mg_store_instance *inst, mg_store_info *info)
{
    if (inst->local_sync) {
        inst->local->info(inst->local_inst, info);
    }
    else {
        memset(info, 0, sizeof(*info));
    }
    mg_redis_stats_fill(info, inst->local_sync);
}

/* What a decision would answer at cost 0.  Exact mode runs the decide
 * script with every cost 0: it consumes nothing, but it is not a pure
 * read -- it writes each state back unchanged (a window that rolled over
 * is written as the fresh one it equals) and so may create a key with its
 * fresh-state expiry.  Local-sync mode reads this host's table. */
static apr_status_t redis_peek(mg_store_instance *inst, server_rec *s,
                               const mg_layer *layers, int n, mg_now now,
                               mg_decision *d)
{
    mg_layer free_[MG_LIMIT_MAX_LAYERS];
    int i;

    if (inst->local_sync) {
        return inst->local->peek
               ? inst->local->peek(inst->local_inst, s, layers, n, now, d)
               : APR_ENOTIMPL;
    }
    if (n > MG_LIMIT_MAX_LAYERS) {
        return APR_ENOSPC;
    }
    for (i = 0; i < n; i++) {
        free_[i] = layers[i];
        free_[i].cost = 0;
    }
    return mg_redis_decide(inst, s, free_, n, now, d);
}

static const mg_store_provider redis_provider = {
    "redis",
    redis_create,
    redis_init,
    redis_child_init,
    mg_redis_decide,
    redis_info,
    NULL,               /* local-sync is this store's own business */
    NULL,
    mg_redis_settle,
    redis_peek
};

static void register_hooks(apr_pool_t *p)
{
    ap_register_provider(p, MG_STORE_PROVIDER_GROUP, "redis",
                         MG_STORE_PROVIDER_VERSION, &redis_provider);
}

module AP_MODULE_DECLARE_DATA modelgate_redis_module = {
    STANDARD20_MODULE_STUFF,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    register_hooks,
    AP_MODULE_FLAG_NONE
};
