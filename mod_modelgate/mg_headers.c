/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_headers.c -- RateLimit header values (see mg_headers.h).
 */
#include <string.h>
#include <apr_strings.h>
#include <apr_lib.h>
#include "mg_headers.h"

apr_int64_t mg_headers_seconds(apr_interval_time_t usec)
{
    if (usec <= 0) {
        return 0;
    }
    return (usec + APR_USEC_PER_SEC - 1) / APR_USEC_PER_SEC;
}

const char *mg_headers_policy_item(apr_pool_t *p, const char *name,
                                   const mg_limit_spec *spec)
{
    return apr_psprintf(p, "\"%s\";q=%" APR_UINT64_T_FMT ";w=%"
                        APR_INT64_T_FMT, name, spec->quota,
                        mg_headers_seconds(spec->window));
}

/* Decimal text of v: on every request, so no format string is parsed. */
static const char *u64_text(apr_pool_t *p, apr_uint64_t v)
{
    char buf[24], *s = buf + sizeof(buf);

    *--s = '\0';
    do {
        *--s = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return apr_pstrmemdup(p, s, (apr_size_t)(buf + sizeof(buf) - 1 - s));
}

void mg_headers_build(apr_pool_t *p, const mg_layer *layers,
                      const mg_decision *d, mg_headers *h)
{
    const mg_limit_decision *b;
    const mg_layer *bl;
    const char *t;
    int i;

    memset(h, 0, sizeof(*h));
    if (d->nlayers <= 0 || d->binding < 0) {
        return;
    }
    for (i = 0; i < d->nlayers; i++) {
        const char *item = layers[i].policy_item
                           ? layers[i].policy_item
                           : mg_headers_policy_item(p, layers[i].policy,
                                                    layers[i].spec);
        h->policy = h->policy ? apr_pstrcat(p, h->policy, ", ", item, NULL)
                              : item;
    }

    bl = &layers[d->binding];
    b = &d->layer[d->binding];
    t = u64_text(p, (apr_uint64_t)mg_headers_seconds(d->allowed ? b->reset
                                                     : b->retry_after));
    h->x_remaining = u64_text(p, b->remaining);
    h->ratelimit = apr_pstrcat(p, "\"", bl->policy, "\";r=", h->x_remaining,
                               ";t=", t, NULL);
    h->x_limit = bl->limit_text ? bl->limit_text : u64_text(p, b->limit);
    h->x_reset = t;
    if (!d->allowed) {
        h->retry_after = t;
        h->retry_after_ms = u64_text(p, (apr_uint64_t)
                                     ((b->retry_after + 999) / 1000));
        h->should_retry = b->retry_after > MG_HEADERS_RETRY_HORIZON
                          ? "false" : "true";
    }
}

int mg_header_name_is(const char *name, const char *want, int prefix)
{
    for (; *want; name++, want++) {
        char a = *name, b = *want;
        if (!a) {
            return 0;
        }
        a = a == '_' ? '-' : (char)apr_tolower(a);
        b = b == '_' ? '-' : (char)apr_tolower(b);
        if (a != b) {
            return 0;
        }
    }
    return prefix || !*name;
}

/* Does a token of `list` begin with `prefix`?  No allocation: this runs
 * for the Connection header of every request. */
static int list_names(const char *list, const char *prefix)
{
    const char *t = list;

    while (*t) {
        while (*t == ',' || apr_isspace(*t)) {
            t++;
        }
        /* The prefix holds no ',' or space: a match cannot run past the
         * token. */
        if (*t && mg_header_name_is(t, prefix, 1)) {
            return 1;
        }
        t += strcspn(t, ",");
    }
    return 0;
}

const char *mg_header_connection_without(apr_pool_t *p, const char *list,
                                         const char *prefix)
{
    char *copy, *state = NULL, *tok, *out = NULL;

    if (!list_names(list, prefix)) {
        return list;
    }
    copy = apr_pstrdup(p, list);
    for (tok = apr_strtok(copy, ",", &state); tok;
         tok = apr_strtok(NULL, ",", &state)) {
        char *end;
        while (apr_isspace(*tok)) {
            tok++;
        }
        end = tok + strlen(tok);
        while (end > tok && apr_isspace(end[-1])) {
            *--end = '\0';
        }
        if (*tok && !mg_header_name_is(tok, prefix, 1)) {
            out = out ? apr_pstrcat(p, out, ", ", tok, NULL) : tok;
        }
    }
    return out;
}
