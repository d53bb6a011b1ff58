/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_redis.h -- what the two files of the redis store share: its
 * instance, the connection pool with its circuit breaker, and scripts run
 * by SHA.
 *
 *   mod_modelgate_redis.c  the module, the arguments, connections, the
 *                          breaker's use and exact mode (one script per
 *                          request, and one per token settle)
 *   mg_redis_breaker.c     the breaker's state machine (APR only, unit
 *                          tested)
 *   mg_redis_sync.c        local-sync mode: the syncer thread and its
 *                          exchange (one script per batch)
 *   mg_redis_stats.c       the figures for the metrics (mg_store_info):
 *                          shared counters and each process's breaker
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
#include "mg_redis_breaker.h"

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
    mg_redis_script settle_script;
    mg_redis_script sync_script;
    mg_redis_breaker breaker;     /* this child's (mg_redis_breaker.h) */
    apr_thread_t *syncer;
    volatile int stopping;
};

/** A pooled connection, stamped with the breaker generation it was made
 *  in: one of an older generation is dropped, never used or kept. */
typedef struct mg_redis_conn {
    redisContext *c;
    apr_uint64_t generation;
} mg_redis_conn;

/** May a command go to Redis now, or does the breaker say fail fast?
 *  @param probe set to 1 when the command goes as the breaker's probe;
 *               pass it back to mg_redis_tried */
int mg_redis_may_try(mg_store_instance *inst, int *probe);

/** Tell the breaker how a command it let through went (`why`: the error),
 *  and log what that changed, once per change. */
void mg_redis_tried(mg_store_instance *inst, server_rec *s, int ok,
                    int probe, const char *why);

/** A connection of the breaker's current generation: idle ones of an
 *  older generation are dropped on the way, so after an outage the pool
 *  holds no connection to the Redis that went away. */
apr_status_t mg_redis_conn_acquire(mg_store_instance *inst,
                                   mg_redis_conn **conn);

/** Give a connection back: kept if `ok` and of the current generation,
 *  else closed. */
void mg_redis_conn_release(mg_store_instance *inst, mg_redis_conn *conn,
                           int ok);

/** A reply's error text, or why there is no reply; NULL if it is fine. */
const char *mg_redis_reply_error(redisContext *c, redisReply *reply);

/** A reply type's name, for log lines ("an integer", "nil", ...). */
const char *mg_redis_reply_type(int type);

/** EVALSHA `script` with argv[2..argc-1] (argv[0], argv[1] are filled
 *  here), loading it first when this Redis does not have it. */
redisReply *mg_redis_run_script(mg_store_instance *inst, redisContext *c,
                                mg_redis_script *script, int argc,
                                const char **argv, size_t *argvlen);

/** Start the syncer of local-sync mode in this child; it stops when
 *  `pchild` is destroyed. */
apr_status_t mg_redis_sync_start(mg_store_instance *inst, server_rec *s,
                                 apr_pool_t *pchild);

/* mg_redis_eval.c: exact mode, one script run per decision and per settle
 * (the provider's decide and settle). */
apr_status_t mg_redis_decide(mg_store_instance *inst, server_rec *s,
                             const mg_layer *layers, int n, mg_now now,
                             mg_decision *d);
apr_status_t mg_redis_settle(mg_store_instance *inst, server_rec *s,
                             const mg_layer *layers, const apr_int64_t *delta,
                             int n, mg_now then, mg_now now);

/* mg_redis_stats.c: the store's figures, summed over every process. */
enum {
    MG_REDIS_STAT_ROUND_TRIPS,    /**< operations the breaker let through */
    MG_REDIS_STAT_ERRORS,         /**< ... that failed */
    MG_REDIS_STAT_FAST,           /**< operations failed without trying */
    MG_REDIS_STAT_OPENED,         /**< outages begun */
    MG_REDIS_STAT_COUNT
};
/** Make (or keep, across a graceful restart) the shared figures; in the
 *  parent, from the store's init. */
apr_status_t mg_redis_stats_init(server_rec *s);
/** Claim this child's slot for its breaker's state. */
void mg_redis_stats_child_init(apr_pool_t *pchild);
void mg_redis_stats_count(int which);
/** This process's breaker is now in `state` (mg_redis_breaker_state). */
void mg_redis_stats_state(int state);
/** A local-sync exchange succeeded at `wall`. */
void mg_redis_stats_synced(apr_time_t wall);
/** Add the figures to `info` (after the local store's, in local-sync
 *  mode, whose sync_listed says whether there is a lag). */
void mg_redis_stats_fill(mg_store_info *info, int local_sync);

#endif /* MG_REDIS_H */
