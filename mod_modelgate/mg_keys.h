/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_keys.h -- API keys: the key file and the lookup of a presented key.
 *
 * The gateway never stores a key, only its SHA-256 digest.  A key file has
 * one key per line:
 *
 *     # digest                                            key-id  tenant  tier  [scopes]
 *     sha256:5e88...42d8  demo     acme    free  chat,embeddings
 *
 * `sha256:` is optional; the digest is 64 hex digits of SHA-256 over the
 * key's bytes exactly as the client sends them (`printf %s KEY | sha256sum`
 * or `modelgate-key hash`).  Blank lines and lines starting with '#' are
 * ignored.  Key ids are unique; they name the caller in logs and counters.
 */
#ifndef MG_KEYS_H
#define MG_KEYS_H

#include <apr_pools.h>
#include <apr_hash.h>
#include <apr_tables.h>
#include "mg_limit.h"

#define MG_KEYS_DIGEST_LEN 32
/** Longest key accepted from a client; longer ones are refused unhashed. */
#define MG_KEYS_PRESENTED_MAX 512

typedef struct mg_key {
    unsigned char digest[MG_KEYS_DIGEST_LEN];
    const char *id;           /**< key id: logs, counters, X-Modelgate-Key-Id */
    const char *tenant;
    const char *tier;         /**< checked against the tiers after parsing */
    apr_array_header_t *scopes; /**< const char *, may be empty */
    int line;                 /**< line in the key file, for messages */
    /** The subjects of the key, tenant and tier scopes' counters, found
     *  without hashing per request (mg_key_hash): tenant_hash and
     *  tier_hash are mg_table_subject_hash() of those names, id_hash of the
     *  id within its tenant -- ids are unique in a key file but not across
     *  identity providers (a JWT's id is its subject), and two callers
     *  must not share a per-key counter because their ids are alike */
    mg_fingerprint id_hash, tenant_hash, tier_hash;
} mg_key;

/** Fill key->id_hash, tenant_hash and tier_hash from its id, tenant and
 *  tier; the id counts within its tenant and its identity provider
 *  (`provider`: "key", "jwt"), so that an API key and a token subject of
 *  one name are two callers.  Every identity provider calls it for the keys
 *  it makes. */
void mg_key_hash(mg_key *key, const char *provider);

typedef struct mg_keyring {
    const char *source;       /**< file name, for messages */
    apr_array_header_t *keys; /**< mg_key *, in file order */
    apr_hash_t *buckets;      /**< 8-byte digest prefix -> mg_key * */
    apr_hash_t *ids;          /**< key id -> mg_key * */
} mg_keyring;

/**
 * Parse the text of a key file.
 * @param source the file's name, used in messages
 * @return NULL with *out set, or "SOURCE line N: reason".
 */
const char *mg_keys_parse(apr_pool_t *p, const char *source,
                          const char *text, apr_size_t len,
                          mg_keyring **out);

/** SHA-256 of a key. */
void mg_keys_digest(const char *key, apr_size_t len,
                    unsigned char digest[MG_KEYS_DIGEST_LEN]);

/** Lower-case hex of a digest into `hex` (65 bytes with the NUL). */
void mg_keys_digest_hex(const unsigned char digest[MG_KEYS_DIGEST_LEN],
                        char hex[2 * MG_KEYS_DIGEST_LEN + 1]);

/**
 * The key a client presented, or NULL.  Only the digest is compared, and
 * with a constant-time comparison; a key longer than MG_KEYS_PRESENTED_MAX
 * is refused without hashing.
 */
const mg_key *mg_keys_lookup(const mg_keyring *ring, const char *presented,
                             apr_size_t len);

/**
 * What one connection presented last and the key it was: a keep-alive
 * client sends the same credential on every request, and hashing it again
 * each time is most of what identity costs.  Owned by one connection,
 * used by one thread at a time; nothing in it is shared.
 */
typedef struct mg_keys_memo {
    const mg_keyring *ring;   /**< the ring looked in; NULL: nothing
                                   remembered */
    const mg_key *key;        /**< what `presented` found; NULL: no key */
    apr_size_t len;
    unsigned char presented[MG_KEYS_PRESENTED_MAX]; /**< the bytes, all of
                                   them: the match is exact, never by a
                                   digest or a prefix */
} mg_keys_memo;

/**
 * mg_keys_lookup() with a memo: when `presented` is byte for byte what
 * was looked up last in the same ring, its answer without hashing --
 * memo->key, or NULL when it found none (another identity provider's
 * credential, a JWT, is then not hashed on every request either);
 * otherwise a full lookup, remembered.  The bytes are compared in
 * constant time for their length; only whether the length matches shows
 * in the timing.  Key rings are never reloaded while a connection lives,
 * so a remembered key (or miss) stays valid.  `memo` may be NULL.
 */
const mg_key *mg_keys_lookup_memo(const mg_keyring *ring, mg_keys_memo *memo,
                                  const char *presented, apr_size_t len);

/**
 * Are the `len` bytes at `a` and `b` equal?  In time that depends on `len`
 * only, a machine word at a time: OpenSSL's CRYPTO_memcmp goes byte by
 * byte, ~7 instructions a byte, which for a 400-byte JWT in a memo was
 * more than the rest of its lookup.
 */
int mg_keys_memeq(const void *a, const void *b, apr_size_t len);

/** Forget what `memo` holds, overwriting the credential's bytes. */
void mg_keys_memo_clear(mg_keys_memo *memo);

#endif /* MG_KEYS_H */
