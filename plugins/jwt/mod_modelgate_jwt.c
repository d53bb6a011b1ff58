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
 * start; fetching one from a URL, with rotation, is not built yet.
 * Tokens whose `jti` is in the ModelGateJWTRevoked file are refused, the
 * cached ones included; the file is re-read within a second of a change.
 */
#include <string.h>
#include <apr_strings.h>
#include <apr_file_io.h>
#include <apr_thread_mutex.h>
#include <apr_thread_rwlock.h>
#include <apr_atomic.h>
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

typedef struct mgj_server_conf {
    apr_array_header_t *issuers;   /* mg_jwt_issuer * */
    int cache_size;                /* -1: default */
    mgj_denylist revoked;
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
    const char *jwks = NULL, *secret = NULL, *algs = NULL;
    int i;

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
    if ((is->algs & ((1u << MG_JWT_HS256) - 1)) && !jwks) {
        FAIL("a signature algorithm needs jwks=FILE");
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
        "ISSUER algs=LIST jwks=FILE|secret=FILE [audience=A] [leeway=S] "
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
        err = mg_jwt_verify(r->pool, cred->value, cred->len, c->issuers,
                            now, &id);
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

static void jwt_child_init(apr_pool_t *pchild, server_rec *s)
{
    mgj_server_conf *c = conf_of(s);

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
