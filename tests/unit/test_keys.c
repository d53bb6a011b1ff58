/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_keys.c -- the key file and key lookup (mg_keys.c).
 *
 * The digests below were computed independently (`printf %s KEY |
 * sha256sum`), not with the code under test.
 */
#include "mg_test.h"
#include <string.h>

#include <apr_strings.h>
#include "mg_keys.h"
#include "mg_table.h"

/* sha256("abc"), FIPS 180-2 appendix B.1 */
#define D_ABC   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/* sha256("") */
#define D_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* sha256("sk-demo-0001") */
#define D_DEMO  "526d51b4da551d4dac7459a34c88ca9b717976c69e9b8998c14e72692fbd7c61"
/* sha256("sk-other-0002") */
#define D_OTHER "537113654c61ea9450debeb9d5d19d2e0f65188bb2c22d4c0428df55a83a2a46"
/* sha256("sk-third-0003"), upper case */
#define D_THIRD_UC "5F364BD9B039AF2D21C745F2523EFFB89FDDACC27D4B9B5E6080BCCD7CA65D04"
/* sha256 of 512 and of 513 times 'a' */
#define D_A512  "471be6558b665e4f6dd49f1184814d1491b0315d466beea768c153cc5500c836"
#define D_A513  "02425c0f5b0dabf3d2b9115f3f7723a02ad8bcfb1534a0d231614fd42b8188f6"

#define FIELDS_HINT "(expected: digest key-id tenant tier [scopes])"
#define DIGEST_MSG "the first field must be a SHA-256 digest: 64 hex " \
                   "digits, optionally after 'sha256:'"
#define NAMES_MSG "key id, tenant and tier must be names of letters, " \
                  "digits, '.', '_' and '-'"

static mg_keyring *parse_ok(apr_pool_t *p, const char *text)
{
    mg_keyring *ring = NULL;
    const char *err = mg_keys_parse(p, "keys.txt", text, strlen(text), &ring);

    if (err) {
        fail_msg("unexpected error: %s", err);
    }
    assert_non_null(ring);
    return ring;
}

static void parse_err(apr_pool_t *p, const char *text, apr_size_t len,
                      const char *expected)
{
    mg_keyring *ring = NULL;
    const char *err = mg_keys_parse(p, "/etc/modelgate/keys.txt", text, len,
                                    &ring);

    if (!err) {
        fail_msg("accepted: %s", text);
    }
    assert_string_equal(err, expected);
    assert_null(ring);
}

static const mg_key *lookup(const mg_keyring *ring, const char *key)
{
    return mg_keys_lookup(ring, key, strlen(key));
}

static const char *scope(const mg_key *k, int i)
{
    return APR_ARRAY_IDX(k->scopes, i, const char *);
}

/* ---- digests ---------------------------------------------------------------- */

static void test_digest_vectors(void **state)
{
    unsigned char d[MG_KEYS_DIGEST_LEN];
    char hex[2 * MG_KEYS_DIGEST_LEN + 1];
    static const unsigned char abc[MG_KEYS_DIGEST_LEN] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
        0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
        0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
        0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad
    };

    (void)state;
    mg_keys_digest("abc", 3, d);
    assert_memory_equal(d, abc, sizeof(abc));
    memset(hex, 'X', sizeof(hex));
    mg_keys_digest_hex(d, hex);
    assert_string_equal(hex, D_ABC);
    assert_int_equal(hex[64], '\0');

    mg_keys_digest("", 0, d);
    mg_keys_digest_hex(d, hex);
    assert_string_equal(hex, D_EMPTY);

    /* Only `len` bytes count, not the NUL-terminated string. */
    mg_keys_digest("abcdef", 3, d);
    mg_keys_digest_hex(d, hex);
    assert_string_equal(hex, D_ABC);

    mg_keys_digest("sk-demo-0001", 12, d);
    mg_keys_digest_hex(d, hex);
    assert_string_equal(hex, D_DEMO);
}

/* ---- parsing ---------------------------------------------------------------- */

static const char key_file[] =
    "# digest                                key-id  tenant  tier  [scopes]\n"
    "\n"
    "sha256:" D_DEMO " demo acme free chat,embeddings\n"
    "\t" D_OTHER "\tother\tacme\tpro\r\n"
    "SHA256:" D_THIRD_UC "   third  globex  free  chat   # a comment\r\n"
    "   # an indented comment\n"
    "   \t \r\n"
    "\r\n"
    D_ABC " abc-key t.1 tier_2 ,chat,,";       /* no final newline */

static void test_parse_file(void **state)
{
    apr_pool_t *p = *state;
    mg_keyring *ring = parse_ok(p, key_file);
    const mg_key *k;
    char hex[2 * MG_KEYS_DIGEST_LEN + 1];

    assert_string_equal(ring->source, "keys.txt");
    assert_int_equal(ring->keys->nelts, 4);
    assert_int_equal(apr_hash_count(ring->ids), 4);
    assert_int_equal(apr_hash_count(ring->buckets), 4);

    /* File order; ids, tenants, tiers, lines. */
    k = APR_ARRAY_IDX(ring->keys, 0, mg_key *);
    assert_string_equal(k->id, "demo");
    assert_string_equal(k->tenant, "acme");
    assert_string_equal(k->tier, "free");
    assert_int_equal(k->line, 3);
    mg_keys_digest_hex(k->digest, hex);
    assert_string_equal(hex, D_DEMO);
    assert_int_equal(k->scopes->nelts, 2);
    assert_string_equal(scope(k, 0), "chat");
    assert_string_equal(scope(k, 1), "embeddings");

    /* Tabs and CRLF; no prefix; no scopes gives an empty array. */
    k = APR_ARRAY_IDX(ring->keys, 1, mg_key *);
    assert_string_equal(k->id, "other");
    assert_string_equal(k->tenant, "acme");
    assert_string_equal(k->tier, "pro");
    assert_int_equal(k->line, 4);
    assert_non_null(k->scopes);
    assert_int_equal(k->scopes->nelts, 0);

    /* Upper-case prefix and hex; a comment after the fields. */
    k = APR_ARRAY_IDX(ring->keys, 2, mg_key *);
    assert_string_equal(k->id, "third");
    assert_string_equal(k->tenant, "globex");
    assert_string_equal(k->tier, "free");
    assert_int_equal(k->line, 5);
    mg_keys_digest_hex(k->digest, hex);
    assert_string_equal(hex, "5f364bd9b039af2d21c745f2523effb8"
                             "9fddacc27d4b9b5e6080bccd7ca65d04");
    assert_int_equal(k->scopes->nelts, 1);
    assert_string_equal(scope(k, 0), "chat");

    /* Lines are counted through comments, blank and CRLF lines; empty
     * scope items are dropped. */
    k = APR_ARRAY_IDX(ring->keys, 3, mg_key *);
    assert_string_equal(k->id, "abc-key");
    assert_string_equal(k->tenant, "t.1");
    assert_string_equal(k->tier, "tier_2");
    assert_int_equal(k->line, 9);
    assert_int_equal(k->scopes->nelts, 1);
    assert_string_equal(scope(k, 0), "chat");

    assert_ptr_equal(apr_hash_get(ring->ids, "third", APR_HASH_KEY_STRING),
                     APR_ARRAY_IDX(ring->keys, 2, mg_key *));
}

static void test_parse_empty_files(void **state)
{
    apr_pool_t *p = *state;
    mg_keyring *ring;

    ring = parse_ok(p, "");
    assert_int_equal(ring->keys->nelts, 0);
    ring = parse_ok(p, "# only a comment\n\n\r\n");
    assert_int_equal(ring->keys->nelts, 0);
    assert_null(lookup(ring, "abc"));

    /* The text need not be NUL-terminated: only `len` bytes are read. */
    {
        const char *text = D_ABC " k t free\n" D_DEMO " BROKEN";
        mg_keyring *r2 = NULL;
        assert_null(mg_keys_parse(p, "k", text, 64 + 10, &r2));
        assert_int_equal(r2->keys->nelts, 1);
        assert_non_null(lookup(r2, "abc"));
    }
}

static void test_parse_errors(void **state)
{
    apr_pool_t *p = *state;
    const char *pre = "/etc/modelgate/keys.txt line ";

#define ERR(text, line, msg) \
    parse_err(p, (text), strlen(text), \
              apr_pstrcat(p, pre, #line ": ", (msg), NULL))

    /* Bad digests. */
    ERR(D_ABC "0 k t free\n", 1, DIGEST_MSG);                   /* 65 */
    ERR("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a"
        " k t free\n", 1, DIGEST_MSG);                           /* 63 */
    ERR("ga7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        " k t free\n", 1, DIGEST_MSG);                           /* 'g' */
    ERR("# keys\n\nsha256: " D_ABC " k t free\n", 3, DIGEST_MSG);
    ERR("sha512:" D_ABC " k t free\n", 1, DIGEST_MSG);
    ERR("sha256:sha256:" D_ABC " k t free\n", 1, DIGEST_MSG);
    ERR("0x" D_ABC " k t free\n", 1, DIGEST_MSG);
    ERR("k " D_ABC " t free\n", 1, DIGEST_MSG);                  /* order */

    /* Field counts. */
    ERR(D_ABC " k t\n", 1, "too few fields " FIELDS_HINT);
    ERR("\r\n\n" D_ABC "\r\n", 3, "too few fields " FIELDS_HINT);
    ERR(D_ABC " k t free a,b extra\n", 1, "too many fields " FIELDS_HINT);
    ERR(D_ABC " k t free a b c d e f\n", 1, "too many fields " FIELDS_HINT);
    ERR(D_DEMO " demo acme free\n" D_ABC " k t free chat embeddings\n", 2,
        "too many fields " FIELDS_HINT);

    /* Names. */
    ERR(D_ABC " bad/id t free\n", 1, NAMES_MSG);
    ERR(D_ABC " k ac:me free\n", 1, NAMES_MSG);
    ERR(D_ABC " k t fr\"ee\n", 1, NAMES_MSG);
    ERR(D_ABC " k t caf\xc3\xa9\n", 1, NAMES_MSG);
    ERR(apr_pstrcat(p, D_ABC " ",
                    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
                    "kkkkkkkkk", " t free\n", NULL), 1, NAMES_MSG);  /* 65 */

    /* Duplicates. */
    ERR(D_DEMO " demo acme free\n"
        "# another\n"
        D_ABC " demo acme pro\n", 3, "key id 'demo' is used twice");
    ERR(D_ABC " one acme free\n"
        "sha256:" "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
        " two acme free\n", 2,
        "the digest of key 'two' repeats that of 'one' (line 1)");
    /* Two digests sharing their first 8 bytes are refused too: the lookup
     * keeps one key per 64-bit bucket. */
    ERR(D_ABC " one acme free\n"
        "ba7816bf8f01cfea" "0000000000000000000000000000000000000000000000"
        "00" " two acme free\n", 2,
        "the digest of key 'two' repeats that of 'one' (line 1)");
#undef ERR
}

static void test_parse_nul_byte(void **state)
{
    apr_pool_t *p = *state;
    static const char text[] = D_ABC " one acme free\n"
                               "# comment\n"
                               "junk\0more\n";

    /* sizeof - 1: the NUL inside is part of the text, the final one not. */
    parse_err(p, text, sizeof(text) - 1,
              "/etc/modelgate/keys.txt line 3: holds a NUL byte, not a key "
              "file");
    parse_err(p, "\0", 1,
              "/etc/modelgate/keys.txt line 1: holds a NUL byte, not a key "
              "file");
}

/* ---- lookup ----------------------------------------------------------------- */

static void test_lookup(void **state)
{
    apr_pool_t *p = *state;
    mg_keyring *ring = parse_ok(p, key_file);
    const mg_key *k;

    k = lookup(ring, "sk-demo-0001");
    assert_non_null(k);
    assert_string_equal(k->id, "demo");
    {
        /* Its counters' subjects, hashed once with the file; the id
         * within its tenant (the same id in another tenant, or a JWT
         * subject alike, is another caller). */
        mg_fingerprint id = mg_table_subject_hash("demo", 4);
        mg_fingerprint tenant = mg_table_subject_hash("acme", 4);
        mg_fingerprint tier = mg_table_subject_hash("free", 4);
        mg_fingerprint by = mg_table_subject_hash("key", 3), in_tenant;
        mg_key other = *k;
        by = mg_table_fingerprint_hashed(&by, &tenant);
        in_tenant = mg_table_fingerprint_hashed(&by, &id);
        assert_true(k->id_hash.hi == in_tenant.hi
                    && k->id_hash.lo == in_tenant.lo);
        other.tenant = "globex";
        mg_key_hash(&other, "key");
        assert_false(other.id_hash.hi == k->id_hash.hi
                     && other.id_hash.lo == k->id_hash.lo);
        other.tenant = "acme";
        mg_key_hash(&other, "jwt");
        assert_false(other.id_hash.hi == k->id_hash.hi
                     && other.id_hash.lo == k->id_hash.lo);
        assert_true(k->tenant_hash.hi == tenant.hi
                    && k->tenant_hash.lo == tenant.lo);
        assert_true(k->tier_hash.hi == tier.hi && k->tier_hash.lo == tier.lo);
    }
    k = lookup(ring, "sk-other-0002");
    assert_non_null(k);
    assert_string_equal(k->id, "other");
    k = lookup(ring, "sk-third-0003");
    assert_non_null(k);
    assert_string_equal(k->id, "third");
    k = lookup(ring, "abc");
    assert_non_null(k);
    assert_string_equal(k->id, "abc-key");

    /* Wrong keys. */
    assert_null(lookup(ring, "sk-demo-0002"));
    assert_null(lookup(ring, "sk-demo-000"));
    assert_null(lookup(ring, "sk-demo-00011"));
    assert_null(lookup(ring, "sk-demo-0001 "));
    assert_null(lookup(ring, "SK-DEMO-0001"));
    assert_null(lookup(ring, D_DEMO));            /* the digest is no key */
    /* The bytes presented, not the C string. */
    assert_null(mg_keys_lookup(ring, "sk-demo-0001", 11));
    assert_non_null(mg_keys_lookup(ring, "sk-demo-0001xyz", 12));
    /* Empty key, no ring. */
    assert_null(mg_keys_lookup(ring, "", 0));
    assert_null(mg_keys_lookup(ring, "abc", 0));
    assert_null(mg_keys_lookup(NULL, "abc", 3));
}

static void test_lookup_length_limit(void **state)
{
    apr_pool_t *p = *state;
    char *key = apr_palloc(p, MG_KEYS_PRESENTED_MAX + 2);
    mg_keyring *ring;
    const mg_key *k;

    assert_int_equal(MG_KEYS_PRESENTED_MAX, 512);
    ring = parse_ok(p, D_A512 " long acme free\n"
                       D_A513 " too-long acme free\n");
    memset(key, 'a', MG_KEYS_PRESENTED_MAX + 1);
    key[MG_KEYS_PRESENTED_MAX + 1] = '\0';

    /* 512 bytes: hashed and found. */
    k = mg_keys_lookup(ring, key, MG_KEYS_PRESENTED_MAX);
    assert_non_null(k);
    assert_string_equal(k->id, "long");
    /* 513 bytes: refused unhashed, although the file lists its digest. */
    assert_null(mg_keys_lookup(ring, key, MG_KEYS_PRESENTED_MAX + 1));
}

/* The bucket is found by the first 8 digest bytes; the whole digest must
 * still match.  The file lists a digest sharing sha256("abc")'s first 8
 * bytes and differing in the last one only. */
static void test_lookup_compares_whole_digest(void **state)
{
    apr_pool_t *p = *state;
    mg_keyring *ring = parse_ok(p,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ae"
        " near acme free\n");

    assert_null(lookup(ring, "abc"));
    ring = parse_ok(p,
        "ba7816bf8f01cfea"
        "000000000000000000000000000000000000000000000000 near acme free\n");
    assert_null(lookup(ring, "abc"));
}

/* Equal only when every byte is, whichever byte differs and whatever the
 * length's remainder after whole words. */
static void test_memeq(void **state)
{
    unsigned char a[40], b[40];
    size_t len, at;

    (void)state;
    for (len = 0; len <= sizeof(a); len++) {
        memset(a, 'x', sizeof(a));
        memset(b, 'x', sizeof(b));
        assert_true(mg_keys_memeq(a, b, len));
        for (at = 0; at < len; at++) {
            b[at] = 'y';
            assert_false(mg_keys_memeq(a, b, len));
            b[at] = 'x';
        }
        if (len < sizeof(a)) {
            b[len] = 'y';           /* past the length: not compared */
            assert_true(mg_keys_memeq(a, b, len));
        }
    }
}

/* ---- the per-connection memo ------------------------------------------------ */

/* The memo answers only for the very bytes it was asked about last, in
 * the ring it looked in; anything else is looked up in full and then
 * remembered, a miss included (a JWT repeated on a connection where the
 * key provider is asked first is hashed once, not on every request). */
static void test_lookup_memo(void **state)
{
    apr_pool_t *p = *state;
    mg_keyring *ring = parse_ok(p, key_file);
    mg_keyring *other_ring = parse_ok(p, "sha256:" D_DEMO " demo2 acme free\n");
    mg_keys_memo *memo = apr_pcalloc(p, sizeof(*memo));
    const mg_key *k;

    k = mg_keys_lookup_memo(ring, memo, "sk-demo-0001", 12);
    assert_non_null(k);
    assert_string_equal(k->id, "demo");
    assert_ptr_equal(memo->key, k);
    assert_int_equal(memo->len, 12);
    /* Again: the memo's answer, the same key. */
    assert_ptr_equal(mg_keys_lookup_memo(ring, memo, "sk-demo-0001", 12), k);

    /* Same length, one byte off, first or last: no key, and the miss is
     * what the memo holds now. */
    assert_null(mg_keys_lookup_memo(ring, memo, "sk-demo-0002", 12));
    assert_null(mg_keys_lookup_memo(ring, memo, "Sk-demo-0001", 12));
    assert_null(memo->key);
    assert_ptr_equal(memo->ring, ring);
    assert_int_equal(memo->len, 12);
    assert_memory_equal(memo->presented, "Sk-demo-0001", 12);
    /* answered from the memo: a miss again, and still remembered */
    assert_null(mg_keys_lookup_memo(ring, memo, "Sk-demo-0001", 12));
    assert_int_equal(memo->len, 12);
    /* the key after its miss: found, and remembered */
    k = mg_keys_lookup_memo(ring, memo, "sk-demo-0001", 12);
    assert_string_equal(k->id, "demo");
    assert_ptr_equal(memo->key, k);
    /* A prefix or an extension of the remembered bytes is not them. */
    assert_null(mg_keys_lookup_memo(ring, memo, "sk-demo-0001", 11));
    assert_null(mg_keys_lookup_memo(ring, memo, "sk-demo-00011", 13));
    assert_null(mg_keys_lookup_memo(ring, memo, "", 0));
    assert_int_equal(memo->len, 13);           /* "" is not remembered */
    /* Another valid key of the same length: its own key, then remembered. */
    k = mg_keys_lookup_memo(ring, memo, "sk-other-002", 12);
    assert_null(k);                            /* (not a key: 12 bytes) */
    k = mg_keys_lookup_memo(ring, memo, "sk-other-0002", 13);
    assert_non_null(k);
    assert_string_equal(k->id, "other");
    assert_ptr_equal(memo->key, k);
    k = mg_keys_lookup_memo(ring, memo, "sk-demo-0001", 12);
    assert_string_equal(k->id, "demo");

    /* Another ring (another virtual host on the same connection): its own
     * key for the same bytes, never the first ring's. */
    k = mg_keys_lookup_memo(other_ring, memo, "sk-demo-0001", 12);
    assert_non_null(k);
    assert_string_equal(k->id, "demo2");
    assert_null(mg_keys_lookup_memo(other_ring, memo, "sk-other-0002", 13));
    assert_null(mg_keys_lookup_memo(NULL, memo, "sk-demo-0001", 12));

    /* No memo: a plain lookup. */
    k = mg_keys_lookup_memo(ring, NULL, "sk-demo-0001", 12);
    assert_string_equal(k->id, "demo");

    /* Cleared: the bytes are gone and nothing is answered from it. */
    mg_keys_memo_clear(memo);
    assert_null(memo->key);
    assert_int_equal(memo->len, 0);
    {
        unsigned char zero[MG_KEYS_PRESENTED_MAX];
        memset(zero, 0, sizeof(zero));
        assert_memory_equal(memo->presented, zero, sizeof(zero));
    }
    k = mg_keys_lookup_memo(ring, memo, "sk-demo-0001", 12);
    assert_string_equal(k->id, "demo");
}

/* The longest key accepted is remembered whole; a longer one is refused
 * even when its first 512 bytes are the remembered key. */
static void test_lookup_memo_length_limit(void **state)
{
    apr_pool_t *p = *state;
    char *key = apr_palloc(p, MG_KEYS_PRESENTED_MAX + 2);
    mg_keys_memo *memo = apr_pcalloc(p, sizeof(*memo));
    mg_keyring *ring = parse_ok(p, D_A512 " long acme free\n");

    memset(key, 'a', MG_KEYS_PRESENTED_MAX + 1);
    key[MG_KEYS_PRESENTED_MAX + 1] = '\0';
    assert_non_null(mg_keys_lookup_memo(ring, memo, key,
                                        MG_KEYS_PRESENTED_MAX));
    assert_non_null(mg_keys_lookup_memo(ring, memo, key,
                                        MG_KEYS_PRESENTED_MAX));
    assert_null(mg_keys_lookup_memo(ring, memo, key,
                                    MG_KEYS_PRESENTED_MAX + 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_digest_vectors),
        MG_TEST(test_parse_file),
        MG_TEST(test_parse_empty_files),
        MG_TEST(test_parse_errors),
        MG_TEST(test_parse_nul_byte),
        MG_TEST(test_lookup),
        MG_TEST(test_lookup_length_limit),
        MG_TEST(test_lookup_compares_whole_digest),
        MG_TEST(test_memeq),
        MG_TEST(test_lookup_memo),
        MG_TEST(test_lookup_memo_length_limit),
    };

    return MG_RUN(tests);
}
