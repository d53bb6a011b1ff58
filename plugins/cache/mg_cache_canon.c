/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_cache_canon.c -- a request body's canonical text, written from its
 * bytes without a tree (mg_cache_body_read, see mg_cache_key.h).
 *
 * A jansson tree of the body cost a miss ~19,000 instructions (a malloc
 * per value, a buffer append per string byte) for a text that is mostly
 * the body's own bytes in another order.  Here mg_json_scan (the core's
 * validator, jansson's grammar without a tree) checks the body and finds
 * model, stream and temperature; then one pass over the checked bytes
 * writes the canonical text as a list of pieces: spans of the body itself
 * where the canonical text is the body's (names and strings without
 * escapes, integers, literals, reals written as they would be, "{}", the
 * punctuation of arrays), and small pool buffers where it is not (strings
 * with escapes, other reals).  An object's
 * members are sorted when it closes by re-linking their lists, so no text
 * is copied until the whole list is copied once at the end: however deep
 * the nesting and however unsorted every level, the work is the body's
 * size plus the sorts' comparisons (n log n).  No recursion: one frame per
 * open container, in an array that grows (the scan bounded the depth at
 * MG_JSON_MAX_DEPTH).
 *
 * The same text as the jansson-based writer it replaces, byte for byte,
 * for every body jansson reads (tests/unit/test_cache_canon.c checks it
 * against that writer, kept there as the oracle): members sorted by their
 * decoded names (strcmp's order), no white space, strings with only the
 * escapes JSON needs (\uXXXX upper case for the other controls), integers
 * as json_int_t prints them (-0 is 0), reals as %.17g with a '.0' or an
 * exponent without '+' or leading zeros.  A nested member named twice,
 * which mg_json_scan accepts and jansson refuses, is refused here as the
 * sort meets it.  The one difference is mg_json_scan's: a NUL byte right
 * after a number or a literal, which jansson drops, is refused (the core
 * refuses such a body before the cache sees it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <apr_strings.h>
#include "mg_json_scan.h"
#include "mg_cache_key.h"

#ifdef MG_CACHE_CANON_COUNT
/* Tests only: every byte copied, piece made and name compared, to show
 * that the work stays n log n on inputs made to be quadratic; and every
 * byte the pass takes from the pool, to show that it stays a fraction of
 * the body's size on inputs made to be many small values. */
unsigned long mg_cache_canon_work, mg_cache_canon_bytes;
#define WORK(n) (mg_cache_canon_work += (unsigned long)(n))
#define ALLOCATED(n) (mg_cache_canon_bytes += (unsigned long)(n))
#else
#define WORK(n) ((void)0)
#define ALLOCATED(n) ((void)0)
#endif

#define IS_WS(c) ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')

/* A span of the canonical text, in the body or in a pool buffer. */
typedef struct piece {
    const char *s;
    apr_size_t n;
    struct piece *next;
} piece;

/* A list of pieces: a value's or a member's canonical text. */
typedef struct {
    piece *head, *tail;
} run;

/* An object's member, until the object closes. */
typedef struct {
    const char *name;         /* decoded: the sort's key */
    apr_size_t nlen;
    run text;                 /* "name":value, canonical */
} member;

/* An open container. */
typedef struct {
    int obj;                  /* an object; else an array */
    const char *open;         /* an object's '{' in the body */
    apr_size_t base;          /* an object's first member on the stack */
    run text;                 /* an array's text so far */
} frame;

#define PIECE_BLOCK 64
#define FRAMES_LOCAL 16
#define MEMBERS_LOCAL 32

typedef struct {
    apr_pool_t *p;
    piece *free, *end;        /* the current block's unused pieces */
    frame *f;
    apr_size_t nf, capf;
    member *m;                /* the open objects' members, a stack */
    apr_size_t nm, capm;
    frame flocal[FRAMES_LOCAL];
    member mlocal[MEMBERS_LOCAL];
} canon;

/* Punctuation the body does not supply in the right place. */
static const char punct[] = "{,}0";
#define P_OPEN (punct)
#define P_COMMA (punct + 1)
#define P_CLOSE (punct + 2)
#define P_ZERO (punct + 3)

static piece *piece_new(canon *c)
{
    WORK(1);
    if (c->free == c->end) {
        c->free = apr_palloc(c->p, PIECE_BLOCK * sizeof(piece));
        c->end = c->free + PIECE_BLOCK;
        ALLOCATED(PIECE_BLOCK * sizeof(piece));
    }
    return c->free++;
}

/* Append [s, s+n) to r.  Text that follows the last piece in memory (the
 * body's own bytes, as in `"a":1,` without spaces) extends it: the bytes
 * between are exactly the two texts, never written again. */
static APR_INLINE void add(canon *c, run *r, const char *s, apr_size_t n)
{
    piece *pc;

    if (r->tail && r->tail->s + r->tail->n == s) {
        r->tail->n += n;
        return;
    }
    pc = piece_new(c);
    pc->s = s;
    pc->n = n;
    pc->next = NULL;
    if (r->tail) {
        r->tail->next = pc;
    }
    else {
        r->head = pc;
    }
    r->tail = pc;
}

/* Link src after dst (no text moves); src is not used again. */
static void concat(canon *c, run *dst, const run *src)
{
    piece *h = src->head;

    if (!h) {
        return;
    }
    if (!dst->head) {
        *dst = *src;
        return;
    }
    if (dst->tail->s + dst->tail->n == h->s) {
        dst->tail->n += h->n;
        dst->tail->next = h->next;
        if (src->tail != h) {
            dst->tail = src->tail;
        }
        /* Its text is dst's tail's now.  The piece last made (a
         * container's opening, as in "[[],[],...]" or "[[1]]") is
         * given back: such values took 24 bytes of pool for 3 of body. */
        if (c->free != c->end - PIECE_BLOCK && h == c->free - 1) {
            c->free--;
        }
        return;
    }
    dst->tail->next = src->head;
    dst->tail = src->tail;
}

/* Where the value being read goes: the last member of an object, or the
 * array.  Looked up each time: the stacks move when they grow. */
static APR_INLINE run *target(canon *c)
{
    frame *f = &c->f[c->nf - 1];

    return f->obj ? &c->m[c->nm - 1].text : &f->text;
}

static frame *frame_push(canon *c, int obj)
{
    frame *f;

    if (c->nf == c->capf) {
        f = apr_palloc(c->p, 2 * c->capf * sizeof(*f));
        ALLOCATED(2 * c->capf * sizeof(*f));
        memcpy(f, c->f, c->nf * sizeof(*f));
        c->f = f;
        c->capf *= 2;
    }
    f = &c->f[c->nf++];
    f->obj = obj;
    f->base = c->nm;
    f->text.head = f->text.tail = NULL;
    return f;
}

static member *member_push(canon *c)
{
    member *m;

    if (c->nm == c->capm) {
        m = apr_palloc(c->p, 2 * c->capm * sizeof(*m));
        ALLOCATED(2 * c->capm * sizeof(*m));
        memcpy(m, c->m, c->nm * sizeof(*m));
        c->m = m;
        c->capm *= 2;
    }
    m = &c->m[c->nm++];
    m->text.head = m->text.tail = NULL;
    return m;
}

/* ---- strings and numbers -------------------------------------------------- */

/* s just after a checked string's opening quote: just after its closing
 * one.  *esc: it holds a backslash (then its text is not canonical). */
static const char *string_end(const char *s, const char *e, int *esc)
{
    const char *q = memchr(s, '"', (apr_size_t)(e - s));
    const char *b = memchr(s, '\\', (apr_size_t)(q - s));

    if (!b) {
        *esc = 0;
        return q + 1;
    }
    *esc = 1;
    for (s = b; *s != '"'; s++) {
        if (*s == '\\') {
            s++;              /* the escaped byte is never the end */
        }
    }
    return s + 1;
}

/* The decoded string d (n bytes, no NUL) as JSON with only the escapes it
 * needs, as jansson's dump writes it: \" \\ \b \f \n \r \t, \u00XX for
 * the other controls, every other byte as it is. */
static const char *escape(apr_pool_t *p, const char *d, apr_size_t n,
                          apr_size_t *outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    apr_size_t i, need = 2;
    unsigned char ch;
    char *out, *o;

    for (i = 0; i < n; i++) {
        ch = (unsigned char)d[i];
        need += ch >= 0x20 && ch != '"' && ch != '\\' ? 1
                : ch == '"' || ch == '\\' || ch == '\b' || ch == '\f'
                  || ch == '\n' || ch == '\r' || ch == '\t' ? 2 : 6;
    }
    o = out = apr_palloc(p, need);
    ALLOCATED(need);
    *o++ = '"';
    for (i = 0; i < n; i++) {
        ch = (unsigned char)d[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') {
            *o++ = (char)ch;
            continue;
        }
        *o++ = '\\';
        switch (ch) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 15];
            break;
        }
    }
    *o++ = '"';
    WORK(need);
    *outlen = (apr_size_t)(o - out);
    return out;
}

/* The checked real number [s, s+n) as jansson reads it: strtod of its
 * text, the '.' made the locale's decimal point first (a module or a
 * script may have set LC_NUMERIC to one with a ','; strtod would stop at
 * the '.' and read 0.5 as 0). */
static double real_value(apr_pool_t *p, const char *s, apr_size_t n)
{
    apr_size_t size = n + 1 + MG_JSON_POINT_ROOM;
    char tmp[80], *t = size <= sizeof(tmp) ? tmp : apr_palloc(p, size);

    memcpy(t, s, n);
    t[n] = '\0';
    mg_json_real_to_locale(t, size);
    return strtod(t, NULL);
}

/* v as the jansson-based writer printed a real: %.17g, with ".0" when
 * that reads as an integer, and an exponent without '+' or leading zeros.
 * 0 when it does not fit (never, for a double). */
static apr_size_t real_text(double v, char num[40])
{
    apr_size_t n = (apr_size_t)snprintf(num, 40, "%.17g", v);
    char *e, *d;

    if (n >= 40) {
        return 0;
    }
    /* snprintf writes LC_NUMERIC's decimal point: with a ',' 0.5 came out
     * "0,5.0", and [0.5] and [0,5.0] had one text, so one key (jansson's
     * dump turns it back into a '.' too, its from_locale). */
    n = mg_json_real_from_locale(num, n);
    if (n >= 40 - 3) {
        return 0;
    }
    if (!strpbrk(num, ".eE")) {
        num[n++] = '.';
        num[n++] = '0';
        num[n] = '\0';
    }
    else if ((e = strchr(num, 'e')) != NULL) {
        e++;
        if (*e == '-') {
            e++;
        }
        for (d = e; *d == '+' || *d == '0'; d++) {
        }
        if (!*d) {
            d--;              /* e+00: keep one 0 */
        }
        memmove(e, d, (apr_size_t)(num + n - d) + 1);
        n -= (apr_size_t)(d - e);
    }
    return n;
}

/* Add the checked real [s, s+n) to what is being written: its bytes when
 * they are its canonical text already ("0.5", "1.25", "2.0"), which then
 * merge with their neighbours (a pool copy and a piece or two each were
 * 88 bytes of pool for the 4 of "0.5,"); else the text written anew.
 * Not inlined: the pass stays free of the buffer. */
static __attribute__((noinline)) int real_add(canon *c, const char *s,
                                             apr_size_t n)
{
    char num[40];
    apr_size_t k = real_text(real_value(c->p, s, n), num);

    if (!k) {
        return -1;
    }
    if (k == n && !memcmp(num, s, n)) {
        add(c, target(c), s, n);
    }
    else {
        add(c, target(c), apr_pmemdup(c->p, num, k), k);
        ALLOCATED(k);
    }
    return 0;
}

/* ---- objects -------------------------------------------------------------- */

/* strcmp's order of the decoded names (which hold no NUL). */
static APR_INLINE int name_cmp(const member *a, const member *b)
{
    apr_size_t n = a->nlen < b->nlen ? a->nlen : b->nlen;
    int d = memcmp(a->name, b->name, n);

    WORK(1);
    return d ? d : (a->nlen > b->nlen) - (a->nlen < b->nlen);
}

static int member_order(const void *a, const void *b)
{
    return name_cmp(a, b);
}

/* Is the name [name, name+n) one of `ignore`'s? */
static int listed(const char *const *ignore, const char *name, apr_size_t n)
{
    for (; ignore && *ignore; ignore++) {
        if (!strncmp(*ignore, name, n) && (*ignore)[n] == '\0') {
            return 1;
        }
    }
    return 0;
}

/* Close the innermost object: its members sorted, linked into `out`
 * between braces and commas (the root's ignored ones left out).  -1 when
 * a name is given twice (jansson's JSON_REJECT_DUPLICATES). */
static int object_close(canon *c, const char *const *ignore, run *out)
{
    frame *f = &c->f[c->nf - 1];
    member *m = c->m + f->base, x;
    apr_size_t n = c->nm - f->base, i, j;
    int first = 1;

    if (n == 0 && f->open[1] == '}') {
        /* "{}" as the body writes it: its span, which merges with its
         * neighbours (two pieces of its own were 48 bytes of pool) */
        out->head = out->tail = NULL;
        add(c, out, f->open, 2);
        return 0;
    }
    /* Request bodies have a handful of members: insertion sort below 16,
     * without qsort's merge buffer and calls through a pointer. */
    if (n > 16) {
        qsort(m, n, sizeof(*m), member_order);
    }
    else {
        for (i = 1; i < n; i++) {
            x = m[i];
            for (j = i; j > 0 && name_cmp(&m[j - 1], &x) > 0; j--) {
                m[j] = m[j - 1];
            }
            m[j] = x;
        }
    }
    out->head = out->tail = NULL;
    add(c, out, P_OPEN, 1);
    for (i = 0; i < n; i++) {
        if (i && name_cmp(&m[i - 1], &m[i]) == 0) {
            return -1;
        }
        if (c->nf == 1 && listed(ignore, m[i].name, m[i].nlen)) {
            continue;
        }
        if (!first) {
            add(c, out, P_COMMA, 1);
        }
        concat(c, out, &m[i].text);
        first = 0;
    }
    add(c, out, P_CLOSE, 1);
    c->nm = f->base;
    return 0;
}

/* ---- the pass ------------------------------------------------------------- */

/* The canonical text of the checked JSON text [buf, buf+len) as a list of
 * pieces.  -1 when a nested member is named twice. */
static int canon_write(canon *c, const char *buf, apr_size_t len,
                       const char *const *ignore, run *root)
{
    const char *s = buf, *e = buf + len, *t, *d;
    int key = 0, esc;
    apr_size_t n;
    run done;
    member *m;

    for (;;) {
        while (IS_WS(*s)) {
            s++;
        }
        switch (*s) {
        case '{':
            frame_push(c, 1)->open = s;
            key = 1;
            s++;
            continue;
        case '[':
            add(c, &frame_push(c, 0)->text, s, 1);
            s++;
            continue;
        case '}':
            if (object_close(c, ignore, &done) != 0) {
                return -1;
            }
            s++;
            key = 0;
            goto closed;
        case ']':
            add(c, &c->f[c->nf - 1].text, s, 1);
            done = c->f[c->nf - 1].text;
            s++;
            goto closed;
        case ',':
            /* An object's commas come with its sorted members. */
            if (c->f[c->nf - 1].obj) {
                key = 1;
            }
            else {
                add(c, &c->f[c->nf - 1].text, s, 1);
            }
            s++;
            continue;
        case ':':
            add(c, target(c), s, 1);
            s++;
            continue;
        case '"':
            /* A string without escapes is its own canonical text and,
             * less its quotes, a member's name as the sort compares it. */
            t = string_end(s + 1, e, &esc);
            if (esc) {
                d = mg_json_string(c->p, buf, (apr_size_t)(s - buf),
                                   (apr_size_t)(t - buf), &n);
                ALLOCATED(t - s);
            }
            else {
                d = s + 1;
                n = (apr_size_t)(t - s) - 2;
            }
            if (key) {
                m = member_push(c);
                m->name = d;
                m->nlen = n;
                key = 0;
            }
            if (esc) {
                d = escape(c->p, d, n, &n);
                add(c, target(c), d, n);
            }
            else {
                add(c, target(c), s, (apr_size_t)(t - s));
            }
            s = t;
            continue;
        case 't':
        case 'n':
            add(c, target(c), s, 4);
            s += 4;
            continue;
        case 'f':
            add(c, target(c), s, 5);
            s += 5;
            continue;
        default:
            break;
        }
        /* A number: the body's text is the canonical one for an integer
         * (JSON allows no leading zero and no '+') but for -0. */
        esc = 0;
        for (t = s + 1; t < e && (((unsigned)(*t - '0') < 10) || *t == '.'
                                  || *t == 'e' || *t == 'E' || *t == '+'
                                  || *t == '-'); t++) {
            esc |= *t == '.' || *t == 'e' || *t == 'E';
        }
        n = (apr_size_t)(t - s);
        if (!esc) {
            if (n == 2 && s[0] == '-' && s[1] == '0') {
                add(c, target(c), P_ZERO, 1);
            }
            else {
                add(c, target(c), s, n);
            }
        }
        else if (real_add(c, s, n) != 0) {
            return -1;
        }
        s = t;
        continue;

    closed:
        /* `done` is the closed container's text: it goes where its
         * value goes, or it is the root. */
        if (--c->nf == 0) {
            *root = done;
            return 0;
        }
        concat(c, target(c), &done);
    }
}

mg_cache_body_status mg_cache_body_read(apr_pool_t *p, const char *buf,
                                        apr_size_t len,
                                        const char *const *ignore,
                                        mg_cache_body *out)
{
    enum { M_MODEL, M_STREAM, M_TEMPERATURE, M_COUNT };
    mg_json_member mb[M_COUNT] = {
        { "model", 0, 0, 0, 0, 0 },
        { "stream", 0, 0, 0, 0, 0 },
        { "temperature", 0, 0, 0, 0, 0 }
    };
    const mg_json_member *v;
    mg_json_result res;
    canon c;
    run root;
    const piece *pc;
    apr_size_t total;
    char *text, *o;

    /* Checked as the gate checks it (jansson's grammar, duplicates refused
     * in the root); a nested duplicate is the writer's to find. */
    if (mg_json_scan(p, buf, len, mb, M_COUNT, &res) != 0) {
        return MG_CACHE_BODY_MALFORMED;
    }
    c.p = p;
    c.free = c.end = NULL;
    c.f = c.flocal;
    c.nf = 0;
    c.capf = FRAMES_LOCAL;
    c.m = c.mlocal;
    c.nm = 0;
    c.capm = MEMBERS_LOCAL;
    /* An array too: one with a nested duplicate is malformed, as jansson
     * says, before it is not an object. */
    if (canon_write(&c, buf, len, res.root == MG_JSON_OBJECT ? ignore : NULL,
                    &root) != 0) {
        return MG_CACHE_BODY_MALFORMED;
    }
    if (res.root != MG_JSON_OBJECT) {
        return MG_CACHE_BODY_NOT_OBJECT;
    }
    v = &mb[M_MODEL];
    out->model = v->kind != MG_JSON_STRING ? NULL
                 : v->escaped ? mg_json_string(p, buf, v->start, v->end,
                                               &total)
                 : apr_pstrmemdup(p, buf + v->start + 1,
                                  v->end - v->start - 2);
    /* stream and temperature count unless the caller leaves them out. */
    out->stream = !listed(ignore, "stream", 6)
                  && mb[M_STREAM].kind == MG_JSON_TRUE;
    v = &mb[M_TEMPERATURE];
    out->deterministic = !listed(ignore, "temperature", 11)
        && ((v->kind == MG_JSON_INTEGER && v->integer == 0)
            || (v->kind == MG_JSON_REAL
                && real_value(p, buf + v->start, v->end - v->start) == 0.0));
    total = 0;
    for (pc = root.head; pc; pc = pc->next) {
        total += pc->n;
    }
    o = text = apr_palloc(p, total + 1);
    for (pc = root.head; pc; pc = pc->next) {
        memcpy(o, pc->s, pc->n);
        o += pc->n;
    }
    *o = '\0';                /* a C string too */
    WORK(total);
    out->canonical = text;
    out->len = total;
    return MG_CACHE_BODY_OK;
}
