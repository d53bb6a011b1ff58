/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_cache_canon.c -- the response cache's tree-less canonical writer
 * (plugins/cache/mg_cache_canon.c) against the jansson-based one it
 * replaced (mg_cache_body_tree.c, the oracle): on hand-picked bodies and
 * on thousands of generated ones, their truncations and mutations, under
 * each list of ignored members, both must say the same -- the same status
 * and, for a body they read, byte for byte the same canonical text, and
 * the same model, stream and deterministic flags -- but for the one
 * difference mg_json_scan documents (a NUL after a number or a literal).
 * And the writer's work must stay n log n on bodies made to be quadratic.
 */
#include "mg_test.h"
#include <locale.h>
#include <stdio.h>
#include <string.h>

#include <apr_strings.h>
#include "mg_cache_key.h"
#include "mg_cache_body_tree.h"
#include "mg_json_scan.h"
#include "mg_test_json.h"

/* mg_cache_canon.c's work and pool counts, built with
 * MG_CACHE_CANON_COUNT. */
extern unsigned long mg_cache_canon_work, mg_cache_canon_bytes;

static const char *const *const lists[] = {
    mg_cache_ignored_default, mg_cache_ignored_routed, NULL
};
#define NLISTS 3

static unsigned long compared, read_ok, nul_skips;

/* Do the writer and the oracle agree on buf, with `ignore`? */
static void agree_with(apr_pool_t *p, const char *buf, size_t len,
                       const char *const *ignore)
{
    mg_cache_body want, got;
    mg_cache_body_status ws, gs;

    memset(&want, 0, sizeof(want));
    memset(&got, 0, sizeof(got));
    ws = mg_test_cache_body_tree(p, buf, len, ignore, &want);
    gs = mg_cache_body_read(p, buf, len, ignore, &got);
    compared++;
    if (ws != gs && gs == MG_CACHE_BODY_MALFORMED) {
        /* mg_json_scan's one difference from jansson: a NUL byte right
         * after a number or a literal, which jansson drops ("[1\0]"). */
        mg_json_result res;
        if (mg_json_scan(p, buf, len, NULL, 0, &res) != 0
            && res.offset > 0 && res.offset < len && buf[res.offset] == '\0'
            && strchr("0123456789eluE", buf[res.offset - 1])) {
            nul_skips++;
            return;
        }
    }
    if (ws != gs) {
        fprintf(stderr, "status: oracle %d, writer %d\n%.*s\n", ws, gs,
                (int)len, buf);
    }
    assert_int_equal(gs, ws);
    if (ws != MG_CACHE_BODY_OK) {
        return;
    }
    read_ok++;
    if (got.len != want.len || memcmp(got.canonical, want.canonical,
                                      want.len)) {
        fprintf(stderr, "body  %.*s\noracle %s\nwriter %s\n", (int)len, buf,
                want.canonical, got.canonical);
    }
    assert_int_equal(got.len, want.len);
    assert_memory_equal(got.canonical, want.canonical, want.len);
    assert_int_equal(got.canonical[got.len], '\0');
    assert_int_equal(got.stream, want.stream);
    assert_int_equal(got.deterministic, want.deterministic);
    if (want.model) {
        assert_non_null(got.model);
        assert_string_equal(got.model, want.model);
    }
    else {
        assert_null(got.model);
    }
}

static void agree(apr_pool_t *p, const char *buf, size_t len)
{
    int i;

    for (i = 0; i < NLISTS; i++) {
        agree_with(p, buf, len, lists[i]);
    }
}

static void agree_str(apr_pool_t *p, const char *text)
{
    agree(p, text, strlen(text));
}

/* The canonical text of `text` (which must read), for the cases that say
 * what it is, not only that both writers agree on it. */
static const char *canonical(apr_pool_t *p, const char *text)
{
    mg_cache_body b;

    agree_str(p, text);
    assert_int_equal(mg_cache_body_read(p, text, strlen(text), NULL, &b),
                     MG_CACHE_BODY_OK);
    return b.canonical;
}

static mg_cache_body_status status_of(apr_pool_t *p, const char *text)
{
    mg_cache_body b;

    agree_str(p, text);
    return mg_cache_body_read(p, text, strlen(text), NULL, &b);
}

static void test_hand_cases(void **state)
{
    apr_pool_t *p = *state;
    static const char *const cases[] = {
        /* escapes: decoded, then only what must be escaped */
        "{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}",
        "{\"s\":\"\\u0041\\u00e9\\u20AC\\uFFFF\\u007f\\u001F\\u0001\"}",
        "{\"s\":\"\\ud83d\\ude00 \\uD83D\\uDE00 \xf0\x9f\x98\x80\"}",
        "{\"\\u0061\":1,\"b\\n\":2,\"b\":3,\"\\u00e9\":4,\"\\u007f\":5}",
        "{\"s\":\"no escape at all, caf\xc3\xa9\",\"t\":\"\"}",
        /* numbers */
        "{\"i\":[0,-0,1,-1,10,-70,9223372036854775807,"
        "-9223372036854775808]}",
        "{\"r\":[1.0,-0.0,0.0,1e5,1E+05,1e-5,1E-05,0.1,2.5,1e300,-1e-300,"
        "1e308,1.7976931348623157e308,4.9e-324,1e-400,-1e-400,0e0,0E-0,"
        "123456789012345678901234567890,0.30000000000000004,"
        "100000000000000000000.0,1e16,1e17,1e21,12345.678e-3]}",
        "{\"big\":1e400}", "{\"big\":-1e400}",
        "{\"big\":9223372036854775808}", "{\"big\":-9223372036854775809}",
        /* containers */
        "{}", " { } ", "{\"a\":{},\"b\":[],\"c\":[{}],\"d\":[[]]}",
        "{\"b\":1,\"a\":{\"d\":[3,{\"z\":1,\"y\":2}],\"c\":null},"
        "\"\":true,\"a0\":false}",
        "\t{ \"b\" : [ 1 , 2 ] ,\n\"a\" : { \"y\" : \"x\" , \"x\" : \"y\" }"
        " }\r\n",
        /* duplicates: refused at every level, however spelt */
        "{\"a\":1,\"a\":2}", "{\"x\":{\"a\":1,\"a\":2}}",
        "{\"x\":[{\"a\":1},{\"b\":{\"c\":1,\"\\u0063\":2}}]}",
        "{\"x\":{\"\\u00e9\":1,\"\xc3\xa9\":2}}", "[{\"a\":1,\"a\":2}]",
        "{\"metadata\":{\"k\":1,\"k\":2}}", "{\"user\":{\"\":1,\"\":2}}",
        "[{\"a\":1},{\"a\":1}]",
        /* ignored members: at the top only */
        "{\"user\":\"u\",\"metadata\":{\"m\":1},\"model\":\"m\",\"x\":1}",
        "{\"x\":{\"user\":\"u\",\"metadata\":1,\"model\":\"m\"}}",
        "{\"us\\u0065r\":1,\"mod\\u0065l\":\"m\\u00e9\",\"a\":2}",
        "{\"user\":1}", "{\"model\":\"m\"}",
        /* flags */
        "{\"temperature\":0,\"stream\":true}",
        "{\"temperature\":-0,\"stream\":false}",
        "{\"temperature\":0.0}", "{\"temperature\":-0.0e5}",
        "{\"temperature\":1e-400}", "{\"temperature\":0.5}",
        "{\"temperature\":\"0\"}", "{\"temperature\":[0]}",
        "{\"x\":{\"temperature\":0,\"stream\":true}}",
        "{\"model\":\"mock\\u002dsmall\"}", "{\"model\":7}",
        /* not objects, not JSON */
        "[]", "[1,2]", "\"text\"", "1", "", "{", "{\"a\":}", "{} x", "{}{}",
        "{\"a\":\"\\u0000\"}", "{\"a\":\"\\ud800\"}", "{\"a\":01}",
        "{\"a\":\"\xc3\"}", "{\"a\":tru}",
    };
    static const char nul_after[] = "{\"a\":1\0}";
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        agree_str(p, cases[i]);
    }
    agree(p, nul_after, sizeof(nul_after) - 1);
    /* ... and what some of them say, spelt out */
    assert_string_equal(canonical(p, cases[0]),
                        "{\"s\":\"\\\"\\\\/\\b\\f\\n\\r\\t\"}");
    assert_string_equal(canonical(p, cases[1]),
                        "{\"s\":\"A\xc3\xa9\xe2\x82\xac\xef\xbf\xbf\x7f"
                        "\\u001F\\u0001\"}");
    assert_string_equal(canonical(p, "{\"i\":[-0,1.0,1e5,1E+05,0.1]}"),
                        "{\"i\":[0,1.0,100000.0,100000.0,"
                        "0.10000000000000001]}");
    assert_string_equal(canonical(p, "{\"r\":[1e300,1e-300,1e21]}"),
                        "{\"r\":[1.0000000000000001e300,1e-300,1e21]}");
    assert_string_equal(canonical(p, cases[3]),
                        "{\"a\":1,\"b\":3,\"b\\n\":2,\"\x7f\":5,"
                        "\"\xc3\xa9\":4}");
    assert_int_equal(status_of(p, "{\"x\":{\"a\":1,\"a\":2}}"),
                     MG_CACHE_BODY_MALFORMED);
    assert_int_equal(status_of(p, "[{\"a\":1,\"a\":2}]"),
                     MG_CACHE_BODY_MALFORMED);
    assert_int_equal(status_of(p, "[{\"a\":1,\"b\":2}]"),
                     MG_CACHE_BODY_NOT_OBJECT);
}

/* Locales whose decimal point is not '.' (a module or a PHP script may set
 * one in the process): de_DE's ',', ps_AF's two-byte U+066B.  Each test
 * runs under those installed and skips when none is (install-deps.sh
 * makes them; elsewhere `localedef -i ps_AF -f UTF-8 DIR/ps_AF.UTF-8`
 * and LOCPATH=DIR). */
static const struct {
    const char *name;
    int oracle;               /* jansson reads its reals (a two-byte point
                                 fails an assertion in its strtod) */
} point_locales[] = { { "de_DE.UTF-8", 1 }, { "ps_AF.UTF-8", 0 } };
#define NPOINT_LOCALES 2

/* Under them reals are read as jansson reads them: 0.5 is not 0. */
static void test_comma_locale(void **state)
{
    apr_pool_t *p = *state;
    mg_cache_body want, got;
    mg_cache_body_status ws = MG_CACHE_BODY_OK, gs;
    static const char body[] = "{\"temperature\":0.5,\"r\":[1.5,2e-3,1e5]}";
    int i, ran = 0;

    assert_int_equal(mg_cache_body_read(p, body, sizeof(body) - 1, NULL,
                                        &want), MG_CACHE_BODY_OK);
    for (i = 0; i < NPOINT_LOCALES; i++) {
        if (!setlocale(LC_NUMERIC, point_locales[i].name)) {
            continue;
        }
        ran++;
        if (point_locales[i].oracle) {
            ws = mg_test_cache_body_tree(p, body, sizeof(body) - 1, NULL,
                                         &want);
        }
        gs = mg_cache_body_read(p, body, sizeof(body) - 1, NULL, &got);
        setlocale(LC_NUMERIC, "C");     /* before a failure, for the rest */
        assert_int_equal(ws, MG_CACHE_BODY_OK);
        assert_int_equal(gs, MG_CACHE_BODY_OK);
        assert_false(got.deterministic);
        assert_string_equal(got.canonical, want.canonical);
    }
    if (!ran) {
        skip();
    }
}

/* Under them reals are also WRITTEN with a '.': snprintf's "%.17g"
 * follows LC_NUMERIC, and 0.5 written "0,5.0" made [0.5] and [0,5.0] one
 * canonical text, so one key, and the cache answered one body with the
 * other's answer.  The text is the one of the C locale. */
static void test_comma_locale_written(void **state)
{
    apr_pool_t *p = *state;
    mg_cache_body c_half, half, pair, want;
    mg_cache_body_status hs, ps, ws;
    static const char b_half[] = "{\"r\":[0.5,-1.25e-7,3e300,2.0]}";
    static const char b_pair[] = "{\"r\":[0,5.0]}";
    int i, ran = 0;

    assert_int_equal(mg_cache_body_read(p, b_half, sizeof(b_half) - 1, NULL,
                                        &c_half), MG_CACHE_BODY_OK);
    assert_non_null(strstr(c_half.canonical, "[0.5,"));
    for (i = 0; i < NPOINT_LOCALES; i++) {
        if (!setlocale(LC_NUMERIC, point_locales[i].name)) {
            continue;
        }
        ran++;
        hs = mg_cache_body_read(p, b_half, sizeof(b_half) - 1, NULL, &half);
        ps = mg_cache_body_read(p, b_pair, sizeof(b_pair) - 1, NULL, &pair);
        want = c_half;
        ws = !point_locales[i].oracle ? MG_CACHE_BODY_OK
             : mg_test_cache_body_tree(p, b_half, sizeof(b_half) - 1, NULL,
                                       &want);
        setlocale(LC_NUMERIC, "C");
        assert_int_equal(hs, MG_CACHE_BODY_OK);
        assert_int_equal(ps, MG_CACHE_BODY_OK);
        assert_int_equal(ws, MG_CACHE_BODY_OK);
        assert_string_equal(half.canonical, c_half.canonical);
        assert_string_not_equal(half.canonical, pair.canonical);
        /* the oracle writes it so too */
        assert_string_equal(want.canonical, c_half.canonical);
    }
    if (!ran) {
        skip();
    }
}

/* {"z":{"z":...{"s":S}...,"a":1},"a":1} as deep as `depth`: every level
 * out of order, the deepest holding S. */
static char *nested(apr_pool_t *p, int depth, const char *s, size_t *len)
{
    size_t sl = strlen(s), n = 0;
    char *o = apr_palloc(p, (size_t)depth * 12 + sl + 16);
    int i;

    for (i = 0; i < depth - 1; i++) {
        memcpy(o + n, "{\"z\":", 5);
        n += 5;
    }
    n += (size_t)sprintf(o + n, "{\"s\":%s}", s);
    for (i = 0; i < depth - 1; i++) {
        memcpy(o + n, ",\"a\":1}", 7);
        n += 7;
    }
    *len = n;
    return o;
}

static void test_depth(void **state)
{
    apr_pool_t *p = *state;
    char *deep;
    size_t len, i;
    int k;

    for (k = 2046; k <= 2049; k++) {
        deep = nested(p, k, "1", &len);
        agree(p, deep, len);
        deep = apr_palloc(p, 2 * (size_t)k + 8);
        deep[0] = '{';
        deep[1] = '"';
        deep[2] = '"';
        deep[3] = ':';
        for (i = 4; i < (size_t)k + 3; i++) {
            deep[i] = '[';
        }
        for (len = i; i < len + (size_t)k - 1; i++) {
            deep[i] = ']';
        }
        deep[i++] = '}';
        agree(p, deep, i);
    }
    /* 2047 objects deep and a number in the last reads (the number is at
     * depth 2048); one more is past jansson's depth */
    deep = nested(p, 2047, "1", &len);
    assert_int_equal(status_of(p, apr_pstrmemdup(p, deep, len)),
                     MG_CACHE_BODY_OK);
    deep = nested(p, 2048, "1", &len);
    assert_int_equal(status_of(p, apr_pstrmemdup(p, deep, len)),
                     MG_CACHE_BODY_MALFORMED);
}

/* Bodies made to be quadratic for a writer that copies each object's text
 * when it sorts it: the work (bytes copied, pieces, name comparisons)
 * stays within a few times the body's size. */
static void test_not_quadratic(void **state)
{
    apr_pool_t *p = *state;
    size_t big = 1024 * 1024, len, i;
    char *s = apr_palloc(p, big + 3), *body;
    mg_cache_body b;
    int levels[] = { 2047, 2046, 2000 };
    const char *inner[3];
    int j;

    s[0] = '"';
    for (i = 1; i <= big; i++) {
        s[i] = (char)('a' + i % 26);
    }
    s[big + 1] = '"';
    s[big + 2] = '\0';
    /* 2048 objects, all but the innermost out of order; 2046 around an
     * array of numbers (jansson's deepest); 2000 around a 1 MB string */
    inner[0] = "{}";
    inner[1] = "[1,2]";
    inner[2] = s;
    for (j = 0; j < 3; j++) {
        body = nested(p, levels[j], inner[j], &len);
        mg_cache_canon_work = 0;
        assert_int_equal(mg_cache_body_read(p, body, len, NULL, &b),
                         MG_CACHE_BODY_OK);
        fprintf(stderr, "# %d levels, %lu bytes: work %lu\n", levels[j],
                (unsigned long)len, mg_cache_canon_work);
        assert_true(mg_cache_canon_work < 4 * len);
        assert_int_equal(b.len, len);
        assert_memory_equal(b.canonical, "{\"a\":1,\"z\":{\"a\":1,", 18);
        agree_with(p, body, len, NULL);
    }
    /* many members in reverse order, in one object: qsort's n log n */
    body = apr_palloc(p, 20 * 5000 + 2);
    len = 0;
    body[len++] = '{';
    for (i = 0; i < 5000; i++) {
        len += (size_t)sprintf(body + len, "%s\"k%05lu\":%lu", i ? "," : "",
                               (unsigned long)(4999 - i), (unsigned long)i);
    }
    body[len++] = '}';
    mg_cache_canon_work = 0;
    assert_int_equal(mg_cache_body_read(p, body, len, NULL, &b),
                     MG_CACHE_BODY_OK);
    fprintf(stderr, "# 5000 members reversed, %lu bytes: work %lu\n",
            (unsigned long)len, mg_cache_canon_work);
    assert_true(mg_cache_canon_work < 4 * len);
    assert_memory_equal(b.canonical, "{\"k00000\":4999,\"k00001\":4998", 28);
    agree_with(p, body, len, NULL);
}

static const unsigned char bytes[] = {
    '"', '\\', '{', '}', '[', ']', ',', ':', '0', '1', '-', '.', 'e', 'u',
    ' ', 0x00, 0x1f, 0x80, 0xc3
};

static void test_generated(void **state)
{
    apr_pool_t *p = *state;
    char doc[8192], mut[8200];
    size_t n, i;
    int d, j;

    mg_test_json_members = 8;         /* past 5 for the sorts' sake */
    for (d = 0; d < 3000; d++) {
        do {
            n = 0;
            mg_test_json_gen(doc, &n, sizeof(doc), 0);
        } while (!memchr(doc, '{', n) && !memchr(doc, '[', n));
        agree(p, doc, n);
        /* temperature and stream at the root, where an object has one */
        for (i = 0; i < n && doc[i] != '{' && doc[i] != '['; i++) {
        }
        if (i < n && doc[i] == '{') {
            j = sprintf(mut, "%.*s\"temperature\":%s,\"stream\":%s,",
                        (int)i + 1, doc,
                        mg_test_json_numbers[mg_test_json_rnd(
                            sizeof(mg_test_json_numbers)
                            / sizeof(*mg_test_json_numbers))],
                        mg_test_json_rnd(2) ? "true" : "false");
            if ((size_t)j + (n - i - 1) < sizeof(mut)) {
                memcpy(mut + j, doc + i + 1, n - i - 1);
                agree(p, mut, (size_t)j + (n - i - 1));
            }
        }
        for (i = 0; i < n; i += 1 + mg_test_json_rnd(8)) {
            agree_with(p, doc, i, mg_cache_ignored_default);
        }
        for (j = 0; j < 10; j++) {
            memcpy(mut, doc, n);
            i = mg_test_json_rnd((unsigned)n);
            mut[i] = (char)bytes[mg_test_json_rnd(sizeof(bytes))];
            agree_with(p, mut, n, mg_cache_ignored_default);
            memcpy(mut, doc, i);
            memcpy(mut + i + 1, doc + i, n - i);
            mut[i] = (char)bytes[mg_test_json_rnd(sizeof(bytes))];
            agree_with(p, mut, n + 1, mg_cache_ignored_routed);
        }
        apr_pool_clear(p);
    }
    fprintf(stderr, "# %lu bodies agreed with the jansson-based writer "
            "(%lu read, %lu NULs after a number refused, by design)\n",
            compared, read_ok, nul_skips);
    assert_true(read_ok > 5000);
}

/* A body of many small values costs the pool a fraction of its size, not
 * a multiple: reals already written as the writer writes them and empty
 * containers went at 88 and 24 bytes of pool for 4 and 3 bytes of body
 * (a 1 MiB body of "0.5," took 23 MiB).  Reals it must write anew (1e5 is
 * "100000.0") take their text and pieces: bounded, not counted here. */
static void test_pool_small_values(void **state)
{
    static const char *const items[] = { "0.5", "-1.25", "2.0", "[]", "{}",
                                         "[[1]]", "1" };
    apr_pool_t *p = *state;
    size_t k, i, len, il, count = 20000;
    mg_cache_body b;
    char *body;

    for (k = 0; k < sizeof(items) / sizeof(*items); k++) {
        il = strlen(items[k]);
        body = apr_palloc(p, count * (il + 1) + 16);
        len = (size_t)sprintf(body, "{\"m\":[");
        for (i = 0; i < count; i++) {
            memcpy(body + len, items[k], il);
            len += il;
            body[len++] = ',';
        }
        memcpy(body + len, "1]}", 3);
        len += 3;
        mg_cache_canon_bytes = 0;
        assert_int_equal(mg_cache_body_read(p, body, len, NULL, &b),
                         MG_CACHE_BODY_OK);
        print_message("# %zu of %s: %zu bytes, pool %lu\n", count, items[k],
                      len, mg_cache_canon_bytes);
        assert_true(mg_cache_canon_bytes < len / 8);
        assert_int_equal(b.len, len);   /* all of it canonical already */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_hand_cases),
        MG_TEST(test_depth),
        MG_TEST(test_comma_locale),
        MG_TEST(test_comma_locale_written),
        MG_TEST(test_not_quadratic),
        MG_TEST(test_pool_small_values),
        MG_TEST(test_generated),
    };
    return MG_RUN(tests);
}
