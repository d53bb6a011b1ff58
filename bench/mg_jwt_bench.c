/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_jwt_bench.c -- what a cold JWT verification costs per algorithm,
 * without httpd: mg_jwt_verify() (split, base64url, JSON header and
 * claims, key lookup, signature, times, audience, claim paths) of the
 * unit tests' tokens (tests/unit/test_jwt_vectors.h, 2048-bit RSA, the
 * three NIST curves, Ed25519, a 38-byte HMAC secret), one after the other
 * in one thread.  This is what the gateway pays for a token it has not
 * cached; a repeated token costs a SHA-256 and a slot lookup instead.
 *
 *   make bench/mg-jwt-bench && bench/mg-jwt-bench [verifies]
 *
 * Prints µs per verify per algorithm: the median of 7 runs and the
 * spread.  The signature is the cost: everything else is the HS256 line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <apr_general.h>
#include <apr_strings.h>
#include "mg_jwt.h"
#include "../tests/unit/test_jwt_vectors.h"

#define RUNS 7

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    static const struct { const char *name, *token; } vec[] = {
        { "RS256", TOK_RS256 }, { "RS384", TOK_RS384 },
        { "RS512", TOK_RS512 }, { "PS256", TOK_PS256 },
        { "PS384", TOK_PS384 }, { "PS512", TOK_PS512 },
        { "ES256", TOK_ES256 }, { "ES384", TOK_ES384 },
        { "ES512", TOK_ES512 }, { "EdDSA", TOK_EdDSA },
        { "HS256", TOK_HS256 }, { "HS384", TOK_HS384 },
        { "HS512", TOK_HS512 }
    };
    long n = argc > 1 ? atol(argv[1]) : 2000;
    apr_pool_t *pool, *scratch;
    apr_array_header_t *issuers;
    mg_jwt_issuer *is;
    mg_jwt_identity id;
    const char *err;
    size_t v;

    if (n < 1) {
        fprintf(stderr, "usage: %s [verifies per run]\n", argv[0]);
        return 2;
    }
    apr_initialize();
    apr_pool_create(&pool, NULL);
    apr_pool_create(&scratch, pool);
    is = apr_palloc(pool, sizeof(*is));
    mg_jwt_issuer_init(is, "https://idp.test/");
    if ((err = mg_jwt_parse_algs(pool, "RS256,RS384,RS512,PS256,PS384,"
                                 "PS512,ES256,ES384,ES512,EdDSA,HS256,"
                                 "HS384,HS512", &is->algs))
        || (err = mg_jwt_jwks_parse(pool, VEC_JWKS, strlen(VEC_JWKS),
                                    &is->keys))) {
        fprintf(stderr, "setup: %s\n", err);
        return 1;
    }
    is->secret = (const unsigned char *)VEC_SECRET;
    is->secret_len = strlen(VEC_SECRET);
    is->audience = "modelgate";
    issuers = apr_array_make(pool, 1, sizeof(mg_jwt_issuer *));
    APR_ARRAY_PUSH(issuers, mg_jwt_issuer *) = is;

    printf("%-6s %12s %12s %12s   (%ld verifies a run, median of %d runs)\n",
           "alg", "us/verify", "min", "max", n, RUNS);
    for (v = 0; v < sizeof(vec) / sizeof(vec[0]); v++) {
        apr_size_t len = strlen(vec[v].token);
        double t[RUNS];
        int run;
        long i;

        for (run = 0; run < RUNS; run++) {
            double t0 = now_ns();
            for (i = 0; i < n; i++) {
                err = mg_jwt_verify(scratch, vec[v].token, len, issuers,
                                    VEC_NOW, &id);
                if (err) {
                    fprintf(stderr, "%s: %s\n", vec[v].name, err);
                    return 1;
                }
                if ((i & 63) == 63) {
                    apr_pool_clear(scratch);
                }
            }
            t[run] = (now_ns() - t0) / (double)n / 1000.0;
            apr_pool_clear(scratch);
        }
        qsort(t, RUNS, sizeof(t[0]), cmp_double);
        printf("%-6s %12.2f %12.2f %12.2f\n", vec[v].name, t[RUNS / 2],
               t[0], t[RUNS - 1]);
    }
    apr_pool_destroy(pool);
    apr_terminate();
    return 0;
}
