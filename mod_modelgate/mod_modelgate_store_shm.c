/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_store_shm.c -- the embedded counter store: one table
 * (mg_table.c) in anonymous shared memory, one global mutex around each
 * decision.  Exact across every process and thread of prefork, worker and
 * event, and nothing else to run.
 *
 * Lifetime.  The segment and the mutex live in the process pool and are
 * remembered in ap_retained_data, not in pconf: pconf is cleared on every
 * restart and would take the counters with it.  A graceful restart (or a
 * plain `-k restart`) therefore keeps every counter; the old children that
 * are still finishing requests and the new ones share the same table and
 * the same mutex.  A stop and start begins with an empty table, and so does
 * a restart that changes the capacity (the old segment is released once the
 * parent no longer needs it; children that still map it keep their mapping).
 */
#include <apr_strings.h>
#include <apr_shm.h>
#include <apr_global_mutex.h>
#include <http_main.h>
#include <util_mutex.h>
#include <ap_mpm.h>
#include "mod_modelgate_private.h"
#include "mg_table.h"

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
    mg_table table;
    mg_table logs;
    apr_global_mutex_t *mutex;
    apr_size_t bytes;
};

/* What survives restarts of the parent. */
typedef struct shm_retained {
    apr_shm_t *shm;
    apr_uint32_t capacity;
    apr_uint32_t logs_capacity;
    apr_global_mutex_t *mutex;
} shm_retained;

static apr_size_t logs_offset(apr_uint32_t capacity)
{
    return (mg_table_bytes(capacity) + 63) & ~(apr_size_t)63;
}

static apr_size_t segment_bytes(apr_uint32_t capacity, apr_uint32_t logs)
{
    return logs_offset(capacity)
           + mg_table_bytes_for(logs, sizeof(mg_limit_log_state));
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
        else {
            err = apr_psprintf(p, "unknown argument '%s' (known: "
                               "capacity=N, logs=N)", word);
        }
        if (err) {
            return err;
        }
    }
    *instp = inst;
    return NULL;
}

static apr_status_t shm_init(mg_store_instance *inst, server_rec *s,
                             apr_pool_t *pconf, apr_pool_t *ptemp)
{
    apr_pool_t *pproc = s->process->pool;
    shm_retained *kept;
    apr_status_t rv;
    apr_uint32_t capacity = mg_table_capacity(inst->capacity);
    apr_uint32_t logs = mg_table_capacity(inst->logs_capacity);

    kept = ap_retained_data_get(SHM_RETAINED_KEY);
    if (!kept) {
        kept = ap_retained_data_create(SHM_RETAINED_KEY, sizeof(*kept));
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
    inst->bytes = segment_bytes(capacity, logs);
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
        mg_table_format(base, capacity);
        mg_table_format_for(base + logs_offset(capacity), logs,
                            sizeof(mg_limit_log_state));
        kept->capacity = capacity;
        kept->logs_capacity = logs;
    }
    if (!mg_table_attach(&inst->table, apr_shm_baseaddr_get(kept->shm),
                         logs_offset(capacity))
        || !mg_table_attach(&inst->logs, (char *)apr_shm_baseaddr_get(kept->shm)
                            + logs_offset(capacity),
                            inst->bytes - logs_offset(capacity))) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, MGLOGNO(00103)
                     "shm store: shared memory does not hold a counter "
                     "table of this version");
        return APR_EGENERAL;
    }
    inst->table.logs = &inst->logs;
    if (!kept->mutex) {
        rv = ap_global_mutex_create(&kept->mutex, NULL, MG_STORE_MUTEX_TYPE,
                                    NULL, s, pproc, 0);
        if (rv != APR_SUCCESS) {
            return rv;
        }
    }
    inst->mutex = kept->mutex;
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

static apr_status_t shm_decide(mg_store_instance *inst, server_rec *s,
                               const mg_layer *layers, int n, mg_now now,
                               mg_decision *d)
{
    apr_status_t rv, rv2;

    if (!inst->table.hdr) {
        return APR_EINIT;
    }
    if ((rv = apr_global_mutex_lock(inst->mutex)) != APR_SUCCESS) {
        return rv;
    }
    rv = mg_table_decide(&inst->table, layers, n, now, d);
    rv2 = apr_global_mutex_unlock(inst->mutex);
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
    info->inserted = inst->table.hdr->stats.inserted;
    info->evicted_expired = inst->table.hdr->stats.evicted_expired;
    info->evicted_live = inst->table.hdr->stats.evicted_live;
}

const mg_store_provider mg_store_shm_provider = {
    "shm",
    shm_create,
    shm_init,
    shm_child_init,
    shm_decide,
    shm_info
};
