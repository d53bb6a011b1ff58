/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_cache_body_tree.c -- the response cache's canonical writer as it was
 * until the tree-less one (plugins/cache/mg_cache_canon.c) replaced it:
 * the body parsed by jansson (JSON_REJECT_DUPLICATES), then its tree
 * written with members sorted.  Kept, unchanged but for its names, as the
 * oracle test_cache_canon.c compares the new writer with: the keys of
 * answers stored before must stay the keys of the same requests.
 * Tests only; never linked into the module.
 */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <apr_strings.h>
#include <jansson.h>
#include "mg_cache_body_tree.h"
#include "mg_json_scan.h"

/* ---- the canonical text ---------------------------------------------- */

/* jansson's json_dumps with JSON_SORT_KEYS writes the same text, through a
 * callback per piece and malloc'ed buffers; this writer is a third of its
 * cost, in the request's pool. */
typedef struct mg_sb {
    apr_pool_t *p;
    char *buf;
    apr_size_t len, cap;
} mg_sb;

/* The slow path: a larger buffer (rare: the first is the body's size). */
static void sb_grow(mg_sb *sb, apr_size_t n)
{
    apr_size_t cap = sb->cap * 2 > sb->len + n ? sb->cap * 2
                                                : sb->len + n + 64;
    char *buf = apr_palloc(sb->p, cap);

    memcpy(buf, sb->buf, sb->len);
    sb->buf = buf;
    sb->cap = cap;
}

/* Inline: the writer puts a piece or a character per token. */
static APR_INLINE void sb_put(mg_sb *sb, const char *s, apr_size_t n)
{
    if (n > sb->cap - sb->len) {
        sb_grow(sb, n);
    }
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
}

static APR_INLINE void sb_char(mg_sb *sb, char c)
{
    if (sb->len == sb->cap) {
        sb_grow(sb, 1);
    }
    sb->buf[sb->len++] = c;
}

static void sb_string(mg_sb *sb, const char *s, apr_size_t n)
{
    apr_size_t i, from = 0;
    char esc[8];

    sb_char(sb, '"');
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') {
            continue;
        }
        sb_put(sb, s + from, i - from);
        esc[0] = '\\';
        esc[1] = ch == '"' || ch == '\\' ? (char)ch
                 : ch == '\n' ? 'n' : ch == '\t' ? 't' : ch == '\r' ? 'r'
                 : ch == '\b' ? 'b' : ch == '\f' ? 'f' : 0;
        if (esc[1]) {
            sb_put(sb, esc, 2);
        }
        else {
            apr_snprintf(esc, sizeof(esc), "\\u%04X", ch);
            sb_put(sb, esc, 6);
        }
        from = i + 1;
    }
    sb_put(sb, s + from, n - from);
    sb_char(sb, '"');
}

/* A member, sorted by name: its value comes with it (no second lookup by
 * name in the object's hash table). */
typedef struct member {
    const char *k;
    json_t *v;
} member;

static int member_order(const void *a, const void *b)
{
    return strcmp(((const member *)a)->k, ((const member *)b)->k);
}

/* Request bodies have a handful of members: insertion sort below 16,
 * without qsort's merge buffer and calls through a pointer. */
static void sort_members(member *m, apr_size_t n)
{
    apr_size_t i, j;

    if (n > 16) {
        qsort(m, n, sizeof(*m), member_order);
        return;
    }
    for (i = 1; i < n; i++) {
        member x = m[i];
        for (j = i; j > 0 && strcmp(m[j - 1].k, x.k) > 0; j--) {
            m[j] = m[j - 1];
        }
        m[j] = x;
    }
}

/* An integer in decimal, as "%" JSON_INTEGER_FORMAT writes it. */
static void sb_integer(mg_sb *sb, json_int_t v)
{
    char num[24], *e = num + sizeof(num), *d = e;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v
                                  : (unsigned long long)v;

    do {
        *--d = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        *--d = '-';
    }
    sb_put(sb, d, (apr_size_t)(e - d));
}

/* Write `v`: members sorted by name at every level, no white space, strings
 * with only what must be escaped, integers as integers and reals with a
 * '.' or an exponent (0 and 0.0 stay apart).  0 past a depth jansson
 * would not have parsed anyway. */
static int is_ignored(const char *k, const char *const *ignore)
{
    for (; ignore && *ignore; ignore++) {
        if (!strcmp(k, *ignore)) {
            return 1;
        }
    }
    return 0;
}

/* `ignore`: top-level members left out (skipped here, so the tree, which
 * may be the core's, is never changed). */
static int emit(mg_sb *sb, json_t *v, int depth, const char *const *ignore)
{
    char num[40];
    apr_size_t i, n;

    if (depth > 2048) {
        return 0;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        member *m;
        const char *k;
        json_t *mv;
        n = json_object_size(v);
        m = apr_palloc(sb->p, (n ? n : 1) * sizeof(*m));
        i = 0;
        json_object_foreach(v, k, mv) {
            if (depth > 0 || !is_ignored(k, ignore)) {
                m[i].k = k;
                m[i++].v = mv;
            }
        }
        n = i;
        sort_members(m, n);
        sb_char(sb, '{');
        for (i = 0; i < n; i++) {
            if (i) {
                sb_char(sb, ',');
            }
            sb_string(sb, m[i].k, strlen(m[i].k));
            sb_char(sb, ':');
            if (!emit(sb, m[i].v, depth + 1, NULL)) {
                return 0;
            }
        }
        sb_char(sb, '}');
        return 1;
    }
    case JSON_ARRAY:
        n = json_array_size(v);
        sb_char(sb, '[');
        for (i = 0; i < n; i++) {
            if (i) {
                sb_char(sb, ',');
            }
            if (!emit(sb, json_array_get(v, i), depth + 1, NULL)) {
                return 0;
            }
        }
        sb_char(sb, ']');
        return 1;
    case JSON_STRING:
        sb_string(sb, json_string_value(v), json_string_length(v));
        return 1;
    case JSON_INTEGER:
        sb_integer(sb, json_integer_value(v));
        return 1;
    case JSON_REAL:
        n = (apr_size_t)snprintf(num, sizeof(num), "%.17g",
                                 json_real_value(v));
        if (n >= sizeof(num) - 3) {
            return 0;
        }
        /* Not as the writer this was: its %.17g wrote LC_NUMERIC's
         * decimal point, and [0.5] read "[0,5.0]" under a ',' locale,
         * the text of [0,5.0] (test_comma_locale_written). */
        n = mg_json_real_from_locale(num, n);
        if (!strpbrk(num, ".eE")) {
            num[n++] = '.';
            num[n++] = '0';
        }
        else {
            /* As jansson: no '+' and no leading zeros in an exponent. */
            char *e = strchr(num, 'e'), *d;
            if (e) {
                e++;
                if (*e == '-') {
                    e++;
                }
                for (d = e; *d == '+' || *d == '0'; d++) {
                }
                if (!*d) {
                    d--;                /* e+00: keep one 0 */
                }
                memmove(e, d, (apr_size_t)(num + n - d) + 1);
                n -= (apr_size_t)(d - e);
            }
        }
        sb_put(sb, num, n);
        return 1;
    case JSON_TRUE:
        sb_put(sb, "true", 4);
        return 1;
    case JSON_FALSE:
        sb_put(sb, "false", 5);
        return 1;
    case JSON_NULL:
        sb_put(sb, "null", 4);
        return 1;
    }
    return 0;
}

mg_cache_body_status mg_test_cache_body_of(apr_pool_t *p, json_t *root,
                                           apr_size_t len_hint,
                                           const char *const *ignore,
                                           mg_cache_body *out)
{
    json_t *v;
    mg_sb sb;

    if (!json_is_object(root)) {
        return MG_CACHE_BODY_NOT_OBJECT;
    }
    v = json_object_get(root, "model");
    out->model = json_is_string(v) ? apr_pstrdup(p, json_string_value(v))
                                   : NULL;
    out->stream = !is_ignored("stream", ignore)
                  && json_is_true(json_object_get(root, "stream"));
    v = is_ignored("temperature", ignore) ? NULL
        : json_object_get(root, "temperature");
    out->deterministic = json_is_number(v) && json_number_value(v) == 0.0;
    /* Sorted members and no spaces: one text per meaning.  Numbers keep
     * their type (0 and 0.0 differ), as a server may read them apart. */
    sb.p = p;
    sb.cap = len_hint + 64;
    sb.len = 0;
    sb.buf = apr_palloc(p, sb.cap);
    if (!emit(&sb, root, 0, ignore)) {
        return MG_CACHE_BODY_MALFORMED;
    }
    sb_put(&sb, "", 1);                 /* a C string too */
    out->canonical = sb.buf;
    out->len = sb.len - 1;
    return MG_CACHE_BODY_OK;
}

mg_cache_body_status mg_test_cache_body_tree(apr_pool_t *p,
                                             const char *buf, apr_size_t len,
                                             const char *const *ignore,
                                             mg_cache_body *out)
{
    json_error_t err;
    json_t *root;
    mg_cache_body_status st;

    /* Duplicates refused as the gate refuses them (mg_body.c): two
     * readings of one body must not disagree on what it says. */
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        return MG_CACHE_BODY_MALFORMED;
    }
    st = mg_test_cache_body_of(p, root, len, ignore, out);
    json_decref(root);
    return st;
}

