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
    int i, never = !d->allowed && d->never >= 0;

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
    /* A request no wait admits is told when the allowance is whole, not
     * a wait that would end in the same refusal. */
    tlen = u64_digits(tbuf, (apr_uint64_t)mg_headers_seconds(
                          d->allowed || never ? b->reset : b->retry_after),
                      &t);
    if (!bl->limit_text) {
        limlen = u64_digits(limbuf, b->limit, &lim);
    }
    if (!d->allowed && !never) {
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
    if (never) {
        h->should_retry = "false";
    }
    else if (!d->allowed) {
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

/* Bytes that are equal cost one comparison: the names compared are mostly
 * spelt as `want` is, or differ in their first bytes.  Case is folded only
 * where the bytes differ, and then only for letters (an ASCII letter's two
 * cases differ in bit 0x20 alone; '@' and '`' do too, and are no letters):
 * the end of `name` (0) is no letter either. */
int mg_header_name_is(const char *name, const char *want, int prefix)
{
    for (; *want; name++, want++) {
        unsigned char a = (unsigned char)*name, b = (unsigned char)*want;
        if (a == b) {
            continue;
        }
        if (a == '_') {
            a = '-';
        }
        else if (b == '_') {
            b = '-';
        }
        if (a != b && ((a | 0x20) != (b | 0x20)
                       || (unsigned)((a | 0x20) - 'a') > 'z' - 'a')) {
            return 0;
        }
    }
    return prefix || !*name;
}

/* After "X-RateLimit-": Limit, Remaining or Reset, alone (the legacy
 * three) or with OpenAI's -Requests or -Tokens. */
static unsigned ratelimit_field(const char *rest)
{
    static const char *const what[] = { "Limit", "Remaining", "Reset" };
    static const apr_size_t len[] = { 5, 9, 5 };
    int i;

    for (i = 0; i < 3; i++) {
        if (mg_header_name_is(rest, what[i], 1)) {
            rest += len[i];
            return !*rest ? MG_HF_RATELIMIT
                   : mg_header_name_is(rest, "-Requests", 0) ? MG_HF_REQUESTS
                   : mg_header_name_is(rest, "-Tokens", 0) ? MG_HF_TOKENS
                   : 0;
        }
    }
    return 0;
}

/* Runs for an upstream's answer's fields that begin with R or X: the
 * first letters decide which few names are compared at all. */
unsigned mg_header_family(const char *name)
{
    switch (lower(*name)) {
    case 'r':
        if (mg_header_name_is(name, "RateLimit", 1)) {
            name += 9;
            return !*name || mg_header_name_is(name, "-Policy", 0)
                   ? MG_HF_RATELIMIT : 0;
        }
        if (mg_header_name_is(name, "Retry-After", 1)) {
            name += 11;
            return !*name || mg_header_name_is(name, "-ms", 0)
                   ? MG_HF_RETRY : 0;
        }
        return 0;
    case 'x':
        if (name[1] != '-' && name[1] != '_') {
            return 0;
        }
        switch (lower(name[2])) {
        case 'm':
            return mg_header_name_is(name, MG_HEADER_NAMESPACE, 1)
                   ? MG_HF_OURS : 0;
        case 'r':
            return mg_header_name_is(name + 2, "RateLimit-", 1)
                   ? ratelimit_field(name + 12) : 0;
        case 's':
            return mg_header_name_is(name + 2, "Should-Retry", 0)
                   ? MG_HF_RETRY : 0;
        default:
            return 0;
        }
    default:
        return 0;
    }
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

/* Room for the longest duration text (the largest apr_interval_time_t:
 * "2562047788h0m54.776s") and its NUL. */
#define DURATION_MAX 32

/* Write a wait as mg_headers_duration() says at `out` (DURATION_MAX bytes
 * of room), with a NUL; returns its length.  No format string is parsed:
 * the x-ratelimit-reset-* headers are written for every request a token
 * layer applies to, and two apr_psprintf() cost ~850 instructions. */
static apr_size_t duration_put(char *out, apr_interval_time_t usec)
{
    apr_uint64_t ms = usec <= 0 ? 0 : ((apr_uint64_t)usec + 999) / 1000;
    apr_uint64_t h = ms / 3600000, m = ms / 60000 % 60, sec = ms / 1000 % 60;
    apr_uint64_t frac = ms % 1000;
    char digits[U64_DIGITS], *at = out;
    const char *d;
    apr_size_t n;

    if (ms < 1000) {
        n = u64_digits(digits, ms, &d);
        put(&at, d, n);
        put(&at, "ms", 3);
        return (apr_size_t)(at - out) - 1;
    }
    if (h) {
        n = u64_digits(digits, h, &d);
        put(&at, d, n);
        *at++ = 'h';
    }
    if (h || m) {
        n = u64_digits(digits, m, &d);
        put(&at, d, n);
        *at++ = 'm';
    }
    n = u64_digits(digits, sec, &d);
    put(&at, d, n);
    if (frac) {
        /* Seconds with as many decimals as they need: 1s, 1.5s, 1.25s. */
        *at++ = '.';
        *at++ = (char)('0' + frac / 100);
        if (frac % 100) {
            *at++ = (char)('0' + frac / 10 % 10);
            if (frac % 10) {
                *at++ = (char)('0' + frac % 10);
            }
        }
    }
    put(&at, "s", 2);
    return (apr_size_t)(at - out) - 1;
}

const char *mg_headers_duration(apr_pool_t *p, apr_interval_time_t usec)
{
    char buf[DURATION_MAX];
    apr_size_t n = duration_put(buf, usec);

    return apr_pstrmemdup(p, buf, n);
}

/* Does layer i bind before layer j of the same kind? */
static int binds_before(const mg_layer *layers, const mg_decision *d, int i,
                        int j)
{
    const mg_limit_decision *a = &d->layer[i], *b = &d->layer[j];

    if (!a->allowed != !b->allowed) {
        return !a->allowed;
    }
    if (!a->allowed) {
        return a->retry_after > b->retry_after;
    }
    return mg_limit_nearer(a, &layers[i], b, &layers[j]);
}

/* The layer of this kind (tokens or requests) whose numbers the trio
 * tells, or -1. */
static int trio_layer(const mg_layer *layers, const mg_decision *d,
                      int tokens)
{
    int i, best = -1;

    if (d->never >= 0 && !d->allowed
        && layers[d->never].tokens != MG_LAYER_MONEY
        && (layers[d->never].tokens != 0) == tokens) {
        return d->never;      /* what no wait will admit binds its kind */
    }
    for (i = 0; i < d->nlayers; i++) {
        int kind = layers[i].tokens != 0 && layers[i].tokens != MG_LAYER_MONEY;
        if (layers[i].tokens == MG_LAYER_MONEY || kind != tokens
            || (layers[i].shadow && !d->layer[i].allowed)) {
            continue;
        }
        if (best < 0 || binds_before(layers, d, i, best)) {
            best = i;
        }
    }
    return best;
}

/* Write layer i's trio at *at (room: TRIO_MAX): limit, remaining and
 * reset (`never`: the layer can never admit the request, and reset tells
 * when it is whole rather than a wait), each with its NUL. */
#define TRIO_MAX (2 * (U64_DIGITS + 1) + DURATION_MAX)
static void trio_put(char **at, const mg_layer *l, const mg_limit_decision *b,
                     int never, const char **limit, const char **remaining,
                     const char **reset)
{
    char digits[U64_DIGITS];
    const char *d;
    apr_size_t n;

    if (l->limit_text) {
        /* the quota's text, made once per limit: a decision's limit is
         * its quota */
        *limit = l->limit_text;
    }
    else {
        *limit = *at;
        n = u64_digits(digits, b->limit, &d);
        put(at, d, n);
        *(*at)++ = '\0';
    }
    *remaining = *at;
    n = u64_digits(digits, b->remaining, &d);
    put(at, d, n);
    *(*at)++ = '\0';
    *reset = *at;
    *at += duration_put(*at, b->allowed || never ? b->reset
                                                 : b->retry_after) + 1;
}

/* Both trios' texts in one allocation: this runs for every admitted
 * request a token layer applies to. */
void mg_headers_build_openai(apr_pool_t *p, const mg_layer *layers,
                             const mg_decision *d, mg_headers_openai *h)
{
    int req = trio_layer(layers, d, 0), tok = trio_layer(layers, d, 1);
    char *at;

    memset(h, 0, sizeof(*h));
    if (req < 0 && tok < 0) {
        return;
    }
    at = apr_palloc(p, (req >= 0 ? TRIO_MAX : 0) + (tok >= 0 ? TRIO_MAX : 0));
    if (req >= 0) {
        trio_put(&at, &layers[req], &d->layer[req],
                 !d->allowed && req == d->never, &h->limit_requests,
                 &h->remaining_requests, &h->reset_requests);
    }
    if (tok >= 0) {
        trio_put(&at, &layers[tok], &d->layer[tok],
                 !d->allowed && tok == d->never, &h->limit_tokens,
                 &h->remaining_tokens, &h->reset_tokens);
    }
}
