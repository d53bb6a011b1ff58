/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_cache_lock.c -- identical requests in flight
 * (ModelGateCacheLock): while one cacheable request is being forwarded,
 * the identical ones (same cache key) wait for its answer and are answered
 * from the cache instead of each reaching the model server.
 *
 * As mod_cache's CacheLock (modules/cache/cache_util.c): a lock file per
 * key in a directory of its own, made with O_EXCL, so exactly one request
 * of every process and thread on this host becomes the one in flight.  It
 * removes its file once its answer is stored, or will not be (at the
 * latest when its pool goes: an error answer, an aborted client, a
 * mod_proxy failure).  The others poll for the file to go (a stat, a few
 * milliseconds apart, never a sleep in a filter), then look the key up;
 * past ModelGateCacheLockWait they forward.  A file older than the wait
 * was left by a child that died: the next request removes it and goes.
 *
 * Why files and not the socache: ap_socache has no atomic "add if
 * absent" (memcache and redis store over each other), and a lock in
 * shared memory would have to be released by a pool cleanup of a process
 * that may die; a file's age says when to stop believing it.  Per host:
 * gateways sharing a redis socache each forward one request.
 *
 * The wait happens in fixups, before the core counts the request in
 * flight at its upstream: a waiting request holds no slot it would not
 * hold anyway (its admission by the limit layers is already decided).
 */
#include <errno.h>
#include <unistd.h>
#include <unixd.h>
#include <apr_file_io.h>
#include <apr_file_info.h>
#include "mod_modelgate_cache.h"

/* The directory of this generation (NULL: the lock cannot work, requests
 * forward as without it). */
static const char *lock_dir;

/* First and longest pause between two looks at a lock file. */
#define POLL_FIRST apr_time_from_msec(2)
#define POLL_MAX   apr_time_from_msec(25)

apr_status_t mg_cache_lock_init(server_rec *s, apr_pool_t *pconf)
{
    const cache_server_conf *sc = mg_cache_main_conf(s);
    const char *dir = sc->lock_dir
                      ? sc->lock_dir
                      : ap_runtime_dir_relative(pconf,
                                                "modelgate-cache-lock");
    apr_status_t rv;

    lock_dir = NULL;
    rv = apr_dir_make_recursive(dir, APR_FPROT_OS_DEFAULT, pconf);
    if (rv != APR_SUCCESS && !APR_STATUS_IS_EEXIST(rv)) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s, MGCLOGNO(00013)
                     "ModelGateCacheLock: cannot make '%s': identical "
                     "requests are all forwarded", dir);
        return rv;
    }
    /* Made by root in the parent; the children, running as User, make and
     * remove the files. */
    if (geteuid() == 0
        && chown(dir, ap_unixd_config.user_id, (gid_t)-1) != 0) {
        rv = APR_FROM_OS_ERROR(errno);
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s, MGCLOGNO(00014)
                     "ModelGateCacheLock: cannot give '%s' to User: "
                     "identical requests are all forwarded", dir);
        return rv;
    }
    lock_dir = dir;
    return APR_SUCCESS;
}

static const char *file_of(request_rec *r, const cache_request *cr)
{
    char hex[2 * MG_CACHE_KEY_LEN + 1];
    int i;

    for (i = 0; i < MG_CACHE_KEY_LEN; i++) {
        apr_snprintf(hex + 2 * i, 3, "%02x", cr->key[i]);
    }
    return apr_pstrcat(r->pool, lock_dir, "/", hex, NULL);
}

static apr_status_t remove_lock(void *data)
{
    cache_request *cr = data;

    if (cr->lock_file) {
        apr_file_remove(cr->lock_file, NULL);
        cr->lock_file = NULL;
    }
    return APR_SUCCESS;
}

void mg_cache_lock_release(request_rec *r, cache_request *cr)
{
    if (cr->lock_file) {
        remove_lock(cr);
        apr_pool_cleanup_kill(r->pool, cr, remove_lock);
    }
}

/* Has the file at `path` been there longer than `wait_ms`? */
static int stale_lock(const char *path, int wait_ms, apr_pool_t *p)
{
    apr_finfo_t fi;

    return apr_stat(&fi, path, APR_FINFO_MTIME, p) == APR_SUCCESS
           && apr_time_now() - fi.mtime > apr_time_from_msec(wait_ms);
}

int mg_cache_lock_take(request_rec *r, const cache_server_conf *sc,
                       cache_request *cr, int wait_ms)
{
    const char *path;
    apr_file_t *f;
    apr_status_t rv;
    int tries;

    if (!lock_dir) {
        return 1;
    }
    path = file_of(r, cr);
    for (tries = 0; tries < 2; tries++) {
        rv = apr_file_open(&f, path, APR_FOPEN_WRITE | APR_FOPEN_CREATE
                           | APR_FOPEN_EXCL, APR_FPROT_UREAD
                           | APR_FPROT_UWRITE, r->pool);
        if (rv == APR_SUCCESS) {
            apr_file_close(f);
            cr->lock_file = path;
            apr_pool_cleanup_register(r->pool, cr, remove_lock,
                                      apr_pool_cleanup_null);
            return 1;
        }
        if (!APR_STATUS_IS_EEXIST(rv)) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, r, MGCLOGNO(00015)
                          "ModelGateCacheLock: cannot make '%s': forwarded "
                          "without it", path);
            return 1;
        }
        if (!stale_lock(path, wait_ms, r->pool)) {
            return 0;
        }
        /* Left by a child that died with it (or a request that outlived
         * the wait): nobody waits for it any more. */
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, MGCLOGNO(00016)
                      "ModelGateCacheLock: removed a lock older than %d ms",
                      wait_ms);
        apr_file_remove(path, r->pool);
    }
    return 1;
}

int mg_cache_lock_wait(request_rec *r, const cache_server_conf *sc,
                       cache_request *cr, int wait_ms)
{
    const char *path = file_of(r, cr);
    apr_time_t deadline = apr_time_now() + apr_time_from_msec(wait_ms);
    apr_interval_time_t pause = POLL_FIRST;
    apr_finfo_t fi;

    for (;;) {
        if (apr_stat(&fi, path, APR_FINFO_TYPE, r->pool) != APR_SUCCESS) {
            return 1;           /* gone: the answer is stored, or not */
        }
        if (r->connection->aborted || apr_time_now() >= deadline) {
            return 0;
        }
        apr_sleep(pause);
        pause = pause * 2 > POLL_MAX ? POLL_MAX : pause * 2;
    }
}
