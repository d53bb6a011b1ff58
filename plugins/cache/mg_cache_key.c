/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_cache_key.c -- cache keys (see mg_cache_key.h); the canonical
 * request bodies they are made of are mg_cache_canon.c's.
 */
#include <string.h>
#include <pthread.h>
#include <apr_strings.h>
#include <openssl/evp.h>
#include "mg_cache_key.h"

const char *const mg_cache_ignored_default[] = { "user", "metadata", NULL };
const char *const mg_cache_ignored_routed[] = { "user", "metadata", "model",
                                                NULL };

/* SHA-256, fetched once: OpenSSL 3 looks EVP_sha256() up in its provider
 * store on every EVP_DigestInit_ex (an implicit fetch, under a lock), about
 * as much work as the digest of a short request itself. */
static EVP_MD *sha256;

/* Each thread's digest context, made at its first key and freed when it
 * ends: EVP_MD_CTX_new and _free around every key were a quarter of its
 * instructions (an allocation, and a re-initialised context). */
static pthread_key_t ctx_key;
static int ctx_key_made;

static void ctx_free(void *md)
{
    EVP_MD_CTX_free(md);
}

int mg_cache_key_init(void)
{
    if (!sha256) {
        sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    }
    if (!ctx_key_made && pthread_key_create(&ctx_key, ctx_free) == 0) {
        ctx_key_made = 1;
    }
    return sha256 ? 0 : -1;
}

/* This thread's context (*own 0), or one for this key only (*own 1:
 * before mg_cache_key_init, or when the thread's could not be kept). */
static EVP_MD_CTX *ctx_get(int *own)
{
    EVP_MD_CTX *md;

    *own = 0;
    if (ctx_key_made && (md = pthread_getspecific(ctx_key)) != NULL) {
        return md;
    }
    md = EVP_MD_CTX_new();
    if (md && (!ctx_key_made || pthread_setspecific(ctx_key, md) != 0)) {
        *own = 1;
    }
    return md;
}

static void ctx_done(EVP_MD_CTX *md, int own)
{
    if (own) {
        EVP_MD_CTX_free(md);
    }
}

static const EVP_MD *md_of(void)
{
    return sha256 ? sha256 : EVP_sha256();
}

/* The parts of a key, gathered before they go to the digest: OpenSSL 3
 * dispatches every EVP_DigestUpdate through its provider, and a key is
 * fourteen small pieces. */
typedef struct hasher {
    EVP_MD_CTX *md;
    apr_size_t n;
    unsigned char buf[512];
} hasher;

static void flush(hasher *h)
{
    if (h->n) {
        EVP_DigestUpdate(h->md, h->buf, h->n);
        h->n = 0;
    }
}

static void put(hasher *h, const void *s, apr_size_t n)
{
    if (n > sizeof(h->buf) - h->n) {
        flush(h);
        if (n > sizeof(h->buf)) {
            EVP_DigestUpdate(h->md, s, n);
            return;
        }
    }
    memcpy(h->buf + h->n, s, n);
    h->n += n;
}

static void put_part(hasher *h, const char *s, apr_size_t n)
{
    unsigned char len[8];
    int i;

    for (i = 0; i < 8; i++) {
        len[i] = (unsigned char)((apr_uint64_t)n >> (56 - 8 * i));
    }
    put(h, len, sizeof(len));
    put(h, s, n);
}

int mg_cache_key(const char *scope, const char *subject,
                 apr_uint64_t generation, apr_uint64_t model_generation,
                 const char *route,
                 const char *path, const char *body, apr_size_t body_len,
                 unsigned char key[MG_CACHE_KEY_LEN])
{
    /* Changes whenever what goes into a key does: old entries then miss
     * instead of answering for something else. */
    static const char version[] = "modelgate-cache-4";
    int own;
    EVP_MD_CTX *md = ctx_get(&own);
    unsigned int n = MG_CACHE_KEY_LEN;
    char gen[48];
    hasher h;
    int ok;

    if (!md) {
        return -1;
    }
    h.md = md;
    h.n = 0;
    apr_snprintf(gen, sizeof(gen), "%" APR_UINT64_T_FMT ":%" APR_UINT64_T_FMT,
                 generation, model_generation);
    ok = EVP_DigestInit_ex(md, md_of(), NULL) == 1;
    if (ok) {
        put_part(&h, version, sizeof(version) - 1);
        put_part(&h, scope, strlen(scope));
        put_part(&h, subject, strlen(subject));
        put_part(&h, gen, strlen(gen));
        put_part(&h, route, strlen(route));
        put_part(&h, path, strlen(path));
        put_part(&h, body, body_len);
        flush(&h);
        ok = EVP_DigestFinal_ex(md, key, &n) == 1 && n == MG_CACHE_KEY_LEN;
    }
    ctx_done(md, own);
    return ok ? 0 : -1;
}

int mg_cache_generation_key(const char *kind, const char *owner,
                            unsigned char key[MG_CACHE_KEY_LEN])
{
    static const char version[] = "modelgate-cache-generation-1";
    int own;
    EVP_MD_CTX *md = ctx_get(&own);
    unsigned int n = MG_CACHE_KEY_LEN;
    hasher h;
    int ok;

    if (!md) {
        return -1;
    }
    h.md = md;
    h.n = 0;
    ok = EVP_DigestInit_ex(md, md_of(), NULL) == 1;
    if (ok) {
        put_part(&h, version, sizeof(version) - 1);
        put_part(&h, kind, strlen(kind));
        put_part(&h, owner, strlen(owner));
        flush(&h);
        ok = EVP_DigestFinal_ex(md, key, &n) == 1 && n == MG_CACHE_KEY_LEN;
    }
    ctx_done(md, own);
    return ok ? 0 : -1;
}

unsigned int mg_cache_id(const unsigned char key[MG_CACHE_KEY_LEN],
                         unsigned char id[MG_CACHE_ID_MAX])
{
    unsigned int extra = key[1] & (MG_CACHE_ID_SPREAD - 1);

    memcpy(id, key, MG_CACHE_KEY_LEN);
    memset(id + MG_CACHE_KEY_LEN, 0, extra);
    return MG_CACHE_KEY_LEN + extra;
}
