/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_redis_sync.c -- local-sync mode of the redis store: every request is
 * decided in this host's shared memory, and a syncer reconciles the
 * counters with the other gateways through Redis (the model and the bound
 * on over-admission: mod_modelgate/mg_sync.h).
 *
 * Each child runs a syncer thread that wakes twice an interval.  The shm
 * store lets one of them per interval collect (mg_sync_due), so a gateway
 * makes one exchange per interval whatever its number of processes.  An
 * exchange is one EVALSHA per batch of counters: INCRBY of each counter's
 * epoch total by the units admitted here, with an expiry; the totals come
 * back and the shm store turns the others' part into owed units.  While
 * Redis fails, the breaker of the store skips exchanges, the units stay
 * pending, and each gateway enforces its own full allowance.
 */
#include <unistd.h>
#include "mg_redis.h"
#include <apr_strings.h>
#include <apr_network_io.h>
#include <http_log.h>
#include "mg_clock.h"

APLOG_USE_MODULE(modelgate_redis);

#define MGRLOGNO(n) "MGR" #n ": "
/* Counters per EVALSHA: keeps each call short for Redis, which runs a
 * script alone. */
#define SYNC_BATCH 256
/* Counters per exchange: more wait for the next one, in turn. */
#define SYNC_MAX 8192
/* A heartbeat lives this long after the last exchange. */
#define HEARTBEAT_TTL_MS "60000"

typedef struct syncer {
    mg_store_instance *inst;
    server_rec *s;
    const char *heartbeat;        /* {mg}s:gw:NAME */
    mg_sync_item *items;
} syncer;

/* One EVALSHA for items[0..n-1] (n <= SYNC_BATCH).  An error's text is
 * copied to `why`: the reply it lives in is freed here. */
static const char *exchange_batch(syncer *sy, redisContext *c,
                                  mg_sync_item *items, apr_size_t n,
                                  char *why, apr_size_t whylen)
{
    const char *argv[8 + 3 * SYNC_BATCH];
    size_t argvlen[8 + 3 * SYNC_BATCH];
    char keys[SYNC_BATCH][64];
    char nums[SYNC_BATCH][2][24];
    char nkeys[16];
    redisReply *reply;
    const char *err;
    apr_size_t i;
    int argc = 2;

    apr_snprintf(nkeys, sizeof(nkeys), "%" APR_SIZE_T_FMT, n + 1);
    argv[argc] = nkeys;
    argvlen[argc++] = strlen(nkeys);
    for (i = 0; i < n; i++) {
        /* The exact mode's hash tag: every key in one Cluster slot. */
        apr_snprintf(keys[i], sizeof(keys[i]), "{mg}s:%016"
                     APR_UINT64_T_HEX_FMT "%016" APR_UINT64_T_HEX_FMT
                     ":%" APR_INT64_T_FMT, items[i].fp.hi, items[i].fp.lo,
                     items[i].epoch_start);
        argv[argc] = keys[i];
        argvlen[argc++] = strlen(keys[i]);
    }
    argv[argc] = sy->heartbeat;
    argvlen[argc++] = strlen(sy->heartbeat);
    for (i = 0; i < n; i++) {
        apr_snprintf(nums[i][0], 24, "%" APR_INT64_T_FMT, items[i].units);
        apr_snprintf(nums[i][1], 24, "%" APR_INT64_T_FMT,
                     items[i].ttl_ms > 0 ? items[i].ttl_ms : 1);
        argv[argc] = nums[i][0];
        argvlen[argc++] = strlen(nums[i][0]);
        argv[argc] = nums[i][1];
        argvlen[argc++] = strlen(nums[i][1]);
    }
    argv[argc] = HEARTBEAT_TTL_MS;
    argvlen[argc++] = strlen(HEARTBEAT_TTL_MS);

    reply = mg_redis_run_script(sy->inst, c, &sy->inst->sync_script, argc,
                                argv, argvlen);
    err = mg_redis_reply_error(c, reply);
    if (!err && reply->type != REDIS_REPLY_ARRAY) {
        apr_snprintf(why, whylen, "unexpected reply to the sync script: "
                     "%s, not an array", mg_redis_reply_type(reply->type));
        err = why;
    }
    else if (!err && reply->elements != n) {
        apr_snprintf(why, whylen, "unexpected reply to the sync script: %"
                     APR_SIZE_T_FMT " elements, not %" APR_SIZE_T_FMT,
                     (apr_size_t)reply->elements, n);
        err = why;
    }
    for (i = 0; !err && i < n; i++) {
        if (!reply->element[i]
            || reply->element[i]->type != REDIS_REPLY_INTEGER
            || reply->element[i]->integer < 0) {
            err = "a total is not a count (another program writes "
                  "{mg}s: keys?)";
            break;
        }
        items[i].total = (apr_uint64_t)reply->element[i]->integer;
    }
    if (err && err != why) {
        apr_cpystrn(why, err, whylen);
        err = why;
    }
    if (reply) {
        freeReplyObject(reply);
    }
    return err;
}

/* Push and pull every collected counter, in batches on one connection. */
static const char *exchange(syncer *sy, mg_sync_item *items, apr_size_t n,
                            char *why, apr_size_t whylen)
{
    mg_redis_conn *conn = NULL;
    const char *err = NULL;
    apr_size_t done;

    if (mg_redis_conn_acquire(sy->inst, &conn) != APR_SUCCESS) {
        return "cannot connect";
    }
    for (done = 0; done < n && !err; done += SYNC_BATCH) {
        err = exchange_batch(sy, conn->c, items + done,
                             n - done < SYNC_BATCH ? n - done : SYNC_BATCH,
                             why, whylen);
    }
    mg_redis_conn_release(sy->inst, conn, !err);
    return err;
}

static void * APR_THREAD_FUNC syncer_main(apr_thread_t *thread, void *data)
{
    syncer *sy = data;
    mg_store_instance *inst = sy->inst;
    apr_interval_time_t tick = inst->sync_interval / 2;

    while (!inst->stopping) {
        mg_now now;
        apr_size_t n;
        char why[256];
        const char *err = NULL;
        int probe;

        apr_sleep(tick);
        if (inst->stopping) {
            break;
        }
        now.mono = mg_clock_monotonic();
        now.wall = apr_time_now();
        n = inst->local->sync_collect(inst->local_inst, sy->s, now,
                                      inst->sync_interval, sy->items,
                                      SYNC_MAX);
        if (n == 0) {
            /* Not due here (another process exchanges), or nothing to
             * exchange: with nothing listed the gateway is in step, which
             * the lag shown in the metrics must say. */
            mg_store_info li;
            memset(&li, 0, sizeof(li));
            inst->local->info(inst->local_inst, &li);
            if (li.sync_listed == 0) {
                mg_redis_stats_synced(now.wall);
            }
            continue;
        }
        if (!mg_redis_may_try(inst, &probe)) {
            err = "breaker open";
        }
        else if ((err = exchange(sy, sy->items, n, why, sizeof(why))) != NULL) {
            ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, sy->s, MGRLOGNO(00010)
                         "redis store: sync exchange failed: %s", err);
            mg_redis_tried(inst, sy->s, 0, probe, err);
        }
        else {
            mg_redis_tried(inst, sy->s, 1, probe, NULL);
            mg_redis_stats_synced(apr_time_now());
        }
        inst->local->sync_apply(inst->local_inst, sy->s, sy->items, n, !err);
    }
    apr_thread_exit(thread, APR_SUCCESS);
    return NULL;
}

/* Before the child's pool goes (and the connections with it). */
static apr_status_t syncer_stop(void *data)
{
    mg_store_instance *inst = data;
    apr_status_t rv;

    inst->stopping = 1;
    if (inst->syncer) {
        apr_thread_join(&rv, inst->syncer);
        inst->syncer = NULL;
    }
    return APR_SUCCESS;
}

apr_status_t mg_redis_sync_start(mg_store_instance *inst, server_rec *s,
                                 apr_pool_t *pchild)
{
    syncer *sy = apr_pcalloc(pchild, sizeof(*sy));
    const char *name = inst->name;
    apr_status_t rv;

    if (!name) {
        /* One name per gateway: the host and the parent process, which
         * every child of this server shares. */
        char host[APRMAXHOSTLEN + 1];
        if (apr_gethostname(host, sizeof(host), pchild) != APR_SUCCESS) {
            apr_cpystrn(host, "localhost", sizeof(host));
        }
        name = apr_psprintf(pchild, "%s:%ld", host, (long)getppid());
    }
    sy->inst = inst;
    sy->s = s;
    sy->heartbeat = apr_pstrcat(pchild, "{mg}s:gw:", name, NULL);
    sy->items = apr_palloc(pchild, SYNC_MAX * sizeof(mg_sync_item));
    inst->stopping = 0;
    rv = apr_thread_create(&inst->syncer, NULL, syncer_main, sy, pchild);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, MGRLOGNO(00011)
                     "redis store: cannot start the local-sync thread");
        return rv;
    }
    apr_pool_pre_cleanup_register(pchild, inst, syncer_stop);
    return APR_SUCCESS;
}
