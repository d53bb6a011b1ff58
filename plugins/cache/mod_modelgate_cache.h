/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_cache.h -- shared by the cache plugin's two files: the
 * configuration (mod_modelgate_cache_config.c) and the request path
 * (mod_modelgate_cache.c).
 */
#ifndef MOD_MODELGATE_CACHE_H
#define MOD_MODELGATE_CACHE_H

#include <apr_strings.h>
#include <apr_lib.h>
#include <apr_global_mutex.h>
#include <apr_atomic.h>
#include <apr_shm.h>
#include <httpd.h>
#include <http_config.h>
#include <http_core.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_request.h>
#include <ap_provider.h>
#include <ap_socache.h>
#include <util_mutex.h>
#include <util_filter.h>
#include "mod_modelgate.h"
#include "mg_cache_key.h"

extern module AP_MODULE_DECLARE_DATA modelgate_cache_module;
APLOG_USE_MODULE(modelgate_cache);

/* Log tags owned by this plugin: MGC00001 and up. */
#define MGCLOGNO(n) "MGC" #n ": "

#define MG_CACHE_HANDLER      "modelgate-cache"
#define MG_CACHE_STATUS_HANDLER "modelgate-cache-status"
#define MG_CACHE_FILTER       "MODELGATE_CACHE_STORE"
#define MG_CACHE_MUTEX_TYPE   "modelgate-cache"
#define MG_CACHE_NAMESPACE    "modelgate-cache"
#define MG_CACHE_UNSET        (-1)
/** ModelGateCacheTTL's default, seconds. */
#define MG_CACHE_TTL_DEFAULT  300
/** ... and its largest value: a day. */
#define MG_CACHE_TTL_MAX      86400
/** ModelGateCacheStaleIfError's largest value: a day. */
#define MG_CACHE_STALE_MAX    86400
/** ModelGateCacheMaxObject's default: well inside what shmcb's default
 *  size holds (512000 bytes: 8 subcaches of about 63 KB with this
 *  plugin's hints; one answer must fit in one subcache). */
#define MG_CACHE_MAX_OBJECT_DEFAULT (32 * 1024)
/** ... and its largest value. */
#define MG_CACHE_MAX_OBJECT_MAX (16 * 1024 * 1024)
/** Longest Content-Type kept with an answer. */
#define MG_CACHE_CTYPE_MAX    255
/** First bytes of an entry: its layout's version. */
#define MG_CACHE_MAGIC        0x4d474331u   /* "MGC1" */

typedef enum {
    MG_CACHE_SCOPE_TENANT = 0,
    MG_CACHE_SCOPE_KEY,
    MG_CACHE_SCOPE_GLOBAL
} mg_cache_scope;

/** The scopes' names, by mg_cache_scope. */
extern const char *const mg_cache_scope_names[];

/** The cache: one per server configuration (ModelGateCache is global). */
typedef struct cache_server_conf {
    const char *spec;                 /**< as written: "shmcb:/path(N)" */
    const ap_socache_provider_t *provider;
    ap_socache_instance_t *inst;
    apr_size_t max_object;            /**< 0: unset (the default) */
} cache_server_conf;

typedef struct cache_dir_conf {
    int cacheable;                    /**< MG_CACHE_UNSET, 0 or 1 */
    int ttl;                          /**< seconds; MG_CACHE_UNSET: default */
    int scope;                        /**< mg_cache_scope; MG_CACHE_UNSET:
                                           tenant */
    int stale;                        /**< stale-if-error grace, seconds;
                                           MG_CACHE_UNSET: 0 (off) */
} cache_dir_conf;

/** The cache's statistics: one set for every process of this generation
 *  (shared memory, atomic additions: exact sums), made anew on a restart
 *  as shmcb's memory is. */
typedef struct mg_cache_stats {
    volatile apr_uint64_t lookups;      /**< socache retrieves of answers */
    volatile apr_uint64_t hits;         /**< ... that answered (stale too) */
    volatile apr_uint64_t stale_hits;   /**< ... with an expired answer */
    volatile apr_uint64_t misses;       /**< ... that did not */
    volatile apr_uint64_t stores;       /**< answers the socache took */
    volatile apr_uint64_t store_failures; /**< ... and refused */
    volatile apr_uint64_t bytes_stored; /**< answer bytes it took */
    volatile apr_uint64_t purges;       /**< purges done here */
} mg_cache_stats;

/** What one request's lookup found, for the handler or the store. */
typedef struct cache_request {
    unsigned char key[MG_CACHE_KEY_LEN];
    int ttl;
    int stale;                        /**< grace kept past the TTL, s */
    /* a hit */
    const char *ctype;
    const char *body;
    apr_size_t body_len;
    apr_int64_t age, left;            /**< seconds; left < 0: stale */
    /* a store */
    apr_bucket_brigade *held;         /**< the answer, held back */
    char *buf;                        /**< ... and its bytes, copied */
    apr_size_t len;
} cache_request;

/* mod_modelgate_cache_config.c */
extern const command_rec mg_cache_cmds[];
void *mg_cache_create_server_conf(apr_pool_t *p, server_rec *s);
void *mg_cache_merge_server_conf(apr_pool_t *p, void *basev, void *addv);
void *mg_cache_create_dir_conf(apr_pool_t *p, char *dir);
void *mg_cache_merge_dir_conf(apr_pool_t *p, void *basev, void *addv);
/** The main server's cache configuration (ModelGateCache is global). */
cache_server_conf *mg_cache_main_conf(server_rec *s);
/** The largest answer stored, in bytes. */
apr_size_t mg_cache_max_object(const cache_server_conf *sc);
/** Did some location say ModelGateCacheable On (this generation)? */
extern int mg_cache_cacheable_somewhere;

/* mod_modelgate_cache.c: what the operations share with the request path */
/** Take the socache's mutex when its provider needs one. */
apr_status_t mg_cache_lock(server_rec *s);
void mg_cache_unlock(void);
/** The statistics in shared memory (NULL without a cache). */
extern mg_cache_stats *mg_cache_stats_shared;
#define count(field, n) do { if (mg_cache_stats_shared) \
    apr_atomic_add64(&mg_cache_stats_shared->field, (n)); } while (0)
/** How long a purge generation is kept: past any answer's TTL and grace. */
#define GENERATION_KEPT apr_time_from_sec(MG_CACHE_TTL_MAX \
                                          + MG_CACHE_STALE_MAX + 3600)

/* mod_modelgate_cache_ops.c */
/** SetHandler modelgate-cache-status: statistics (GET), purge (DELETE). */
int mg_cache_status_handler(request_rec *r);

#endif /* MOD_MODELGATE_CACHE_H */
