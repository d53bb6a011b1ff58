/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_identity.c -- the request side of API-key identity: where
 * the credential is read from, and what the upstream is told instead.
 *
 * The credential is removed from the request as soon as it is read, so no
 * later hook, CGI environment, log format or upstream ever sees it.  Headers
 * in the X-Modelgate- namespace are the gateway's: whatever a client sends
 * there is dropped before identity is established, spelt with '_' for '-'
 * too, and so are Connection tokens that name them (mod_proxy would strip
 * the gateway's own as hop-by-hop headers).
 */
#include <apr_strings.h>
#include <apr_lib.h>
#include <strings.h>
#include <http_request.h>
#include "mod_modelgate_private.h"

#define MG_KEY_HEADER     "X-API-Key"

typedef struct scrub_ctx {
    request_rec *r;
    apr_array_header_t *names;    /* made only when a client sent one */
    int connection;               /* a Connection header names one */
} scrub_ctx;

/* A name in the gateway's namespace, however a client spells it. */
static int ours(const char *name)
{
    return mg_header_name_is(name, MG_HEADER_NAMESPACE, 1);
}

/* A Connection header that names one of ours: mod_proxy would drop it as
 * hop-by-hop. */
static int connection_names_ours(apr_pool_t *p, const char *name,
                                 const char *value)
{
    return !strcasecmp(name, "Connection")
           && mg_header_connection_without(p, value, MG_HEADER_NAMESPACE)
              != value;
}

static void collect_ours(scrub_ctx *ctx, const char *name, const char *value)
{
    /* X_API_Key is not a credential here, but an upstream that reads it
     * as X-API-Key must not get one either. */
    if (ours(name) || (mg_header_name_is(name, MG_KEY_HEADER, 0)
                       && strcasecmp(name, MG_KEY_HEADER))) {
        if (!ctx->names) {
            ctx->names = apr_array_make(ctx->r->pool, 2, sizeof(char *));
        }
        APR_ARRAY_PUSH(ctx->names, const char *) = name;
    }
    else if (connection_names_ours(ctx->r->pool, name, value)) {
        ctx->connection = 1;
    }
}

/* Connection: X-Modelgate-Tenant would make mod_proxy drop the identity
 * the gateway adds as a hop-by-hop header: those tokens go. */
static void scrub_connection(request_rec *r)
{
    const apr_array_header_t *arr = apr_table_elts(r->headers_in);
    const apr_table_entry_t *e = (const apr_table_entry_t *)arr->elts;
    const char *kept = NULL;
    int i;

    for (i = 0; i < arr->nelts; i++) {
        const char *v;
        if (!e[i].key || strcasecmp(e[i].key, "Connection")) {
            continue;
        }
        v = mg_header_connection_without(r->pool, e[i].val,
                                         MG_HEADER_NAMESPACE);
        if (v) {
            kept = kept ? apr_pstrcat(r->pool, kept, ", ", v, NULL) : v;
        }
    }
    if (kept) {
        apr_table_setn(r->headers_in, "Connection", kept);
    }
    else {
        apr_table_unset(r->headers_in, "Connection");
    }
}

void mg_identity_scrub(request_rec *r)
{
    const apr_array_header_t *arr = apr_table_elts(r->headers_in);
    const apr_table_entry_t *e = (const apr_table_entry_t *)arr->elts;
    scrub_ctx ctx = { r, NULL, 0 };
    int i;

    /* Collected first: a table must not change while it is walked.  Only a
     * name beginning with X or C can be one of the gateway's, a spelling of
     * X-API-Key, or Connection: every other header is passed over with one
     * comparison (this runs for every request). */
    for (i = 0; i < arr->nelts; i++) {
        const char *name = e[i].key;
        if (name && ((name[0] | 0x20) == 'x' || (name[0] | 0x20) == 'c')) {
            collect_ours(&ctx, name, e[i].val);
        }
    }
    for (i = 0; ctx.names && i < ctx.names->nelts; i++) {
        apr_table_unset(r->headers_in,
                        APR_ARRAY_IDX(ctx.names, i, const char *));
    }
    if (ctx.connection) {
        scrub_connection(r);
    }
}

/* The token of "Authorization: Bearer TOKEN", or NULL. */
static const char *bearer_token(const char *auth)
{
    if (!auth || strncasecmp(auth, "Bearer", 6) || !apr_isspace(auth[6])) {
        return NULL;
    }
    auth += 6;
    while (apr_isspace(*auth)) {
        auth++;
    }
    return *auth ? auth : NULL;
}

static apr_size_t trimmed_len(const char *s)
{
    apr_size_t n = strlen(s);

    while (n > 0 && apr_isspace(s[n - 1])) {
        n--;
    }
    return n;
}

const char *mg_identity_take_credential(request_rec *r, apr_size_t *len,
                                        int *bearer)
{
    const char *key = apr_table_get(r->headers_in, MG_KEY_HEADER);
    const char *auth = apr_table_get(r->headers_in, "Authorization");
    const char *token = bearer_token(auth);

    /* The gateway is the authentication point of these routes: neither
     * header may travel further, whichever one carried the key. */
    apr_table_unset(r->headers_in, MG_KEY_HEADER);
    if (auth) {
        apr_table_unset(r->headers_in, "Authorization");
    }
    if (key) {
        while (apr_isspace(*key)) {
            key++;
        }
        if (*key) {
            *len = trimmed_len(key);
            *bearer = 0;
            return key;
        }
    }
    if (token) {
        *len = trimmed_len(token);
        *bearer = 1;
        return token;
    }
    return NULL;
}

/* The names the gate announces under: their pointers are how
 * announced_intact() knows the gate's own entries. */
static const char hdr_tenant[] = "X-Modelgate-Tenant";
static const char hdr_tier[] = "X-Modelgate-Tier";
static const char hdr_key_id[] = "X-Modelgate-Key-Id";

static void announce_headers(request_rec *r, const mg_key *key)
{
    /* mg_identity_scrub() removed every X-Modelgate- header, however
     * spelt: adding is setting, without a scan of the table per name. */
    apr_table_addn(r->headers_in, hdr_tenant, key->tenant);
    apr_table_addn(r->headers_in, hdr_tier, key->tier);
    apr_table_addn(r->headers_in, hdr_key_id, key->id);
}

void mg_identity_announce(request_rec *r, const mg_key *key)
{
    announce_headers(r, key);
    if (apr_is_empty_table(r->subprocess_env)) {
        apr_table_addn(r->subprocess_env, "MODELGATE_TENANT", key->tenant);
        apr_table_addn(r->subprocess_env, "MODELGATE_TIER", key->tier);
        apr_table_addn(r->subprocess_env, "MODELGATE_KEY_ID", key->id);
    }
    else {
        /* SetEnvIf may have set them: the gateway's values replace those. */
        apr_table_setn(r->subprocess_env, "MODELGATE_TENANT", key->tenant);
        apr_table_setn(r->subprocess_env, "MODELGATE_TIER", key->tier);
        apr_table_setn(r->subprocess_env, "MODELGATE_KEY_ID", key->id);
    }
    r->user = (char *)key->id;
}


/* Are the X-Modelgate-* request headers still exactly the three the gate
 * added, and does no Connection header name one of them?  One pass; only
 * names beginning with X or C are looked at. */
static int announced_intact(request_rec *r, const mg_key *key)
{
    const apr_array_header_t *arr = apr_table_elts(r->headers_in);
    const apr_table_entry_t *e = (const apr_table_entry_t *)arr->elts;
    int i, found = 0;

    for (i = 0; i < arr->nelts; i++) {
        const char *name = e[i].key;
        if (!name || ((name[0] | 0x20) != 'x' && (name[0] | 0x20) != 'c')) {
            continue;
        }
        if ((name == hdr_tenant && e[i].val == key->tenant)
            || (name == hdr_tier && e[i].val == key->tier)
            || (name == hdr_key_id && e[i].val == key->id)) {
            found++;
        }
        else if (ours(name) || connection_names_ours(r->pool, name, e[i].val)) {
            return 0;
        }
    }
    return found == 3;
}

/* fixups, really last: the model server (or a CGI) gets the gate's
 * identity under X-Modelgate-* and nothing else.  Modules running in fixups
 * after the gate can change the request's headers -- mod_headers'
 * RequestHeader (APR_HOOK_LAST) from an .htaccess allowed FileInfo could
 * tell the model server a request came from another tenant, tier or key,
 * or name the gate's headers in Connection so mod_proxy drops them. */
static int identity_fixups(request_rec *r)
{
    const mg_request *req = ap_get_module_config(r->request_config,
                                                 &modelgate_module);

    if (!req || !req->identity || announced_intact(r, req->identity)) {
        return DECLINED;
    }
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MGLOGNO(00208)
                  "X-Modelgate-* request headers were changed after the "
                  "gate set them (a RequestHeader here?): the gate's "
                  "identity replaces them");
    mg_identity_scrub(r);
    announce_headers(r, req->identity);
    return DECLINED;
}

void mg_identity_register_fixups(void)
{
    ap_hook_fixups(identity_fixups, NULL, NULL, APR_HOOK_REALLY_LAST);
}
