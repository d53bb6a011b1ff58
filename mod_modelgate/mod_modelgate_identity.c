/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_identity.c -- the request side of API-key identity: where
 * the credential is read from, and what the upstream is told instead.
 *
 * The credential is removed from the request as soon as it is read, so no
 * later hook, CGI environment, log format or upstream ever sees it.  Headers
 * in the X-Modelgate- namespace are the gateway's: whatever a client sends
 * there is dropped before identity is established.
 */
#include <apr_strings.h>
#include <apr_lib.h>
#include <strings.h>
#include "mod_modelgate_private.h"

#define MG_HDR_PREFIX     "X-Modelgate-"
#define MG_HDR_PREFIX_LEN (sizeof(MG_HDR_PREFIX) - 1)

typedef struct scrub_ctx {
    request_rec *r;
    apr_array_header_t *names;    /* made only when a client sent one */
} scrub_ctx;

static int collect_ours(void *rec, const char *name, const char *value)
{
    scrub_ctx *ctx = rec;

    if (!strncasecmp(name, MG_HDR_PREFIX, MG_HDR_PREFIX_LEN)) {
        if (!ctx->names) {
            ctx->names = apr_array_make(ctx->r->pool, 2, sizeof(char *));
        }
        APR_ARRAY_PUSH(ctx->names, const char *) = name;
    }
    return 1;
}

void mg_identity_scrub(request_rec *r)
{
    scrub_ctx ctx = { r, NULL };
    int i;

    /* Collected first: a table must not change while apr_table_do walks it. */
    apr_table_do(collect_ours, &ctx, r->headers_in, NULL);
    for (i = 0; ctx.names && i < ctx.names->nelts; i++) {
        apr_table_unset(r->headers_in,
                        APR_ARRAY_IDX(ctx.names, i, const char *));
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

const char *mg_identity_take_credential(request_rec *r, apr_size_t *len)
{
    const char *key = apr_table_get(r->headers_in, "X-API-Key");
    const char *auth = apr_table_get(r->headers_in, "Authorization");
    const char *bearer = bearer_token(auth);

    /* The gateway is the authentication point of these routes: neither
     * header may travel further, whichever one carried the key. */
    apr_table_unset(r->headers_in, "X-API-Key");
    if (auth) {
        apr_table_unset(r->headers_in, "Authorization");
    }
    if (key) {
        while (apr_isspace(*key)) {
            key++;
        }
        if (*key) {
            *len = trimmed_len(key);
            return key;
        }
    }
    if (bearer) {
        *len = trimmed_len(bearer);
        return bearer;
    }
    return NULL;
}

void mg_identity_announce(request_rec *r, const mg_key *key)
{
    apr_table_setn(r->headers_in, "X-Modelgate-Tenant", key->tenant);
    apr_table_setn(r->headers_in, "X-Modelgate-Tier", key->tier);
    apr_table_setn(r->headers_in, "X-Modelgate-Key-Id", key->id);
    apr_table_setn(r->subprocess_env, "MODELGATE_TENANT", key->tenant);
    apr_table_setn(r->subprocess_env, "MODELGATE_TIER", key->tier);
    apr_table_setn(r->subprocess_env, "MODELGATE_KEY_ID", key->id);
    r->user = (char *)key->id;
}
