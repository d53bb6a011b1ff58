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
/* Entry layout in the socache, host byte order (one host, or gateways of
 * one build sharing memcache/redis): magic, content-type length (u32),
 * stored-at and expiry (apr_time_t), the content type, the body (a JSON
 * answer, or a stream's bytes exactly as the client got them). */
#define MG_CACHE_ENTRY_HEAD   (4 + 4 + 8 + 8)
/** Slots of the statistics' table of stored answers (a power of 2). */
#define MG_CACHE_STORED_SLOTS 4096
/** The filter that puts a stale answer in place of an upstream's 5xx. */
#define MG_CACHE_STALE_FILTER "MODELGATE_CACHE_STALE"
/** ModelGateCacheLockWait's default, milliseconds. */
#define MG_CACHE_LOCK_WAIT_DEFAULT 5000
/** ... and its largest value: ten minutes (a long stream). */
#define MG_CACHE_LOCK_WAIT_MAX (600 * 1000)

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
    const char *lock_dir;             /**< ModelGateCacheLockPath; NULL:
                                           the default under the runtime
                                           directory */
    int httpd_mutex;                  /**< ModelGateCache ... lock=httpd:
                                           serialise a provider that needs
                                           it with httpd's `Mutex` instead
                                           of the robust futex in shared
                                           memory (mg_shared_lock.h) */
} cache_server_conf;

typedef struct cache_dir_conf {
    int cacheable;                    /**< MG_CACHE_UNSET, 0 or 1 */
    int ttl;                          /**< seconds; MG_CACHE_UNSET: default */
    int scope;                        /**< mg_cache_scope; MG_CACHE_UNSET:
                                           tenant */
    int stale;                        /**< stale-if-error grace, seconds;
                                           MG_CACHE_UNSET: 0 (off) */
    int lock;                         /**< ModelGateCacheLock: identical
                                           requests wait for the one in
                                           flight; MG_CACHE_UNSET: off */
    int lock_wait;                    /**< ... for at most this many ms;
                                           MG_CACHE_UNSET: the default */
    int hit_cost;                     /**< ModelGateCacheHitCost: what a
                                           hit costs in request layers, 0
                                           or 1 request; MG_CACHE_UNSET: 0 */
    int admin;                        /**< ModelGateCacheAdmin: the status
                                           handler purges here (DELETE);
                                           server configuration only;
                                           MG_CACHE_UNSET: off */
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
    volatile apr_uint64_t evicted;      /**< lookups that found missing an
                                             answer stored here before its
                                             TTL was over (see below) */
    /* The answers stored on this host, to tell an eviction from a plain
     * miss: the socache providers evict silently (shmcb scrolls its
     * oldest entries out when a subcache is full; memcache and redis
     * evict and lose as they please).  Direct-mapped by key, one 64-bit
     * word a slot (read and written whole, atomically, by any process):
     * 40 bits of the key and the second its TTL ends, mod 2^24.  A slot
     * taken by a later store forgets the earlier one: an eviction may go
     * uncounted, never a plain miss counted. */
    volatile apr_uint64_t stored[MG_CACHE_STORED_SLOTS];
} mg_cache_stats;

/** An answer was stored under `key` until `expiry` (its TTL's end). */
void mg_cache_note_stored(const unsigned char *key, apr_time_t expiry);
/** The socache did not find `key`: an eviction when this host stored it
 *  and its TTL is not over (then counted in `evicted`, once). */
void mg_cache_note_missing(const unsigned char *key, apr_time_t now);

/** What one request's lookup found, for the handler or the store. */
typedef struct cache_request {
    unsigned char key[MG_CACHE_KEY_LEN];
    int ttl;
    int stale;                        /**< grace kept past the TTL, s */
    int stream;                       /**< the request asked for a stream:
                                           its answer passes on as it
                                           comes, copied aside */
    int forwarded;                    /**< a miss on its way upstream */
    int fwd_status;                   /**< the upstream's 5xx a stale
                                           answer replaced */
    int error_response;               /**< ... in httpd's own error
                                           response (mod_proxy failed) */
    const char *lock_file;            /**< held while this request is the
                                           one in flight for its key */
    /* a hit */
    const char *ctype;
    const char *body;
    apr_size_t body_len;
    apr_int64_t age, left;            /**< seconds; left < 0: stale */
    /* a store */
    apr_bucket_brigade *held;         /**< the answer, held back */
    char *buf;                        /**< ... and its bytes, copied */
    apr_size_t len;
    apr_size_t cap;                   /**< buf's size */
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
/** ... and ModelGateCacheLock On? */
extern int mg_cache_lock_somewhere;

/* mod_modelgate_cache.c: what the operations share with the request path */
/** The socache's retrieve and store under the id of a key (mg_cache_id),
 *  the lock held by the caller. */
apr_status_t mg_cache_retrieve(server_rec *s, const cache_server_conf *sc,
                               const unsigned char *key, unsigned char *buf,
                               unsigned int *len, apr_pool_t *p);
apr_status_t mg_cache_store(server_rec *s, const cache_server_conf *sc,
                            const unsigned char *key, apr_time_t expiry,
                            unsigned char *data, unsigned int len,
                            apr_pool_t *p);
/** Take the socache's lock when its provider needs one (shmcb). */
apr_status_t mg_cache_lock(server_rec *s);
void mg_cache_unlock(void);
/** The statistics in shared memory (NULL without a cache). */
extern mg_cache_stats *mg_cache_stats_shared;
#define count(field, n) do { if (mg_cache_stats_shared) \
    apr_atomic_add64(&mg_cache_stats_shared->field, (n)); } while (0)
/** How long a purge generation is kept: past any answer's TTL and grace. */
#define GENERATION_KEPT apr_time_from_sec(MG_CACHE_TTL_MAX \
                                          + MG_CACHE_STALE_MAX + 3600)

/* mod_modelgate_cache.c: reading the request, shared with the answers */
/** A token list's member `name`: its value after '=' (or "" without
 *  one), or NULL when the list does not have it. */
const char *mg_cache_directive(apr_pool_t *p, const char *list,
                               const char *name);
/** Note the cache's outcome for the logs and, when `status` is not NULL,
 *  set Cache-Status. */
void mg_cache_outcome(request_rec *r, const char *note, const char *status);

/* mod_modelgate_cache_answer.c */
/** Look cr->key up; 1 when a usable entry was found (cr filled).  With
 *  `stale_ok`, an entry up to cr->stale seconds past its TTL is usable
 *  too (cr->left then negative).  `max_age` < 0: any age. */
int mg_cache_lookup(request_rec *r, const cache_server_conf *sc,
                    cache_request *cr, apr_int64_t max_age, int stale_ok);
/** The handler of a hit: sends the answer mg_cache_lookup found. */
int mg_cache_handler(request_rec *r);
/** MG_CACHE_FILTER: a miss's answer, stored at its end. */
apr_status_t mg_cache_store_filter(ap_filter_t *f, apr_bucket_brigade *bb);
/** insert_error_filter: a stale answer in place of mod_proxy's failure. */
void mg_cache_insert_error_filter(request_rec *r);
/** MG_CACHE_STALE_FILTER: an upstream's 5xx replaced by a stale answer. */
apr_status_t mg_cache_stale_filter(ap_filter_t *f, apr_bucket_brigade *bb);

/* mod_modelgate_cache_lock.c: identical requests in flight */
/** Where the lock files go, made at start-up (post_config). */
apr_status_t mg_cache_lock_init(server_rec *s, apr_pool_t *pconf);
/** Become the request in flight for cr->key (1), or find another one
 *  already is (0: then wait with mg_cache_lock_wait).  Any failure of the
 *  lock directory is a 1: the request forwards, as without the lock. */
int mg_cache_lock_take(request_rec *r, const cache_server_conf *sc,
                       cache_request *cr, int wait_ms);
/** Wait up to `wait_ms` for the request in flight for cr->key to end;
 *  1 when it ended (its answer may be in the cache), 0 past the bound. */
int mg_cache_lock_wait(request_rec *r, const cache_server_conf *sc,
                       cache_request *cr, int wait_ms);
/** Let the waiting requests go: the answer is stored, or will not be. */
void mg_cache_lock_release(request_rec *r, cache_request *cr);

/* mod_modelgate_cache_ops.c */
/** SetHandler modelgate-cache-status: statistics (GET), purge (DELETE). */
int mg_cache_status_handler(request_rec *r);

struct mg_metrics_out;
/** mg_metrics_scrape listener: the statistics in the core's exposition
 *  (mod_modelgate_cache_metrics.c). */
void mg_cache_metrics_scrape(request_rec *r, struct mg_metrics_out *o);

#endif /* MOD_MODELGATE_CACHE_H */
