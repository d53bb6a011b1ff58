/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_json_scan.c -- the tree-less JSON validator (mg_json_scan.c) against
 * jansson, differentially: on a few thousand generated documents, their
 * truncations at every byte, single-byte mutations and hand-picked edges
 * (numbers, escapes, UTF-8, nesting depth), mg_json_scan must accept
 * exactly what json_loadb(JSON_REJECT_DUPLICATES) accepts -- but for a
 * member named twice in a NESTED object, which it accepts by design
 * (mg_json_scan.h) -- and read the root members as jansson reads them.
 */
#include "mg_test.h"
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>
#include <jansson.h>
#include "mg_json_scan.h"
#include "mg_test_json.h"

static const char *names[] = { "model", "stream", "max_tokens", "a" };
#define NNAMES 4

static unsigned long checked, nested_dups, nul_skips;

/* Does jansson, with JSON_REJECT_DUPLICATES, agree with the scan on `buf`?
 * And on the root members' kinds and values? */
static void agree(apr_pool_t *p, const char *buf, size_t len)
{
    mg_json_member m[NNAMES];
    mg_json_result res;
    json_error_t je;
    json_t *root, *v;
    int i, rc;
    apr_size_t n;
    const char *s;

    for (i = 0; i < NNAMES; i++) {
        m[i].name = names[i];
    }
    rc = mg_json_scan(p, buf, len, m, NNAMES, &res);
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    checked++;
    if (!root && rc == 0 && strstr(je.text, "duplicate object key")) {
        /* The one difference: a nested duplicate.  Valid without the flag,
         * and not in the root object (the scan refuses those). */
        root = json_loadb(buf, len, 0, &je);
        if (!root) {
            fprintf(stderr, "scan accepts, jansson refuses: %s\n%.*s\n",
                    je.text, (int)len, buf);
        }
        assert_non_null(root);
        nested_dups++;
    }
    if (root && rc != 0 && res.offset < len && buf[res.offset] == '\0'
        && res.offset > 0 && strchr("0123456789eluE", buf[res.offset - 1])) {
        /* jansson's quirk: a NUL byte right after a number or a literal
         * (its lookahead, pushed back) is dropped, "[1\0]" is [1].  The
         * scan refuses it, as the model server's parser does. */
        json_decref(root);
        root = NULL;
        nul_skips++;
    }
    if ((root != NULL) != (rc == 0)) {
        fprintf(stderr, "disagree: jansson %s (%s), scan %s (%s at %lu)\n"
                "%.*s\n", root ? "accepts" : "refuses", root ? "" : je.text,
                rc ? "refuses" : "accepts", rc ? res.error : "",
                (unsigned long)res.offset, (int)len, buf);
    }
    assert_int_equal(root != NULL, rc == 0);
    if (!root) {
        assert_non_null(res.error);
        assert_true(res.offset <= len);
        assert_true(res.line >= 1 && res.column >= 1);
        return;
    }
    assert_int_equal(res.root, json_is_object(root) ? MG_JSON_OBJECT
                                                    : MG_JSON_ARRAY);
    for (i = 0; i < NNAMES; i++) {
        v = json_is_object(root) ? json_object_get(root, names[i]) : NULL;
        if (!v) {
            assert_int_equal(m[i].kind, MG_JSON_ABSENT);
            continue;
        }
        switch (json_typeof(v)) {
        case JSON_OBJECT: assert_int_equal(m[i].kind, MG_JSON_OBJECT); break;
        case JSON_ARRAY: assert_int_equal(m[i].kind, MG_JSON_ARRAY); break;
        case JSON_TRUE: assert_int_equal(m[i].kind, MG_JSON_TRUE); break;
        case JSON_FALSE: assert_int_equal(m[i].kind, MG_JSON_FALSE); break;
        case JSON_NULL: assert_int_equal(m[i].kind, MG_JSON_NULL); break;
        case JSON_REAL: assert_int_equal(m[i].kind, MG_JSON_REAL); break;
        case JSON_INTEGER:
            assert_int_equal(m[i].kind, MG_JSON_INTEGER);
            assert_true(m[i].integer == (apr_int64_t)json_integer_value(v));
            break;
        case JSON_STRING:
            assert_int_equal(m[i].kind, MG_JSON_STRING);
            s = mg_json_string(p, buf, m[i].start, m[i].end, &n);
            assert_int_equal(n, json_string_length(v));
            assert_memory_equal(s, json_string_value(v), n);
            break;
        }
        /* The span is the value's text: jansson reads the same from it. */
        {
            json_t *alone = json_loadb(buf + m[i].start,
                                       m[i].end - m[i].start,
                                       JSON_DECODE_ANY, NULL);
            assert_non_null(alone);
            assert_true(json_equal(alone, v));
            json_decref(alone);
        }
    }
    json_decref(root);
}

static void agree_str(apr_pool_t *p, const char *text)
{
    agree(p, text, strlen(text));
}

static const unsigned char bytes[] = {
    '"', '\\', '{', '}', '[', ']', ',', ':', '0', '1', '-', '+', '.', 'e',
    'u', 'x', 'n', 't', ' ', 0x00, 0x1f, 0x7f, 0x80, 0xbf, 0xc0, 0xc2, 0xe0,
    0xed, 0xf0, 0xf4, 0xf5, 0xff
};

static void test_generated_and_mutated(void **state)
{
    apr_pool_t *p = *state;
    char doc[4096], mut[4096];
    size_t n, i;
    int d, j;

    for (d = 0; d < 400; d++) {
        n = 0;
        /* The root is an object (usually) or an array. */
        do {
            n = 0;
            mg_test_json_gen(doc, &n, sizeof(doc), 0);
        } while (!memchr(doc, '{', n) && !memchr(doc, '[', n));
        agree(p, doc, n);
        for (i = 0; i <= n; i++) {
            agree(p, doc, i);              /* every truncation */
        }
        for (j = 0; j < 40; j++) {
            memcpy(mut, doc, n);
            i = mg_test_json_rnd((unsigned)n);
            mut[i] = (char)bytes[mg_test_json_rnd(sizeof(bytes))];
            agree(p, mut, n);              /* one byte changed */
            memcpy(mut, doc, i);
            memcpy(mut + i + 1, doc + i, n - i);
            mut[i] = (char)bytes[mg_test_json_rnd(sizeof(bytes))];
            agree(p, mut, n + 1);          /* one byte inserted */
            memcpy(mut, doc, i);
            memcpy(mut + i, doc + i + 1, n - i - 1);
            agree(p, mut, n - 1);          /* one byte deleted */
        }
        apr_pool_clear(p);
    }
    fprintf(stderr, "# %lu documents agreed with jansson (%lu nested "
            "duplicates accepted, %lu NULs after a number refused, by "
            "design)\n", checked, nested_dups, nul_skips);
    assert_true(checked > 100000);
}

static void test_edges(void **state)
{
    apr_pool_t *p = *state;
    static const char *cases[] = {
        "", " ", "{", "}", "[", "]", "{}", "[]", " {} ", "{} x", "{}{}",
        "\"text\"", "1", "true", "null", "[1,]", "{\"a\":1,}", "[,1]",
        "{\"a\" 1}", "{\"a\":}", "{a:1}", "{'a':1}", "[01]", "[-01]", "[1.]",
        "[.5]", "[-]", "[-0]", "[-0.0e-0]", "[1e]", "[1e+]", "[1E-5]",
        "[+1]", "[0x10]", "[1e400]", "[-1e400]", "[1e-400]", "[1e308]",
        "[1.7976931348623157e308]", "[1.7976931348623159e308]",
        "[1.797693134862315807e308]", "[1.797693134862315808e308]",
        "[9223372036854775807]", "[9223372036854775808]",
        "[-9223372036854775808]", "[-9223372036854775809]",
        "[99999999999999999999999]", "[0.0000000000000000000000001e333]",
        "[\"\\u0000\"]", "{\"a\\u0000\":1}", "[\"\\u00\"]", "[\"\\uZZZZ\"]",
        "[\"\\x\"]", "[\"\\'\"]", "[\"\\\"]", "[\"\\ud800\"]",
        "[\"\\ud800\\u0041\"]", "[\"\\ud800\\udc00\"]", "[\"\\udc00\"]",
        "[\"\\udbff\\udfff\"]", "[\"\\ud800\\ud800\"]", "[\"\\ud800x\"]",
        "[\"a\tb\"]", "[1 ]", "[1\t]", "[-1]", "[\"a\nb\"]", "[\"\x7f\"]", "[\"\x80\"]", "[\"\xc0\x80\"]",
        "[\"\xc1\xbf\"]", "[\"\xc2\x80\"]", "[\"\xdf\xbf\"]", "[\"\xe0\x80\x80\"]",
        "[\"\xe0\x9f\xbf\"]", "[\"\xe0\xa0\x80\"]", "[\"\xed\x9f\xbf\"]",
        "[\"\xed\xa0\x80\"]", "[\"\xef\xbf\xbf\"]", "[\"\xf0\x8f\xbf\xbf\"]",
        "[\"\xf0\x90\x80\x80\"]", "[\"\xf4\x8f\xbf\xbf\"]",
        "[\"\xf4\x90\x80\x80\"]", "[\"\xf5\x80\x80\x80\"]", "[\"\xff\"]",
        "[\"\xe2\x82\"]", "[\"\xe2\x82", "[\xc3\xa9]", "[tru]", "[truex]",
        "[nul]", "[falsey]", "[true false]", "\xef\xbb\xbf{}",
        "{\"model\":\"a\",\"model\":\"b\"}",
        "{\"model\":\"a\",\"mod\\u0065l\":\"b\"}",
        "{\"\\u00e9\":1,\"\xc3\xa9\":2}",
        "{\"model\":\"mock\\u002dsmall\",\"stream\":true,\"max_tokens\":-0}",
        "{\"a\":{\"b\":{\"a\":1}},\"b\":[{\"a\":1},{\"a\":2}]}",
        "[{\"a\":1},{\"a\":1}]", "{\"\":1,\"\":2}",
    };
    char deep[8200];
    size_t i, k, n;
    char *many, *obj;

    for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        agree_str(p, cases[i]);
    }
    /* Depth: jansson counts every value, the root at 1, up to 2048. */
    for (k = 2045; k <= 2050; k++) {
        for (i = 0; i < k; i++) {
            deep[i] = '[';
        }
        for (i = 0; i < k; i++) {
            deep[k + i] = ']';
        }
        agree(p, deep, 2 * k);          /* the innermost array is empty */
        memmove(deep + k + 1, deep + k, k);
        deep[k] = '1';
        agree(p, deep, 2 * k + 1);      /* a number inside it */
        /* {"a":{"a":...{}...}} as deep */
        obj = apr_palloc(p, 6 * k + 8);
        n = 0;
        for (i = 0; i + 1 < k; i++) {
            memcpy(obj + n, "{\"a\":", 5);
            n += 5;
        }
        obj[n++] = '{';
        obj[n++] = '}';
        memset(obj + n, '}', k - 1);
        agree(p, obj, n + k - 1);
    }
    /* A root object of many members: the key set grows; then a duplicate. */
    many = apr_palloc(p, 20000);
    n = 0;
    many[n++] = '{';
    for (i = 0; i < 1000; i++) {
        n += (size_t)apr_snprintf(many + n, 20000 - n, "%s\"k%lu\":%lu",
                                  i ? "," : "", (unsigned long)i,
                                  (unsigned long)i);
    }
    many[n] = '}';
    agree(p, many, n + 1);
    n += (size_t)apr_snprintf(many + n, 20000 - n, ",\"k517\":1}");
    agree(p, many, n);
}

static void test_nested_duplicates_accepted(void **state)
{
    apr_pool_t *p = *state;
    mg_json_member m = { "model", 0, 0, 0, 0, 0 };
    mg_json_result res;
    static const char nested[] = "{\"model\":\"m\",\"x\":{\"a\":1,\"a\":2}}";
    static const char root[] = "{\"x\":{\"a\":1},\"model\":\"m\",\"model\":1}";

    assert_int_equal(mg_json_scan(p, nested, sizeof(nested) - 1, &m, 1,
                                  &res), 0);
    assert_int_equal(m.kind, MG_JSON_STRING);
    /* jansson drops a NUL after a number; the scan refuses it */
    assert_int_equal(mg_json_scan(p, "[1\0]", 4, &m, 1, &res), -1);
    assert_int_equal(res.offset, 2);
    assert_int_equal(mg_json_scan(p, root, sizeof(root) - 1, &m, 1, &res),
                     -1);
    assert_string_equal(res.error, "duplicate object key");
    assert_int_equal(res.offset, 25);
    assert_int_equal(res.line, 1);
    assert_int_equal(res.column, 26);
}

/* Where a module or a script set LC_NUMERIC to a locale whose decimal
 * point is ',' (scripts/install-deps.sh makes de_DE.UTF-8), the numbers
 * next to DBL_MAX are still read as jansson reads them (it turns the '.'
 * into the locale's point): strtod of "1.8e308" there would stop at '.'. */
static void test_comma_locale(void **state)
{
    apr_pool_t *p = *state;
    static const char *cases[] = {
        "[1.7976931348623157e308]", "[1.7976931348623159e308]",
        "[1.8e308]", "[-1.8e308]", "[9.99e308]", "[0.5]",
    };
    size_t i;

    if (!setlocale(LC_NUMERIC, "de_DE.UTF-8")) {
        skip();
    }
    for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        agree_str(p, cases[i]);
    }
    setlocale(LC_NUMERIC, "C");
}

/* The point helpers the cache's writer shares: under de_DE's ',' and
 * ps_AF's two-byte U+066B (where installed), a real's text made the
 * locale's for strtod and printf's made JSON's again; in the C locale
 * both leave the text alone. */
static void test_point_helpers(void **state)
{
    static const char *const locales[] = { "C", "de_DE.UTF-8", "ps_AF.UTF-8" };
    char t[64], small[8];
    apr_pool_t *p = *state;
    mg_json_result res;
    apr_size_t n;
    size_t i;

    for (i = 0; i < sizeof(locales) / sizeof(*locales); i++) {
        if (!setlocale(LC_NUMERIC, locales[i])) {
            continue;
        }
        strcpy(t, "-1.5e3");
        assert_int_equal(mg_json_real_to_locale(t, sizeof(t)), 0);
        assert_true(strtod(t, NULL) == -1500.0);
        strcpy(t, "15");
        assert_int_equal(mg_json_real_to_locale(t, sizeof(t)), 0);
        assert_string_equal(t, "15");
        n = (apr_size_t)snprintf(t, sizeof(t), "%.17g", 0.25);
        n = mg_json_real_from_locale(t, n);
        assert_string_equal(t, "0.25");
        assert_int_equal(n, 4);
        /* the scan's overflow check, next to DBL_MAX, reads them so */
        assert_int_equal(mg_json_scan(p, "[1.7976931348623157e308]", 24,
                                      NULL, 0, &res), 0);
        assert_int_equal(mg_json_scan(p, "[1.7976931348623159e308]", 24,
                                      NULL, 0, &res), -1);
        /* no room for a point of more than one byte: left as it was */
        strcpy(small, "0.12345");
        if (mg_json_real_to_locale(small, sizeof(small)) != 0) {
            assert_string_equal(small, "0.12345");
        }
        setlocale(LC_NUMERIC, "C");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_edges),
        MG_TEST(test_nested_duplicates_accepted),
        MG_TEST(test_comma_locale),
        MG_TEST(test_point_helpers),
        MG_TEST(test_generated_and_mutated),
    };
    return MG_RUN(tests);
}
