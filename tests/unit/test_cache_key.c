/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_cache_key.c -- the response cache's canonical bodies and keys
 * (plugins/cache/mg_cache_canon.c, mg_cache_key.c): bodies that say the
 * same thing share a key, bodies that do not never do, and every part of
 * the key counts.  test_cache_canon.c holds the canonical writer to the
 * jansson-based one it replaced.
 */
#include "mg_test.h"
#include <string.h>

#include <stdlib.h>
#include <jansson.h>
#include <locale.h>
#include "mg_cache_key.h"

static mg_cache_body_status readb(apr_pool_t *p, const char *text,
                                  mg_cache_body *b)
{
    return mg_cache_body_read(p, text, strlen(text),
                              mg_cache_ignored_default, b);
}

static void test_canonical_text(void **state)
{
    apr_pool_t *p = *state;
    mg_cache_body b;

    assert_int_equal(readb(p, " {\"b\": 1,\n \"a\": {\"y\": [1, 2], "
                           "\"x\": \"s p\"}} ", &b), MG_CACHE_BODY_OK);
    assert_string_equal(b.canonical,
                        "{\"a\":{\"x\":\"s p\",\"y\":[1,2]},\"b\":1}");
    assert_int_equal(b.len, strlen(b.canonical));
    /* the caller's own labels are not what is asked */
    assert_int_equal(readb(p, "{\"user\":\"u1\",\"metadata\":{\"k\":1},"
                           "\"m\":2}", &b), MG_CACHE_BODY_OK);
    assert_string_equal(b.canonical, "{\"m\":2}");
    /* ... only at the top level */
    assert_int_equal(readb(p, "{\"x\":{\"user\":\"u1\"}}", &b),
                     MG_CACHE_BODY_OK);
    assert_string_equal(b.canonical, "{\"x\":{\"user\":\"u1\"}}");
    /* a routed request: the model is the route's, not the body's */
    assert_int_equal(mg_cache_body_read(p, "{\"model\":\"a\",\"m\":1}", 19,
                                        mg_cache_ignored_routed, &b),
                     MG_CACHE_BODY_OK);
    assert_string_equal(b.canonical, "{\"m\":1}");
    /* nothing ignored when no list is given */
    assert_int_equal(mg_cache_body_read(p, "{\"user\":1}", 10, NULL, &b),
                     MG_CACHE_BODY_OK);
    assert_string_equal(b.canonical, "{\"user\":1}");
    /* escapes decoded: the same string however it is written */
    assert_int_equal(readb(p, "{\"c\":\"\\u0061\"}", &b), MG_CACHE_BODY_OK);
    assert_string_equal(b.canonical, "{\"c\":\"a\"}");
}

/* canonical_as_jansson of the bodies below, in the locale set. */
static void canonical_as_jansson(apr_pool_t *p)
{
    static const char *const bodies[] = {
        "{\"b\":[1,2.5,-3,1e300,0.0,1.0,-0.0,123456789012345678],"
        "\"a\":{\"z\":null,\"y\":true,\"x\":false}}",
        "{\"s\":\"quote \\\" back \\\\ nl \\n tab \\t ctl \\u0001 \\u001f \\u007f "
        "uni \\u00e9 \\ud83d\\ude00 slash /\"}",
        "{\"deep\":[[[[{\"b\":1,\"a\":[{},[]]}]]]],\"\":\"empty key\"}",
        "{\"n\":0.1,\"m\":3.14159265358979,\"o\":2e-10,\"p\":100.0}",
        /* integers at both ends; objects past the insertion sort's 16 */
        "{\"i\":[-9223372036854775808,9223372036854775807,0,-1,10,-70]}",
        "{\"t\":1,\"s\":2,\"r\":3,\"q\":4,\"p\":5,\"o\":6,\"n\":7,"
        "\"m\":8,\"l\":9,\"k\":10,\"j\":11,\"i\":12,\"h\":13,\"g\":14,"
        "\"f\":15,\"e\":16,\"d\":17,\"c\":18,\"b\":19,\"a\":20,"
        "\"ab\":{\"z\":1,\"a\":2,\"aa\":3,\"\":4}}",
        NULL
    };
    int i;

    for (i = 0; bodies[i]; i++) {
        mg_cache_body b;
        json_error_t err;
        json_t *j = json_loads(bodies[i], 0, &err);
        char *want;

        assert_non_null(j);
        want = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
        json_decref(j);
        assert_int_equal(mg_cache_body_read(p, bodies[i], strlen(bodies[i]),
                                            NULL, &b), MG_CACHE_BODY_OK);
        assert_string_equal(b.canonical, want);
        assert_int_equal(b.len, strlen(want));
        free(want);
    }
}

/* The canonical text is what jansson's json_dumps(JSON_SORT_KEYS |
 * JSON_COMPACT) writes, by a writer of our own (a third of its cost); in
 * the C locale and in one whose decimal point is a ',' (where installed),
 * which jansson reads and writes with a '.' all the same. */
static void test_canonical_as_jansson(void **state)
{
    static const char *const locales[] = { "C", "de_DE.UTF-8" };
    size_t l;

    for (l = 0; l < sizeof(locales) / sizeof(*locales); l++) {
        if (setlocale(LC_NUMERIC, locales[l])) {
            canonical_as_jansson(*state);
        }
    }
    setlocale(LC_NUMERIC, "C");
}

static void test_refuses(void **state)
{
    apr_pool_t *p = *state;
    mg_cache_body b;

    assert_int_equal(readb(p, "{\"a\":1,\"a\":2}", &b),
                     MG_CACHE_BODY_MALFORMED);
    assert_int_equal(readb(p, "{\"a\":", &b), MG_CACHE_BODY_MALFORMED);
    assert_int_equal(readb(p, "", &b), MG_CACHE_BODY_MALFORMED);
    assert_int_equal(readb(p, "[1,2]", &b), MG_CACHE_BODY_NOT_OBJECT);
}

static void test_flags(void **state)
{
    apr_pool_t *p = *state;
    mg_cache_body b;

    assert_int_equal(readb(p, "{\"temperature\":0}", &b), MG_CACHE_BODY_OK);
    assert_true(b.deterministic);
    assert_false(b.stream);
    assert_int_equal(readb(p, "{\"temperature\":0.0,\"stream\":true}", &b),
                     MG_CACHE_BODY_OK);
    assert_true(b.deterministic);
    assert_true(b.stream);
    /* absent: servers sample at their default, 1 */
    assert_int_equal(readb(p, "{\"stream\":false}", &b), MG_CACHE_BODY_OK);
    assert_false(b.deterministic);
    assert_false(b.stream);
    assert_int_equal(readb(p, "{\"temperature\":0.2}", &b),
                     MG_CACHE_BODY_OK);
    assert_false(b.deterministic);
    assert_int_equal(readb(p, "{\"temperature\":\"0\"}", &b),
                     MG_CACHE_BODY_OK);
    assert_false(b.deterministic);
    assert_int_equal(readb(p, "{\"temperature\":null}", &b),
                     MG_CACHE_BODY_OK);
    assert_false(b.deterministic);
    assert_null(b.model);
    /* the model a purge names: read before the ignored members go */
    assert_int_equal(mg_cache_body_read(p, "{\"model\":\"m\"}", 13,
                                        mg_cache_ignored_routed, &b),
                     MG_CACHE_BODY_OK);
    assert_string_equal(b.model, "m");
    assert_string_equal(b.canonical, "{}");
    assert_int_equal(readb(p, "{\"model\":7}", &b), MG_CACHE_BODY_OK);
    assert_null(b.model);
}

static void key_of(apr_pool_t *p, const char *scope, const char *subject,
                   const char *route, const char *path, const char *body,
                   unsigned char key[MG_CACHE_KEY_LEN])
{
    mg_cache_body b;

    assert_int_equal(readb(p, body, &b), MG_CACHE_BODY_OK);
    assert_int_equal(mg_cache_key(scope, subject, 0, 0, route, path,
                                  b.canonical, b.len, key), 0);
}

static void test_keys(void **state)
{
    apr_pool_t *p = *state;
    static const char body[] = "{\"model\":\"m\",\"messages\":[{\"role\":"
                               "\"user\",\"content\":\"hi\"}],"
                               "\"temperature\":0}";
    unsigned char k1[MG_CACHE_KEY_LEN], k2[MG_CACHE_KEY_LEN];

    key_of(p, "tenant", "acme", "m", "/v1/chat", body, k1);
    /* reordered, spaced, with a user: the same request */
    key_of(p, "tenant", "acme", "m", "/v1/chat",
           "{ \"temperature\": 0, \"user\": \"bob\", \"messages\": [ {"
           "\"content\": \"hi\", \"role\": \"user\"} ], \"model\": \"m\" }",
           k2);
    assert_memory_equal(k1, k2, MG_CACHE_KEY_LEN);
    /* another message */
    key_of(p, "tenant", "acme", "m", "/v1/chat",
           "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
           "\"ho\"}],\"temperature\":0}", k2);
    assert_memory_not_equal(k1, k2, MG_CACHE_KEY_LEN);
    /* every other part of the key */
    key_of(p, "tenant", "other", "m", "/v1/chat", body, k2);
    assert_memory_not_equal(k1, k2, MG_CACHE_KEY_LEN);
    key_of(p, "key", "acme", "m", "/v1/chat", body, k2);
    assert_memory_not_equal(k1, k2, MG_CACHE_KEY_LEN);
    key_of(p, "tenant", "acme", "n", "/v1/chat", body, k2);
    assert_memory_not_equal(k1, k2, MG_CACHE_KEY_LEN);
    key_of(p, "tenant", "acme", "m", "/v1/chat2", body, k2);
    assert_memory_not_equal(k1, k2, MG_CACHE_KEY_LEN);
    /* parts are length-prefixed: moving a byte across a boundary counts */
    key_of(p, "tenant", "acmem", "", "/v1/chat", body, k1);
    key_of(p, "tenant", "acme", "m", "/v1/chat", body, k2);
    assert_memory_not_equal(k1, k2, MG_CACHE_KEY_LEN);
}

/* A purge changes the tenant's generation: every key changes with it. */
static void test_generation(void **state)
{
    unsigned char k0[MG_CACHE_KEY_LEN], k1[MG_CACHE_KEY_LEN];
    unsigned char g1[MG_CACHE_KEY_LEN], g2[MG_CACHE_KEY_LEN];

    (void)state;
    assert_int_equal(mg_cache_key("tenant", "acme", 0, 0, "m", "/p", "{}", 2,
                                  k0), 0);
    assert_int_equal(mg_cache_key("tenant", "acme", 1, 0, "m", "/p", "{}", 2,
                                  k1), 0);
    assert_memory_not_equal(k0, k1, MG_CACHE_KEY_LEN);
    assert_int_equal(mg_cache_key("tenant", "acme", 1, 0, "m", "/p", "{}", 2,
                                  k0), 0);
    assert_memory_equal(k0, k1, MG_CACHE_KEY_LEN);
    /* the generation's own record: per owner, never an answer's key */
    assert_int_equal(mg_cache_generation_key("tenant", "acme", g1), 0);
    assert_int_equal(mg_cache_generation_key("tenant", "acme2", g2), 0);
    assert_memory_not_equal(g1, g2, MG_CACHE_KEY_LEN);
    assert_int_equal(mg_cache_generation_key("global", "", g2), 0);
    assert_memory_not_equal(g1, g2, MG_CACHE_KEY_LEN);
    assert_memory_not_equal(g1, k1, MG_CACHE_KEY_LEN);
    /* a purge of the model changes every key of it, and a model's record
     * is not a tenant's of the same name */
    assert_int_equal(mg_cache_key("tenant", "acme", 1, 7, "m", "/p", "{}", 2,
                                  k0), 0);
    assert_memory_not_equal(k0, k1, MG_CACHE_KEY_LEN);
    assert_int_equal(mg_cache_generation_key("model", "acme", g2), 0);
    assert_memory_not_equal(g1, g2, MG_CACHE_KEY_LEN);
    {
        static const unsigned char want[MG_CACHE_KEY_LEN] = {
            0x56, 0x07, 0x7d, 0x5b, 0x6e, 0x40, 0xb1, 0xf2, 0x11, 0xf1, 0xf5,
            0xe4, 0x9b, 0x86, 0x13, 0xb3, 0x96, 0x50, 0x10, 0x85, 0xfb, 0xd9,
            0xbb, 0xfc, 0x34, 0x2f, 0x9c, 0x09, 0xc2, 0x4e, 0xc7, 0xbe
        };
        assert_memory_equal(g1, want, MG_CACHE_KEY_LEN);
    }
}

/* A known digest: the key's layout is part of what is stored, and a change
 * must be deliberate (bump the version string in mg_cache_key.c). */
static void test_key_is_stable(void **state)
{
    unsigned char k[MG_CACHE_KEY_LEN];
    static const unsigned char want[MG_CACHE_KEY_LEN] = {
        /* sha256 of each part as 8-byte big-endian length + bytes */
        0xe5, 0xb2, 0x38, 0x91, 0xb0, 0x14, 0xb3, 0x33, 0x55, 0xa0, 0x31,
        0x55, 0x31, 0x49, 0x46, 0xc0, 0x22, 0x47, 0x6d, 0xf5, 0xb7, 0x9e,
        0x8c, 0x31, 0x8d, 0x20, 0xd5, 0xf8, 0x14, 0x79, 0x8d, 0x07
    };

    (void)state;
    assert_int_equal(mg_cache_key("global", "", 0, 0, "r", "/p", "{}", 2, k),
                     0);
    assert_memory_equal(k, want, MG_CACHE_KEY_LEN);
    /* SHA-256 fetched once (as post_config does): the same keys */
    assert_int_equal(mg_cache_key_init(), 0);
    assert_int_equal(mg_cache_key("global", "", 0, 0, "r", "/p", "{}", 2, k),
                     0);
    assert_memory_equal(k, want, MG_CACHE_KEY_LEN);
}

/* The socache ids: the key, then zero bytes as its second byte says;
 * every length from 32 to 63 comes out of keys that differ there, the
 * same key always gives the same id, and its first byte (shmcb's subcache)
 * is the key's. */
static void test_socache_ids(void **state)
{
    unsigned char k[MG_CACHE_KEY_LEN], id[MG_CACHE_ID_MAX], again[MG_CACHE_ID_MAX];
    int seen[MG_CACHE_ID_SPREAD] = { 0 };
    unsigned int len, i, b;

    (void)state;
    assert_int_equal(mg_cache_key("tenant", "acme", 0, 0, "r", "/p", "{}", 2,
                                  k), 0);
    for (b = 0; b < 256; b++) {
        k[1] = (unsigned char)b;
        memset(id, 0xAA, sizeof(id));
        len = mg_cache_id(k, id);
        assert_true(len >= MG_CACHE_KEY_LEN && len <= MG_CACHE_ID_MAX);
        assert_int_equal(len, MG_CACHE_KEY_LEN + b % MG_CACHE_ID_SPREAD);
        assert_memory_equal(id, k, MG_CACHE_KEY_LEN);
        for (i = MG_CACHE_KEY_LEN; i < len; i++) {
            assert_int_equal(id[i], 0);
        }
        assert_int_equal(mg_cache_id(k, again), len);
        assert_memory_equal(again, id, len);
        seen[len - MG_CACHE_KEY_LEN] = 1;
    }
    for (i = 0; i < MG_CACHE_ID_SPREAD; i++) {
        assert_true(seen[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_canonical_text),
        MG_TEST(test_refuses),
        MG_TEST(test_flags),
        MG_TEST(test_canonical_as_jansson),
        MG_TEST(test_keys),
        MG_TEST(test_key_is_stable),
        MG_TEST(test_generation),
        MG_TEST(test_socache_ids),
    };
    return MG_RUN(tests);
}
