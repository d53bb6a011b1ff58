/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_keys.c -- key file parsing and constant-time key lookup.
 */
#include <string.h>
#include <apr_strings.h>
#include <apr_lib.h>
#include <openssl/sha.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include "mg_keys.h"
#include "mg_policy.h"
#include "mg_table.h"

/* Buckets are keyed by the first bytes of the digest: a lookup's timing
 * may tell which bucket a digest falls in, which says nothing about the key
 * (SHA-256 is preimage resistant); the full digest is then compared in
 * constant time. */
#define BUCKET_KEY_LEN 8

#if OPENSSL_VERSION_NUMBER >= 0x30000000L
/* OpenSSL 3's SHA256() looks the algorithm up in its provider registry on
 * every call, which costs more than hashing a key.  It is fetched once, in
 * the parent while the key file is read, and shared by every child and
 * thread (a fetched EVP_MD is immutable). */
static EVP_MD *sha256_md;

static void fetch_sha256(void)
{
    if (!sha256_md) {
        sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    }
}

void mg_keys_digest(const char *key, apr_size_t len,
                    unsigned char digest[MG_KEYS_DIGEST_LEN])
{
    if (!sha256_md
        || !EVP_Digest(key, len, digest, NULL, sha256_md, NULL)) {
        SHA256((const unsigned char *)key, len, digest);
    }
}
#else
static void fetch_sha256(void)
{
}

void mg_keys_digest(const char *key, apr_size_t len,
                    unsigned char digest[MG_KEYS_DIGEST_LEN])
{
    SHA256((const unsigned char *)key, len, digest);
}
#endif

void mg_keys_digest_hex(const unsigned char digest[MG_KEYS_DIGEST_LEN],
                        char hex[2 * MG_KEYS_DIGEST_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    int i;

    for (i = 0; i < MG_KEYS_DIGEST_LEN; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 0xf];
    }
    hex[2 * MG_KEYS_DIGEST_LEN] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int parse_digest(const char *text, unsigned char *digest)
{
    int i;

    if (!strncasecmp(text, "sha256:", 7)) {
        text += 7;
    }
    if (strlen(text) != 2 * MG_KEYS_DIGEST_LEN) {
        return 0;
    }
    for (i = 0; i < MG_KEYS_DIGEST_LEN; i++) {
        int hi = hex_value(text[2 * i]), lo = hex_value(text[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return 0;
        }
        digest[i] = (unsigned char)(hi << 4 | lo);
    }
    return 1;
}

static const char *parse_line(apr_pool_t *p, mg_keyring *ring, char *line,
                              int lineno)
{
    char *fields[6], *state = NULL, *tok;
    int n = 0;
    mg_key *key;

    for (tok = apr_strtok(line, " \t\r", &state); tok;
         tok = apr_strtok(NULL, " \t\r", &state)) {
        if (n == 6) {
            return "too many fields (expected: digest key-id tenant tier "
                   "[scopes])";
        }
        fields[n++] = tok;
    }
    if (n == 0) {
        return NULL;
    }
    if (n < 4) {
        return "too few fields (expected: digest key-id tenant tier "
               "[scopes])";
    }
    if (n > 5) {
        return "too many fields (expected: digest key-id tenant tier "
               "[scopes])";
    }
    key = apr_pcalloc(p, sizeof(*key));
    key->line = lineno;
    if (!parse_digest(fields[0], key->digest)) {
        return "the first field must be a SHA-256 digest: 64 hex digits, "
               "optionally after 'sha256:'";
    }
    if (!mg_policy_name_valid(fields[1]) || !mg_policy_name_valid(fields[2])
        || !mg_policy_name_valid(fields[3])) {
        return "key id, tenant and tier must be names of letters, digits, "
               "'.', '_' and '-'";
    }
    key->id = fields[1];
    key->tenant = fields[2];
    key->tier = fields[3];
    mg_key_hash(key, "key");
    key->scopes = apr_array_make(p, 4, sizeof(const char *));
    if (n == 5) {
        char *sstate = NULL;
        for (tok = apr_strtok(fields[4], ",", &sstate); tok;
             tok = apr_strtok(NULL, ",", &sstate)) {
            APR_ARRAY_PUSH(key->scopes, const char *) = tok;
        }
    }
    if (apr_hash_get(ring->ids, key->id, APR_HASH_KEY_STRING)) {
        return apr_psprintf(p, "key id '%s' is used twice", key->id);
    }
    {
        mg_key *other = apr_hash_get(ring->buckets, key->digest,
                                     BUCKET_KEY_LEN);
        if (other) {
            /* Two different keys sharing 64 digest bits is beyond unlikely;
             * refusing it keeps buckets single and the lookup simple. */
            return apr_psprintf(p, "the digest of key '%s' repeats that of "
                                "'%s' (line %d)", key->id, other->id,
                                other->line);
        }
    }
    apr_hash_set(ring->ids, key->id, APR_HASH_KEY_STRING, key);
    apr_hash_set(ring->buckets, key->digest, BUCKET_KEY_LEN, key);
    APR_ARRAY_PUSH(ring->keys, mg_key *) = key;
    return NULL;
}

const char *mg_keys_parse(apr_pool_t *p, const char *source,
                          const char *text, apr_size_t len,
                          mg_keyring **out)
{
    mg_keyring *ring = apr_pcalloc(p, sizeof(*ring));
    char *copy = apr_pstrmemdup(p, text, len), *line, *next;
    const char *nul = memchr(text, '\0', len);
    int lineno = 0;

    if (nul) {
        /* Report it like every other error: "SOURCE line N: ...". */
        for (lineno = 1; text < nul; text++) {
            lineno += *text == '\n';
        }
        return apr_psprintf(p, "%s line %d: holds a NUL byte, not a key "
                            "file", source, lineno);
    }
    fetch_sha256();
    ring->source = apr_pstrdup(p, source);
    ring->keys = apr_array_make(p, 16, sizeof(mg_key *));
    ring->buckets = apr_hash_make(p);
    ring->ids = apr_hash_make(p);
    for (line = copy; line; line = next) {
        const char *err;
        char *hash;

        next = strchr(line, '\n');
        if (next) {
            *next++ = '\0';
        }
        lineno++;
        if ((hash = strchr(line, '#')) != NULL) {
            *hash = '\0';
        }
        if ((err = parse_line(p, ring, line, lineno)) != NULL) {
            return apr_psprintf(p, "%s line %d: %s", source, lineno, err);
        }
    }
    *out = ring;
    return NULL;
}

const mg_key *mg_keys_lookup(const mg_keyring *ring, const char *presented,
                             apr_size_t len)
{
    unsigned char digest[MG_KEYS_DIGEST_LEN];
    const mg_key *key;

    if (!ring || len == 0 || len > MG_KEYS_PRESENTED_MAX) {
        return NULL;
    }
    mg_keys_digest(presented, len, digest);
    key = apr_hash_get(ring->buckets, digest, BUCKET_KEY_LEN);
    if (key && CRYPTO_memcmp(key->digest, digest, MG_KEYS_DIGEST_LEN) == 0) {
        return key;
    }
    return NULL;
}

int mg_keys_memeq(const void *a, const void *b, apr_size_t len)
{
    const unsigned char *x = a, *y = b;
    apr_uint64_t d = 0, u, v;
    apr_size_t i = 0;

    /* every byte is looked at, whatever differs: no early exit */
    for (; i + 8 <= len; i += 8) {
        memcpy(&u, x + i, 8);
        memcpy(&v, y + i, 8);
        d |= u ^ v;
    }
    for (; i < len; i++) {
        d |= (apr_uint64_t)(x[i] ^ y[i]);
    }
    return d == 0;
}

const mg_key *mg_keys_lookup_memo(const mg_keyring *ring, mg_keys_memo *memo,
                                  const char *presented, apr_size_t len)
{
    const mg_key *key;

    if (memo && memo->ring && memo->ring == ring && memo->len == len
        && mg_keys_memeq(memo->presented, presented, len)) {
        return memo->key;       /* what these bytes found: a key, or none */
    }
    key = mg_keys_lookup(ring, presented, len);
    /* A miss is remembered too: with `ModelGateIdentity key jwt` a client
     * repeating its JWT is asked about first here, and hashing it again
     * on every request cost more than the rest of its identity. */
    if (memo && ring && len > 0 && len <= MG_KEYS_PRESENTED_MAX) {
        memcpy(memo->presented, presented, len);
        memo->len = len;
        memo->ring = ring;
        memo->key = key;
    }
    return key;
}

void mg_keys_memo_clear(mg_keys_memo *memo)
{
    OPENSSL_cleanse(memo->presented, sizeof(memo->presented));
    memo->key = NULL;
    memo->ring = NULL;
    memo->len = 0;
}

void mg_key_hash(mg_key *key, const char *provider)
{
    mg_fingerprint id = mg_table_subject_hash(key->id, strlen(key->id));
    mg_fingerprint by = mg_table_subject_hash(provider, strlen(provider));

    key->tenant_hash = mg_table_subject_hash(key->tenant,
                                             strlen(key->tenant));
    key->tier_hash = mg_table_subject_hash(key->tier, strlen(key->tier));
    /* Mixed as a layer's fingerprint mixes its subject: no allocation. */
    by = mg_table_fingerprint_hashed(&by, &key->tenant_hash);
    key->id_hash = mg_table_fingerprint_hashed(&by, &id);
}
