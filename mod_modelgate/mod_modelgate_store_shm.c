/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_store_shm.c -- the embedded counter store: one table
 * (mg_table.c) in anonymous shared memory, one lock around each decision.
 * Exact across every process and thread of prefork, worker and event, and
 * nothing else to run.
 *
 * The lock.  By default a robust, process-shared pthread mutex that lives in
 * the segment itself ("lock=shared").  httpd's global mutexes on Linux are
 * priority-inheriting pthread mutexes: every contended acquisition enters
 * the kernel and hands the lock to a sleeping waiter, which cost about
 * 10 us of CPU per request under load (bench/README.md).  A plain futex
 * mutex stays in user space unless there is contention and lets a running
 * thread take it.  It is robust: a child that dies holding it (SIGKILL)
 * makes the next locker recover it, at worst with the counters that child
 * was updating off by its request.  "lock=httpd" uses httpd's mutex of
 * type modelgate-store instead, which the `Mutex` directive configures.
 *
 * Lifetime.  The segment and the mutex live in the process pool and are
 * remembered in ap_retained_data, not in pconf: pconf is cleared on every
 * restart and would take the counters with it.  A graceful restart (or a
 * plain `-k restart`) therefore keeps every counter; the old children that
 * are still finishing requests and the new ones share the same table and
 * the same mutex.  A stop and start begins with an empty table, and so does
 * a restart that changes the capacity (the old segment is released once the
 * parent no longer needs it; children that still map it keep their mapping).
 *
 * Pressure.  When the table is too small for the counters in use, it
 * evicts exhausted counters only as a last resort (mg_table.h); each such
 * eviction lets a client over its limit start again full, so the store
 * says so in the error log: a warning with the count and the capacity, at
 * most one line a minute for the whole server (the time of the last line
 * is in the segment), never one per request.  The count is also in
 * mg_store_info.evicted_exhausted for metrics.
 *
 * Local-sync.  With the argument `sync` (given by a store that synchronises
 * this one, as `ModelGateStore redis ... mode=local-sync` does) the segment
 * also holds the bookkeeping of mg_sync.h beside each table, and
 * sync_collect/sync_apply hand it to that store's syncer.  Such a segment is
 * retained under a name of its own, so a plain shm store in the same server
 * (the stand-in of ModelGateStoreFailure local) never takes it over.
 */
#include <errno.h>
#include <pthread.h>
#include <apr_strings.h>
#include <apr_shm.h>
#include <apr_global_mutex.h>
#include <http_main.h>
#include <util_mutex.h>
#include <ap_mpm.h>
#include "mod_modelgate_private.h"
#include "mg_table.h"
#include "mg_sync.h"
#include "mg_shared_lock.h"

#define SHM_DEFAULT_CAPACITY 65536u
#define SHM_DEFAULT_LOGS     1024u
#define SHM_MAX_CAPACITY     (64u * 1024 * 1024)
#define SHM_MAX_LOGS         (1024u * 1024)
#define SHM_RETAINED_KEY     "mod_modelgate:shm-store"

/* One segment holds two tables: counters whose state is one
 * mg_limit_state (every algorithm but the sliding log), and sliding logs,
 * whose entries carry MG_LIMIT_LOG_MAX timestamps. */
struct mg_store_instance {
    apr_uint32_t capacity;
    apr_uint32_t logs_capacity;
    int httpd_lock;           /**< lock=httpd: the `Mutex`-configured one */
    int sync;                 /**< keeps local-sync bookkeeping */
    mg_table table;
    mg_table logs;
    mg_sync table_sync;
    mg_sync logs_sync;
    pthread_mutex_t *lock;    /**< lock=shared, in the segment */
    struct shm_head *head;    /**< the segment's first line */
    apr_global_mutex_t *mutex; /**< lock=httpd */
    apr_size_t bytes;
};

/* What survives restarts of the parent. */
typedef struct shm_retained {
    apr_shm_t *shm;
    apr_uint32_t capacity;
    apr_uint32_t logs_capacity;
    apr_global_mutex_t *mutex;
} shm_retained;

/* The segment: the lock on a line of its own, the counter table, then the
 * table of sliding logs; with local-sync, the sync areas of both after. */
#define LOCK_BYTES MG_SHARED_LOCK_BYTES

/* Beside the lock, on its line, what the pressure reports need: written
 * under the lock, so only the first process to see new evictions after the
 * interval logs them. */
struct shm_head {
    pthread_mutex_t lock;
    apr_uint64_t exhausted_reported; /**< evicted_exhausted last logged */
    apr_time_t report_after;  /**< monotonic: no pressure line before */
};

typedef char head_fits[sizeof(struct shm_head) <= LOCK_BYTES ? 1 : -1];

#define SHM_PRESSURE_INTERVAL apr_time_from_sec(60)

static apr_size_t table_offset(void)
{
    return LOCK_BYTES;
}

static apr_size_t logs_offset(apr_uint32_t capacity)
{
    return (table_offset() + mg_table_bytes(capacity) + 63) & ~(apr_size_t)63;
}

static apr_size_t align64(apr_size_t n)
{
    return (n + 63) & ~(apr_size_t)63;
}

static apr_size_t tables_end(apr_uint32_t capacity, apr_uint32_t logs)
{
    return logs_offset(capacity)
           + mg_table_bytes_for(logs, sizeof(mg_limit_log_state));
}

static apr_size_t table_sync_offset(apr_uint32_t capacity, apr_uint32_t logs)
{
    return align64(tables_end(capacity, logs));
}

static apr_size_t logs_sync_offset(apr_uint32_t capacity, apr_uint32_t logs)
{
    return align64(table_sync_offset(capacity, logs)
                   + mg_sync_bytes(capacity));
}

static apr_size_t segment_bytes(apr_uint32_t capacity, apr_uint32_t logs,
                                int sync)
{
    return sync ? logs_sync_offset(capacity, logs) + mg_sync_bytes(logs)
                : tables_end(capacity, logs);
}

/* "name=N" with min <= N <= max. */
static const char *parse_count(apr_pool_t *p, const char *word,
                               apr_size_t skip, apr_int64_t min,
                               apr_int64_t max, apr_uint32_t *out)
{
    char *end;
    apr_int64_t n = apr_strtoi64(word + skip, &end, 10);

    if (*end || end == word + skip || n < min || n > max) {
        return apr_psprintf(p, "%.*s must be a number of counters from %"
                            APR_INT64_T_FMT " to %" APR_INT64_T_FMT
                            ", not '%s'", (int)skip - 1, word, min, max,
                            word + skip);
    }
    *out = (apr_uint32_t)n;
    return NULL;
}

static const char *shm_create(mg_store_instance **instp, const char *args,
                              apr_pool_t *ptemp, apr_pool_t *p)
{
    mg_store_instance *inst = apr_pcalloc(p, sizeof(*inst));
    const char *word;

    inst->capacity = SHM_DEFAULT_CAPACITY;
    inst->logs_capacity = SHM_DEFAULT_LOGS;
    while (*(word = ap_getword_conf(ptemp, &args))) {
        const char *err;
        if (!strncasecmp(word, "capacity=", 9)) {
            err = parse_count(p, word, 9, MG_TABLE_WAYS, SHM_MAX_CAPACITY,
                              &inst->capacity);
        }
        else if (!strncasecmp(word, "logs=", 5)) {
            err = parse_count(p, word, 5, MG_TABLE_WAYS, SHM_MAX_LOGS,
                              &inst->logs_capacity);
        }
        else if (!strcasecmp(word, "lock=shared")) {
            inst->httpd_lock = 0;
            err = NULL;
        }
        else if (!strcasecmp(word, "lock=httpd")) {
            inst->httpd_lock = 1;
            err = NULL;
        }
        else if (!strcasecmp(word, "sync")) {
            inst->sync = 1;
            err = NULL;
        }
        else {
            err = apr_psprintf(p, "unknown argument '%s' (known: "
                               "capacity=N, logs=N, lock=shared|httpd)", word);
        }
        if (err) {
            return err;
        }
    }
    *instp = inst;
    return NULL;
}

/* Does a segment made for these capacities hold tables this module reads? */
static int holds_tables(char *base, apr_uint32_t capacity, apr_uint32_t logs)
{
    mg_table t;

    return mg_table_attach(&t, base + table_offset(),
                           logs_offset(capacity) - table_offset())
           && mg_table_attach(&t, base + logs_offset(capacity),
                              tables_end(capacity, logs)
                              - logs_offset(capacity));
}

static apr_status_t shm_init(mg_store_instance *inst, server_rec *s,
                             apr_pool_t *pconf, apr_pool_t *ptemp)
{
    apr_pool_t *pproc = s->process->pool;
    shm_retained *kept;
    apr_status_t rv;
    apr_uint32_t capacity = mg_table_capacity(inst->capacity);
    apr_uint32_t logs = mg_table_capacity(inst->logs_capacity);

    const char *key = inst->sync ? SHM_RETAINED_KEY ":sync"
                                 : SHM_RETAINED_KEY;

    kept = ap_retained_data_get(key);
    if (!kept) {
        kept = ap_retained_data_create(key, sizeof(*kept));
    }
    if (kept->shm && (kept->capacity != capacity
                      || kept->logs_capacity != logs)) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, MGLOGNO(00101)
                     "shm store: capacity changed from %u+%u to %u+%u "
                     "counters, starting with empty counters",
                     kept->capacity, kept->logs_capacity, capacity, logs);
        apr_shm_destroy(kept->shm);
        kept->shm = NULL;
    }
    if (kept->shm && !holds_tables(apr_shm_baseaddr_get(kept->shm),
                                   capacity, logs)) {
        /* Kept from before a graceful restart into a module whose table
         * layout differs (mg_table.h MG_TABLE_VERSION): it cannot be read. */
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, MGLOGNO(00109)
                     "shm store: the counter table kept across the restart "
                     "is of another layout, starting with empty counters");
        apr_shm_destroy(kept->shm);
        kept->shm = NULL;
    }
    inst->bytes = segment_bytes(capacity, logs, inst->sync);
    if (!kept->shm) {
        char *base;
        rv = apr_shm_create(&kept->shm, inst->bytes, NULL, pproc);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, MGLOGNO(00102)
                         "shm store: cannot create %" APR_SIZE_T_FMT
                         " bytes of shared memory", inst->bytes);
            return rv;
        }
        base = apr_shm_baseaddr_get(kept->shm);
        memset(base, 0, LOCK_BYTES);
        if ((rv = mg_shared_lock_init(&((struct shm_head *)base)->lock))
            != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, MGLOGNO(00106)
                         "shm store: cannot make its lock");
            return rv;
        }
        mg_table_format(base + table_offset(), capacity);
        mg_table_format_for(base + logs_offset(capacity), logs,
                            sizeof(mg_limit_log_state));
        if (inst->sync) {
            mg_sync_format(base + table_sync_offset(capacity, logs),
                           capacity);
            mg_sync_format(base + logs_sync_offset(capacity, logs), logs);
        }
        kept->capacity = capacity;
        kept->logs_capacity = logs;
    }
    {
        char *base = apr_shm_baseaddr_get(kept->shm);
        if (!mg_table_attach(&inst->table, base + table_offset(),
                             logs_offset(capacity) - table_offset())
            || !mg_table_attach(&inst->logs, base + logs_offset(capacity),
                                tables_end(capacity, logs)
                                - logs_offset(capacity))
            || (inst->sync
                && (!mg_sync_attach(&inst->table_sync, &inst->table,
                                    base + table_sync_offset(capacity, logs),
                                    mg_sync_bytes(capacity))
                    || !mg_sync_attach(&inst->logs_sync, &inst->logs,
                                       base + logs_sync_offset(capacity, logs),
                                       mg_sync_bytes(logs))))) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, MGLOGNO(00103)
                         "shm store: shared memory does not hold a counter "
                         "table of this version");
            return APR_EGENERAL;
        }
        inst->table.logs = &inst->logs;
        inst->head = (struct shm_head *)base;
        inst->lock = &inst->head->lock;
    }
    if (inst->httpd_lock) {
        if (!kept->mutex) {
            rv = ap_global_mutex_create(&kept->mutex, NULL,
                                        MG_STORE_MUTEX_TYPE, NULL, s, pproc, 0);
            if (rv != APR_SUCCESS) {
                return rv;
            }
        }
        inst->mutex = kept->mutex;
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, MGLOGNO(00104)
                 "shm store: %u counters and %u sliding logs in %"
                 APR_SIZE_T_FMT " bytes (%" APR_SIZE_T_FMT " bytes per "
                 "counter, %" APR_SIZE_T_FMT " per log)", capacity, logs,
                 inst->bytes, inst->table.entry_size + sizeof(apr_uint64_t),
                 inst->logs.entry_size + sizeof(apr_uint64_t));
    return APR_SUCCESS;
}

static apr_status_t shm_child_init(mg_store_instance *inst, server_rec *s,
                                   apr_pool_t *pchild)
{
    apr_status_t rv;

    if (!inst->mutex) {
        return APR_SUCCESS;
    }
    rv = apr_global_mutex_child_init(&inst->mutex,
                                     apr_global_mutex_lockfile(inst->mutex),
                                     pchild);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, MGLOGNO(00105)
                     "shm store: cannot attach the mutex in this child");
    }
    return rv;
}

static apr_status_t store_lock(mg_store_instance *inst, server_rec *s)
{
    apr_status_t rv;
    int recovered;

    if (inst->mutex) {
        return apr_global_mutex_lock(inst->mutex);
    }
    rv = mg_shared_lock(inst->lock, &recovered);
    if (recovered) {
        /* Its holder died mid-decision: the entry it was writing may hold
         * a mix of old and new state, off by that one request at most. */
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, MGLOGNO(00107)
                     "shm store: a process died holding the store's lock; "
                     "recovered it");
    }
    return rv;
}

static apr_status_t store_unlock(mg_store_instance *inst)
{
    if (inst->mutex) {
        return apr_global_mutex_unlock(inst->mutex);
    }
    return mg_shared_unlock(inst->lock);
}

static apr_uint64_t evicted_exhausted(const mg_store_instance *inst)
{
    return inst->table.hdr->stats.evicted_exhausted
           + inst->logs.hdr->stats.evicted_exhausted;
}

static apr_status_t shm_decide(mg_store_instance *inst, server_rec *s,
                               const mg_layer *layers, int n, mg_now now,
                               mg_decision *d)
{
    apr_status_t rv, rv2;
    apr_uint64_t evicted = 0, since = 0;

    if (!inst->table.hdr) {
        return APR_EINIT;
    }
    if ((rv = store_lock(inst, s)) != APR_SUCCESS) {
        return rv;
    }
    rv = mg_table_decide(&inst->table, layers, n, now, d);
    /* Two loads and a compare while nothing is evicted under pressure;
     * the line itself is written after the lock is given back. */
    evicted = evicted_exhausted(inst);
    if (evicted != inst->head->exhausted_reported
        && now.mono >= inst->head->report_after) {
        since = evicted - inst->head->exhausted_reported;
        inst->head->exhausted_reported = evicted;
        inst->head->report_after = now.mono + SHM_PRESSURE_INTERVAL;
    }
    rv2 = store_unlock(inst);
    if (since) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, MGLOGNO(00108)
                     "shm store: table full: %" APR_UINT64_T_FMT " counter(s) "
                     "that were refusing requests forgotten to make room for "
                     "new ones since the last report (%" APR_UINT64_T_FMT
                     " in all); their clients start again with a full "
                     "allowance.  Raise ModelGateStore shm capacity= (now %u "
                     "counters, %u sliding logs)", since, evicted,
                     mg_table_slots(&inst->table),
                     mg_table_slots(&inst->logs));
    }
    return rv != APR_SUCCESS ? rv : rv2;
}

static apr_status_t shm_settle(mg_store_instance *inst, server_rec *s,
                               const mg_layer *layers,
                               const apr_int64_t *delta, int n, mg_now then,
                               mg_now now)
{
    apr_status_t rv, rv2;

    if (n == 0) {
        return APR_SUCCESS;
    }
    if (!inst->table.hdr) {
        return APR_EINIT;
    }
    if ((rv = store_lock(inst, s)) != APR_SUCCESS) {
        return rv;
    }
    rv = mg_table_settle(&inst->table, layers, delta, n, then, now);
    rv2 = store_unlock(inst);
    return rv != APR_SUCCESS ? rv : rv2;
}

static apr_status_t shm_peek(mg_store_instance *inst, server_rec *s,
                             const mg_layer *layers, int n, mg_now now,
                             mg_decision *d)
{
    apr_status_t rv, rv2;

    if (!inst->table.hdr) {
        return APR_EINIT;
    }
    if ((rv = store_lock(inst, s)) != APR_SUCCESS) {
        return rv;
    }
    rv = mg_table_peek(&inst->table, layers, n, now, d);
    rv2 = store_unlock(inst);
    return rv != APR_SUCCESS ? rv : rv2;
}

static void shm_info(mg_store_instance *inst, mg_store_info *info)
{
    memset(info, 0, sizeof(*info));
    if (!inst->table.hdr) {
        return;
    }
    info->capacity = (apr_uint64_t)inst->table.hdr->nsets * MG_TABLE_WAYS
                     + (apr_uint64_t)inst->logs.hdr->nsets * MG_TABLE_WAYS;
    info->bytes = inst->bytes;
    /* Read without the lock: monotonic counters, a stale value is fine. */
    info->decisions = inst->table.hdr->stats.decisions;
    info->inserted = inst->table.hdr->stats.inserted
                     + inst->logs.hdr->stats.inserted;
    info->evicted_expired = inst->table.hdr->stats.evicted_expired
                            + inst->logs.hdr->stats.evicted_expired;
    info->evicted_live = inst->table.hdr->stats.evicted_live
                         + inst->logs.hdr->stats.evicted_live;
    info->evicted_exhausted = evicted_exhausted(inst);
    if (inst->sync) {
        info->sync_exchanges = inst->table_sync.hdr->exchanges;
        info->sync_failures = inst->table_sync.hdr->failures;
        info->sync_units_pushed = inst->table_sync.hdr->units_pushed
                                  + inst->logs_sync.hdr->units_pushed;
        info->sync_units_owed = inst->table_sync.hdr->units_owed
                                + inst->logs_sync.hdr->units_owed;
        info->sync_listed = inst->table_sync.hdr->nlisted
                            + inst->logs_sync.hdr->nlisted;
    }
}

/* The two tables are numbered 0 (counters) and 1 (sliding logs) in the
 * items; the counter table's area keeps the gateway's exchange clock. */
static apr_size_t shm_sync_collect(mg_store_instance *inst, server_rec *s,
                                   mg_now now, apr_interval_time_t interval,
                                   mg_sync_item *items, apr_size_t max)
{
    apr_size_t n = 0;

    if (!inst->sync || !inst->table.hdr
        || store_lock(inst, s) != APR_SUCCESS) {
        return 0;
    }
    if (mg_sync_due(&inst->table_sync, now.mono, interval)) {
        n = mg_sync_collect(&inst->table, 0, now, interval, items, max);
        n += mg_sync_collect(&inst->logs, 1, now, interval, items + n,
                             max - n);
    }
    store_unlock(inst);
    return n;
}

static void shm_sync_apply(mg_store_instance *inst, server_rec *s,
                           const mg_sync_item *items, apr_size_t n, int ok)
{
    if (!inst->sync || !inst->table.hdr
        || store_lock(inst, s) != APR_SUCCESS) {
        return;
    }
    /* Each table takes its own items; info() reads the exchange and
     * failure counts of the counter table's area. */
    mg_sync_apply(&inst->table, 0, items, n, ok);
    mg_sync_apply(&inst->logs, 1, items, n, ok);
    store_unlock(inst);
}

const mg_store_provider mg_store_shm_provider = {
    "shm",
    shm_create,
    shm_init,
    shm_child_init,
    shm_decide,
    shm_info,
    shm_sync_collect,
    shm_sync_apply,
    shm_settle,
    shm_peek
};
