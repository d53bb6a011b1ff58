/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_jwt.c -- the "jwt" identity provider (mg_identity.h):
 * `Authorization: Bearer <JWT>` verified against the configured issuers
 * (mg_jwt.c), its claims made into the caller the gateway limits.
 *
 *     ModelGateIdentity key jwt
 *     ModelGateJWTIssuer https://idp.example/ jwks=/etc/idp.jwks \
 *         algs=RS256,ES256 audience=modelgate tier=plan default_tier=free
 *
 * The core took the token from the request and removed the header before
 * asking: it reaches no upstream and no log.  Verified tokens are kept per
 * process (SHA-256 of the token -> the identity, until exp + leeway) in a
 * fixed number of slots, so a client repeating its token pays a digest
 * and a lookup, not a signature check.  Keys come from a JWKS file read at
 * start and/or a JWKS URL (libcurl) fetched in the background, shared by
 * all processes (see mgj_shared).
 * Tokens whose `jti` is in the ModelGateJWTRevoked file are refused, the
 * cached ones included; the file is re-read within a second of a change.
 */
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

module AP_MODULE_DECLARE_DATA modelgate_jwt_module;
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

/* The revoked-token list (ModelGateJWTRevoked).  Read at start, so a bad
 * path stops the configuration; then each process looks at the file's
 * stat at most once a second (the first request of a second, seeing the
 * atomic `checked` behind, stats it under the write lock) and re-reads it
 * when its mtime, size or inode changed.  Requests never
 * read the file, and a change reaches every process within a second of
 * it, whichever of them had the token cached. */
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
    apr_uint32_t fetches;          /* fetches started, for waiters */
    apr_uint32_t len;
    char body[MGJ_JWKS_MAX];
} mgj_shared;

/* Tenths of a second since the module was loaded, never 0: 32 bits last
 * 13 years, and an interval of S seconds is S seconds, not S - 1 as it
 * would be with whole seconds. */
static apr_time_t mgj_epoch;

static apr_uint32_t mgj_tick(void)
{
    return (apr_uint32_t)((apr_time_now() - mgj_epoch) / 100000) + 1;
}

typedef struct mgj_remote {
    mg_jwt_issuer *is;
    const char *url;
    int refresh;                   /* seconds between scheduled fetches */
    int min_interval;              /* seconds between any two fetches */
    int timeout_ms;                /* a fetch's limit; a request's wait */
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

static mgj_server_conf *conf_of(server_rec *s)
{
    return ap_get_module_config(s->module_config, &modelgate_jwt_module);
}

/* ---- configuration ------------------------------------------------------ */

static void *create_server_conf(apr_pool_t *p, server_rec *s)
{
    mgj_server_conf *c = apr_pcalloc(p, sizeof(*c));

    c->issuers = apr_array_make(p, 2, sizeof(mg_jwt_issuer *));
    c->remotes = apr_array_make(p, 1, sizeof(mgj_remote *));
    c->cache_size = -1;
    return c;
}

static void *merge_server_conf(apr_pool_t *p, void *base, void *add)
{
    return base;                /* main server only, as the core's */
}

/* Read a whole (small) file into `p`; NULL, or a message naming it. */
static const char *load_file(apr_pool_t *p, apr_pool_t *ptemp,
                             const char *path, char **text, apr_size_t *len,
                             apr_finfo_t *fi)
{
    apr_file_t *f;
    apr_status_t rv;

    if ((rv = apr_file_open(&f, path, APR_FOPEN_READ, 0, ptemp))
        != APR_SUCCESS
        || (rv = apr_file_info_get(fi, APR_FINFO_SIZE | APR_FINFO_MTIME
                                       | APR_FINFO_INODE, f))
           != APR_SUCCESS) {
        return apr_psprintf(p, "cannot read '%s': %pm", path, &rv);
    }
    if (fi->size > MGJ_FILE_MAX) {
        apr_file_close(f);
        return apr_psprintf(p, "'%s' is larger than 1 MiB", path);
    }
    *text = apr_palloc(p, (apr_size_t)fi->size + 1);
    *len = 0;
    if ((rv = apr_file_read_full(f, *text, (apr_size_t)fi->size, len))
        != APR_SUCCESS && fi->size) {
        apr_file_close(f);
        return apr_psprintf(p, "cannot read '%s': %pm", path, &rv);
    }
    (*text)[*len] = '\0';
    apr_file_close(f);
    return NULL;
}

static const char *read_file(cmd_parms *cmd, const char *name,
                             char **text, apr_size_t *len)
{
    const char *path = ap_server_root_relative(cmd->pool, name);
    apr_finfo_t fi;

    if (!path) {
        return apr_psprintf(cmd->pool, "invalid path '%s'", name);
    }
    return load_file(cmd->pool, cmd->temp_pool, path, text, len, &fi);
}

static int has_word_chars(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s <= 0x20 || *s == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static const char *cmd_issuer(cmd_parms *cmd, void *dummy, int argc,
                              char *const argv[])
{
    mgj_server_conf *c = conf_of(cmd->server);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    mg_jwt_issuer *is;
    const char *jwks = NULL, *secret = NULL, *algs = NULL, *url = NULL;
    int i, refresh = 300, min_interval = 30, timeout_ms = 2000;

#define FAIL(...) return apr_pstrcat(cmd->pool, "ModelGateJWTIssuer ", \
                                     is->iss, ": ", \
                                     apr_psprintf(cmd->pool, __VA_ARGS__), \
                                     NULL)
    if (err) {
        return err;
    }
    if (argc < 2) {
        return "ModelGateJWTIssuer ISSUER algs=LIST jwks=FILE|secret=FILE "
               "[options]";
    }
    is = apr_palloc(cmd->pool, sizeof(*is));
    mg_jwt_issuer_init(is, apr_pstrdup(cmd->pool, argv[0]));
    for (i = 0; i < c->issuers->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(c->issuers, i, mg_jwt_issuer *)->iss,
                    is->iss)) {
            FAIL("declared twice");
        }
    }
    for (i = 1; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        const char *k, *v;
        if (!eq || eq == argv[i] || !eq[1]) {
            FAIL("'%s' is not NAME=VALUE", argv[i]);
        }
        k = apr_pstrndup(cmd->temp_pool, argv[i], eq - argv[i]);
        v = apr_pstrdup(cmd->pool, eq + 1);
        if (!strcmp(k, "jwks")) jwks = v;
        else if (!strcmp(k, "secret")) secret = v;
        else if (!strcmp(k, "algs")) algs = v;
        else if (!strcmp(k, "audience")) is->audience = v;
        else if (!strcmp(k, "subject")) is->claim_subject = v;
        else if (!strcmp(k, "tenant")) is->claim_tenant = v;
        else if (!strcmp(k, "tier")) is->claim_tier = v;
        else if (!strcmp(k, "scopes")) is->claim_scopes = v;
        else if (!strcmp(k, "default_tier")) {
            if (!has_word_chars(v)) {
                FAIL("default_tier '%s' is not a tier name", v);
            }
            is->default_tier = v;
        }
        else if (!strcmp(k, "jwks_url")) url = v;
        else if (!strcmp(k, "jwks_refresh") || !strcmp(k, "jwks_min_interval")
                 || !strcmp(k, "jwks_timeout")) {
            char *end;
            apr_int64_t n = apr_strtoi64(v, &end, 10);
            if (*end || n < 1 || n > 86400) {
                FAIL("%s '%s' is not 1..86400", k, v);
            }
            if (k[5] == 'r') refresh = (int)n;
            else if (k[5] == 'm') min_interval = (int)n;
            else timeout_ms = (int)n;
        }
        else if (!strcmp(k, "leeway")) {
            char *end;
            apr_int64_t n = apr_strtoi64(v, &end, 10);
            if (*end || n < 0 || n > 3600) {
                FAIL("leeway '%s' is not 0..3600 seconds", v);
            }
            is->leeway = n;
        }
        else {
            FAIL("unknown option '%s'", k);
        }
    }
    if (!algs) {
        FAIL("algs= is required (algorithms are pinned per issuer)");
    }
    if ((err = mg_jwt_parse_algs(cmd->pool, algs, &is->algs)) != NULL) {
        FAIL("algs=: %s", err);
    }
    if ((is->algs & ((1u << MG_JWT_HS256) - 1)) && !jwks && !url) {
        FAIL("a signature algorithm needs jwks=FILE or jwks_url=URL");
    }
    if (url) {
        mgj_remote *rm;
#ifndef MG_HAVE_CURL
        FAIL("jwks_url=: this build has no libcurl");
#endif
        /* plain http only to this host: keys over a network need TLS */
        if (strncmp(url, "https://", 8) && strncmp(url, "http://127.0.0.1", 16)
            && strncmp(url, "http://localhost", 16)
            && strncmp(url, "http://[::1]", 12)) {
            FAIL("jwks_url=%s: an https:// URL (http:// only to the "
                 "loopback)", url);
        }
        if (timeout_ms >= min_interval * 1000) {
            FAIL("jwks_timeout=%d ms must be below jwks_min_interval=%d s",
                 timeout_ms, min_interval);
        }
        if (refresh < min_interval) {
            FAIL("jwks_refresh=%d is below jwks_min_interval=%d", refresh,
                 min_interval);
        }
        rm = apr_pcalloc(cmd->pool, sizeof(*rm));
        rm->is = is;
        rm->url = url;
        rm->refresh = refresh;
        rm->min_interval = min_interval;
        rm->timeout_ms = timeout_ms;
        APR_ARRAY_PUSH(c->remotes, mgj_remote *) = rm;
        if (!jwks) {
            /* until the first fetch: no key, tokens wait for it */
            is->keys = apr_array_make(cmd->pool, 1, sizeof(mg_jwt_key *));
        }
    }
    if ((is->algs >> MG_JWT_HS256) && !secret) {
        FAIL("an HMAC algorithm needs secret=FILE");
    }
    if (jwks) {
        char *text;
        apr_size_t len;
        if ((err = read_file(cmd, jwks, &text, &len)) != NULL
            || (err = mg_jwt_jwks_parse(cmd->pool, text, len, &is->keys))
               != NULL) {
            FAIL("jwks=%s: %s", jwks, err);
        }
        if (is->keys->nelts == 0) {
            FAIL("jwks=%s holds no signature key", jwks);
        }
    }
    if (secret) {
        char *text;
        apr_size_t len;
        if ((err = read_file(cmd, secret, &text, &len)) != NULL) {
            FAIL("secret=: %s", err);
        }
        /* an editor's final newline is not part of the secret */
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r')) {
            len--;
        }
        if (len < MGJ_SECRET_MIN) {
            FAIL("secret=%s: shorter than %d bytes", secret, MGJ_SECRET_MIN);
        }
        is->secret = (const unsigned char *)text;
        is->secret_len = len;
    }
#undef FAIL
    APR_ARRAY_PUSH(c->issuers, mg_jwt_issuer *) = is;
    return NULL;
}

static const char *cmd_cache(cmd_parms *cmd, void *dummy, const char *arg)
{
    mgj_server_conf *c = conf_of(cmd->server);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    char *end;
    apr_int64_t n;

    if (err) {
        return err;
    }
    n = apr_strtoi64(arg, &end, 10);
    if (*end || n < 0 || n > 1048576) {
        return "ModelGateJWTCache: a number of tokens, 0..1048576";
    }
    c->cache_size = (int)n;
    return NULL;
}

static const char *cmd_revoked(cmd_parms *cmd, void *dummy, const char *arg)
{
    mgj_server_conf *c = conf_of(cmd->server);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    const char *path;
    apr_finfo_t fi;
    char *text;
    apr_size_t len;

    if (err) {
        return err;
    }
    if (c->revoked.path) {
        return "ModelGateJWTRevoked: given twice";
    }
    if (!(path = ap_server_root_relative(cmd->pool, arg))) {
        return apr_psprintf(cmd->pool, "ModelGateJWTRevoked: invalid path "
                            "'%s'", arg);
    }
    if ((err = load_file(cmd->pool, cmd->temp_pool, path, &text, &len, &fi))
        != NULL
        || (err = mg_jwt_denylist_parse(cmd->pool, text, len,
                                        &c->revoked.jtis)) != NULL) {
        return apr_pstrcat(cmd->pool, "ModelGateJWTRevoked: ", err, NULL);
    }
    c->revoked.path = path;
    c->revoked.mtime = fi.mtime;
    c->revoked.size = fi.size;
    c->revoked.inode = fi.inode;
    return NULL;
}

static const command_rec jwt_cmds[] = {
    AP_INIT_TAKE_ARGV("ModelGateJWTIssuer", cmd_issuer, NULL, RSRC_CONF,
        "ISSUER algs=LIST jwks=FILE|jwks_url=URL|secret=FILE "
        "[jwks_refresh=S] [jwks_min_interval=S] [jwks_timeout=MS] "
        "[audience=A] [leeway=S] "
        "[subject=|tenant=|tier=|scopes=CLAIM] [default_tier=T]: a trusted "
        "JWT issuer"),
    AP_INIT_TAKE1("ModelGateJWTCache", cmd_cache, NULL, RSRC_CONF,
        "verified tokens each child keeps (default 1024; 0: none)"),
    AP_INIT_TAKE1("ModelGateJWTRevoked", cmd_revoked, NULL, RSRC_CONF,
        "FILE: revoked token ids (jti), one a line, re-read within a "
        "second of a change"),
    { NULL }
};

/* ---- the cache of verified tokens --------------------------------------- */

static mgj_slot *slot_for(mgj_server_conf *c, const unsigned char *digest)
{
    apr_uint32_t h;

    memcpy(&h, digest, sizeof(h));
    return &c->slots[h % (apr_uint32_t)c->cache_size];
}

/* The identity remembered for `digest`, still valid at `now`. */
static int cache_get(request_rec *r, mgj_server_conf *c,
                     const unsigned char *digest, apr_int64_t now,
                     mg_jwt_identity *id)
{
    mgj_slot *s;
    char text[MGJ_CACHE_TEXT];
    const char *w, *end;
    apr_size_t len = 0;
    int hit = 0;

    if (!c->slots) {
        return 0;
    }
    s = slot_for(c, digest);
    apr_thread_mutex_lock(c->lock);
    if (s->until > now && CRYPTO_memcmp(s->digest, digest, 32) == 0) {
        memcpy(text, s->text, s->len);
        len = s->len;
        id->issuer = s->issuer;
        id->exp = s->until;
        hit = 1;
    }
    apr_thread_mutex_unlock(c->lock);
    if (!hit) {
        return 0;
    }
    end = text + len;
    w = text;
    id->subject = apr_pstrdup(r->pool, w);
    w += strlen(w) + 1;
    id->tenant = apr_pstrdup(r->pool, w);
    w += strlen(w) + 1;
    id->tier = *w ? apr_pstrdup(r->pool, w) : NULL;
    w += strlen(w) + 1;
    id->jti = *w ? apr_pstrdup(r->pool, w) : NULL;
    w += strlen(w) + 1;
    id->scopes = apr_array_make(r->pool, 4, sizeof(const char *));
    for (; w < end; w += strlen(w) + 1) {
        APR_ARRAY_PUSH(id->scopes, const char *) = apr_pstrdup(r->pool, w);
    }
    return 1;
}

static void cache_put(mgj_server_conf *c, const unsigned char *digest,
                      const mg_jwt_identity *id)
{
    char text[MGJ_CACHE_TEXT];
    apr_size_t len = 0, n;
    int i;
    mgj_slot *s;

#define PUT(str) do { n = strlen(str) + 1; \
                      if (len + n > sizeof(text)) return; \
                      memcpy(text + len, str, n); len += n; } while (0)
    if (!c->slots) {
        return;
    }
    PUT(id->subject);
    PUT(id->tenant);
    PUT(id->tier ? id->tier : "");
    PUT(id->jti ? id->jti : "");
    for (i = 0; i < id->scopes->nelts; i++) {
        PUT(APR_ARRAY_IDX(id->scopes, i, const char *));
    }
#undef PUT
    s = slot_for(c, digest);
    apr_thread_mutex_lock(c->lock);
    memcpy(s->digest, digest, 32);
    s->until = id->exp + id->issuer->leeway;
    s->issuer = id->issuer;
    memcpy(s->text, text, len);
    s->len = len;
    apr_thread_mutex_unlock(c->lock);
}

/* ---- the revoked-token list --------------------------------------------- */

/* Re-read the list if the file changed; at most one stat a second per
 * process.  The check runs under the write lock and the lookups under the
 * read lock, so a request of a second whose check is under way waits for
 * it (a few microseconds) rather than using the list of the second
 * before.  A file that cannot be read keeps the last good list (a
 * deleted or half-copied file must not un-revoke every token). */
static void revoked_refresh(server_rec *s, mgj_denylist *d, apr_int64_t now)
{
    apr_uint32_t sec = (apr_uint32_t)now;
    apr_pool_t *np;
    apr_finfo_t fi;
    apr_hash_t *jtis;
    const char *err;
    char *text;
    apr_size_t len;

    if (apr_atomic_read32(&d->checked) == sec) {
        return;
    }
    apr_thread_rwlock_wrlock(d->lock);
    if (d->checked == sec) {
        apr_thread_rwlock_unlock(d->lock);
        return;                 /* another thread checked meanwhile */
    }
    apr_atomic_set32(&d->checked, sec);
    if (apr_stat(&fi, d->path, APR_FINFO_SIZE | APR_FINFO_MTIME
                 | APR_FINFO_INODE, NULL) == APR_SUCCESS
        && fi.mtime == d->mtime && fi.size == d->size
        && fi.inode == d->inode) {
        apr_thread_rwlock_unlock(d->lock);
        return;
    }
    /* an unmanaged pool: creating a subpool of pchild from a request
     * thread would race with the MPM's own use of it */
    if (apr_pool_create_unmanaged_ex(&np, NULL, NULL) != APR_SUCCESS) {
        apr_thread_rwlock_unlock(d->lock);
        return;
    }
    if ((err = load_file(np, np, d->path, &text, &len, &fi)) != NULL
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

static int revoked(server_rec *s, mgj_denylist *d, const char *jti,
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

static apr_status_t revoked_cleanup(void *data)
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
    apr_atomic_set32(&sh->inflight, 0);
}

static void *APR_THREAD_FUNC fetcher_main(apr_thread_t *t, void *arg)
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

static apr_status_t fetcher_stop(void *arg)
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
static void remote_adopt(mgj_server_conf *c)
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
 * (the rate limit) and none is under way.  1: a new set was adopted. */
static int remote_wait(mgj_server_conf *c)
{
#ifdef MG_HAVE_CURL
    apr_uint32_t now = mgj_tick();
    apr_time_t deadline = 0;
    apr_uint32_t started = 0, done, busy;
    int i, can = 0;

    if (!c->fetcher) {
        return 0;
    }
    for (i = 0; i < c->remotes->nelts; i++) {
        mgj_remote *rm = APR_ARRAY_IDX(c->remotes, i, mgj_remote *);
        started += apr_atomic_read32(&rm->sh->fetches);
        if (apr_atomic_read32(&rm->sh->inflight)
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
        done = busy = 0;
        for (i = 0; i < c->remotes->nelts; i++) {
            mgj_remote *rm = APR_ARRAY_IDX(c->remotes, i, mgj_remote *);
            if (apr_atomic_read32(&rm->sh->gen) != rm->gen) {
                remote_adopt(c);
                return 1;
            }
            done += apr_atomic_read32(&rm->sh->fetches);
            busy |= apr_atomic_read32(&rm->sh->inflight);
        }
        if (done != started && !busy) {
            return 0;           /* fetched, and nothing new (or failed) */
        }
    }
#endif
    return 0;
}

/* ---- the provider ------------------------------------------------------- */

static void refuse(request_rec *r, mg_identity_refusal *no, int status,
                   const char *code, const char *decision,
                   const char *message, const char *challenge)
{
    no->status = status;
    no->json = mg_error_json(r->pool, message, "invalid_request_error", code);
    no->challenge = challenge;
    no->decision = decision;
}

/* 401 invalid_token.  `err` is one of fixed phrases (mg_jwt.c's, or
 * "token revoked"): no secret, no claim value, nothing a quoted string
 * would have to escape. */
static mg_identity_result invalid_token(request_rec *r,
                                        mg_identity_refusal *no,
                                        const char *err)
{
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "MGJ00001: bearer "
                  "token refused: %s", err);
    refuse(r, no, HTTP_UNAUTHORIZED, "invalid_token", "invalid-token",
           apr_pstrcat(r->pool, "The bearer token is not valid: ",
                       err, ".", NULL),
           apr_pstrcat(r->pool, "Bearer realm=\"modelgate\", "
                       "error=\"invalid_token\", "
                       "error_description=\"", err, "\"", NULL));
    return MG_IDENTITY_REFUSED;
}

/* mg_jwt.c's words for "no key with this kid (and type)" */
#define MGJ_NO_KEY "no key of the issuer fits"

static const char *verify(request_rec *r, mgj_server_conf *c,
                          const mg_identity_credential *cred,
                          apr_int64_t now, mg_jwt_identity *id)
{
    const char *err;

    if (!c->keys_lock) {
        return mg_jwt_verify(r->pool, cred->value, cred->len, c->issuers,
                             now, id);
    }
    remote_adopt(c);
    apr_thread_rwlock_rdlock(c->keys_lock);
    err = mg_jwt_verify(r->pool, cred->value, cred->len, c->issuers, now,
                        id);
    apr_thread_rwlock_unlock(c->keys_lock);
    return err;
}

static mg_identity_result jwt_identify(request_rec *r,
                                       const mg_identity_credential *cred,
                                       const mg_policy *policy,
                                       const mg_key **who,
                                       mg_identity_refusal *no)
{
    mgj_server_conf *c = conf_of(r->server);
    apr_int64_t now = apr_time_sec(apr_time_now());
    unsigned char digest[32];
    mg_jwt_identity id;
    mg_key *key;
    const char *err;

    if (!cred->bearer || !mg_jwt_looks_like(cred->value, cred->len)) {
        return MG_IDENTITY_NOT_MINE;
    }
    EVP_Digest(cred->value, cred->len, digest, NULL, EVP_sha256(), NULL);
    if (!cache_get(r, c, digest, now, &id)) {
        err = verify(r, c, cred, now, &id);
        if (err && !strcmp(err, MGJ_NO_KEY) && c->remotes->nelts
            && remote_wait(c)) {
            /* an unknown kid, and a new key set came: once more */
            err = verify(r, c, cred, now, &id);
        }
        if (err) {
            return invalid_token(r, no, err);
        }
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "MGJ00002: bearer "
                      "token of '%s' verified (issuer %s)", id.subject,
                      id.issuer->iss);
        cache_put(c, digest, &id);
    }
    /* after the cache too: a token cached before its revocation is
     * refused from the moment the list names it */
    if (revoked(r->server, &c->revoked, id.jti, now)) {
        return invalid_token(r, no, "token revoked");
    }
    if (!id.tier || !mg_policy_tier(policy, id.tier)) {
        refuse(r, no, HTTP_FORBIDDEN, "unknown_tier", "unknown-tier",
               id.tier ? "The token names a tier this gateway does not "
                         "declare."
                       : "The token names no tier and its issuer has no "
                         "default_tier.", NULL);
        return MG_IDENTITY_REFUSED;
    }
    key = apr_pcalloc(r->pool, sizeof(*key));
    key->id = id.subject;
    key->tenant = id.tenant;
    key->tier = id.tier;
    key->scopes = id.scopes;
    key->id_hash = mg_table_subject_hash(key->id, strlen(key->id));
    key->tenant_hash = mg_table_subject_hash(key->tenant,
                                             strlen(key->tenant));
    key->tier_hash = mg_table_subject_hash(key->tier, strlen(key->tier));
    *who = key;
    return MG_IDENTITY_OK;
}

static const char *jwt_check(server_rec *s, const mg_policy *policy,
                             apr_pool_t *ptemp)
{
    mgj_server_conf *c = conf_of(s);
    int i;

    if (c->issuers->nelts == 0) {
        return "ModelGateIdentity names jwt, but no ModelGateJWTIssuer is "
               "configured";
    }
    for (i = 0; i < c->issuers->nelts; i++) {
        const mg_jwt_issuer *is = APR_ARRAY_IDX(c->issuers, i,
                                                mg_jwt_issuer *);
        if (is->default_tier && !mg_policy_tier(policy, is->default_tier)) {
            return apr_psprintf(ptemp, "ModelGateJWTIssuer %s: default_tier "
                                "'%s' is not declared (ModelGateTier)",
                                is->iss, is->default_tier);
        }
    }
    return NULL;
}

static const mg_identity_provider jwt_provider = {
    "jwt",
    jwt_check,
    jwt_identify
};

static int jwt_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                           apr_pool_t *ptemp, server_rec *s)
{
    mgj_server_conf *c = conf_of(s);
    apr_shm_t *shm;
    apr_status_t rv;
    mgj_shared *sh;
    int i;

    if (c->remotes->nelts == 0) {
        return OK;
    }
#ifdef MG_HAVE_CURL
    {
        static int curl_ready;
        /* once per process, before any thread: it is not thread-safe */
        if (!curl_ready && curl_global_init(CURL_GLOBAL_DEFAULT) == 0) {
            curl_ready = 1;
        }
    }
#endif
    /* anonymous: inherited by the children, gone with pconf */
    if ((rv = apr_shm_create(&shm, sizeof(mgj_shared) * c->remotes->nelts,
                             NULL, pconf)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, "MGJ00008: cannot "
                     "create the shared memory of the JWKS URLs");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (!mgj_epoch) {
        mgj_epoch = apr_time_now();     /* the parent's: children inherit */
    }
    sh = apr_shm_baseaddr_get(shm);
    memset(sh, 0, sizeof(mgj_shared) * c->remotes->nelts);
    for (i = 0; i < c->remotes->nelts; i++) {
        APR_ARRAY_IDX(c->remotes, i, mgj_remote *)->sh = &sh[i];
    }
    return OK;
}

static void remote_child_init(apr_pool_t *pchild, mgj_server_conf *c,
                              server_rec *s)
{
    c->server = s;
    if (apr_thread_rwlock_create(&c->keys_lock, pchild) != APR_SUCCESS
        || apr_thread_mutex_create(&c->adopt_lock, APR_THREAD_MUTEX_DEFAULT,
                                   pchild) != APR_SUCCESS) {
        c->keys_lock = NULL;    /* the keys read at start, as they are */
        return;
    }
#ifdef MG_HAVE_CURL
    if (apr_thread_mutex_create(&c->fetch_lock, APR_THREAD_MUTEX_DEFAULT,
                                pchild) != APR_SUCCESS
        || apr_thread_cond_create(&c->fetch_cond, pchild) != APR_SUCCESS
        || apr_thread_create(&c->fetcher, NULL, fetcher_main, c, pchild)
           != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "MGJ00009: no JWKS "
                     "fetcher thread in this process; it uses the keys "
                     "other processes fetch");
        c->fetcher = NULL;
        return;
    }
    apr_pool_cleanup_register(pchild, c, fetcher_stop,
                              apr_pool_cleanup_null);
#endif
}

static void jwt_child_init(apr_pool_t *pchild, server_rec *s)
{
    mgj_server_conf *c = conf_of(s);

    if (c->remotes->nelts
        && APR_ARRAY_IDX(c->remotes, 0, mgj_remote *)->sh) {
        remote_child_init(pchild, c, s);
    }

    if (c->cache_size < 0) {
        c->cache_size = MGJ_CACHE_DEFAULT;
    }
    if (c->revoked.path) {
        /* without the lock, the list read at start is used as it is */
        if (apr_thread_rwlock_create(&c->revoked.lock, pchild)
            != APR_SUCCESS) {
            c->revoked.lock = NULL;
        }
        apr_atomic_set32(&c->revoked.checked, 0);
        apr_pool_cleanup_register(pchild, &c->revoked, revoked_cleanup,
                                  apr_pool_cleanup_null);
    }
    if (c->issuers->nelts == 0 || c->cache_size == 0
        || apr_thread_mutex_create(&c->lock, APR_THREAD_MUTEX_DEFAULT,
                                   pchild) != APR_SUCCESS) {
        c->slots = NULL;
        return;
    }
    c->slots = apr_pcalloc(pchild, sizeof(mgj_slot) * c->cache_size);
}

static void register_hooks(apr_pool_t *p)
{
    ap_register_provider(p, MG_IDENTITY_PROVIDER_GROUP, "jwt",
                         MG_IDENTITY_PROVIDER_VERSION, &jwt_provider);
    ap_hook_post_config(jwt_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(jwt_child_init, NULL, NULL, APR_HOOK_MIDDLE);
}

module AP_MODULE_DECLARE_DATA modelgate_jwt_module = {
    STANDARD20_MODULE_STUFF,
    NULL,
    NULL,
    create_server_conf,
    merge_server_conf,
    jwt_cmds,
    register_hooks,
    AP_MODULE_FLAG_NONE
};
