/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_json_scan.c -- one pass over a JSON text: validate it as jansson would
 * and note where the root object's members of interest stand (see
 * mg_json_scan.h).  No tree, no recursion: containers are one bit each on
 * a fixed stack, strings are skipped through a byte-class table four bytes
 * at a time, and nothing is copied unless a member name holds escapes.
 */
#include <errno.h>
#include <langinfo.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <apr_strings.h>
#include "mg_json_scan.h"

#define MG_JSON_MEMBERS_MAX 16
#define MG_JSON_KEYS_STACK 64

/* Bytes a string may hold as they are: 0.  '"' 1, '\\' 2, control 3,
 * non-ASCII 4 (a UTF-8 sequence to check). */
static const unsigned char str_class[256] = {
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4
};

#define IS_WS(c) ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')
#define IS_DIGIT(c) ((unsigned)((c) - '0') < 10)

static int hex4(const unsigned char *s)
{
    int v = 0, i, c;

    for (i = 0; i < 4; i++) {
        c = s[i];
        if (IS_DIGIT(c)) {
            c -= '0';
        }
        else if (c >= 'a' && c <= 'f') {
            c -= 'a' - 10;
        }
        else if (c >= 'A' && c <= 'F') {
            c -= 'A' - 10;
        }
        else {
            return -1;
        }
        v = (v << 4) | c;
    }
    return v;
}

/* One UTF-8 sequence at s (*s >= 0x80), strict as jansson's utf8_check_*:
 * its length, or 0 when it is not well formed. */
static int utf8_len(const unsigned char *s, const unsigned char *e)
{
    unsigned c = s[0], lo = 0x80, hi = 0xBF;
    int n, i;

    if (c < 0xC2) {
        return 0;             /* a continuation byte, or overlong C0/C1 */
    }
    if (c < 0xE0) {
        n = 2;
    }
    else if (c < 0xF0) {
        n = 3;
        if (c == 0xE0) {
            lo = 0xA0;        /* overlong */
        }
        else if (c == 0xED) {
            hi = 0x9F;        /* a surrogate */
        }
    }
    else if (c < 0xF5) {
        n = 4;
        if (c == 0xF0) {
            lo = 0x90;        /* overlong */
        }
        else if (c == 0xF4) {
            hi = 0x8F;        /* above U+10FFFF */
        }
    }
    else {
        return 0;
    }
    if (e - s < n || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (i = 2; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    return n;
}

/* s just after an opening quote: just after the closing one, or NULL with
 * *err set.  *escaped tells whether a backslash was met. */
static const unsigned char *scan_string(const unsigned char *s,
                                        const unsigned char *e, int *escaped,
                                        const char **err)
{
    int u, n;

    for (;;) {
        while (e - s >= 4 && !(str_class[s[0]] | str_class[s[1]]
                               | str_class[s[2]] | str_class[s[3]])) {
            s += 4;
        }
        while (s < e && !str_class[*s]) {
            s++;
        }
        if (s >= e) {
            *err = "premature end of input";
            return NULL;
        }
        switch (str_class[*s]) {
        case 1:
            return s + 1;
        case 3:
            *err = "control character in string";
            return NULL;
        case 4:
            if (!(n = utf8_len(s, e))) {
                *err = "invalid UTF-8 in string";
                return NULL;
            }
            s += n;
            continue;
        default:
            break;
        }
        *escaped = 1;
        if (e - s < 2) {
            *err = "premature end of input";
            return NULL;
        }
        if (s[1] != 'u') {
            if (!strchr("\"\\/bfnrt", s[1]) || !s[1]) {
                *err = "invalid escape";
                return NULL;
            }
            s += 2;
            continue;
        }
        if (e - s < 6 || (u = hex4(s + 2)) < 0) {
            *err = e - s < 6 ? "premature end of input" : "invalid escape";
            return NULL;
        }
        s += 6;
        if (u == 0) {
            *err = "\\u0000 is not allowed";
            return NULL;
        }
        if (u >= 0xDC00 && u <= 0xDFFF) {
            *err = "invalid Unicode (a lone low surrogate)";
            return NULL;
        }
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (e - s < 6 || s[0] != '\\' || s[1] != 'u'
                || (u = hex4(s + 2)) < 0xDC00 || u > 0xDFFF) {
                *err = "invalid Unicode (a lone high surrogate)";
                return NULL;
            }
            s += 6;
        }
    }
}

/* Does the real number text [s, e) overflow a double?  Decided from its
 * magnitude; only within a decade of DBL_MAX does strtod have to say. */
static int real_overflows(const unsigned char *s, const unsigned char *e)
{
    const unsigned char *p = s, *sig = NULL;
    long mag = 0, ex = 0;
    int eneg = 0;
    char tmp[1100], *t;
    double d;

    if (*p == '-') {
        p++;
    }
    for (; p < e && IS_DIGIT(*p); p++) {
        if (!sig && *p != '0') {
            sig = p;
        }
        if (sig) {
            mag++;
        }
    }
    if (p < e && *p == '.') {
        for (p++; p < e && IS_DIGIT(*p); p++) {
            if (!sig && *p != '0') {
                sig = p;
            }
            if (!sig) {
                mag--;
            }
        }
    }
    if (!sig) {
        return 0;             /* zero, whatever its exponent */
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (*p == '+' || *p == '-') {
            eneg = *p++ == '-';
        }
        for (; p < e && IS_DIGIT(*p); p++) {
            if (ex < 1000000) {
                ex = ex * 10 + (*p - '0');
            }
        }
    }
    mag += eneg ? -ex : ex;   /* the value is in [10^(mag-1), 10^mag) */
    if (mag <= 308) {
        return 0;
    }
    if (mag >= 310) {
        return 1;
    }
    if ((apr_size_t)(e - s) < sizeof(tmp) - MG_JSON_POINT_ROOM) {
        memcpy(tmp, s, e - s);
        tmp[e - s] = '\0';
    }
    else {
        /* Normalised as 0.DDD...e<mag>, the digits cut at 1000: the only
         * text read differently from jansson is one of more than 1000
         * significant digits within half an ulp of DBL_MAX. */
        t = tmp;
        *t++ = '0';
        *t++ = '.';
        for (p = sig; p < e && t < tmp + 1010 && *p != 'e' && *p != 'E';
             p++) {
            if (IS_DIGIT(*p)) {
                *t++ = (char)*p;
            }
        }
        apr_snprintf(t, sizeof(tmp) - (t - tmp), "e%ld", mag);
    }
    /* strtod reads the locale's decimal point: a module or a script that
     * set LC_NUMERIC to one with a ',' would make it stop at the '.' */
    mg_json_real_to_locale(tmp, sizeof(tmp));
    errno = 0;
    d = strtod(tmp, NULL);
    return (d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE;
}

/* s at '-' or a digit: just after the number, or NULL with *err set. */
static const unsigned char *scan_number(const unsigned char *s,
                                        const unsigned char *e, int *real,
                                        apr_int64_t *value, const char **err)
{
    const unsigned char *start = s;
    apr_uint64_t u = 0;
    int neg = 0, big = 0;

    *real = 0;
    if (*s == '-') {
        neg = 1;
        s++;
    }
    if (s < e && *s == '0') {
        s++;
    }
    else if (s < e && IS_DIGIT(*s)) {
        for (; s < e && IS_DIGIT(*s); s++) {
            if (u > (APR_UINT64_MAX - 9) / 10) {
                big = 1;
            }
            else {
                u = u * 10 + (apr_uint64_t)(*s - '0');
            }
        }
    }
    else {
        *err = "invalid number";
        return NULL;
    }
    if (s < e && IS_DIGIT(*s)) {
        *err = "invalid number (a leading zero)";
        return NULL;
    }
    if (s < e && *s == '.') {
        *real = 1;
        if (++s >= e || !IS_DIGIT(*s)) {
            *err = "invalid number";
            return NULL;
        }
        while (s < e && IS_DIGIT(*s)) {
            s++;
        }
    }
    if (s < e && (*s == 'e' || *s == 'E')) {
        *real = 1;
        if (++s < e && (*s == '+' || *s == '-')) {
            s++;
        }
        if (s >= e || !IS_DIGIT(*s)) {
            *err = "invalid number";
            return NULL;
        }
        while (s < e && IS_DIGIT(*s)) {
            s++;
        }
    }
    if (*real) {
        if (real_overflows(start, s)) {
            *err = "real number overflow";
            return NULL;
        }
        return s;
    }
    if (big || u > (apr_uint64_t)APR_INT64_MAX + (apr_uint64_t)neg) {
        *err = neg ? "too big negative integer" : "too big integer";
        return NULL;
    }
    *value = neg ? (apr_int64_t)(0 - u) : (apr_int64_t)u;
    return s;
}

/* ---- the root object's member names, for the duplicate check ------------ */

typedef struct {
    const char *k;
    apr_size_t klen;
    apr_uint32_t h;
} key_slot;

typedef struct {
    key_slot *slots;
    apr_size_t mask, used;
    key_slot local[MG_JSON_KEYS_STACK];
    apr_pool_t *p;
} key_set;

static apr_uint32_t key_hash(const char *k, apr_size_t n)
{
    apr_uint32_t h = 2166136261u;

    while (n--) {
        h = (h ^ (unsigned char)*k++) * 16777619u;
    }
    return h | 1;             /* 0 marks a free slot */
}

static void key_put(key_slot *slots, apr_size_t mask, const key_slot *ks)
{
    apr_size_t i = ks->h & mask;

    while (slots[i].h) {
        i = (i + 1) & mask;
    }
    slots[i] = *ks;
}

/* 0 when the name was there already. */
static int key_add(key_set *set, const char *k, apr_size_t n)
{
    key_slot ks, *old;
    apr_size_t i, oldmask;

    ks.k = k;
    ks.klen = n;
    ks.h = key_hash(k, n);
    for (i = ks.h & set->mask; set->slots[i].h; i = (i + 1) & set->mask) {
        if (set->slots[i].h == ks.h && set->slots[i].klen == n
            && !memcmp(set->slots[i].k, k, n)) {
            return 0;
        }
    }
    if (++set->used * 4 > (set->mask + 1) * 3) {
        old = set->slots;
        oldmask = set->mask;
        set->mask = set->mask * 2 + 1;
        set->slots = apr_pcalloc(set->p, (set->mask + 1) * sizeof(key_slot));
        for (i = 0; i <= oldmask; i++) {
            if (old[i].h) {
                key_put(set->slots, set->mask, &old[i]);
            }
        }
    }
    key_put(set->slots, set->mask, &ks);
    return 1;
}

/* ---- the scan ------------------------------------------------------------ */

#define PUSH(obj) (stack[depth >> 3] = (unsigned char)((obj) \
    ? stack[depth >> 3] | (1u << (depth & 7)) \
    : stack[depth >> 3] & ~(1u << (depth & 7))), depth++)
#define TOP_IS_OBJ() (stack[(depth - 1) >> 3] & (1u << ((depth - 1) & 7)))

static int fail(const char *buf, const unsigned char *at, const char *why,
                mg_json_result *res)
{
    const char *p, *nl = NULL;

    res->error = why;
    res->offset = (apr_size_t)((const char *)at - buf);
    res->line = 1;
    for (p = buf; p < (const char *)at; p++) {
        if (*p == '\n') {
            res->line++;
            nl = p;
        }
    }
    res->column = (int)((const char *)at - (nl ? nl + 1 : buf)) + 1;
    return -1;
}

int mg_json_scan(apr_pool_t *p, const char *buf, apr_size_t len,
                 mg_json_member *members, int n, mg_json_result *res)
{
    const unsigned char *s = (const unsigned char *)buf, *e = s + len, *t;
    const unsigned char *ks = NULL, *vs = NULL;
    unsigned char stack[MG_JSON_MAX_DEPTH / 8];
    apr_size_t namelen[MG_JSON_MEMBERS_MAX];
    unsigned depth = 0;
    int i, real = 0, escaped, want = -1, pending = 0;
    apr_int64_t ival = 0;
    const char *err = NULL, *k;
    apr_size_t klen;
    key_set keys;

    res->root = MG_JSON_ABSENT;
    res->error = NULL;
    res->offset = 0;
    res->line = res->column = 0;
    if (n > MG_JSON_MEMBERS_MAX) {
        n = MG_JSON_MEMBERS_MAX;
    }
    for (i = 0; i < n; i++) {
        members[i].kind = MG_JSON_ABSENT;
        members[i].start = members[i].end = 0;
        members[i].integer = 0;
        members[i].escaped = 0;
        namelen[i] = strlen(members[i].name);
    }
    keys.slots = keys.local;
    keys.mask = MG_JSON_KEYS_STACK - 1;
    keys.used = 0;
    keys.p = p;
    memset(keys.local, 0, sizeof(keys.local));

    while (s < e && IS_WS(*s)) {
        s++;
    }
    if (s >= e || (*s != '{' && *s != '[')) {
        return fail(buf, s, "'[' or '{' expected", res);
    }
    res->root = *s == '{' ? MG_JSON_OBJECT : MG_JSON_ARRAY;

value:
    while (s < e && IS_WS(*s)) {
        s++;
    }
    if (s >= e) {
        return fail(buf, s, "premature end of input", res);
    }
    if (depth >= MG_JSON_MAX_DEPTH) {
        return fail(buf, s, "maximum parsing depth reached", res);
    }
    if (pending == 1 && depth == 1) {
        vs = s;               /* a root member's value starts */
        pending = 2;
    }
    switch (*s) {
    case '{':
        PUSH(1);
        s++;
        while (s < e && IS_WS(*s)) {
            s++;
        }
        if (s < e && *s == '}') {
            s++;
            depth--;
            goto after_value;
        }
        goto key;
    case '[':
        PUSH(0);
        s++;
        while (s < e && IS_WS(*s)) {
            s++;
        }
        if (s < e && *s == ']') {
            s++;
            depth--;
            goto after_value;
        }
        goto value;
    case '"':
        escaped = 0;
        if (!(t = scan_string(s + 1, e, &escaped, &err))) {
            return fail(buf, s, err, res);
        }
        s = t;
        goto after_value;
    case 't':
        if (e - s < 4 || memcmp(s, "true", 4)) {
            return fail(buf, s, "invalid token", res);
        }
        s += 4;
        goto after_value;
    case 'f':
        if (e - s < 5 || memcmp(s, "false", 5)) {
            return fail(buf, s, "invalid token", res);
        }
        s += 5;
        goto after_value;
    case 'n':
        if (e - s < 4 || memcmp(s, "null", 4)) {
            return fail(buf, s, "invalid token", res);
        }
        s += 4;
        goto after_value;
    default:
        if (*s != '-' && !IS_DIGIT(*s)) {
            return fail(buf, s, "invalid token", res);
        }
        if (!(t = scan_number(s, e, &real, &ival, &err))) {
            return fail(buf, s, err, res);
        }
        s = t;
        goto after_value;
    }

key:
    /* s is past whitespace, inside an object */
    if (s >= e || *s != '"') {
        return fail(buf, s, s >= e ? "premature end of input"
                                   : "string or '}' expected", res);
    }
    ks = s;
    escaped = 0;
    if (!(t = scan_string(s + 1, e, &escaped, &err))) {
        return fail(buf, s, err, res);
    }
    s = t;
    if (depth == 1) {
        /* A member of the root: refused when named twice; noted when
         * asked for. */
        if (escaped) {
            k = mg_json_string(p, buf, (apr_size_t)(ks - (const unsigned char
                                                          *)buf),
                               (apr_size_t)(s - (const unsigned char *)buf),
                               &klen);
        }
        else {
            k = (const char *)ks + 1;
            klen = (apr_size_t)(s - ks) - 2;
        }
        if (!key_add(&keys, k, klen)) {
            return fail(buf, ks, "duplicate object key", res);
        }
        want = -1;
        for (i = 0; i < n; i++) {
            if (namelen[i] == klen && !memcmp(members[i].name, k, klen)) {
                want = i;
                break;
            }
        }
        pending = 1;
    }
    while (s < e && IS_WS(*s)) {
        s++;
    }
    if (s >= e || *s != ':') {
        return fail(buf, s, s >= e ? "premature end of input"
                                   : "':' expected", res);
    }
    s++;
    goto value;

after_value:
    if (pending == 2 && depth == 1) {
        /* A root member's value just ended: note it when asked for. */
        pending = 0;
        if (want >= 0) {
            mg_json_member *m = &members[want];

            t = vs;
            m->start = (apr_size_t)((const char *)t - buf);
            m->end = (apr_size_t)((const char *)s - buf);
            switch (*t) {
            case '{': m->kind = MG_JSON_OBJECT; break;
            case '[': m->kind = MG_JSON_ARRAY; break;
            case 't': m->kind = MG_JSON_TRUE; break;
            case 'f': m->kind = MG_JSON_FALSE; break;
            case 'n': m->kind = MG_JSON_NULL; break;
            case '"':
                m->kind = MG_JSON_STRING;
                m->escaped = memchr(t, '\\', (apr_size_t)(s - t)) != NULL;
                break;
            default:
                m->kind = real ? MG_JSON_REAL : MG_JSON_INTEGER;
                m->integer = real ? 0 : ival;
                break;
            }
        }
    }
    if (depth == 0) {
        while (s < e && IS_WS(*s)) {
            s++;
        }
        if (s < e) {
            return fail(buf, s, "end of file expected", res);
        }
        return 0;
    }
    while (s < e && IS_WS(*s)) {
        s++;
    }
    if (s >= e) {
        return fail(buf, s, "premature end of input", res);
    }
    if (TOP_IS_OBJ()) {
        if (*s == ',') {
            s++;
            while (s < e && IS_WS(*s)) {
                s++;
            }
            goto key;
        }
        if (*s == '}') {
            s++;
            depth--;
            goto after_value;
        }
        return fail(buf, s, "',' or '}' expected", res);
    }
    if (*s == ',') {
        s++;
        goto value;
    }
    if (*s == ']') {
        s++;
        depth--;
        goto after_value;
    }
    return fail(buf, s, "',' or ']' expected", res);
}

static void put_utf8(char **o, unsigned cp)
{
    unsigned char *u = (unsigned char *)*o;

    if (cp < 0x80) {
        *u++ = (unsigned char)cp;
    }
    else if (cp < 0x800) {
        *u++ = (unsigned char)(0xC0 | (cp >> 6));
        *u++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    else if (cp < 0x10000) {
        *u++ = (unsigned char)(0xE0 | (cp >> 12));
        *u++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *u++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    else {
        *u++ = (unsigned char)(0xF0 | (cp >> 18));
        *u++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        *u++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *u++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    *o = (char *)u;
}

char *mg_json_string(apr_pool_t *p, const char *buf, apr_size_t start,
                     apr_size_t end, apr_size_t *outlen)
{
    const unsigned char *s = (const unsigned char *)buf + start + 1;
    const unsigned char *e = (const unsigned char *)buf + end - 1;
    /* A decoded string is never longer than its text. */
    char *out = apr_palloc(p, end - start), *o = out;
    unsigned cp;

    while (s < e) {
        if (*s != '\\') {
            *o++ = (char)*s++;
            continue;
        }
        switch (s[1]) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u':
            cp = (unsigned)hex4(s + 2);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10)
                     + ((unsigned)hex4(s + 8) - 0xDC00);
                s += 6;
            }
            put_utf8(&o, cp);
            s += 4;
            break;
        default: *o++ = (char)s[1]; break;
        }
        s += 2;
    }
    *o = '\0';
    *outlen = (apr_size_t)(o - out);
    return out;
}

/* LC_NUMERIC's decimal point, "." when it has none. */
static const char *locale_point(apr_size_t *len)
{
    const char *point = nl_langinfo(RADIXCHAR);

    if (!point || !*point) {
        point = ".";
    }
    *len = strlen(point);
    return point;
}

int mg_json_real_to_locale(char *t, apr_size_t size)
{
    apr_size_t pl, len;
    const char *point = locale_point(&pl);
    char *dot;

    if ((pl == 1 && *point == '.') || (dot = strchr(t, '.')) == NULL) {
        return 0;
    }
    len = strlen(t);
    if (len + pl > size - 1) {
        return -1;
    }
    /* the bytes after the '.', with the NUL */
    memmove(dot + pl, dot + 1, len - (apr_size_t)(dot - t));
    memcpy(dot, point, pl);
    return 0;
}

apr_size_t mg_json_real_from_locale(char *t, apr_size_t len)
{
    apr_size_t pl;
    const char *point = locale_point(&pl);
    char *at;

    if ((pl == 1 && *point == '.') || (at = strstr(t, point)) == NULL) {
        return len;
    }
    *at = '.';
    memmove(at + 1, at + pl, len - (apr_size_t)(at - t) - pl + 1);
    return len - (pl - 1);
}
