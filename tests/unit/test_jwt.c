/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_jwt.c -- JWT verification (plugins/jwt/mg_jwt.c) over tokens that
 * python3-cryptography minted (test_jwt_vectors.h, made by
 * make_jwt_vectors.py) at a fixed time: every algorithm verifies, and
 * every way a token can be wrong is refused with its reason.
 */
#include "mg_test.h"
#include <string.h>
#include <apr_strings.h>

#include "mg_jwt.h"
#include "test_jwt_vectors.h"

typedef struct fixture {
    apr_pool_t *p;
    apr_array_header_t *issuers;
    mg_jwt_issuer *is;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    const char *err;

    apr_pool_create(&f->p, NULL);
    f->is = apr_palloc(f->p, sizeof(*f->is));
    mg_jwt_issuer_init(f->is, "https://idp.test/");
    assert_null(mg_jwt_parse_algs(f->p, "RS256,RS384,RS512,PS256,PS384,"
                                  "PS512,ES256,ES384,ES512,EdDSA,HS256,"
                                  "HS384,HS512", &f->is->algs));
    err = mg_jwt_jwks_parse(f->p, VEC_JWKS, strlen(VEC_JWKS), &f->is->keys);
    assert_null(err);
    assert_int_equal(f->is->keys->nelts, 5);
    f->is->secret = (const unsigned char *)VEC_SECRET;
    f->is->secret_len = strlen(VEC_SECRET);
    f->is->audience = "modelgate";
    f->issuers = apr_array_make(f->p, 2, sizeof(mg_jwt_issuer *));
    APR_ARRAY_PUSH(f->issuers, mg_jwt_issuer *) = f->is;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    apr_pool_destroy(f->p);
    free(f);
    return 0;
}

static const char *verify_at(fixture *f, const char *tok, apr_int64_t now,
                             mg_jwt_identity *id)
{
    return mg_jwt_verify(f->p, tok, strlen(tok), f->issuers, now, id);
}

static const char *verify(fixture *f, const char *tok, mg_jwt_identity *id)
{
    return verify_at(f, tok, VEC_NOW, id);
}

static void test_every_algorithm(void **state)
{
    fixture *f = *state;
    static const char *const toks[] = {
        TOK_RS256, TOK_RS384, TOK_RS512, TOK_PS256, TOK_PS384, TOK_PS512,
        TOK_ES256, TOK_ES384, TOK_ES512, TOK_EdDSA, TOK_HS256, TOK_HS384,
        TOK_HS512
    };
    mg_jwt_identity id;
    size_t i;

    for (i = 0; i < sizeof(toks) / sizeof(toks[0]); i++) {
        const char *err = verify(f, toks[i], &id);
        if (err) {
            fail_msg("algorithm %d: %s", (int)i, err);
        }
        assert_string_equal(id.subject, "user-1");
        assert_string_equal(id.tenant, "user-1");   /* no tenant claim */
        assert_string_equal(id.tier, "pro");
        assert_int_equal(id.scopes->nelts, 2);
        assert_string_equal(APR_ARRAY_IDX(id.scopes, 0, char *), "chat:write");
        assert_string_equal(APR_ARRAY_IDX(id.scopes, 1, char *), "embed");
        assert_int_equal(id.exp, VEC_NOW + 3600);
    }
}

static void test_pinned_algorithms(void **state)
{
    fixture *f = *state;
    mg_jwt_identity id;

    assert_null(mg_jwt_parse_algs(f->p, "ES256", &f->is->algs));
    assert_null(verify(f, TOK_ES256, &id));
    assert_string_equal(verify(f, TOK_RS256, &id), "algorithm not accepted");
    assert_string_equal(verify(f, TOK_HS256, &id), "algorithm not accepted");
    /* none is not an algorithm at all */
    assert_non_null(mg_jwt_parse_algs(f->p, "none", &f->is->algs));
    assert_non_null(mg_jwt_parse_algs(f->p, "ES256,HS1", &f->is->algs));
}

static void test_refusals(void **state)
{
    fixture *f = *state;
    mg_jwt_identity id;

    assert_string_equal(verify(f, TOK_NONE, &id), "algorithm not accepted");
    /* HMAC keyed with the RSA public key: the secret is the only HMAC key */
    assert_string_equal(verify(f, TOK_HS_PUBKEY, &id), "signature mismatch");
    assert_string_equal(verify(f, TOK_BAD_SIG, &id), "signature mismatch");
    assert_string_equal(verify(f, TOK_EXPIRED, &id), "token expired");
    assert_string_equal(verify(f, TOK_NBF, &id), "token not yet valid");
    assert_string_equal(verify(f, TOK_IAT_FUTURE, &id),
                        "token issued in the future");
    assert_string_equal(verify(f, TOK_NO_EXP, &id), "no expiry");
    assert_string_equal(verify(f, TOK_HUGE_EXP, &id), "malformed time claim");
    assert_string_equal(verify(f, TOK_WRONG_ISS, &id), "issuer not trusted");
    assert_string_equal(verify(f, TOK_WRONG_AUD, &id),
                        "audience not accepted");
    assert_null(verify(f, TOK_AUD_ARRAY, &id));
    assert_string_equal(verify(f, TOK_BAD_B64, &id), "malformed base64url");
    assert_string_equal(verify(f, TOK_BAD_JSON, &id), "malformed JSON");
    assert_string_equal(verify(f, TOK_UNKNOWN_KID, &id),
                        "no key of the issuer fits");
    assert_string_equal(verify(f, TOK_KID_WRONG_TYPE, &id),
                        "no key of the issuer fits");
    assert_string_equal(verify(f, TOK_CRIT, &id),
                        "critical header parameters not understood");
    assert_string_equal(verify(f, "a.b", &id), "not a JWS compact token");
    assert_string_equal(verify(f, "a.b.c.d", &id), "not a JWS compact token");
    {
        char *big = apr_palloc(f->p, MG_JWT_MAX_LEN + 2);
        memset(big, 'a', MG_JWT_MAX_LEN + 1);
        big[10] = big[20] = '.';
        big[MG_JWT_MAX_LEN + 1] = '\0';
        assert_string_equal(verify(f, big, &id), "token too large");
    }
}

static void test_leeway(void **state)
{
    fixture *f = *state;
    mg_jwt_identity id;

    /* exp is NOW + 3600; the default leeway is 60 s */
    assert_null(verify_at(f, TOK_ES256, VEC_NOW + 3659, &id));
    assert_string_equal(verify_at(f, TOK_ES256, VEC_NOW + 3660, &id),
                        "token expired");
    f->is->leeway = 0;
    assert_string_equal(verify_at(f, TOK_ES256, VEC_NOW + 3600, &id),
                        "token expired");
    assert_null(verify_at(f, TOK_ES256, VEC_NOW + 3599, &id));
    /* nbf NOW + 600 */
    f->is->leeway = 600;
    assert_null(verify(f, TOK_NBF, &id));
    assert_int_equal(id.nbf, VEC_NOW + 600);
}

static void test_claim_paths(void **state)
{
    fixture *f = *state;
    mg_jwt_identity id;

    f->is->claim_tenant = "org.id";
    f->is->claim_tier = "org.plan";
    assert_null(verify(f, TOK_NESTED, &id));
    assert_string_equal(id.tenant, "acme");
    assert_string_equal(id.tier, "enterprise");
    /* scopes as an array: each element whole */
    assert_int_equal(id.scopes->nelts, 2);
    assert_string_equal(APR_ARRAY_IDX(id.scopes, 1, char *), "b c");
    /* no tier claim: the default, or none */
    f->is->claim_tenant = "tenant";
    f->is->claim_tier = "tier";
    assert_null(verify(f, TOK_NO_TIER, &id));
    assert_null(id.tier);
    assert_string_equal(id.tenant, "t1");
    f->is->default_tier = "free";
    assert_null(verify(f, TOK_NO_TIER, &id));
    assert_string_equal(id.tier, "free");
}

static void test_several_issuers(void **state)
{
    fixture *f = *state;
    mg_jwt_issuer *other = apr_palloc(f->p, sizeof(*other));
    mg_jwt_identity id;

    mg_jwt_issuer_init(other, "https://evil.test/");
    assert_null(mg_jwt_parse_algs(f->p, "HS256", &other->algs));
    other->secret = (const unsigned char *)VEC_SECRET;
    other->secret_len = strlen(VEC_SECRET);
    APR_ARRAY_PUSH(f->issuers, mg_jwt_issuer *) = other;
    /* this issuer is now trusted, but only for HS256 with its secret */
    assert_string_equal(verify(f, TOK_WRONG_ISS, &id),
                        "algorithm not accepted");
    assert_null(verify(f, TOK_ES256, &id));
    assert_ptr_equal(id.issuer, f->is);
}

static void test_jwks(void **state)
{
    fixture *f = *state;
    apr_array_header_t *keys;
    const char *skipped = "{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"},"
                          "{\"kty\":\"RSA\",\"use\":\"enc\"}]}";
    const char *small = "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\","
                        "\"e\":\"AQAB\"}]}";

    assert_non_null(mg_jwt_jwks_parse(f->p, "{", 1, &keys));
    assert_non_null(mg_jwt_jwks_parse(f->p, "{}", 2, &keys));
    /* oct keys and encryption keys are skipped */
    assert_null(mg_jwt_jwks_parse(f->p, skipped, strlen(skipped), &keys));
    assert_int_equal(keys->nelts, 0);
    /* a short RSA modulus is not a key */
    assert_non_null(mg_jwt_jwks_parse(f->p, small, strlen(small), &keys));
    assert_true(mg_jwt_looks_like("a.b.c", 5));
    assert_false(mg_jwt_looks_like("mg-key", 6));
    assert_false(mg_jwt_looks_like("", 0));
    assert_false(mg_jwt_looks_like("a.b", 3));
    assert_false(mg_jwt_looks_like("a.b.c.d", 7));
    assert_true(mg_jwt_looks_like("a.b.c.d", 5));    /* only len bytes */
    assert_true(mg_jwt_looks_like("..", 2));
}

/* RSA keys are judged by the modulus's bits, not by how many bytes its
 * encoding took: a 1024-bit modulus behind 128 zero bytes is 1024 bits.
 * An exponent of 1 (the signature is the padded hash itself) or an even
 * one is no RSA key either. */
#define N1024_PADDED "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAADu1JpI9wNWzZ2v8Es6CEJo-8zCSaQNEfg1PVyFFU-ml3uOPyt7x0oWImlsudWtXmg7uKC-1KpAYJVL_7fTXHsh76vB3EtzSKfVNprhUkNiRu1NMxl45OPYXGXv40HY4-4t2fs-3BM6COhk-_uDTVjGEDRvQBJYAVvcz_HcerABSw"
#define N2048 "toqznCaeYpus32azZxYe7DbpydmCkV2EUtPBI9IrfFkn6iZkEw2ThgBXT4ncpH8m5y-t4Sg9wi9LK7GUO45Jk0fMv_1phXPfQFgBsS9HH6wa2GfCWy29eDR-Bq0DtyNQWW7gy5cR_DEAFUpYshDPYFASW65a_ZMwZfSD1nCMyseDX5npqOhg-IbFa674qX7TsJh6Rr1htUapLgKl_uT8wcXxcDBTiA2FNSq1c4Ih6qHBpMmA_S8Q5HMbnirOTgFjqiiVUcU0easj5OnkB5p5Wf-Aw74mRIj9ZdH2cicauGw4Tg_KHPnYQRTQQa4Gks4u0asrQ9bYwW7MLZ9MEmR6hw"
static void test_jwks_rsa_strength(void **state)
{
    fixture *f = *state;
    apr_array_header_t *keys;
    const char *padded = "{\"keys\":[{\"kty\":\"RSA\",\"n\":\""
                         N1024_PADDED "\",\"e\":\"AQAB\"}]}";
    const char *e1 = "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"" N2048
                     "\",\"e\":\"AQ\"}]}";
    const char *e2 = "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"" N2048
                     "\",\"e\":\"Ag\"}]}";
    const char *ok = "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"" N2048
                     "\",\"e\":\"AQAB\"}]}";

    assert_non_null(mg_jwt_jwks_parse(f->p, padded, strlen(padded), &keys));
    assert_non_null(mg_jwt_jwks_parse(f->p, e1, strlen(e1), &keys));
    assert_non_null(mg_jwt_jwks_parse(f->p, e2, strlen(e2), &keys));
    assert_null(mg_jwt_jwks_parse(f->p, ok, strlen(ok), &keys));
    assert_int_equal(keys->nelts, 1);
}

/* The revoked-token list: one jti a line, blanks and comments skipped. */
static void test_denylist(void **state)
{
    fixture *f = *state;
    const char *text = "# revoked 2026-12-02\n"
                       "  a1b2-c3 \r\n"
                       "\n"
                       "\tuuid-2\n"
                       "last-without-newline";
    apr_hash_t *jtis;
    mg_jwt_identity id;

    assert_null(mg_jwt_denylist_parse(f->p, text, strlen(text), &jtis));
    assert_int_equal(apr_hash_count(jtis), 3);
    assert_true(mg_jwt_denylist_has(jtis, "a1b2-c3"));
    assert_true(mg_jwt_denylist_has(jtis, "uuid-2"));
    assert_true(mg_jwt_denylist_has(jtis, "last-without-newline"));
    /* exact, case-sensitive (RFC 7519 4.1.7), no prefixes */
    assert_false(mg_jwt_denylist_has(jtis, "A1B2-C3"));
    assert_false(mg_jwt_denylist_has(jtis, "a1b2"));
    assert_false(mg_jwt_denylist_has(jtis, "# revoked 2026-12-02"));
    assert_false(mg_jwt_denylist_has(jtis, NULL));
    assert_false(mg_jwt_denylist_has(NULL, "uuid-2"));
    /* an empty file is an empty list, not an error */
    assert_null(mg_jwt_denylist_parse(f->p, "", 0, &jtis));
    assert_int_equal(apr_hash_count(jtis), 0);
    assert_non_null(mg_jwt_denylist_parse(f->p, "a\0b", 3, &jtis));
    /* a token without a jti has none to be revoked by */
    assert_null(verify(f, TOK_ES256, &id));
    assert_null(id.jti);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_algorithm, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pinned_algorithms, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leeway, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_several_issuers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_jwks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jwks_rsa_strength, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_denylist, setup, teardown),
    };

    apr_initialize();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
