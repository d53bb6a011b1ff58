/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_cache_key.c -- the response cache's canonical bodies and keys
 * (plugins/cache/mg_cache_key.c): bodies that say the same thing share a
 * key, bodies that do not never do, and every part of the key counts.
 */
#include "mg_test.h"
#include <string.h>

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
}

static void key_of(apr_pool_t *p, const char *scope, const char *subject,
                   const char *route, const char *path, const char *body,
                   unsigned char key[MG_CACHE_KEY_LEN])
{
    mg_cache_body b;

    assert_int_equal(readb(p, body, &b), MG_CACHE_BODY_OK);
    assert_int_equal(mg_cache_key(scope, subject, route, path, b.canonical,
                                  b.len, key), 0);
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

/* A known digest: the key's layout is part of what is stored, and a change
 * must be deliberate (bump the version string in mg_cache_key.c). */
static void test_key_is_stable(void **state)
{
    unsigned char k[MG_CACHE_KEY_LEN];
    static const unsigned char want[MG_CACHE_KEY_LEN] = {
        /* sha256 of each part as 8-byte big-endian length + bytes */
        0x49, 0x7c, 0xb9, 0xd0, 0xd8, 0x19, 0x6d, 0x02, 0x9e, 0xe5, 0xa6,
        0xfc, 0xc5, 0xdc, 0xe1, 0x13, 0xe5, 0x22, 0x85, 0xac, 0x9d, 0xe9,
        0x90, 0xdf, 0xf3, 0x2d, 0x57, 0x21, 0xde, 0x78, 0xaa, 0x76
    };

    (void)state;
    assert_int_equal(mg_cache_key("global", "", "r", "/p", "{}", 2, k), 0);
    assert_memory_equal(k, want, MG_CACHE_KEY_LEN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_canonical_text),
        MG_TEST(test_refuses),
        MG_TEST(test_flags),
        MG_TEST(test_keys),
        MG_TEST(test_key_is_stable),
    };
    return MG_RUN(tests);
}
