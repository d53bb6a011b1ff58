/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_cache_key.c -- canonical request bodies and cache keys (see
 * mg_cache_key.h).
 */
#include <string.h>
#include <stdlib.h>
#include <apr_strings.h>
#include <jansson.h>
#include <openssl/evp.h>
#include "mg_cache_key.h"

const char *const mg_cache_ignored_default[] = { "user", "metadata", NULL };

/* SHA-256, fetched once: OpenSSL 3 looks EVP_sha256() up in its provider
 * store on every EVP_DigestInit_ex (an implicit fetch, under a lock), about
 * as much work as the digest of a short request itself. */
static EVP_MD *sha256;

int mg_cache_key_init(void)
{
    if (!sha256) {
        sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    }
    return sha256 ? 0 : -1;
}

static const EVP_MD *md_of(void)
{
    return sha256 ? sha256 : EVP_sha256();
}
const char *const mg_cache_ignored_routed[] = { "user", "metadata", "model",
                                                NULL };

mg_cache_body_status mg_cache_body_read(apr_pool_t *p, const char *buf,
                                        apr_size_t len,
                                        const char *const *ignore,
                                        mg_cache_body *out)
{
    json_error_t err;
    json_t *root, *v;
    char *dumped;
    int i;

    /* Duplicates refused as the gate refuses them (mg_body.c): two
     * readings of one body must not disagree on what it says. */
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        return MG_CACHE_BODY_MALFORMED;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return MG_CACHE_BODY_NOT_OBJECT;
    }
    v = json_object_get(root, "model");
    out->model = json_is_string(v) ? apr_pstrdup(p, json_string_value(v))
                                   : NULL;
    for (i = 0; ignore && ignore[i]; i++) {
        json_object_del(root, ignore[i]);
    }
    out->stream = json_is_true(json_object_get(root, "stream"));
    v = json_object_get(root, "temperature");
    out->deterministic = json_is_number(v) && json_number_value(v) == 0.0;
    /* Sorted members and no spaces: one text per meaning.  Numbers keep
     * their type (0 and 0.0 differ), as a server may read them apart. */
    dumped = json_dumps(root, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(root);
    if (!dumped) {
        return MG_CACHE_BODY_MALFORMED;
    }
    out->len = strlen(dumped);
    out->canonical = apr_pstrmemdup(p, dumped, out->len);
    free(dumped);
    return MG_CACHE_BODY_OK;
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
    static const char version[] = "modelgate-cache-3";
    EVP_MD_CTX *md = EVP_MD_CTX_new();
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
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

int mg_cache_generation_key(const char *kind, const char *owner,
                            unsigned char key[MG_CACHE_KEY_LEN])
{
    static const char version[] = "modelgate-cache-generation-1";
    EVP_MD_CTX *md = EVP_MD_CTX_new();
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
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}
