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
 * asking: it reaches no upstream and no log, unless the operator puts it
 * back for a trusted upstream (ModelGateJWTForward On).  Verified tokens
 * are kept per process (SHA-256 of the token -> the identity, until exp +
 * leeway) in a fixed number of slots, and each connection remembers its
 * last one byte for byte (mgj_memo), so a client repeating its token pays
 * a comparison, not a digest, let alone a signature check.  Keys come from
 * a JWKS file read at start and/or a JWKS URL (libcurl) fetched in the
 * background, shared by all processes (see mgj_shared).
 * Tokens whose `jti` is in the ModelGateJWTRevoked file are refused, the
 * cached ones included; the file is re-read within a second of a change,
 * or at once after an admin call (mod_modelgate_jwt_admin.c).
 */
#include "mod_modelgate_jwt.h"

/* Tenths of a second count from here (mgj_tick): set in the parent, so
 * every child counts from the same instant. */
apr_time_t mgj_epoch;

/* ---- the cache of verified tokens --------------------------------------- */

static mgj_slot *slot_for(mgj_server_conf *c, const unsigned char *digest)
{
    apr_uint32_t h;

    memcpy(&h, digest, sizeof(h));
    return &c->slots[h % (apr_uint32_t)c->cache_size];
}

/* An identity as the cache and the memo keep it: NUL-separated strings,
 * subject\0tenant\0tier\0jti\0scope\0...; 0 when it does not fit
 * (then it is not kept, only verified again). */
static apr_size_t identity_text(const mg_jwt_identity *id, char *text)
{
    apr_size_t len = 0, n;
    int i;

#define PUT(str) do { n = strlen(str) + 1; \
                      if (len + n > MGJ_CACHE_TEXT) return 0; \
                      memcpy(text + len, str, n); len += n; } while (0)
    PUT(id->subject);
    PUT(id->tenant);
    PUT(id->tier ? id->tier : "");
    PUT(id->jti ? id->jti : "");
    for (i = 0; i < id->scopes->nelts; i++) {
        PUT(APR_ARRAY_IDX(id->scopes, i, const char *));
    }
#undef PUT
    return len;
}

/* The strings of `text` copied into the request's pool: what a request
 * holds must not change when the next one replaces the memo or slot. */
static void identity_read(apr_pool_t *p, const char *text, apr_size_t len,
                          mg_jwt_identity *id)
{
    const char *w = text, *end = text + len;

    id->subject = apr_pstrdup(p, w);
    w += strlen(w) + 1;
    id->tenant = apr_pstrdup(p, w);
    w += strlen(w) + 1;
    id->tier = *w ? apr_pstrdup(p, w) : NULL;
    w += strlen(w) + 1;
    id->jti = *w ? apr_pstrdup(p, w) : NULL;
    w += strlen(w) + 1;
    id->scopes = apr_array_make(p, 4, sizeof(const char *));
    for (; w < end; w += strlen(w) + 1) {
        APR_ARRAY_PUSH(id->scopes, const char *) = apr_pstrdup(p, w);
    }
}

/* The identity remembered for `digest`, still valid at `now`. */
static int cache_get(request_rec *r, mgj_server_conf *c,
                     const unsigned char *digest, apr_int64_t now,
                     mg_jwt_identity *id)
{
    mgj_slot *s;
    char text[MGJ_CACHE_TEXT];
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
        /* the token's exp: memo_put adds the leeway to it again */
        id->exp = s->until - s->issuer->leeway;
        hit = 1;
    }
    apr_thread_mutex_unlock(c->lock);
    if (hit) {
        identity_read(r->pool, text, len, id);
    }
    return hit;
}

static void cache_put(mgj_server_conf *c, const unsigned char *digest,
                      const mg_jwt_identity *id)
{
    char text[MGJ_CACHE_TEXT];
    apr_size_t len;
    mgj_slot *s;

    if (!c->slots || (len = identity_text(id, text)) == 0) {
        return;
    }
    s = slot_for(c, digest);
    apr_thread_mutex_lock(c->lock);
    memcpy(s->digest, digest, 32);
    s->until = id->exp + id->issuer->leeway;
    s->issuer = id->issuer;
    memcpy(s->text, text, len);
    s->len = len;
    apr_thread_mutex_unlock(c->lock);
}

/* ---- the connection's last token ---------------------------------------- */

/* A keep-alive client sends the same token on every request: the
 * connection remembers the last one it verified (or found in the cache),
 * byte for byte, with its identity, so the requests after the first pay a
 * comparison, not a SHA-256 and the cache's mutex.  The match is exact
 * (constant time for the length), never by a digest or a prefix; expiry
 * and revocation are checked on every request as for the cache.  One
 * thread serves a connection at a time (an HTTP/2 stream has a connection
 * of its own), so nothing here is locked.  The token buffer grows to the
 * longest token the connection sent (at most twice MG_JWT_MAX_LEN in all)
 * and is wiped when the connection ends. */
typedef struct mgj_memo {
    char *token;                /* c->pool, `cap` bytes */
    apr_size_t len, cap;
    apr_int64_t until;          /* exp + leeway; 0: nothing remembered */
    const mg_jwt_issuer *issuer;
    apr_size_t text_len;
    char text[MGJ_CACHE_TEXT];  /* identity_text() */
} mgj_memo;

static apr_status_t memo_wipe(void *data)
{
    mgj_memo *m = data;

    if (m->token) {
        OPENSSL_cleanse(m->token, m->cap);
    }
    m->until = 0;
    return APR_SUCCESS;
}

static mgj_memo *memo_of(conn_rec *conn)
{
    mgj_memo *m = ap_get_module_config(conn->conn_config,
                                       &modelgate_jwt_module);

    if (!m) {
        m = apr_pcalloc(conn->pool, sizeof(*m));
        ap_set_module_config(conn->conn_config, &modelgate_jwt_module, m);
        apr_pool_cleanup_register(conn->pool, m, memo_wipe,
                                  apr_pool_cleanup_null);
    }
    return m;
}

static int memo_get(request_rec *r, const mgj_memo *m,
                    const mg_identity_credential *cred, apr_int64_t now,
                    mg_jwt_identity *id)
{
    if (!m || m->until <= now || m->len != cred->len
        || !mg_keys_memeq(m->token, cred->value, cred->len)) {
        return 0;
    }
    id->issuer = m->issuer;
    id->exp = m->until - m->issuer->leeway;
    identity_read(r->pool, m->text, m->text_len, id);
    return 1;
}

static void memo_put(conn_rec *conn, mgj_memo *m,
                     const mg_identity_credential *cred,
                     const mg_jwt_identity *id)
{
    apr_size_t len = identity_text(id, m->text);

    m->until = 0;
    if (len == 0 || cred->len > MG_JWT_MAX_LEN) {
        return;
    }
    if (cred->len > m->cap) {
        if (m->token) {
            OPENSSL_cleanse(m->token, m->cap);
        }
        m->cap = cred->len * 2 > MG_JWT_MAX_LEN ? MG_JWT_MAX_LEN
                                                : cred->len * 2;
        m->token = apr_palloc(conn->pool, m->cap);
    }
    memcpy(m->token, cred->value, cred->len);
    m->len = cred->len;
    m->text_len = len;
    m->issuer = id->issuer;
    m->until = id->exp + id->issuer->leeway;
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
    mgj_remote_adopt(c);
    apr_thread_rwlock_rdlock(c->keys_lock);
    err = mg_jwt_verify(r->pool, cred->value, cred->len, c->issuers, now,
                        id);
    apr_thread_rwlock_unlock(c->keys_lock);
    return err;
}

/* The identity of a token the memo did not know: from the cache, or
 * verified (and then cached).  NULL, or why the token is refused. */
static const char *find_identity(request_rec *r, mgj_server_conf *c,
                                 const mg_identity_credential *cred,
                                 apr_int64_t now, mg_jwt_identity *id)
{
    unsigned char digest[32];
    const char *err;

    EVP_Digest(cred->value, cred->len, digest, NULL, EVP_sha256(), NULL);
    if (cache_get(r, c, digest, now, id)) {
        return NULL;
    }
    err = verify(r, c, cred, now, id);
    if (err && !strcmp(err, MGJ_NO_KEY) && c->remotes->nelts
        && mgj_remote_wait(c)) {
        /* an unknown kid, and a new key set came: once more */
        err = verify(r, c, cred, now, id);
    }
    if (err) {
        return err;
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "MGJ00002: bearer "
                  "token of '%s' verified (issuer %s)", id->subject,
                  id->issuer->iss);
    cache_put(c, digest, id);
    return NULL;
}

static mg_identity_result jwt_identify(request_rec *r,
                                       const mg_identity_credential *cred,
                                       const mg_policy *policy,
                                       const mg_key **who,
                                       mg_identity_refusal *no)
{
    mgj_server_conf *c = conf_of(r->server);
    apr_int64_t now = apr_time_sec(apr_time_now());
    mg_jwt_identity id;
    mgj_memo *memo;
    mg_key *key;
    const char *err;

    if (!cred->bearer) {
        return MG_IDENTITY_NOT_MINE;
    }
    /* with the cache off (ModelGateJWTCache 0) every request is verified */
    memo = c->slots ? memo_of(r->connection) : NULL;
    if (!memo_get(r, memo, cred, now, &id)) {
        if (!mg_jwt_looks_like(cred->value, cred->len)) {
            return MG_IDENTITY_NOT_MINE;
        }
        if ((err = find_identity(r, c, cred, now, &id)) != NULL) {
            return invalid_token(r, no, err);
        }
        if (memo) {
            memo_put(r->connection, memo, cred, &id);
        }
    }
    /* after the cache too: a token cached before its revocation is
     * refused from the moment the list names it */
    if (mgj_revoked(r->server, &c->revoked, id.jti, now)) {
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
    if (dir_conf_of(r)->forward == 1) {
        /* the operator trusts this route's upstream with the token the
         * core took away: the verified one, as it came */
        apr_table_setn(r->headers_in, "Authorization",
                       apr_pstrcat(r->pool, "Bearer ",
                                   apr_pstrmemdup(r->pool, cred->value,
                                                  cred->len), NULL));
    }
    key = apr_pcalloc(r->pool, sizeof(*key));
    key->id = id.subject;
    key->tenant = id.tenant;
    key->tier = id.tier;
    key->scopes = id.scopes;
    mg_key_hash(key, "jwt");
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
        const char *why = is->default_tier
            ? mg_policy_unknown_tier(ptemp, policy, is->default_tier) : NULL;
        if (why) {
            return apr_psprintf(ptemp, "ModelGateJWTIssuer %s (%s line %d): "
                                "default_tier= names %s", is->iss,
                                is->conf_file, is->conf_line, why);
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

    if (c->revoked.path) {
        /* anonymous: inherited by the children, gone with pconf; a new
         * generation starts at 0 with the list read from its config */
        if ((rv = apr_shm_create(&shm, sizeof(mgj_revoked_shared), NULL,
                                 pconf)) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, "MGJ00010: cannot "
                         "create the shared memory of ModelGateJWTRevoked");
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        c->revoked.sh = apr_shm_baseaddr_get(shm);
        c->revoked.sh->gen = 0;
        c->revoked.gen = 0;
    }
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
        || apr_thread_create(&c->fetcher, NULL, mgj_fetcher_main, c, pchild)
           != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "MGJ00009: no JWKS "
                     "fetcher thread in this process; it uses the keys "
                     "other processes fetch");
        c->fetcher = NULL;
        return;
    }
    apr_pool_cleanup_register(pchild, c, mgj_fetcher_stop,
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
        apr_pool_cleanup_register(pchild, &c->revoked, mgj_revoked_cleanup,
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
    ap_hook_handler(mgj_admin_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

module AP_MODULE_DECLARE_DATA modelgate_jwt_module = {
    STANDARD20_MODULE_STUFF,
    mgj_create_dir_conf,
    mgj_merge_dir_conf,
    mgj_create_server_conf,
    mgj_merge_server_conf,
    mgj_cmds,
    register_hooks,
    AP_MODULE_FLAG_NONE
};
