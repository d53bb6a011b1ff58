/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_redis.h -- what the two files of the redis store share: its
 * instance, the connection pool with its circuit breaker, and scripts run
 * by SHA.
 *
 *   mod_modelgate_redis.c  the module, the arguments, connections, the
 *                          breaker and exact mode (one script per request)
 *   mg_redis_sync.c        local-sync mode: the syncer thread and its
 *                          exchange (one script per batch)
 */
#ifndef MG_REDIS_H
#define MG_REDIS_H

#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>
#include <apr_reslist.h>
#include <httpd.h>
#include <http_config.h>
#include <hiredis/hiredis.h>
#include "mod_modelgate.h"

/** A script run by EVALSHA, loaded on first use and again after NOSCRIPT. */
typedef struct mg_redis_script {
    const char *text;
    char sha[41];             /**< "" until loaded (guarded by the mutex) */
} mg_redis_script;

struct mg_store_instance {
    const char *host;
    int port;
    apr_interval_time_t connect_timeout;
    apr_interval_time_t timeout;
    int db;
    const char *user;
    const char *password;
    /* local-sync mode: an shm store decides, a syncer reconciles */
    int local_sync;
    apr_interval_time_t sync_interval;
    const char *name;             /**< this gateway, in {mg}s:gw:NAME */
    const mg_store_provider *local;
    mg_store_instance *local_inst;
    /* per child */
    apr_pool_t *pool;
    apr_reslist_t *conns;
    apr_thread_mutex_t *mutex;    /* guards the fields below and the SHAs */
    mg_redis_script decide_script;
    mg_redis_script sync_script;
    apr_time_t open_until;        /* breaker: fail fast until then */
    apr_interval_time_t backoff;
    int broken;                   /* breaker open (for logging once) */
    apr_thread_t *syncer;
    volatile int stopping;
};

/** May a command be tried now, or is the breaker open? */
int mg_redis_breaker_allows(mg_store_instance *inst, apr_time_t now);

/** Tell the breaker how a command went (`why`: the error). */
void mg_redis_breaker_report(mg_store_instance *inst, server_rec *s, int ok,
                             const char *why);

/** A reply's error text, or why there is no reply; NULL if it is fine. */
const char *mg_redis_reply_error(redisContext *c, redisReply *reply);

/** EVALSHA `script` with argv[2..argc-1] (argv[0], argv[1] are filled
 *  here), loading it first when this Redis does not have it. */
redisReply *mg_redis_run_script(mg_store_instance *inst, redisContext *c,
                                mg_redis_script *script, int argc,
                                const char **argv, size_t *argvlen);

/** Start the syncer of local-sync mode in this child; it stops when
 *  `pchild` is destroyed. */
apr_status_t mg_redis_sync_start(mg_store_instance *inst, server_rec *s,
                                 apr_pool_t *pchild);

#endif /* MG_REDIS_H */
