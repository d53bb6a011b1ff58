/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_jwt.h -- verifying a JWS compact JWT (RFC 7515, 7519) and reading the
 * caller out of its claims.  Plain C over APR, OpenSSL 3 (EVP) and jansson:
 * no httpd, unit-tested in tests/unit/test_jwt.c.
 *
 * What is accepted, and why:
 *   - algorithms RS256/384/512, PS256/384/512, ES256/384/512, EdDSA
 *     (Ed25519) and HS256/384/512, each issuer naming the ones it uses
 *     (`alg` is pinned: a token whose header names another is refused);
 *     `none` is not an algorithm here at all;
 *   - a signature algorithm's key comes only from the issuer's JWKS, an
 *     HMAC algorithm's only from its secret (a file), so an HS256 token
 *     "signed" with a public key (algorithm confusion) has no key to be
 *     checked with and fails;
 *   - a key whose type or curve does not fit the algorithm is never used;
 *     the JWK's own `alg`, where present, must equal the token's;
 *   - keys named in the token (`jku`, `x5u`, `jwk`, `x5c`) are ignored; a
 *     `crit` header is refused (no extension is understood);
 *   - `iss` must name a configured issuer, `exp` is required, `nbf` and
 *     `iat` are checked where present, all with the issuer's leeway;
 *     `aud` must contain the issuer's audience where one is configured.
 * Failures are described in fixed words that name no secret and no claim
 * value, fit for a WWW-Authenticate error_description.
 */
#ifndef MG_JWT_H
#define MG_JWT_H

#include <apr_pools.h>
#include <apr_tables.h>
#include <apr_hash.h>
#include <openssl/evp.h>

/** Longest token looked at; longer ones are refused unparsed (below
 *  httpd's 8190-byte header limit, so the refusal is the gateway's). */
#define MG_JWT_MAX_LEN 7168

typedef enum {
    MG_JWT_RS256 = 0, MG_JWT_RS384, MG_JWT_RS512,
    MG_JWT_PS256, MG_JWT_PS384, MG_JWT_PS512,
    MG_JWT_ES256, MG_JWT_ES384, MG_JWT_ES512,
    MG_JWT_EDDSA,
    MG_JWT_HS256, MG_JWT_HS384, MG_JWT_HS512,
    MG_JWT_ALG_COUNT
} mg_jwt_alg;

/** A public key from a JWKS. */
typedef struct mg_jwt_key {
    const char *kid;          /**< NULL when the JWK has none */
    const char *alg;          /**< the JWK's `alg`, or NULL */
    int kty;                  /**< MG_JWT_KTY_* */
    EVP_PKEY *pkey;           /**< freed with the pool */
} mg_jwt_key;

#define MG_JWT_KTY_RSA 1
#define MG_JWT_KTY_EC  2      /* with the curve in pkey */
#define MG_JWT_KTY_OKP 3      /* Ed25519 */

/** One trusted issuer and how its claims name the caller. */
typedef struct mg_jwt_issuer {
    const char *iss;          /**< must equal the token's `iss` */
    unsigned algs;            /**< bit (1 << mg_jwt_alg) per allowed alg */
    apr_array_header_t *keys; /**< mg_jwt_key *, from its JWKS; may be NULL */
    const unsigned char *secret; /**< HMAC secret, or NULL */
    apr_size_t secret_len;
    const char *audience;     /**< required in `aud`, or NULL */
    apr_int64_t leeway;       /**< seconds of clock skew allowed */
    /* claim names, dotted paths into nested objects ("org.id") */
    const char *claim_subject;   /**< default "sub" */
    const char *claim_tenant;    /**< default "tenant"; absent: the subject */
    const char *claim_tier;      /**< default "tier" */
    const char *claim_scopes;    /**< default "scope" */
    const char *default_tier; /**< when the tier claim is absent, or NULL */
    const char *conf_file;    /**< where it was declared, for configuration */
    int conf_line;            /**< errors (the glue sets them) */
} mg_jwt_issuer;

/** Of the signature algorithms in `algs` (bits of mg_jwt_alg), those at
 *  least one of `keys` (mg_jwt_key *; may be NULL) can verify: its type,
 *  curve and own `alg` fit. */
unsigned mg_jwt_algs_served(const apr_array_header_t *keys, unsigned algs);

/** "RS256,ES256": the names of the algorithms in `algs`. */
const char *mg_jwt_alg_names(apr_pool_t *p, unsigned algs);

/** Who a verified token names. */
typedef struct mg_jwt_identity {
    const mg_jwt_issuer *issuer;
    const char *subject;
    const char *tenant;
    const char *tier;         /**< NULL: no claim and no default */
    apr_array_header_t *scopes; /**< const char * */
    apr_int64_t exp;          /**< seconds since the epoch */
    apr_int64_t nbf;          /**< 0 when absent */
    const char *jti;          /**< the token's id, or NULL */
} mg_jwt_identity;

/** Set the defaults of an issuer (claims, leeway 60 s). */
void mg_jwt_issuer_init(mg_jwt_issuer *is, const char *iss);

/** "RS256,ES256" into a bit set; NULL, or a message naming the bad one. */
const char *mg_jwt_parse_algs(apr_pool_t *p, const char *list,
                              unsigned *algs);

/** The algorithm named `name`, or -1 (`none` included). */
int mg_jwt_alg_from_name(const char *name);

/**
 * Parse a JWKS (`{"keys":[...]}`): RSA, EC (P-256/384/521) and OKP
 * (Ed25519) public keys; keys with `use` other than "sig", and symmetric
 * (`oct`) ones, are skipped.
 * @return NULL with *keys set, or a message
 */
const char *mg_jwt_jwks_parse(apr_pool_t *p, const char *text,
                              apr_size_t len, apr_array_header_t **keys);

/**
 * Verify `token` against `issuers` (mg_jwt_issuer *) at `now` (seconds
 * since the epoch) and read its identity into *out (allocated from `p`).
 * @return NULL, or the reason in fixed words
 */
const char *mg_jwt_verify(apr_pool_t *p, const char *token, apr_size_t len,
                          const apr_array_header_t *issuers,
                          apr_int64_t now, mg_jwt_identity *out);

/**
 * Parse a revoked-token list: one `jti` per line; blank lines and lines
 * starting with '#' are skipped, surrounding blanks (and a CR) trimmed.
 * The set is allocated from `p` (keys point into `text`, kept there too).
 * @return NULL with *jtis set, or a message
 */
const char *mg_jwt_denylist_parse(apr_pool_t *p, const char *text,
                                  apr_size_t len, apr_hash_t **jtis);

/** Is `jti` in the set (NULL set or jti: no)? */
int mg_jwt_denylist_has(apr_hash_t *jtis, const char *jti);

/** Does `token` have the shape of a JWS compact token (three parts)? */
int mg_jwt_looks_like(const char *token, apr_size_t len);

#endif /* MG_JWT_H */
