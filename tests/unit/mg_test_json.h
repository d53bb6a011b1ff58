/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_test_json.h -- random JSON documents for the differential tests
 * against jansson (test_json_scan.c, test_cache_canon.c): a seeded
 * generator of valid-looking texts made of pieces picked to hit the
 * edges (escapes, surrogates, UTF-8, numbers at the limits, names that
 * repeat once decoded, white space everywhere it may stand).
 *
 * As mg_test.h, header-only; every includer uses the generator.
 */
#ifndef MG_TEST_JSON_H
#define MG_TEST_JSON_H

#include <string.h>
#include <apr.h>

/* The generator's state: fixed, so a failure comes back on every run. */
static apr_uint32_t mg_test_json_rng = 12345;
/* Members of a generated object: fewer than this. */
static unsigned mg_test_json_members = 5;

static inline unsigned mg_test_json_rnd(unsigned n)
{
    mg_test_json_rng = mg_test_json_rng * 1103515245u + 12345u;
    return (mg_test_json_rng >> 16) % n;
}

static const char *const mg_test_json_keys[] = {
    "\"model\"", "\"stream\"", "\"max_tokens\"", "\"a\"", "\"b\"",
    "\"mod\\u0065l\"", "\"\\u00e9\"", "\"\xc3\xa9\"", "\"\"", "\"x y\""
};
static const char *const mg_test_json_strings[] = {
    "\"mock-small\"", "\"mock\\u002dsmall\"", "\"\"", "\"a\\\"b\\\\c\\/d\"",
    "\"\\b\\f\\n\\r\\t\"", "\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\"",
    "\"\xe2\x82\xac\"", "\"caf\xc3\xa9\"", "\"\\uFFFF\"", "\"\x7f\"",
    "\"a long enough string to pass the four-byte loop\""
};
static const char *const mg_test_json_numbers[] = {
    "0", "-0", "1", "-1", "123", "1.5", "-0.0", "1e10", "1E+2", "2e-3",
    "9223372036854775807", "-9223372036854775808", "9223372036854775808",
    "-9223372036854775809", "18446744073709551616", "1e308", "1e400",
    "1e-400", "0.000001", "1.7976931348623157e308", "1.7976931348623159e308",
    "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497791.0",
    "0.00000000000000000000000000000000000001e347", "10"
};
static const char *const mg_test_json_ws[] = { "", "", "", " ", "\n", " \t\r\n " };

/* Append a random JSON value (at `depth`: containers only near the root)
 * to o, *n bytes long, never past cap: valid JSON but for the numbers out
 * of range, and the names repeated (some only once decoded). */
static inline void mg_test_json_gen(char *o, size_t *n, size_t cap,
                                    int depth)
{
    unsigned k = mg_test_json_rnd(depth > 4 ? 4 : 7), i, cnt;
    const char *piece = NULL;

#define PUT(str) do { const char *s_ = (str); size_t l_ = strlen(s_); \
        if (*n + l_ < cap) { memcpy(o + *n, s_, l_); *n += l_; } } while (0)
    PUT(mg_test_json_ws[mg_test_json_rnd(6)]);
    switch (k) {
    case 0: piece = mg_test_json_strings[mg_test_json_rnd(sizeof(mg_test_json_strings) / sizeof(*mg_test_json_strings))]; break;
    case 1: piece = mg_test_json_numbers[mg_test_json_rnd(sizeof(mg_test_json_numbers) / sizeof(*mg_test_json_numbers))]; break;
    case 2: piece = (const char *[]){ "true", "false", "null" }[mg_test_json_rnd(3)]; break;
    case 3: piece = mg_test_json_strings[mg_test_json_rnd(4)]; break;
    case 4: case 5:
        PUT("{");
        for (i = 0, cnt = mg_test_json_rnd(mg_test_json_members); i < cnt; i++) {
            PUT(i ? "," : "");
            PUT(mg_test_json_ws[mg_test_json_rnd(6)]);
            PUT(mg_test_json_keys[mg_test_json_rnd(sizeof(mg_test_json_keys) / sizeof(*mg_test_json_keys))]);
            PUT(mg_test_json_ws[mg_test_json_rnd(6)]);
            PUT(":");
            mg_test_json_gen(o, n, cap, depth + 1);
        }
        PUT(mg_test_json_ws[mg_test_json_rnd(6)]);
        PUT("}");
        break;
    default:
        PUT("[");
        for (i = 0, cnt = mg_test_json_rnd(4); i < cnt; i++) {
            PUT(i ? "," : "");
            mg_test_json_gen(o, n, cap, depth + 1);
        }
        PUT("]");
        break;
    }
    if (piece) {
        PUT(piece);
    }
    PUT(mg_test_json_ws[mg_test_json_rnd(6)]);
#undef PUT
}

#endif /* MG_TEST_JSON_H */
