/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_identify.c -- who is calling: the identity providers
 * (mg_identity.h) asked in the configured order, the core's own "key"
 * provider (the key file), `ModelGateIdentity`, and the authorization
 * providers `Require modelgate-scope` and `Require modelgate-tier`.
 *
 * The authz providers read the identity the gate established in
 * access_checker (mg_request.identity): httpd evaluates `Require` after
 * every access checker (mod_authz_core's access_checker_ex, or
 * auth_checker), so only once the gate passed.  A refusal there is 403
 * JSON with an RFC 6750 challenge added on the error path, so a rule that
 * another `RequireAny` alternative overrules leaves no trace on the
 * answer.
 */
#include <apr_strings.h>
#include <ap_provider.h>
#include <mod_auth.h>
#include <http_core.h>
#include <http_protocol.h>
#include <http_request.h>
#include "mod_modelgate_private.h"
#include "mg_error.h"

#define MG_ERR_INSUFFICIENT_SCOPE "insufficient_scope"
#define MG_ERR_INSUFFICIENT_TIER  "insufficient_tier"
/* The note the error path turns into WWW-Authenticate. */
#define MG_NOTE_CHALLENGE "modelgate-authz-challenge"

/* ---- the key provider: the key file ----------------------------------- */

/* Wipes a connection's remembered credential when the connection ends. */
static apr_status_t clear_key_memo(void *memo)
{
    mg_keys_memo_clear(memo);
    return APR_SUCCESS;
}

/* The key `credential` names.  The last credential looked up on this
 * connection is remembered with its key (or that it is none), so a
 * keep-alive client's requests after the first are not hashed again; the
 * memo lives with the
 * connection, which one thread serves at a time (each HTTP/2 stream has a
 * connection of its own). */
static const mg_key *find_key(request_rec *r, const mg_server_conf *sc,
                              const char *credential, apr_size_t len)
{
    conn_rec *c = r->connection;
    mg_keys_memo *memo = ap_get_module_config(c->conn_config,
                                              &modelgate_module);

    if (!memo) {
        memo = apr_pcalloc(c->pool, sizeof(*memo));
        ap_set_module_config(c->conn_config, &modelgate_module, memo);
        apr_pool_cleanup_register(c->pool, memo, clear_key_memo,
                                  apr_pool_cleanup_null);
    }
    return mg_keys_lookup_memo(sc->keys, memo, credential, len);
}

static mg_identity_result key_identify(request_rec *r,
                                       const mg_identity_credential *cred,
                                       const mg_policy *policy,
                                       const mg_key **who,
                                       mg_identity_refusal *no)
{
    const mg_server_conf *sc = ap_get_module_config(
        r->server->module_config, &modelgate_module);

    /* Key tiers are checked against the policy in check_config. */
    *who = find_key(r, sc, cred->value, cred->len);
    return *who ? MG_IDENTITY_OK : MG_IDENTITY_NOT_MINE;
}

static const mg_identity_provider key_provider = {
    "key",
    NULL,
    key_identify
};

/* ---- asking the providers ----------------------------------------------- */

static int refuse_credential(request_rec *r, int missing)
{
    /* RFC 6750: a challenge on every 401; error= only when a token came. */
    apr_table_setn(r->err_headers_out, "WWW-Authenticate", missing
                   ? "Bearer realm=\"modelgate\""
                   : "Bearer realm=\"modelgate\", error=\"invalid_token\"");
    apr_table_setn(r->notes, "modelgate-decision",
                   missing ? "missing-key" : "invalid-key");
    return mg_respond_canned(r, missing ? CANNED_MISSING_KEY
                                     : CANNED_INVALID_KEY);
}

int mg_identify(request_rec *r, const mg_server_conf *sc,
                const char *credential, apr_size_t len, int bearer,
                const mg_key **who)
{
    mg_identity_credential cred;
    mg_identity_refusal no;
    int i;

    if (!credential) {
        return refuse_credential(r, 1);
    }
    cred.value = credential;
    cred.len = len;
    cred.bearer = bearer;
    for (i = 0; i < sc->identity_n; i++) {
        switch (sc->identity[i]->identify(r, &cred, sc->policy, who, &no)) {
        case MG_IDENTITY_OK:
            mg_request_get(r)->identity = *who;
            return OK;
        case MG_IDENTITY_REFUSED:
            if (no.challenge) {
                apr_table_setn(r->err_headers_out, "WWW-Authenticate",
                               no.challenge);
            }
            apr_table_setn(r->notes, "modelgate-decision",
                           no.decision ? no.decision : "refused");
            return mg_respond_json(r, no.status, no.json);
        case MG_IDENTITY_NOT_MINE:
            break;
        }
    }
    return refuse_credential(r, 0);
}

/* ---- configuration ------------------------------------------------------ */

const char *mg_cmd_identity(cmd_parms *cmd, void *dummy, int argc,
                            char *const argv[])
{
    mg_server_conf *sc = mg_server_conf_of(cmd);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    int i, j;

    if (err) {
        return err;
    }
    if (sc->identity_names) {
        return "ModelGateIdentity: may be given only once";
    }
    if (argc == 0) {
        return "ModelGateIdentity: name at least one identity provider "
               "(key, jwt)";
    }
    for (i = 0; i < argc; i++) {
        for (j = 0; j < i; j++) {
            if (!strcmp(argv[i], argv[j])) {
                return apr_psprintf(cmd->pool, "ModelGateIdentity: '%s' "
                                    "named twice", argv[i]);
            }
        }
    }
    sc->identity_names = apr_array_make(cmd->pool, argc, sizeof(char *));
    for (i = 0; i < argc; i++) {
        APR_ARRAY_PUSH(sc->identity_names, const char *) =
            apr_pstrdup(cmd->pool, argv[i]);
    }
    sc->identity_where = mg_where_of(cmd);
    return NULL;
}

int mg_identity_check_config(server_rec *s, mg_server_conf *sc,
                             apr_pool_t *pconf, apr_pool_t *ptemp)
{
    const mg_identity_provider **list;
    int i, n, ok = 1;

    n = sc->identity_names ? sc->identity_names->nelts : 1;
    list = apr_pcalloc(pconf, n * sizeof(*list));
    for (i = 0; i < n; i++) {
        const char *name = sc->identity_names
            ? APR_ARRAY_IDX(sc->identity_names, i, const char *) : "key";
        const char *err;

        list[i] = ap_lookup_provider(MG_IDENTITY_PROVIDER_GROUP, name,
                                     MG_IDENTITY_PROVIDER_VERSION);
        if (!list[i]) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, s,
                         MGLOGNO(00009) "ModelGateIdentity: no identity "
                         "provider '%s'%s (%s line %d)", name,
                         !strcmp(name, "jwt") ? ": load mod_modelgate_jwt.so"
                         : "", sc->identity_where.file,
                         sc->identity_where.line);
            ok = 0;
        }
        else if (list[i]->check
                 && (err = list[i]->check(s, sc->policy, ptemp)) != NULL) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, s,
                         MGLOGNO(00010) "ModelGateIdentity %s (%s): %s",
                         name, sc->identity_names
                         ? apr_psprintf(ptemp, "%s line %d",
                                        sc->identity_where.file,
                                        sc->identity_where.line)
                         : "the default", err);
            ok = 0;
        }
    }
    sc->identity = list;
    sc->identity_n = n;
    return ok;
}

int mg_identity_uses_keys(const mg_server_conf *sc)
{
    int i;

    if (!sc->identity_names) {
        return 1;
    }
    for (i = 0; i < sc->identity_names->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(sc->identity_names, i, const char *),
                    "key")) {
            return 1;
        }
    }
    return 0;
}

/* ---- authorization: Require modelgate-scope / modelgate-tier ---------- */

/* The identity the gate found for `r`, or for the request it came from. */
static const mg_key *identity_of(const request_rec *r)
{
    const request_rec *p;

    for (p = r; p; p = p->prev ? p->prev : p->main) {
        const mg_request *req = ap_get_module_config(p->request_config,
                                                     &modelgate_module);
        if (req && req->identity) {
            return req->identity;
        }
    }
    return NULL;
}

static int has_scope(const mg_key *who, const char *scope)
{
    int i;

    for (i = 0; who->scopes && i < who->scopes->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(who->scopes, i, const char *), scope)) {
            return 1;
        }
    }
    return 0;
}

/* A refusal httpd answers with 403: JSON, and the challenge kept for the
 * error path (insert_error_filter). */
static authz_status deny(request_rec *r, const char *message,
                         const char *code, const char *challenge)
{
    mg_respond_error(r, HTTP_FORBIDDEN, message, MG_ERRT_REQUEST, code);
    apr_table_setn(r->notes, MG_NOTE_CHALLENGE, challenge);
    apr_table_setn(r->notes, "modelgate-decision", code);
    return AUTHZ_DENIED;
}

/* No gate passed here (ModelGate is not on): no httpd authentication can
 * give the caller a scope or a tier, so the rule is simply not met.
 * (AUTHZ_DENIED_NO_USER would send httpd looking for an AuthType, and
 * without one it answers 500.) */
static authz_status no_caller(request_rec *r)
{
    return deny(r, "This route needs a caller the gateway identified.",
                MG_ERR_INSUFFICIENT_SCOPE,
                "Bearer realm=\"modelgate\", error=\"insufficient_scope\"");
}

/* Every scope on the line is needed (RFC 6750's scope= lists them all);
 * for "any of", write one Require per scope inside <RequireAny>. */
static authz_status scope_check(request_rec *r, const char *line,
                                const void *parsed)
{
    const mg_key *who = identity_of(r);
    const char *list = line, *w;
    const char *missing = NULL;

    if (!who) {
        return no_caller(r);
    }
    while (*(w = ap_getword_conf(r->pool, &list))) {
        if (!has_scope(who, w)) {
            missing = w;
            break;
        }
    }
    if (!missing) {
        return AUTHZ_GRANTED;
    }
    return deny(r, apr_psprintf(r->pool, "This route needs the scope '%s'.",
                                missing), MG_ERR_INSUFFICIENT_SCOPE,
                apr_psprintf(r->pool, "Bearer realm=\"modelgate\", "
                             "error=\"insufficient_scope\", scope=\"%s\"",
                             line));
}

/* Any tier on the line will do. */
static authz_status tier_check(request_rec *r, const char *line,
                               const void *parsed)
{
    const mg_key *who = identity_of(r);
    const char *list = line, *w;

    if (!who) {
        return no_caller(r);
    }
    while (*(w = ap_getword_conf(r->pool, &list))) {
        if (!strcmp(w, who->tier)) {
            return AUTHZ_GRANTED;
        }
    }
    return deny(r, apr_psprintf(r->pool, "This route is not available in "
                                "the tier '%s'.", who->tier),
                MG_ERR_INSUFFICIENT_TIER,
                "Bearer realm=\"modelgate\", error=\"insufficient_scope\"");
}

/* Scope tokens are RFC 6749 NQCHAR: nothing a challenge's quoted string
 * would have to escape. */
static const char *parse_words(cmd_parms *cmd, const char *line,
                               const void **parsed)
{
    const char *list = line, *w, *c;
    int n = 0;

    while (*(w = ap_getword_conf(cmd->temp_pool, &list))) {
        for (c = w; *c; c++) {
            if (*c < 0x21 || *c == '"' || *c == '\\' || *c > 0x7e) {
                return apr_psprintf(cmd->pool, "Require: '%s' is not a "
                                    "scope or tier name", w);
            }
        }
        n++;
    }
    if (n == 0) {
        return "Require modelgate-scope/modelgate-tier: name at least one";
    }
    *parsed = NULL;
    return NULL;
}

/* A tier no ModelGateTier declares is never a caller's (the key file's and
 * JWT's tiers are checked against the declared ones): the rule would
 * quietly refuse everybody, so it is a configuration error instead. */
static const char *parse_tiers(cmd_parms *cmd, const char *line,
                               const void **parsed)
{
    const char *list = line, *w, *err = parse_words(cmd, line, parsed);

    while (!err && *(w = ap_getword_conf(cmd->temp_pool, &list))) {
        err = mg_config_names(cmd, MG_NAMES_TIER, "Require modelgate-tier",
                              NULL, w);
    }
    return err;
}

static const authz_provider scope_provider = { scope_check, parse_words };
static const authz_provider tier_provider = { tier_check, parse_tiers };

void mg_identity_error_response(request_rec *r)
{
    const char *challenge;

    if (r->status == HTTP_FORBIDDEN
        && (challenge = apr_table_get(r->notes, MG_NOTE_CHALLENGE))) {
        apr_table_setn(r->err_headers_out, "WWW-Authenticate", challenge);
    }
}

void mg_identity_register(apr_pool_t *p)
{
    ap_register_provider(p, MG_IDENTITY_PROVIDER_GROUP, "key",
                         MG_IDENTITY_PROVIDER_VERSION, &key_provider);
    mg_identity_register_fixups();
    /* Per configuration, not cached per user: the answer depends on the
     * request's identity, which mod_authz_core does not know. */
    ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, "modelgate-scope",
                              AUTHZ_PROVIDER_VERSION, &scope_provider,
                              AP_AUTH_INTERNAL_PER_CONF);
    ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, "modelgate-tier",
                              AUTHZ_PROVIDER_VERSION, &tier_provider,
                              AP_AUTH_INTERNAL_PER_CONF);
}
