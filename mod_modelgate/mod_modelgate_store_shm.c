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
#define SHM_MAX_CAPACITY     (64u * 1024 * 1024)
#define SHM_RETAINED_KEY     "mod_modelgate:shm-store"

struct mg_store_instance {
    apr_uint32_t capacity;
    mg_table table;
    apr_global_mutex_t *mutex;
    apr_size_t bytes;
};

/* What survives restarts of the parent. */
typedef struct shm_retained {
    apr_shm_t *shm;
    apr_uint32_t capacity;
    apr_global_mutex_t *mutex;
} shm_retained;

static const char *shm_create(mg_store_instance **instp, const char *args,
                              apr_pool_t *ptemp, apr_pool_t *p)
{
    mg_store_instance *inst = apr_pcalloc(p, sizeof(*inst));
    const char *word;

    inst->capacity = SHM_DEFAULT_CAPACITY;
    while (*(word = ap_getword_conf(ptemp, &args))) {
        if (!strncasecmp(word, "capacity=", 9)) {
            char *end;
            apr_int64_t n = apr_strtoi64(word + 9, &end, 10);
            if (*end || n < MG_TABLE_WAYS || n > SHM_MAX_CAPACITY) {
                return apr_psprintf(p, "capacity must be a number of "
                                    "counters from %d to %u, not '%s'",
                                    MG_TABLE_WAYS, SHM_MAX_CAPACITY,
                                    word + 9);
            }
            inst->capacity = (apr_uint32_t)n;
        }
        else {
            return apr_psprintf(p, "unknown argument '%s' (known: "
                                "capacity=N)", word);
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

    kept = ap_retained_data_get(SHM_RETAINED_KEY);
    if (!kept) {
        kept = ap_retained_data_create(SHM_RETAINED_KEY, sizeof(*kept));
    }
    if (kept->shm && kept->capacity != capacity) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, MGLOGNO(00101)
                     "shm store: capacity changed from %u to %u counters, "
                     "starting with empty counters", kept->capacity, capacity);
        apr_shm_destroy(kept->shm);
        kept->shm = NULL;
    }
    inst->bytes = mg_table_bytes(capacity);
    if (!kept->shm) {
        rv = apr_shm_create(&kept->shm, inst->bytes, NULL, pproc);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, MGLOGNO(00102)
                         "shm store: cannot create %" APR_SIZE_T_FMT
                         " bytes of shared memory", inst->bytes);
            return rv;
        }
        mg_table_format(apr_shm_baseaddr_get(kept->shm), capacity);
        kept->capacity = capacity;
    }
    if (!mg_table_attach(&inst->table, apr_shm_baseaddr_get(kept->shm),
                         apr_shm_size_get(kept->shm))) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, MGLOGNO(00103)
                     "shm store: shared memory does not hold a counter "
                     "table of this version");
        return APR_EGENERAL;
    }
    if (!kept->mutex) {
        rv = ap_global_mutex_create(&kept->mutex, NULL, MG_STORE_MUTEX_TYPE,
                                    NULL, s, pproc, 0);
        if (rv != APR_SUCCESS) {
            return rv;
        }
    }
    inst->mutex = kept->mutex;
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, MGLOGNO(00104)
                 "shm store: %u counters in %" APR_SIZE_T_FMT " bytes "
                 "(%" APR_SIZE_T_FMT " bytes per counter)", capacity,
                 inst->bytes, sizeof(mg_table_entry));
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
                               const mg_layer *layers, int n, apr_time_t now,
                               mg_decision *d)
{
    apr_status_t rv;

    if (!inst->table.hdr) {
        return APR_EINIT;
    }
    if ((rv = apr_global_mutex_lock(inst->mutex)) != APR_SUCCESS) {
        return rv;
    }
    mg_table_decide(&inst->table, layers, n, now, d);
    return apr_global_mutex_unlock(inst->mutex);
}

static void shm_info(mg_store_instance *inst, mg_store_info *info)
{
    memset(info, 0, sizeof(*info));
    if (!inst->table.hdr) {
        return;
    }
    info->capacity = (apr_uint64_t)inst->table.hdr->nsets * MG_TABLE_WAYS;
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
