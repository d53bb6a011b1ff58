/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_headers_out.c -- what of an upstream's response headers
 * reaches the client of a gated request.
 *
 * mod_proxy_http replaces r->headers_out with the upstream's headers; the
 * gateway's own are in r->err_headers_out, and httpd's header filter sends
 * both tables.  Unchecked, an upstream (or anything that answers a gated
 * request: a CGI, a ProxyPass of the admin's) could add a second
 * X-Modelgate-Model, a RateLimit that contradicts the gateway's, or an
 * X-Modelgate-Degraded the gateway never said.  So, on the first bytes of
 * the answer (the MODELGATE_OBSERVE filter, before the header filter):
 *
 *   - an upstream's X-Modelgate-* goes, however spelt (X_Modelgate_Model):
 *     the namespace is the gateway's, on responses as on requests;
 *   - of each rate limit family (mg_header_family: RateLimit and the
 *     X-RateLimit- three; OpenAI's -requests trio; its -tokens trio;
 *     Retry-After, retry-after-ms and x-should-retry), the upstream's go
 *     when the gateway sends any field of the family on this response,
 *     and pass when it sends none: then they are the only numbers there
 *     are, and they describe the upstream's own limits (OpenAI's
 *     x-ratelimit-*-tokens behind a route without token layers; an
 *     upstream's 429 and its Retry-After, which the gateway, admitting the
 *     request, did not answer itself).
 *
 * Every other field of the upstream's passes unchanged.
 */
#include <apr_strings.h>
#include "mod_modelgate_private.h"

/* The families of the fields in `t` (only names beginning with R or X can
 * have one). */
static unsigned families_of(const apr_table_t *t)
{
    const apr_array_header_t *arr = apr_table_elts(t);
    const apr_table_entry_t *e = (const apr_table_entry_t *)arr->elts;
    unsigned fam = 0;
    int i;

    for (i = 0; i < arr->nelts; i++) {
        const char *name = e[i].key;
        if (name && ((name[0] | 0x20) == 'x' || (name[0] | 0x20) == 'r')) {
            fam |= mg_header_family(name);
        }
    }
    return fam;
}

void mg_headers_out_scrub(request_rec *r)
{
    const apr_array_header_t *arr;
    const apr_table_entry_t *e;
    apr_array_header_t *names;
    unsigned sent, gone;
    int i;

    /* One pass and nothing else for an answer without a field of the
     * gateway's: this runs for every forwarded request. */
    sent = families_of(r->headers_out);
    if (!sent) {
        return;
    }
    gone = sent & (MG_HF_OURS | families_of(r->err_headers_out));
    if (!gone) {
        return;
    }
    /* Collected first: a table must not change while it is walked.
     * apr_table_unset takes every field of a name, whatever its case; a
     * spelling with '_' is a name of its own, collected on its own. */
    arr = apr_table_elts(r->headers_out);
    e = (const apr_table_entry_t *)arr->elts;
    names = apr_array_make(r->pool, 4, sizeof(const char *));
    for (i = 0; i < arr->nelts; i++) {
        if (e[i].key && (mg_header_family(e[i].key) & gone)) {
            APR_ARRAY_PUSH(names, const char *) = e[i].key;
        }
    }
    for (i = 0; i < names->nelts; i++) {
        apr_table_unset(r->headers_out, APR_ARRAY_IDX(names, i, const char *));
    }
}
