/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_jwt.h -- shared by the jwt plugin's glue files: the
 * provider and its cache (mod_modelgate_jwt.c), the directives
 * (mod_modelgate_jwt_config.c), the revoked list and the keys from a URL
 * (mod_modelgate_jwt_keys.c).
 */
#ifndef MOD_MODELGATE_JWT_H
#define MOD_MODELGATE_JWT_H

#include <string.h>
#include <apr_strings.h>
#include <apr_file_io.h>
#include <apr_thread_mutex.h>
#include <apr_thread_rwlock.h>
#include <apr_atomic.h>
#include <apr_shm.h>
#include <apr_thread_cond.h>
#include <apr_thread_proc.h>
#ifdef MG_HAVE_CURL
#include <curl/curl.h>
#endif
#include <httpd.h>
#include <http_config.h>
#include <http_log.h>
#include <ap_provider.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include "mod_modelgate.h"
#include "mg_identity.h"
#include "mg_error.h"
#include "mg_table.h"
#include "mg_jwt.h"

extern module AP_MODULE_DECLARE_DATA modelgate_jwt_module;
APLOG_USE_MODULE(modelgate_jwt);

#define MGJ_CACHE_DEFAULT 1024
#define MGJ_CACHE_TEXT 512      /* subject, tenant, tier, scopes */
#define MGJ_FILE_MAX (1024 * 1024)
#define MGJ_SECRET_MIN 32       /* RFC 7518 3.2: at least the hash size */

typedef struct mgj_slot {
    unsigned char digest[32];
    apr_int64_t until;          /* exp + leeway, seconds; 0: empty */
    const mg_jwt_issuer *issuer;
    apr_size_t len;
    char text[MGJ_CACHE_TEXT];  /* subject\0tenant\0tier\0jti\0scope\0...\0 */
} mgj_slot;

/* What the processes share about the revoked list: the admin handler
 * (SetHandler modelgate-jwt-admin) counts up `gen` after it changed the
 * file or was asked to reload it, and every process re-reads the file on
 * its next request that sees a `gen` it has not read. */
typedef struct mgj_revoked_shared {
    apr_uint32_t gen;
} mgj_revoked_shared;

/* The revoked-token list (ModelGateJWTRevoked).  Read at start, so a bad
 * path stops the configuration; then each process looks at the file's
 * stat at most once a second (the first request of a second, seeing the
 * atomic `checked` behind, stats it under the write lock) and re-reads it
 * when its mtime, size or inode changed, or at once when an admin call
 * counted up the shared generation.  Requests never
 * read the file, and a change reaches every process within a second of
 * it (an admin call's by the next request), whichever of them had the
 * token cached. */
typedef struct mgj_denylist {
    const char *path;              /* NULL: no list */
    apr_hash_t *jtis;              /* the current set */
    apr_time_t mtime;              /* what the set was read from */
    apr_off_t size;
    apr_ino_t inode;
    /* per child */
    apr_pool_t *pool;              /* the set's, when re-read; else pconf's */
    apr_thread_rwlock_t *lock;     /* readers: lookups; writer: the swap */
    apr_uint32_t checked;          /* second of the last stat (atomic) */
    int failing;                   /* last re-read failed (logged once) */
    mgj_revoked_shared *sh;        /* set in post_config */
    apr_uint32_t gen;              /* sh->gen last read (atomic) */
} mgj_denylist;

/* A JWKS fetched from a URL (jwks_url=).  One fetch at a time for all
 * processes: the time a fetch last started is in shared memory and a
 * fetch starts only by winning a compare-and-swap on it, at most once per
 * min_interval (refresh on an unknown kid) or refresh (the schedule)
 * seconds, so forged kids cannot make the gateway flood the identity
 * provider.  Each child's fetcher thread does the fetching (libcurl, with
 * a timeout); a set that parses and holds a key is published in shared
 * memory (a seqlock: `seq` odd while written) and every process adopts a
 * new generation on its next request.  A failed fetch publishes nothing:
 * the last good set stays in use. */
#define MGJ_JWKS_MAX (64 * 1024)

typedef struct mgj_shared {
    apr_uint32_t seq;              /* seqlock: odd while `body` is written */
    apr_uint32_t gen;              /* sets published */
    apr_uint32_t last_fetch;       /* when the last fetch started (mgj_tick) */
    apr_uint32_t inflight;         /* a fetch is under way */
    apr_uint32_t fetches;          /* fetches started */
    apr_uint32_t ended;            /* fetches ended (waiters watch it) */
    apr_uint32_t len;
    char body[MGJ_JWKS_MAX];
} mgj_shared;

/* Tenths of a second since the module was loaded, never 0: 32 bits last
 * 13 years, and an interval of S seconds is S seconds, not S - 1 as it
 * would be with whole seconds. */
extern apr_time_t mgj_epoch;

static APR_INLINE apr_uint32_t mgj_tick(void)
{
    return (apr_uint32_t)((apr_time_now() - mgj_epoch) / 100000) + 1;
}

typedef struct mgj_remote {
    mg_jwt_issuer *is;
    const char *url;
    int refresh;                   /* seconds between scheduled fetches */
    int min_interval;              /* seconds between any two fetches */
    int timeout_ms;                /* a fetch's limit; a request's wait */
    const char *ca_file;           /* CAs for https (jwks_ca=), or NULL:
                                      the system's */
    mgj_shared *sh;                /* set in post_config */
    /* per child */
    apr_uint32_t gen;              /* the generation adopted */
    apr_pool_t *pool;              /* the adopted set's (unmanaged) */
    int failing;                   /* fetcher: last fetch failed */
} mgj_remote;

typedef struct mgj_server_conf {
    apr_array_header_t *issuers;   /* mg_jwt_issuer * */
    int cache_size;                /* -1: default */
    mgj_denylist revoked;
    apr_array_header_t *remotes;   /* mgj_remote * */
    /* per child, with remotes */
    server_rec *server;
    apr_thread_rwlock_t *keys_lock;   /* readers: verify; writer: adopt */
    apr_thread_mutex_t *adopt_lock;
    apr_thread_mutex_t *fetch_lock;   /* guards wanted, stop */
    apr_thread_cond_t *fetch_cond;
    apr_thread_t *fetcher;
    int wanted, stop;
    /* per child */
    mgj_slot *slots;
    apr_thread_mutex_t *lock;
} mgj_server_conf;

/* Per directory, neither in .htaccess: ModelGateJWTForward (sending the
 * caller's token on is the server operator's choice of a trusted
 * upstream) and ModelGateJWTAdmin (an .htaccess may SetHandler, so the
 * handler name alone must not open the revoked list to its author). */
typedef struct mgj_dir_conf {
    int forward;                   /* -1: unset (off) */
    int admin;                     /* -1: unset (off) */
} mgj_dir_conf;

static APR_INLINE const mgj_dir_conf *dir_conf_of(request_rec *r)
{
    return ap_get_module_config(r->per_dir_config, &modelgate_jwt_module);
}

static APR_INLINE mgj_server_conf *conf_of(server_rec *s)
{
    return ap_get_module_config(s->module_config, &modelgate_jwt_module);
}


/* mod_modelgate_jwt_config.c */
extern const command_rec mgj_cmds[];
void *mgj_create_server_conf(apr_pool_t *p, server_rec *s);
void *mgj_merge_server_conf(apr_pool_t *p, void *base, void *add);
void *mgj_create_dir_conf(apr_pool_t *p, char *dir);
void *mgj_merge_dir_conf(apr_pool_t *p, void *base, void *add);
const char *mgj_load_file(apr_pool_t *p, apr_pool_t *ptemp,
                             const char *path, char **text, apr_size_t *len,
                             apr_finfo_t *fi);

/* mod_modelgate_jwt_keys.c */
int mgj_revoked(server_rec *s, mgj_denylist *d, const char *jti,
                   apr_int64_t now);
apr_status_t mgj_revoked_cleanup(void *data);
unsigned mgj_revoked_size(server_rec *s, mgj_denylist *d,
                          apr_int64_t now);
void mgj_remote_adopt(mgj_server_conf *c);
int mgj_remote_wait(mgj_server_conf *c);
void *APR_THREAD_FUNC mgj_fetcher_main(apr_thread_t *t, void *arg);
apr_status_t mgj_fetcher_stop(void *arg);

/* mod_modelgate_jwt_admin.c */
#define MGJ_ADMIN_HANDLER "modelgate-jwt-admin"
int mgj_admin_handler(request_rec *r);

#endif /* MOD_MODELGATE_JWT_H */
