/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_jwt_config.c -- the jwt plugin's directives: issuers, the
 * verified-token cache, the revoked list (see mod_modelgate_jwt.c).
 */
#include <apr_lib.h>
#include "mod_modelgate_jwt.h"

/* ---- configuration ------------------------------------------------------ */

void *mgj_create_server_conf(apr_pool_t *p, server_rec *s)
{
    mgj_server_conf *c = apr_pcalloc(p, sizeof(*c));

    c->issuers = apr_array_make(p, 2, sizeof(mg_jwt_issuer *));
    c->remotes = apr_array_make(p, 1, sizeof(mgj_remote *));
    c->cache_size = -1;
    return c;
}

void *mgj_merge_server_conf(apr_pool_t *p, void *base, void *add)
{
    return base;                /* main server only, as the core's */
}

void *mgj_create_dir_conf(apr_pool_t *p, char *dir)
{
    mgj_dir_conf *d = apr_palloc(p, sizeof(*d));

    d->forward = -1;
    d->admin = -1;
    return d;
}

void *mgj_merge_dir_conf(apr_pool_t *p, void *base, void *add)
{
    const mgj_dir_conf *b = base, *a = add;
    mgj_dir_conf *d = apr_palloc(p, sizeof(*d));

    d->forward = a->forward != -1 ? a->forward : b->forward;
    d->admin = a->admin != -1 ? a->admin : b->admin;
    return d;
}

/* Read a whole (small) file into `p`; NULL, or a message naming it. */
const char *mgj_load_file(apr_pool_t *p, apr_pool_t *ptemp,
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
    return mgj_load_file(cmd->pool, cmd->temp_pool, path, text, len, &fi);
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

/* Is `url` plain http:// to this host?  The whole host must be a loopback
 * name, followed by an optional numeric port and then the path or the
 * end: "http://localhost.example/" and "http://127.0.0.1@example/" (user
 * info before another host) are remote servers. */
static int loopback_http(const char *url)
{
    static const char *const hosts[] = { "127.0.0.1", "localhost", "[::1]" };
    const char *c;
    size_t i, n;

    if (strncmp(url, "http://", 7)) {
        return 0;
    }
    url += 7;
    for (i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        n = strlen(hosts[i]);
        if (strncmp(url, hosts[i], n)) {
            continue;
        }
        c = url + n;
        if (*c == ':') {
            if (!apr_isdigit(c[1])) {
                return 0;
            }
            for (c++; apr_isdigit(*c); c++) {
            }
        }
        return *c == '\0' || *c == '/' || *c == '?' || *c == '#';
    }
    return 0;
}

static const char *cmd_issuer(cmd_parms *cmd, void *dummy, int argc,
                              char *const argv[])
{
    mgj_server_conf *c = conf_of(cmd->server);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    mg_jwt_issuer *is;
    const char *jwks = NULL, *secret = NULL, *algs = NULL, *url = NULL;
    const char *ca = NULL;
    int i, refresh = 300, min_interval = 30, timeout_ms = 2000;
    unsigned sig, served;

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
        else if (!strcmp(k, "jwks_ca")) ca = v;
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
        if (strncmp(url, "https://", 8) && !loopback_http(url)) {
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
        if (ca) {
            /* read now: a wrong path stops the configuration, not every
             * fetch of the running server */
            apr_finfo_t fi;
            char *text;
            apr_size_t len;
            if (!(ca = ap_server_root_relative(cmd->pool, ca))
                || (err = mgj_load_file(cmd->temp_pool, cmd->temp_pool, ca,
                                        &text, &len, &fi)) != NULL) {
                FAIL("jwks_ca=: %s", err ? err : "invalid path");
            }
        }
        rm = apr_pcalloc(cmd->pool, sizeof(*rm));
        rm->ca_file = ca;
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
    if (ca && !url) {
        FAIL("jwks_ca= goes with jwks_url=");
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
        /* A key set that can verify none of the pinned algorithms refuses
         * every token; one that serves some may be awaiting a rotation. */
        sig = is->algs & ((1u << MG_JWT_HS256) - 1);
        served = mg_jwt_algs_served(is->keys, sig);
        if (sig && !served) {
            FAIL("jwks=%s holds no key for algs=%s (a key fits by its kty, "
                 "curve and alg): every token would be refused", jwks,
                 mg_jwt_alg_names(cmd->temp_pool, sig));
        }
        if (served != sig) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, cmd->server,
                         "MGJ00014: %s line %d: jwks=%s holds no key "
                         "for %s: tokens signed so are refused until it does",
                         cmd->directive->filename, cmd->directive->line_num,
                         jwks, mg_jwt_alg_names(cmd->temp_pool,
                                                sig & ~served));
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
    is->conf_file = cmd->directive ? cmd->directive->filename : "?";
    is->conf_line = cmd->directive ? cmd->directive->line_num : 0;
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
    if ((err = mgj_load_file(cmd->pool, cmd->temp_pool, path, &text, &len,
                             &fi)) != NULL
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

static const char *cmd_forward(cmd_parms *cmd, void *dconf, int on)
{
    ((mgj_dir_conf *)dconf)->forward = on;
    return NULL;
}

static const char *cmd_admin(cmd_parms *cmd, void *dconf, int on)
{
    ((mgj_dir_conf *)dconf)->admin = on;
    return NULL;
}

const command_rec mgj_cmds[] = {
    AP_INIT_TAKE_ARGV("ModelGateJWTIssuer", cmd_issuer, NULL, RSRC_CONF,
        "ISSUER algs=LIST jwks=FILE|jwks_url=URL|secret=FILE "
        "[jwks_ca=FILE] [jwks_refresh=S] [jwks_min_interval=S] "
        "[jwks_timeout=MS] "
        "[audience=A] [leeway=S] "
        "[subject=|tenant=|tier=|scopes=CLAIM] [default_tier=T]: a trusted "
        "JWT issuer"),
    AP_INIT_TAKE1("ModelGateJWTCache", cmd_cache, NULL, RSRC_CONF,
        "verified tokens each child keeps (default 1024; 0: none)"),
    AP_INIT_TAKE1("ModelGateJWTRevoked", cmd_revoked, NULL, RSRC_CONF,
        "FILE: revoked token ids (jti), one a line, re-read within a "
        "second of a change"),
    AP_INIT_FLAG("ModelGateJWTForward", cmd_forward, NULL,
        RSRC_CONF | ACCESS_CONF,
        "On: a verified bearer JWT goes on to the upstream in "
        "Authorization (default Off: removed, as every credential)"),
    AP_INIT_FLAG("ModelGateJWTAdmin", cmd_admin, NULL, ACCESS_CONF,
        "On: SetHandler modelgate-jwt-admin answers here (default Off; "
        "not in .htaccess)"),
    { NULL }
};
