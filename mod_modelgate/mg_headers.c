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

/* Decimal digits of v at the end of buf, without a NUL; returns their
 * count.  On every request, so no format string is parsed. */
#define U64_DIGITS 20
static apr_size_t u64_digits(char buf[U64_DIGITS], apr_uint64_t v,
                             const char **start)
{
    char *s = buf + U64_DIGITS;

    do {
        *--s = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    *start = s;
    return (apr_size_t)(buf + U64_DIGITS - s);
}

/* v in decimal, in p: the OpenAI headers' numbers, without a format. */
static const char *u64_text(apr_pool_t *p, apr_uint64_t v)
{
    char buf[U64_DIGITS];
    const char *start;
    apr_size_t n = u64_digits(buf, v, &start);

    return apr_pstrmemdup(p, start, n);
}

/* Copy n bytes to *at, advance it. */
static void put(char **at, const char *s, apr_size_t n)
{
    memcpy(*at, s, n);
    *at += n;
}

/* Every text a decision's headers need is written into one allocation:
 * this runs for every admitted request, and a string per field, each
 * concatenated with apr_pstrcat, cost more than the decision itself. */
void mg_headers_build(apr_pool_t *p, const mg_layer *layers,
                      const mg_decision *d, mg_headers *h)
{
    const mg_limit_decision *b;
    const mg_layer *bl;
    const char *item[MG_LIMIT_MAX_LAYERS], *rem, *t, *ms = NULL, *lim = NULL;
    apr_size_t ilen[MG_LIMIT_MAX_LAYERS], plen = 0, blen, remlen, tlen;
    apr_size_t mslen = 0, limlen = 0, need;
    char rembuf[U64_DIGITS], tbuf[U64_DIGITS], msbuf[U64_DIGITS];
    char limbuf[U64_DIGITS], *buf, *at;
    int i;

    memset(h, 0, sizeof(*h));
    if (d->nlayers <= 0 || d->binding < 0) {
        return;
    }
    for (i = 0; i < d->nlayers; i++) {
        item[i] = layers[i].policy_item
                  ? layers[i].policy_item
                  : mg_headers_policy_item(p, layers[i].policy,
                                           layers[i].spec);
        ilen[i] = strlen(item[i]);
        plen += ilen[i] + (i ? 2 : 0);
    }

    bl = &layers[d->binding];
    b = &d->layer[d->binding];
    blen = strlen(bl->policy);
    remlen = u64_digits(rembuf, b->remaining, &rem);
    tlen = u64_digits(tbuf, (apr_uint64_t)mg_headers_seconds(
                          d->allowed ? b->reset : b->retry_after), &t);
    if (!bl->limit_text) {
        limlen = u64_digits(limbuf, b->limit, &lim);
    }
    if (!d->allowed) {
        mslen = u64_digits(msbuf, (apr_uint64_t)((b->retry_after + 999)
                                                 / 1000), &ms);
    }
    /* policy, "name";r=R;t=T, R, T, and the limit and the ms if needed */
    need = (d->nlayers > 1 ? plen + 1 : 0)
           + 1 + blen + 4 + remlen + 3 + tlen + 1
           + remlen + 1 + tlen + 1
           + (lim ? limlen + 1 : 0) + (ms ? mslen + 1 : 0);
    at = buf = apr_palloc(p, need);

    if (d->nlayers == 1) {
        h->policy = item[0];
    }
    else {
        h->policy = at;
        for (i = 0; i < d->nlayers; i++) {
            if (i) {
                put(&at, ", ", 2);
            }
            put(&at, item[i], ilen[i]);
        }
        *at++ = '\0';
    }
    h->ratelimit = at;
    put(&at, "\"", 1);
    put(&at, bl->policy, blen);
    put(&at, "\";r=", 4);
    put(&at, rem, remlen);
    put(&at, ";t=", 3);
    put(&at, t, tlen);
    *at++ = '\0';
    h->x_remaining = at;
    put(&at, rem, remlen);
    *at++ = '\0';
    h->x_reset = at;
    put(&at, t, tlen);
    *at++ = '\0';
    if (lim) {
        h->x_limit = at;
        put(&at, lim, limlen);
        *at++ = '\0';
    }
    else {
        h->x_limit = bl->limit_text;
    }
    if (!d->allowed) {
        h->retry_after = h->x_reset;
        h->retry_after_ms = at;
        put(&at, ms, mslen);
        *at++ = '\0';
        h->should_retry = b->retry_after > MG_HEADERS_RETRY_HORIZON
                          ? "false" : "true";
    }
}

/* ASCII lower case, as apr_tolower() in httpd's C locale, without a call
 * per character: header names are compared on every request. */
static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

int mg_header_name_is(const char *name, const char *want, int prefix)
{
    for (; *want; name++, want++) {
        char a = *name, b = *want;
        if (!a) {
            return 0;
        }
        a = a == '_' ? '-' : lower(a);
        b = b == '_' ? '-' : lower(b);
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

const char *mg_headers_duration(apr_pool_t *p, apr_interval_time_t usec)
{
    apr_int64_t ms = usec <= 0 ? 0 : (usec + 999) / 1000;
    apr_int64_t h = ms / 3600000, m = ms / 60000 % 60, sec = ms / 1000 % 60;
    apr_int64_t frac = ms % 1000;
    const char *s;

    if (ms < 1000) {
        return apr_pstrcat(p, u64_text(p, (apr_uint64_t)ms), "ms", NULL);
    }
    /* Seconds with as many decimals as they need: 1s, 1.5s, 1.25s. */
    if (!frac) {
        s = apr_pstrcat(p, u64_text(p, (apr_uint64_t)sec), "s", NULL);
    }
    else if (frac % 100 == 0) {
        s = apr_psprintf(p, "%" APR_INT64_T_FMT ".%" APR_INT64_T_FMT "s",
                         sec, frac / 100);
    }
    else if (frac % 10 == 0) {
        s = apr_psprintf(p, "%" APR_INT64_T_FMT ".%02" APR_INT64_T_FMT "s",
                         sec, frac / 10);
    }
    else {
        s = apr_psprintf(p, "%" APR_INT64_T_FMT ".%03" APR_INT64_T_FMT "s",
                         sec, frac);
    }
    if (h) {
        return apr_psprintf(p, "%" APR_INT64_T_FMT "h%" APR_INT64_T_FMT "m%s",
                            h, m, s);
    }
    return m ? apr_psprintf(p, "%" APR_INT64_T_FMT "m%s", m, s) : s;
}

/* Does layer i bind before layer j of the same kind? */
static int binds_before(const mg_decision *d, int i, int j)
{
    const mg_limit_decision *a = &d->layer[i], *b = &d->layer[j];

    if (!a->allowed != !b->allowed) {
        return !a->allowed;
    }
    if (!a->allowed) {
        return a->retry_after > b->retry_after;
    }
    /* The smaller share left: a.rem / a.lim < b.rem / b.lim. */
    return (unsigned __int128)a->remaining * b->limit
           < (unsigned __int128)b->remaining * a->limit;
}

static void trio(apr_pool_t *p, const mg_layer *layers, const mg_decision *d,
                 int tokens, const char **limit, const char **remaining,
                 const char **reset)
{
    int i, best = -1;

    for (i = 0; i < d->nlayers; i++) {
        int kind = layers[i].tokens != 0 && layers[i].tokens != MG_LAYER_MONEY;
        if (layers[i].tokens == MG_LAYER_MONEY || kind != tokens
            || (layers[i].shadow && !d->layer[i].allowed)) {
            continue;
        }
        if (best < 0 || binds_before(d, i, best)) {
            best = i;
        }
    }
    if (best < 0) {
        return;
    }
    *limit = u64_text(p, d->layer[best].limit);
    *remaining = u64_text(p, d->layer[best].remaining);
    *reset = mg_headers_duration(p, d->layer[best].allowed
                                    ? d->layer[best].reset
                                    : d->layer[best].retry_after);
}

void mg_headers_build_openai(apr_pool_t *p, const mg_layer *layers,
                             const mg_decision *d, mg_headers_openai *h)
{
    memset(h, 0, sizeof(*h));
    trio(p, layers, d, 0, &h->limit_requests, &h->remaining_requests,
         &h->reset_requests);
    trio(p, layers, d, 1, &h->limit_tokens, &h->remaining_tokens,
         &h->reset_tokens);
}
