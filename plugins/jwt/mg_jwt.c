/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_jwt.c -- JWS compact verification and claims (see mg_jwt.h).
 *
 * Hand-written JOSE parsing because Debian 12's libraries do not fit
 * (libcjose 0.6.2 has no Ed25519, libjwt no PS, EdDSA or JWKS); the crypto
 * is OpenSSL 3's EVP, the JSON jansson.  Everything a token says is
 * untrusted until its signature verified, and even its header chooses
 * nothing the issuer did not allow.
 */
#include <string.h>
#include <apr_strings.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include "mg_jwt.h"

static const char *const alg_names[MG_JWT_ALG_COUNT] = {
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512"
};

int mg_jwt_alg_from_name(const char *name)
{
    int i;

    for (i = 0; i < MG_JWT_ALG_COUNT; i++) {
        if (!strcmp(name, alg_names[i])) {
            return i;
        }
    }
    return -1;
}

const char *mg_jwt_parse_algs(apr_pool_t *p, const char *list,
                              unsigned *algs)
{
    char *copy = apr_pstrdup(p, list), *last, *w;

    *algs = 0;
    for (w = apr_strtok(copy, ",", &last); w;
         w = apr_strtok(NULL, ",", &last)) {
        int a = mg_jwt_alg_from_name(w);
        if (a < 0) {
            return apr_psprintf(p, "unknown or refused algorithm '%s' "
                                "(RS256/384/512, PS256/384/512, "
                                "ES256/384/512, EdDSA, HS256/384/512)", w);
        }
        *algs |= 1u << a;
    }
    return *algs ? NULL : "no algorithm named";
}

void mg_jwt_issuer_init(mg_jwt_issuer *is, const char *iss)
{
    memset(is, 0, sizeof(*is));
    is->iss = iss;
    is->leeway = 60;
    is->claim_subject = "sub";
    is->claim_tenant = "tenant";
    is->claim_tier = "tier";
    is->claim_scopes = "scope";
}

/* ---- base64url (RFC 7515 section 2: no padding, no other alphabet) ----- */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Decoded into `out` (at least len * 3 / 4 + 1 bytes); -1 if malformed. */
static long b64url_decode(const char *in, apr_size_t len, unsigned char *out)
{
    apr_size_t i, o = 0;
    unsigned acc = 0;
    int bits = 0;

    if (len % 4 == 1) {
        return -1;
    }
    for (i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0) {
            return -1;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    /* the unused low bits must be zero: one encoding per value */
    if (acc & ((1u << bits) - 1)) {
        return -1;
    }
    return (long)o;
}

static unsigned char *b64url_dup(apr_pool_t *p, const char *in,
                                 apr_size_t len, apr_size_t *outlen)
{
    unsigned char *out = apr_palloc(p, len * 3 / 4 + 2);
    long n = b64url_decode(in, len, out);

    if (n < 0) {
        return NULL;
    }
    out[n] = '\0';
    *outlen = (apr_size_t)n;
    return out;
}

int mg_jwt_looks_like(const char *token, apr_size_t len)
{
    /* memchr, not a loop over every byte: this runs for every bearer
     * credential, API keys included */
    const char *end = token + len;
    const char *a = memchr(token, '.', len), *b;

    if (!a || !(b = memchr(a + 1, '.', (apr_size_t)(end - a - 1)))) {
        return 0;
    }
    return memchr(b + 1, '.', (apr_size_t)(end - b - 1)) == NULL;
}

/* ---- JWKS -------------------------------------------------------------- */

static apr_status_t free_pkey(void *pkey)
{
    EVP_PKEY_free(pkey);
    return APR_SUCCESS;
}

static unsigned char *member_bytes(apr_pool_t *p, json_t *jwk,
                                   const char *name, apr_size_t *len)
{
    const char *s = json_string_value(json_object_get(jwk, name));

    return s ? b64url_dup(p, s, strlen(s), len) : NULL;
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;

    if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1) {
        if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
            pkey = NULL;
        }
    }
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *rsa_key(apr_pool_t *p, json_t *jwk)
{
    apr_size_t nlen, elen;
    unsigned char *n = member_bytes(p, jwk, "n", &nlen);
    unsigned char *e = member_bytes(p, jwk, "e", &elen);
    BIGNUM *bn = NULL, *be = NULL;
    OSSL_PARAM_BLD *bld;
    EVP_PKEY *pkey = NULL;

    if (!n || !e || nlen < 256 || nlen > 2048 || elen == 0 || elen > 8) {
        return NULL;
    }
    bn = BN_bin2bn(n, (int)nlen, NULL);
    be = BN_bin2bn(e, (int)elen, NULL);
    /* below 2048 bits RSA is not a signature worth checking: counted in
     * the modulus, not in its encoding (leading zero bytes); an exponent
     * of 1 makes a padded hash its own signature, an even one is no RSA */
    if (!bn || !be || BN_num_bits(bn) < 2048 || !BN_is_odd(be)
        || BN_is_one(be)) {
        BN_free(bn);
        BN_free(be);
        return NULL;
    }
    bld = OSSL_PARAM_BLD_new();
    if (bld
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn)
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be)) {
        pkey = from_params("RSA", bld);
    }
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return pkey;
}

static EVP_PKEY *ec_key(apr_pool_t *p, json_t *jwk)
{
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    const char *group;
    apr_size_t size, xlen, ylen;
    unsigned char *x, *y, *point;
    OSSL_PARAM_BLD *bld;
    EVP_PKEY *pkey = NULL;

    if (!crv) {
        return NULL;
    }
    if (!strcmp(crv, "P-256")) { group = "P-256"; size = 32; }
    else if (!strcmp(crv, "P-384")) { group = "P-384"; size = 48; }
    else if (!strcmp(crv, "P-521")) { group = "P-521"; size = 66; }
    else {
        return NULL;
    }
    x = member_bytes(p, jwk, "x", &xlen);
    y = member_bytes(p, jwk, "y", &ylen);
    if (!x || !y || xlen != size || ylen != size) {
        return NULL;
    }
    point = apr_palloc(p, 1 + 2 * size);
    point[0] = 0x04;                /* uncompressed */
    memcpy(point + 1, x, size);
    memcpy(point + 1 + size, y, size);
    bld = OSSL_PARAM_BLD_new();
    if (bld
        && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                           group, 0)
        && OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                            point, 1 + 2 * size)) {
        pkey = from_params("EC", bld);
    }
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

static EVP_PKEY *okp_key(apr_pool_t *p, json_t *jwk)
{
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    apr_size_t xlen;
    unsigned char *x;

    if (!crv || strcmp(crv, "Ed25519")) {
        return NULL;
    }
    x = member_bytes(p, jwk, "x", &xlen);
    if (!x || xlen != 32) {
        return NULL;
    }
    return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, xlen);
}

const char *mg_jwt_jwks_parse(apr_pool_t *p, const char *text,
                              apr_size_t len, apr_array_header_t **keys)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *list, *jwk;
    size_t i;
    const char *err = NULL;

    if (!root) {
        return apr_psprintf(p, "not JSON (line %d: %s)", jerr.line,
                            jerr.text);
    }
    list = json_object_get(root, "keys");
    if (!json_is_array(list)) {
        json_decref(root);
        return "no \"keys\" array";
    }
    *keys = apr_array_make(p, (int)json_array_size(list) + 1,
                           sizeof(mg_jwt_key *));
    json_array_foreach(list, i, jwk) {
        const char *kty = json_string_value(json_object_get(jwk, "kty"));
        const char *use = json_string_value(json_object_get(jwk, "use"));
        const char *kid = json_string_value(json_object_get(jwk, "kid"));
        const char *alg = json_string_value(json_object_get(jwk, "alg"));
        mg_jwt_key *k;
        EVP_PKEY *pkey;
        int type;

        if (!kty) {
            err = apr_psprintf(p, "key %d has no \"kty\"", (int)i);
            break;
        }
        if (use && strcmp(use, "sig")) {
            continue;
        }
        if (!strcmp(kty, "RSA")) {
            type = MG_JWT_KTY_RSA;
            pkey = rsa_key(p, jwk);
        }
        else if (!strcmp(kty, "EC")) {
            type = MG_JWT_KTY_EC;
            pkey = ec_key(p, jwk);
        }
        else if (!strcmp(kty, "OKP")) {
            type = MG_JWT_KTY_OKP;
            pkey = okp_key(p, jwk);
        }
        else {
            /* "oct" and others: HMAC secrets never come from a JWKS */
            continue;
        }
        if (!pkey) {
            err = apr_psprintf(p, "key %d (%s%s%s) is not a usable public "
                               "key", (int)i, kty, kid ? " " : "",
                               kid ? kid : "");
            break;
        }
        apr_pool_cleanup_register(p, pkey, free_pkey, apr_pool_cleanup_null);
        k = apr_pcalloc(p, sizeof(*k));
        k->kid = kid ? apr_pstrdup(p, kid) : NULL;
        k->alg = alg ? apr_pstrdup(p, alg) : NULL;
        k->kty = type;
        k->pkey = pkey;
        APR_ARRAY_PUSH(*keys, mg_jwt_key *) = k;
    }
    json_decref(root);
    return err;
}

/* ---- signatures ------------------------------------------------------- */

static const EVP_MD *alg_md(int alg)
{
    switch (alg) {
    case MG_JWT_RS256: case MG_JWT_PS256: case MG_JWT_ES256:
    case MG_JWT_HS256:
        return EVP_sha256();
    case MG_JWT_RS384: case MG_JWT_PS384: case MG_JWT_ES384:
    case MG_JWT_HS384:
        return EVP_sha384();
    case MG_JWT_RS512: case MG_JWT_PS512: case MG_JWT_ES512:
    case MG_JWT_HS512:
        return EVP_sha512();
    default:
        return NULL;                /* EdDSA hashes itself */
    }
}

/* Does `k` fit `alg` (type, curve, and the JWK's own alg)? */
static int key_fits(const mg_jwt_key *k, int alg)
{
    char group[32];
    size_t glen = 0;

    if (k->alg && mg_jwt_alg_from_name(k->alg) != alg) {
        return 0;
    }
    switch (alg) {
    case MG_JWT_RS256: case MG_JWT_RS384: case MG_JWT_RS512:
    case MG_JWT_PS256: case MG_JWT_PS384: case MG_JWT_PS512:
        return k->kty == MG_JWT_KTY_RSA;
    case MG_JWT_EDDSA:
        return k->kty == MG_JWT_KTY_OKP;
    case MG_JWT_ES256: case MG_JWT_ES384: case MG_JWT_ES512:
        if (k->kty != MG_JWT_KTY_EC
            || !EVP_PKEY_get_utf8_string_param(k->pkey,
                                               OSSL_PKEY_PARAM_GROUP_NAME,
                                               group, sizeof(group), &glen)) {
            return 0;
        }
        return !strcmp(group, alg == MG_JWT_ES256 ? "prime256v1"
                              : alg == MG_JWT_ES384 ? "secp384r1"
                              : "secp521r1");
    default:
        return 0;
    }
}

unsigned mg_jwt_algs_served(const apr_array_header_t *keys, unsigned algs)
{
    unsigned served = 0;
    int a, i;

    for (a = 0; a < MG_JWT_HS256 && keys; a++) {
        if (!(algs & (1u << a))) {
            continue;
        }
        for (i = 0; i < keys->nelts; i++) {
            if (key_fits(APR_ARRAY_IDX(keys, i, const mg_jwt_key *), a)) {
                served |= 1u << a;
                break;
            }
        }
    }
    return served;
}

const char *mg_jwt_alg_names(apr_pool_t *p, unsigned algs)
{
    const char *list = NULL;
    int a;

    for (a = 0; a < MG_JWT_ALG_COUNT; a++) {
        if (algs & (1u << a)) {
            list = list ? apr_pstrcat(p, list, ",", alg_names[a], NULL)
                        : alg_names[a];
        }
    }
    return list ? list : "";
}

/* JWS carries ECDSA as R || S, each the curve's size; EVP wants DER. */
static unsigned char *ecdsa_der(const unsigned char *sig, apr_size_t len,
                                int alg, int *der_len)
{
    apr_size_t half = alg == MG_JWT_ES256 ? 32 : alg == MG_JWT_ES384 ? 48
                      : 66;
    ECDSA_SIG *es;
    BIGNUM *r, *s;
    unsigned char *der = NULL;

    if (len != 2 * half) {
        return NULL;
    }
    es = ECDSA_SIG_new();
    r = BN_bin2bn(sig, (int)half, NULL);
    s = BN_bin2bn(sig + half, (int)half, NULL);
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return NULL;
    }
    *der_len = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);
    return *der_len > 0 ? der : NULL;
}

static int verify_with_key(const mg_jwt_key *k, int alg,
                           const unsigned char *data, apr_size_t dlen,
                           const unsigned char *sig, apr_size_t slen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    unsigned char *der = NULL;
    int der_len = 0, ok = 0;

    if (!ctx) {
        return 0;
    }
    if (EVP_DigestVerifyInit(ctx, &pctx, alg_md(alg), NULL, k->pkey) != 1) {
        goto done;
    }
    if (alg == MG_JWT_PS256 || alg == MG_JWT_PS384 || alg == MG_JWT_PS512) {
        /* RFC 7518 3.5: MGF1 with the same hash, salt as long as it */
        if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1
            || EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx,
                                                RSA_PSS_SALTLEN_DIGEST) != 1) {
            goto done;
        }
    }
    if (alg == MG_JWT_ES256 || alg == MG_JWT_ES384 || alg == MG_JWT_ES512) {
        if (!(der = ecdsa_der(sig, slen, alg, &der_len))) {
            goto done;
        }
        sig = der;
        slen = (apr_size_t)der_len;
    }
    ok = EVP_DigestVerify(ctx, sig, slen, data, dlen) == 1;
done:
    OPENSSL_free(der);
    EVP_MD_CTX_free(ctx);
    return ok;
}

static int verify_hmac(const mg_jwt_issuer *is, int alg,
                       const unsigned char *data, apr_size_t dlen,
                       const unsigned char *sig, apr_size_t slen)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mlen = 0;

    if (!is->secret
        || !HMAC(alg_md(alg), is->secret, (int)is->secret_len, data, dlen,
                 mac, &mlen)) {
        return 0;
    }
    return slen == mlen && CRYPTO_memcmp(mac, sig, mlen) == 0;
}

/* ---- claims ----------------------------------------------------------- */

/* A dotted path ("org.id") into nested objects; a name holding a dot is
 * found whole first (URI-named claims such as "https://x/tier"). */
static json_t *claim_at(apr_pool_t *p, json_t *obj, const char *path)
{
    json_t *v = json_object_get(obj, path);
    const char *dot;

    if (v || !(dot = strchr(path, '.'))) {
        return v;
    }
    v = json_object_get(obj, apr_pstrndup(p, path, dot - path));
    return json_is_object(v) ? claim_at(p, v, dot + 1) : NULL;
}

/* A NumericDate (seconds); 1 if present and a number. */
static int numeric_date(json_t *claims, const char *name, apr_int64_t *t,
                        int *bad)
{
    json_t *v = json_object_get(claims, name);

    if (!v) {
        return 0;
    }
    /* beyond year 33658 is nonsense, and casting it would be undefined */
    if (!json_is_number(v) || json_number_value(v) > 1e12
        || json_number_value(v) < -1e12) {
        *bad = 1;
        return 0;
    }
    *t = (apr_int64_t)json_number_value(v);
    return 1;
}

static int aud_has(json_t *aud, const char *want)
{
    size_t i;
    json_t *v;

    if (json_is_string(aud)) {
        return !strcmp(json_string_value(aud), want);
    }
    json_array_foreach(aud, i, v) {
        if (json_is_string(v) && !strcmp(json_string_value(v), want)) {
            return 1;
        }
    }
    return 0;
}

static const char *read_scopes(apr_pool_t *p, json_t *v,
                               apr_array_header_t **out)
{
    *out = apr_array_make(p, 4, sizeof(const char *));
    if (!v) {
        return NULL;
    }
    if (json_is_string(v)) {
        char *copy = apr_pstrdup(p, json_string_value(v)), *last, *w;
        for (w = apr_strtok(copy, " ", &last); w;
             w = apr_strtok(NULL, " ", &last)) {
            APR_ARRAY_PUSH(*out, const char *) = w;
        }
        return NULL;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *s;
        json_array_foreach(v, i, s) {
            if (!json_is_string(s)) {
                return "the scopes claim holds a non-string";
            }
            APR_ARRAY_PUSH(*out, const char *) =
                apr_pstrdup(p, json_string_value(s));
        }
        return NULL;
    }
    return "the scopes claim is neither a string nor an array";
}

/* Claim values become header values and log fields: printable, short. */
static const char *plain_string(apr_pool_t *p, json_t *v)
{
    const char *s = json_string_value(v), *c;

    if (!s || !*s || strlen(s) > 256) {
        return NULL;
    }
    for (c = s; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            return NULL;
        }
    }
    return apr_pstrdup(p, s);
}

static const char *read_identity(apr_pool_t *p, json_t *claims,
                                 const mg_jwt_issuer *is, mg_jwt_identity *out)
{
    json_t *v;

    if (!(out->subject = plain_string(p, claim_at(p, claims,
                                                  is->claim_subject)))) {
        return "the subject claim is missing or not a plain string";
    }
    v = claim_at(p, claims, is->claim_tenant);
    if (!v) {
        out->tenant = out->subject;
    }
    else if (!(out->tenant = plain_string(p, v))) {
        return "the tenant claim is not a plain string";
    }
    v = claim_at(p, claims, is->claim_tier);
    if (!v) {
        out->tier = is->default_tier;
    }
    else if (!(out->tier = plain_string(p, v))) {
        return "the tier claim is not a plain string";
    }
    return read_scopes(p, claim_at(p, claims, is->claim_scopes),
                       &out->scopes);
}

static const mg_jwt_issuer *find_issuer(const apr_array_header_t *issuers,
                                        const char *iss)
{
    int i;

    for (i = 0; i < issuers->nelts; i++) {
        const mg_jwt_issuer *is = APR_ARRAY_IDX(issuers, i, mg_jwt_issuer *);
        if (!strcmp(is->iss, iss)) {
            return is;
        }
    }
    return NULL;
}

/* ---- the whole check --------------------------------------------------- */

static const char *check_signature(const mg_jwt_issuer *is, int alg,
                                   const char *kid, const char *token,
                                   apr_size_t signed_len,
                                   const unsigned char *sig, apr_size_t slen)
{
    const unsigned char *data = (const unsigned char *)token;
    int i, tried = 0;

    if (alg >= MG_JWT_HS256) {
        return verify_hmac(is, alg, data, signed_len, sig, slen)
               ? NULL : "signature mismatch";
    }
    for (i = 0; is->keys && i < is->keys->nelts; i++) {
        const mg_jwt_key *k = APR_ARRAY_IDX(is->keys, i, mg_jwt_key *);
        if ((kid && (!k->kid || strcmp(kid, k->kid))) || !key_fits(k, alg)) {
            continue;
        }
        tried = 1;
        if (verify_with_key(k, alg, data, signed_len, sig, slen)) {
            return NULL;
        }
    }
    return tried ? "signature mismatch" : "no key of the issuer fits";
}

const char *mg_jwt_verify(apr_pool_t *p, const char *token, apr_size_t len,
                          const apr_array_header_t *issuers,
                          apr_int64_t now, mg_jwt_identity *out)
{
    const char *dot1, *dot2, *err = NULL;
    unsigned char *hdr_txt, *pay_txt, *sig;
    apr_size_t hlen, plen, slen;
    json_t *hdr = NULL, *claims = NULL;
    const char *alg_name, *kid = NULL, *iss;
    const mg_jwt_issuer *is;
    apr_int64_t exp = 0, nbf = 0, iat = 0;
    int alg, bad = 0, has_exp;

    memset(out, 0, sizeof(*out));
    if (len > MG_JWT_MAX_LEN) {
        return "token too large";
    }
    if (!(dot1 = memchr(token, '.', len))
        || !(dot2 = memchr(dot1 + 1, '.', len - (dot1 + 1 - token)))
        || memchr(dot2 + 1, '.', len - (dot2 + 1 - token))) {
        return "not a JWS compact token";
    }
    if (!(hdr_txt = b64url_dup(p, token, dot1 - token, &hlen))
        || !(pay_txt = b64url_dup(p, dot1 + 1, dot2 - dot1 - 1, &plen))
        || !(sig = b64url_dup(p, dot2 + 1, len - (dot2 + 1 - token),
                              &slen))) {
        return "malformed base64url";
    }
    hdr = json_loadb((const char *)hdr_txt, hlen, JSON_REJECT_DUPLICATES,
                     NULL);
    claims = json_loadb((const char *)pay_txt, plen, JSON_REJECT_DUPLICATES,
                        NULL);
    if (!json_is_object(hdr) || !json_is_object(claims)) {
        err = "malformed JSON";
        goto done;
    }
    if (!(alg_name = json_string_value(json_object_get(hdr, "alg")))
        || (alg = mg_jwt_alg_from_name(alg_name)) < 0) {
        err = "algorithm not accepted";
        goto done;
    }
    if (json_object_get(hdr, "crit")) {
        err = "critical header parameters not understood";
        goto done;
    }
    if (json_object_get(hdr, "kid")
        && !(kid = json_string_value(json_object_get(hdr, "kid")))) {
        err = "malformed kid";
        goto done;
    }
    if (!(iss = json_string_value(json_object_get(claims, "iss")))
        || !(is = find_issuer(issuers, iss))) {
        err = "issuer not trusted";
        goto done;
    }
    if (!(is->algs & (1u << alg))) {
        err = "algorithm not accepted";
        goto done;
    }
    if ((err = check_signature(is, alg, kid, token, dot2 - token, sig,
                               slen)) != NULL) {
        goto done;
    }
    /* Verified: from here on the claims are the issuer's word. */
    has_exp = numeric_date(claims, "exp", &exp, &bad);
    numeric_date(claims, "nbf", &nbf, &bad);
    numeric_date(claims, "iat", &iat, &bad);
    if (bad) {
        err = "malformed time claim";
    }
    else if (!has_exp) {
        err = "no expiry";
    }
    else if (now >= exp + is->leeway) {
        err = "token expired";
    }
    else if (nbf && now + is->leeway < nbf) {
        err = "token not yet valid";
    }
    else if (iat && now + is->leeway < iat) {
        err = "token issued in the future";
    }
    else if (is->audience
             && !aud_has(json_object_get(claims, "aud"), is->audience)) {
        err = "audience not accepted";
    }
    else if (json_object_get(claims, "jti")
             && !(out->jti = plain_string(p, json_object_get(claims,
                                                              "jti")))) {
        /* RFC 7519 4.1.7: a string; another type could not be revoked */
        err = "malformed jti claim";
    }
    else if ((err = read_identity(p, claims, is, out)) == NULL) {
        out->issuer = is;
        out->exp = exp;
        out->nbf = nbf;
    }
done:
    json_decref(hdr);
    json_decref(claims);
    return err;
}

const char *mg_jwt_denylist_parse(apr_pool_t *p, const char *text,
                                  apr_size_t len, apr_hash_t **jtis)
{
    char *copy = apr_pstrmemdup(p, text, len);
    char *line, *next, *end;
    apr_hash_t *h = apr_hash_make(p);

    if (memchr(text, '\0', len)) {
        return "holds a NUL byte";
    }
    for (line = copy; line && *line; line = next) {
        if ((next = strchr(line, '\n')) != NULL) {
            *next++ = '\0';
        }
        while (*line == ' ' || *line == '\t') {
            line++;
        }
        end = line + strlen(line);
        while (end > line && (end[-1] == ' ' || end[-1] == '\t'
                              || end[-1] == '\r')) {
            *--end = '\0';
        }
        if (*line == '\0' || *line == '#') {
            continue;
        }
        apr_hash_set(h, line, end - line, line);
    }
    *jtis = h;
    return NULL;
}

int mg_jwt_denylist_has(apr_hash_t *jtis, const char *jti)
{
    return jtis && jti && apr_hash_get(jtis, jti, APR_HASH_KEY_STRING);
}
