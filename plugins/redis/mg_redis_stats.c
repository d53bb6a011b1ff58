/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_redis_stats.c -- what the redis store tells the metrics (mg_store_info,
 * version 7): round trips, errors, fast failures and outages, summed over
 * every process; each live process's breaker state; when local-sync last
 * was in step (an exchange succeeded, or a syncer's tick found nothing
 * listed), so the lag stays below an interval while Redis answers and
 * grows through an outage.
 *
 * One anonymous segment, made in the parent (the store's init) from the
 * process pool and kept in ap_retained_data, so a graceful restart keeps
 * the counts as the core's metrics do.  Counters are relaxed atomic
 * additions (a round trip to Redis costs a thousand times more).  Each
 * child claims a slot for its breaker's state in child_init (a free one,
 * or one whose process is gone) and frees it when it exits; a scrape
 * counts the states of the slots whose process lives.
 */
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <apr_shm.h>
#include <ap_mpm.h>
#include <http_log.h>
#include "mg_redis.h"

APLOG_USE_MODULE(modelgate_redis);

#define STATS_KEY   "mod_modelgate_redis:stats"
#define STATS_MAGIC APR_UINT64_C(0x6d67726564737431) /* "mgredst1" */

typedef struct stats_slot {
    pid_t pid;                /* 0: free */
    apr_uint32_t state;       /* mg_redis_breaker_state */
} stats_slot;

typedef struct stats_head {
    apr_uint64_t magic;
    apr_uint32_t nslots;
    apr_uint32_t unused;
    apr_uint64_t c[MG_REDIS_STAT_COUNT];
    apr_time_t started;       /* wall clock: the segment was made */
    apr_time_t synced;        /* wall clock: the last exchange that
                                 succeeded; 0: none */
} stats_head;

typedef struct stats_retained {
    apr_shm_t *shm;
} stats_retained;

static stats_head *head;
static stats_slot *slots;
static stats_slot *mine;

apr_status_t mg_redis_stats_init(server_rec *s)
{
    stats_retained *kept = ap_retained_data_get(STATS_KEY);
    int daemons = 0;
    apr_uint32_t n;
    apr_status_t rv;

    /* Old and new children overlap during a graceful restart. */
    if (ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &daemons) != APR_SUCCESS
        || daemons < 1) {
        daemons = 16;
    }
    n = (apr_uint32_t)daemons * 2;
    if (!kept) {
        kept = ap_retained_data_create(STATS_KEY, sizeof(*kept));
    }
    if (kept->shm) {
        stats_head *h = apr_shm_baseaddr_get(kept->shm);
        if (h->magic != STATS_MAGIC || h->nslots != n) {
            apr_shm_destroy(kept->shm);   /* old children keep theirs */
            kept->shm = NULL;
        }
    }
    if (!kept->shm) {
        apr_size_t bytes = sizeof(stats_head) + n * sizeof(stats_slot);
        rv = apr_shm_create(&kept->shm, bytes, NULL, s->process->pool);
        if (rv != APR_SUCCESS) {
            head = NULL;
            return rv;
        }
        memset(apr_shm_baseaddr_get(kept->shm), 0, bytes);
        head = apr_shm_baseaddr_get(kept->shm);
        head->magic = STATS_MAGIC;
        head->nslots = n;
        head->started = apr_time_now();
    }
    head = apr_shm_baseaddr_get(kept->shm);
    slots = (stats_slot *)(head + 1);
    return APR_SUCCESS;
}

static int alive(pid_t pid)
{
    return pid != 0 && (kill(pid, 0) == 0 || errno != ESRCH);
}

static apr_status_t release_slot(void *data)
{
    if (mine) {
        __atomic_store_n(&mine->pid, 0, __ATOMIC_RELEASE);
        mine = NULL;
    }
    return APR_SUCCESS;
}

void mg_redis_stats_child_init(apr_pool_t *pchild)
{
    pid_t me = getpid();
    apr_uint32_t i;

    mine = NULL;
    if (!head) {
        return;
    }
    for (i = 0; i < head->nslots; i++) {
        pid_t owner = __atomic_load_n(&slots[i].pid, __ATOMIC_RELAXED);
        if (!alive(owner)
            && __atomic_compare_exchange_n(&slots[i].pid, &owner, me, 0,
                                           __ATOMIC_ACQ_REL,
                                           __ATOMIC_RELAXED)) {
            mine = &slots[i];
            __atomic_store_n(&mine->state, MG_REDIS_BREAKER_CLOSED,
                             __ATOMIC_RELAXED);
            apr_pool_cleanup_register(pchild, NULL, release_slot,
                                      apr_pool_cleanup_null);
            return;
        }
    }
    /* More processes than slots: this one's state is not shown. */
}

void mg_redis_stats_count(int which)
{
    if (head && which >= 0 && which < MG_REDIS_STAT_COUNT) {
        __atomic_fetch_add(&head->c[which], 1, __ATOMIC_RELAXED);
    }
}

void mg_redis_stats_state(int state)
{
    if (mine) {
        __atomic_store_n(&mine->state, (apr_uint32_t)state,
                         __ATOMIC_RELAXED);
    }
}

void mg_redis_stats_synced(apr_time_t wall)
{
    if (head) {
        __atomic_store_n(&head->synced, wall, __ATOMIC_RELAXED);
    }
}

void mg_redis_stats_fill(mg_store_info *info, int local_sync)
{
    apr_uint32_t i;

    if (!head) {
        return;
    }
    info->remote = 1;
    info->round_trips = __atomic_load_n(&head->c[MG_REDIS_STAT_ROUND_TRIPS],
                                        __ATOMIC_RELAXED);
    info->errors = __atomic_load_n(&head->c[MG_REDIS_STAT_ERRORS],
                                   __ATOMIC_RELAXED);
    info->fast_failures = __atomic_load_n(&head->c[MG_REDIS_STAT_FAST],
                                          __ATOMIC_RELAXED);
    info->breaker_opened = __atomic_load_n(&head->c[MG_REDIS_STAT_OPENED],
                                           __ATOMIC_RELAXED);
    for (i = 0; i < head->nslots; i++) {
        pid_t pid = __atomic_load_n(&slots[i].pid, __ATOMIC_ACQUIRE);
        apr_uint32_t st = __atomic_load_n(&slots[i].state, __ATOMIC_RELAXED);
        if (alive(pid) && st < 3) {
            info->breaker_processes[st]++;
        }
    }
    if (local_sync) {
        apr_time_t since = __atomic_load_n(&head->synced, __ATOMIC_RELAXED);
        apr_time_t now = apr_time_now();
        if (!since) {
            since = head->started;
        }
        info->sync_lag = now > since ? now - since : 0;
    }
}
