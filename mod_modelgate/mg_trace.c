/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_trace.c -- W3C trace context and request ids (mg_trace.h).
 */
#include <string.h>
#include <apr_strings.h>
#include "mg_trace.h"

void mg_trace_rng_seed(mg_trace_rng *g, apr_uint64_t seed)
{
    g->state = seed;
}

apr_uint64_t mg_trace_rng_next(mg_trace_rng *g)
{
    /* splitmix64: the state advances by a constant (atomically, so
     * threads never draw the same state), the output mixes it. */
    apr_uint64_t z = __atomic_add_fetch(&g->state,
                                        APR_UINT64_C(0x9e3779b97f4a7c15),
                                        __ATOMIC_RELAXED);
    z = (z ^ (z >> 30)) * APR_UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * APR_UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Two digits a byte: half the steps of one a nibble, per request. */
static const char hexpair[] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

static void put_hex(char *out, apr_uint64_t v)
{
    int i;

    for (i = 14; i >= 0; i -= 2) {
        memcpy(out + i, hexpair + 2 * (v & 0xff), 2);
        v >>= 8;
    }
}

/* `n` lower-case hex digits, not all '0'. */
static int hex_id(const char *s, int n)
{
    int i, nonzero = 0;

    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
        nonzero |= c != '0';
    }
    return nonzero;
}

static int hex2(const char *s)
{
    return ((s[0] >= '0' && s[0] <= '9') || (s[0] >= 'a' && s[0] <= 'f'))
           && ((s[1] >= '0' && s[1] <= '9') || (s[1] >= 'a' && s[1] <= 'f'));
}

int mg_trace_parse(const char *v, mg_trace *t)
{
    apr_size_t len;

    if (!v) {
        return 0;
    }
    len = strlen(v);
    if (len < MG_TRACEPARENT_LEN || !hex2(v) || !strncmp(v, "ff", 2)
        || v[2] != '-' || v[35] != '-' || v[52] != '-'
        || !hex_id(v + 3, MG_TRACE_ID_HEX)
        || !hex_id(v + 36, MG_TRACE_SPAN_HEX) || !hex2(v + 53)) {
        return 0;
    }
    /* Version 00 is exactly this long; a later one may go on after a
     * '-', and is read as far as 00 goes. */
    if (len > MG_TRACEPARENT_LEN
        && (!strncmp(v, "00", 2) || v[MG_TRACEPARENT_LEN] != '-')) {
        return 0;
    }
    memcpy(t->trace_id, v + 3, MG_TRACE_ID_HEX);
    t->trace_id[MG_TRACE_ID_HEX] = '\0';
    memcpy(t->parent_id, v + 36, MG_TRACE_SPAN_HEX);
    t->parent_id[MG_TRACE_SPAN_HEX] = '\0';
    t->flags[0] = v[53];
    t->flags[1] = v[54];
    t->flags[2] = '\0';
    return 1;
}

void mg_trace_start(mg_trace_rng *g, const char *traceparent, mg_trace *t)
{
    apr_uint64_t span;

    t->kept = mg_trace_parse(traceparent, t);
    if (!t->kept) {
        apr_uint64_t hi, lo;
        do {
            hi = mg_trace_rng_next(g);
            lo = mg_trace_rng_next(g);
        } while (!hi && !lo);
        put_hex(t->trace_id, hi);
        put_hex(t->trace_id + 16, lo);
        t->trace_id[MG_TRACE_ID_HEX] = '\0';
        t->parent_id[0] = '\0';
        /* Started here for a request someone wants traced end to end:
         * sampled, so the model server's tracer records its part. */
        memcpy(t->flags, "01", 3);
    }
    while (!(span = mg_trace_rng_next(g))) {
    }
    put_hex(t->span_id, span);
    t->span_id[MG_TRACE_SPAN_HEX] = '\0';
}

void mg_trace_format(const mg_trace *t, char *out)
{
    memcpy(out, "00-", 3);
    memcpy(out + 3, t->trace_id, MG_TRACE_ID_HEX);
    out[35] = '-';
    memcpy(out + 36, t->span_id, MG_TRACE_SPAN_HEX);
    out[52] = '-';
    out[53] = t->flags[0];
    out[54] = t->flags[1];
    out[55] = '\0';
}

const char *mg_trace_state_trim(apr_pool_t *p, const char *value)
{
    const char *member[MG_TRACESTATE_MEMBERS];
    apr_size_t mlen[MG_TRACESTATE_MEMBERS], total = 0;
    const char *s = value, *e;
    int n = 0, i, keep;
    char *out, *d;

    if (!value) {
        return NULL;
    }
    while (*s) {
        apr_size_t len;
        e = strchr(s, ',');
        len = e ? (apr_size_t)(e - s) : strlen(s);
        /* optional white space around each member */
        while (len && (*s == ' ' || *s == '\t')) {
            s++;
            len--;
        }
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) {
            len--;
        }
        if (len) {
            if (n == MG_TRACESTATE_MEMBERS) {
                return NULL;        /* more members than a list may hold */
            }
            member[n] = s;
            mlen[n++] = len;
        }
        if (!e) {
            break;
        }
        s = e + 1;
    }
    if (n == 0) {
        return NULL;
    }
    if (strlen(value) <= MG_TRACESTATE_MAX) {
        return value;
    }
    /* Too long: the long members go first, then members from the end. */
    for (i = 0; i < n; i++) {
        if (mlen[i] > MG_TRACESTATE_MEMBER_MAX) {
            mlen[i] = 0;
        }
    }
    for (keep = 0, i = 0; i < n; i++) {
        if (mlen[i]) {
            apr_size_t add = mlen[i] + (keep ? 1 : 0);
            if (total + add > MG_TRACESTATE_MAX) {
                break;
            }
            total += add;
            keep++;
        }
    }
    if (!keep) {
        return NULL;
    }
    d = out = apr_palloc(p, total + 1);
    for (i = 0; keep; i++) {
        if (mlen[i]) {
            if (d != out) {
                *d++ = ',';
            }
            memcpy(d, member[i], mlen[i]);
            d += mlen[i];
            keep--;
        }
    }
    *d = '\0';
    return out;
}

int mg_request_id_valid(const char *id)
{
    apr_size_t n = 0;

    if (!id) {
        return 0;
    }
    for (; id[n]; n++) {
        char c = id[n];
        if (n >= MG_REQUEST_ID_MAX
            || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                 || (c >= '0' && c <= '9') || c == '.' || c == '_'
                 || c == ':' || c == '-')) {
            return 0;
        }
    }
    return n > 0;
}
