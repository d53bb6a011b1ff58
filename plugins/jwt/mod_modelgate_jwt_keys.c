/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_jwt_keys.c -- what changes while the gateway runs: the
 * revoked-token list, re-read within a second of a change, and the keys
 * fetched from a JWKS URL in the background and shared by all processes
 * (see mod_modelgate_jwt.c).
 */
#include "mod_modelgate_jwt.h"

/* ---- the revoked-token list --------------------------------------------- */

/* Re-read the list if the file changed (at most one stat a second per
 * process), or at once if an admin call counted up the shared generation
 * (one atomic read per request with a jti).  The check runs under the
 * write lock and the lookups under the read lock, so a request of a
 * second whose check is under way waits for it (a few microseconds)
 * rather than using the list of the second before.  A file that cannot be
 * read keeps the last good list (a deleted or half-copied file must not
 * un-revoke every token). */
static void revoked_refresh(server_rec *s, mgj_denylist *d, apr_int64_t now)
{
    apr_uint32_t sec = (apr_uint32_t)now;
    apr_uint32_t gen = d->sh ? apr_atomic_read32(&d->sh->gen) : 0;
    apr_pool_t *np;
    apr_finfo_t fi;
    apr_hash_t *jtis;
    const char *err;
    char *text;
    apr_size_t len;

    if (apr_atomic_read32(&d->checked) == sec
        && apr_atomic_read32(&d->gen) == gen) {
        return;
    }
    apr_thread_rwlock_wrlock(d->lock);
    if (d->checked == sec && d->gen == gen) {
        apr_thread_rwlock_unlock(d->lock);
        return;                 /* another thread checked meanwhile */
    }
    apr_atomic_set32(&d->checked, sec);
    /* an admin call's generation is re-read even when the stat shows no
     * change: an edit in place within the mtime's resolution, of the
     * same size, is one the stat cannot see */
    if (d->gen == gen
        && apr_stat(&fi, d->path, APR_FINFO_SIZE | APR_FINFO_MTIME
                    | APR_FINFO_INODE, NULL) == APR_SUCCESS
        && fi.mtime == d->mtime && fi.size == d->size
        && fi.inode == d->inode) {
        apr_thread_rwlock_unlock(d->lock);
        return;
    }
    /* set before the read: a file that fails is retried on its next
     * change or call, not on every request */
    apr_atomic_set32(&d->gen, gen);
    /* an unmanaged pool: creating a subpool of pchild from a request
     * thread would race with the MPM's own use of it */
    if (apr_pool_create_unmanaged_ex(&np, NULL, NULL) != APR_SUCCESS) {
        apr_thread_rwlock_unlock(d->lock);
        return;
    }
    if ((err = mgj_load_file(np, np, d->path, &text, &len, &fi)) != NULL
        || (err = mg_jwt_denylist_parse(np, text, len, &jtis)) != NULL) {
        if (!d->failing) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "MGJ00003: "
                         "ModelGateJWTRevoked: %s; the last list read (%u "
                         "token ids) stays in force", err,
                         apr_hash_count(d->jtis));
        }
        d->failing = 1;
        apr_thread_rwlock_unlock(d->lock);
        apr_pool_destroy(np);
        return;
    }
    if (d->pool) {
        apr_pool_destroy(d->pool);   /* no reader holds it: the wrlock */
    }
    d->pool = np;
    d->jtis = jtis;
    d->mtime = fi.mtime;
    d->size = fi.size;
    d->inode = fi.inode;
    d->failing = 0;
    apr_thread_rwlock_unlock(d->lock);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, "MGJ00004: "
                 "ModelGateJWTRevoked: %s re-read, %u token ids",
                 d->path, apr_hash_count(jtis));
}

int mgj_revoked(server_rec *s, mgj_denylist *d, const char *jti,
                   apr_int64_t now)
{
    int has;

    if (!d->path || !jti) {
        return 0;
    }
    if (d->lock) {
        revoked_refresh(s, d, now);
        apr_thread_rwlock_rdlock(d->lock);
    }
    has = mg_jwt_denylist_has(d->jtis, jti);
    if (d->lock) {
        apr_thread_rwlock_unlock(d->lock);
    }
    return has;
}

/* How many token ids the list holds now (the admin handler's answer). */
unsigned mgj_revoked_size(server_rec *s, mgj_denylist *d, apr_int64_t now)
{
    unsigned n;

    if (!d->lock) {
        return apr_hash_count(d->jtis);
    }
    revoked_refresh(s, d, now);
    apr_thread_rwlock_rdlock(d->lock);
    n = apr_hash_count(d->jtis);
    apr_thread_rwlock_unlock(d->lock);
    return n;
}

apr_status_t mgj_revoked_cleanup(void *data)
{
    mgj_denylist *d = data;

    if (d->pool) {
        apr_pool_destroy(d->pool);
        d->pool = NULL;
    }
    return APR_SUCCESS;
}

/* ---- keys from a URL -------------------------------------------------- */

#ifdef MG_HAVE_CURL
typedef struct mgj_body {
    char *buf;
    apr_size_t len;
} mgj_body;

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    mgj_body *b = arg;

    if (b->len + size * n > MGJ_JWKS_MAX) {
        return 0;               /* too large: curl fails the transfer */
    }
    memcpy(b->buf + b->len, data, size * n);
    b->len += size * n;
    return size * n;
}

/* GET the URL into b (MGJ_JWKS_MAX bytes); NULL or what went wrong. */
static const char *fetch_url(apr_pool_t *p, const mgj_remote *rm,
                             mgj_body *b)
{
    CURL *h = curl_easy_init();
    CURLcode rc;
    long code = 0;

    if (!h) {
        return "curl_easy_init failed";
    }
    curl_easy_setopt(h, CURLOPT_URL, rm->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);       /* threads */
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)rm->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)rm->timeout_ms);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    /* libcurl's defaults, said: keys from a server not proven to be the
     * identity provider's are no keys */
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (rm->ca_file) {
        curl_easy_setopt(h, CURLOPT_CAINFO, rm->ca_file);
    }
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "mod_modelgate-jwt");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK) {
        return apr_pstrcat(p, "fetch failed: ", curl_easy_strerror(rc),
                           NULL);
    }
    if (code != 200) {
        return apr_psprintf(p, "the server answered HTTP %ld", code);
    }
    return NULL;
}

/* Fetch if due and if this process wins the right to (see mgj_shared). */
static void remote_fetch(server_rec *s, mgj_remote *rm, int wanted)
{
    mgj_shared *sh = rm->sh;
    apr_uint32_t now = mgj_tick();
    apr_uint32_t last = apr_atomic_read32(&sh->last_fetch), seq;
    apr_uint32_t gap = now - last;
    apr_array_header_t *keys;
    const char *err;
    apr_pool_t *p;
    mgj_body b;

    if (!(last == 0 || gap >= (apr_uint32_t)rm->refresh * 10
          || ((wanted || apr_atomic_read32(&sh->gen) == 0)
              && gap >= (apr_uint32_t)rm->min_interval * 10))) {
        return;
    }
    if (apr_atomic_cas32(&sh->last_fetch, now, last) != last) {
        return;                 /* another process fetches */
    }
    if (apr_pool_create_unmanaged_ex(&p, NULL, NULL) != APR_SUCCESS) {
        return;
    }
    apr_atomic_set32(&sh->inflight, 1);
    apr_atomic_inc32(&sh->fetches);
    b.buf = apr_palloc(p, MGJ_JWKS_MAX);
    b.len = 0;
    if ((err = fetch_url(p, rm, &b)) == NULL
        && (err = mg_jwt_jwks_parse(p, b.buf, b.len, &keys)) == NULL
        && keys->nelts == 0) {
        err = "it holds no signature key";
    }
    if (err) {
        if (!rm->failing) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "MGJ00005: JWKS of "
                         "issuer %s: %s; the last good keys stay in use",
                         rm->is->iss, err);
        }
        rm->failing = 1;
    }
    else {
        do {
            seq = apr_atomic_read32(&sh->seq);
        } while ((seq & 1) || apr_atomic_cas32(&sh->seq, seq + 1, seq)
                               != seq);
        memcpy(sh->body, b.buf, b.len);
        sh->len = (apr_uint32_t)b.len;
        apr_atomic_inc32(&sh->gen);
        apr_atomic_inc32(&sh->seq);
        if (rm->failing) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, "MGJ00006: JWKS of "
                         "issuer %s fetched again", rm->is->iss);
        }
        rm->failing = 0;
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, "MGJ00007: JWKS of issuer "
                     "%s fetched, %d keys", rm->is->iss, keys->nelts);
    }
    apr_pool_destroy(p);
    /* in this order: a waiter that sees the end counted sees no fetch in
     * flight either (else it would wait out its timeout for a fetch that
     * is over) */
    apr_atomic_set32(&sh->inflight, 0);
    apr_atomic_inc32(&sh->ended);
}

void *APR_THREAD_FUNC mgj_fetcher_main(apr_thread_t *t, void *arg)
{
    mgj_server_conf *c = arg;
    int i, wanted;

    apr_thread_mutex_lock(c->fetch_lock);
    while (!c->stop) {
        wanted = c->wanted;
        c->wanted = 0;
        apr_thread_mutex_unlock(c->fetch_lock);
        for (i = 0; i < c->remotes->nelts; i++) {
            remote_fetch(c->server, APR_ARRAY_IDX(c->remotes, i,
                                                  mgj_remote *), wanted);
        }
        apr_thread_mutex_lock(c->fetch_lock);
        if (!c->stop && !c->wanted) {
            /* once a second for the schedule, at once when asked */
            apr_thread_cond_timedwait(c->fetch_cond, c->fetch_lock,
                                      apr_time_from_sec(1));
        }
    }
    apr_thread_mutex_unlock(c->fetch_lock);
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

apr_status_t mgj_fetcher_stop(void *arg)
{
    mgj_server_conf *c = arg;
    apr_status_t rv;
    int i;

    apr_thread_mutex_lock(c->fetch_lock);
    c->stop = 1;
    apr_thread_cond_signal(c->fetch_cond);
    apr_thread_mutex_unlock(c->fetch_lock);
    apr_thread_join(&rv, c->fetcher);
    for (i = 0; i < c->remotes->nelts; i++) {
        mgj_remote *rm = APR_ARRAY_IDX(c->remotes, i, mgj_remote *);
        if (rm->pool) {
            apr_pool_destroy(rm->pool);
            rm->pool = NULL;
        }
    }
    return APR_SUCCESS;
}
#endif /* MG_HAVE_CURL */

/* Take up a set another process (or this one) published.  One thread
 * parses it; the others of the process wait for it (a rare, short wait)
 * rather than verify with the keys of the generation before, which would
 * refuse a token of a just-rotated key. */
void mgj_remote_adopt(mgj_server_conf *c)
{
    int i;

    for (i = 0; i < c->remotes->nelts; i++) {
        mgj_remote *rm = APR_ARRAY_IDX(c->remotes, i, mgj_remote *);
        mgj_shared *sh = rm->sh;
        apr_uint32_t s1, s2, gen, len;
        apr_array_header_t *keys;
        apr_pool_t *np, *old;
        char *buf;

        if (!sh || apr_atomic_read32(&sh->gen) == rm->gen) {
            continue;
        }
        apr_thread_mutex_lock(c->adopt_lock);
        if (apr_atomic_read32(&sh->gen) == rm->gen) {
            apr_thread_mutex_unlock(c->adopt_lock);
            continue;
        }
        if (apr_pool_create_unmanaged_ex(&np, NULL, NULL) != APR_SUCCESS) {
            apr_thread_mutex_unlock(c->adopt_lock);
            continue;
        }
        buf = apr_palloc(np, MGJ_JWKS_MAX);
        do {
            while ((s1 = apr_atomic_read32(&sh->seq)) & 1) {
                apr_thread_yield();
            }
            gen = apr_atomic_read32(&sh->gen);
            len = sh->len;
            if (len > MGJ_JWKS_MAX) {
                len = 0;
            }
            memcpy(buf, sh->body, len);
            s2 = apr_atomic_read32(&sh->seq);
        } while (s1 != s2);
        if (mg_jwt_jwks_parse(np, buf, len, &keys) == NULL
            && keys->nelts > 0) {
            apr_thread_rwlock_wrlock(c->keys_lock);
            old = rm->pool;
            rm->pool = np;
            rm->is->keys = keys;
            apr_thread_rwlock_unlock(c->keys_lock);
            if (old) {
                apr_pool_destroy(old);
            }
        }
        else {
            apr_pool_destroy(np);   /* the fetcher checked it: not reached */
        }
        rm->gen = gen;
        apr_thread_mutex_unlock(c->adopt_lock);
    }
}

/* A token's kid is not among the keys: ask for a fetch and wait for a new
 * set, at most the timeout -- and not at all when no fetch may start
 * (the rate limit) and none is under way.  1: a new set was adopted.
 * The wait ends on the shared counts, not on this process's own
 * generation: another thread of the process may adopt the new set first,
 * and a fetch under way when the wait began ends without a start of its
 * own to be seen. */
int mgj_remote_wait(mgj_server_conf *c)
{
#ifdef MG_HAVE_CURL
    apr_uint32_t now = mgj_tick();
    apr_time_t deadline = 0;
    apr_uint32_t gens = 0, ended = 0, g, e, busy;
    int i, can = 0;

    if (!c->fetcher) {
        return 0;
    }
    for (i = 0; i < c->remotes->nelts; i++) {
        mgj_remote *rm = APR_ARRAY_IDX(c->remotes, i, mgj_remote *);
        apr_uint32_t gen = apr_atomic_read32(&rm->sh->gen);

        if (gen != rm->gen) {
            /* a set came between this request's adopt and its miss */
            mgj_remote_adopt(c);
            return 1;
        }
        gens += gen;
        ended += apr_atomic_read32(&rm->sh->ended);
        /* none started yet: the first fetch of this shared memory is due
         * or just won, not yet marked in flight (a request right after a
         * start or a graceful restart, before a fetcher thread ran) */
        if (apr_atomic_read32(&rm->sh->fetches) == 0
            || apr_atomic_read32(&rm->sh->inflight)
            || now - apr_atomic_read32(&rm->sh->last_fetch)
               >= (apr_uint32_t)rm->min_interval * 10) {
            can = 1;
        }
        if (apr_time_from_msec(rm->timeout_ms) > deadline) {
            deadline = apr_time_from_msec(rm->timeout_ms);
        }
    }
    if (!can) {
        return 0;
    }
    apr_thread_mutex_lock(c->fetch_lock);
    c->wanted = 1;
    apr_thread_cond_signal(c->fetch_cond);
    apr_thread_mutex_unlock(c->fetch_lock);
    deadline += apr_time_now();
    while (apr_time_now() < deadline) {
        apr_sleep(apr_time_from_msec(20));
        g = e = busy = 0;
        for (i = 0; i < c->remotes->nelts; i++) {
            mgj_remote *rm = APR_ARRAY_IDX(c->remotes, i, mgj_remote *);
            g += apr_atomic_read32(&rm->sh->gen);
            e += apr_atomic_read32(&rm->sh->ended);
            busy |= apr_atomic_read32(&rm->sh->inflight);
        }
        if (g != gens) {
            mgj_remote_adopt(c);    /* or another thread already did */
            return 1;
        }
        if (e != ended && !busy) {
            return 0;           /* fetched, and nothing new (or failed) */
        }
    }
#endif
    return 0;
}
