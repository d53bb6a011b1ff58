/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_cache_key.h -- what the response cache reads of a request body, and
 * the key it stores the answer under.
 *
 * Two requests get the same key when they come from the same scope subject
 * (tenant, key or everybody), go to the same route and model, and their
 * JSON bodies say the same thing: member order and white space do not
 * matter, and listed members (`user`, `metadata`: who asks and the
 * caller's own labels, not what is asked) are left out.  The key is a
 * SHA-256 digest: it never holds the prompt, and it is never shown to
 * clients (one tenant could probe another's prompts with it).
 *
 * Plain C over APR, the core's mg_json_scan and OpenSSL: no request_rec,
 * unit-tested in tests/unit/test_cache_key.c and test_cache_canon.c (the
 * canonical text against the jansson-based writer it replaced).
 */
#ifndef MG_CACHE_KEY_H
#define MG_CACHE_KEY_H

#include <apr_pools.h>

/** Bytes of a cache key (a SHA-256 digest). */
#define MG_CACHE_KEY_LEN 32

/** What a request body says, for the cache. */
typedef struct mg_cache_body {
    const char *canonical;    /**< the body made canonical: members sorted
                                   by name at every level, no white space,
                                   the ignored members removed */
    apr_size_t len;           /**< its length in bytes */
    int stream;               /**< "stream": true.  The member stays in
                                   the canonical body: a streamed answer
                                   and a JSON one are different entries */
    const char *model;        /**< the body's "model" when a string (read
                                   before the ignored members go), or NULL:
                                   the model a purge by model names */
    int deterministic;        /**< "temperature" is present and 0: the
                                   answer does not depend on sampling.  An
                                   absent temperature is not: model servers
                                   default to 1 */
} mg_cache_body;

typedef enum {
    MG_CACHE_BODY_OK = 0,
    MG_CACHE_BODY_MALFORMED,  /**< not JSON, or a member given twice */
    MG_CACHE_BODY_NOT_OBJECT  /**< JSON, but not an object */
} mg_cache_body_status;

/** The members left out of the key unless a caller says otherwise. */
extern const char *const mg_cache_ignored_default[];
/** ... and where the request names a declared model: that model's name
 *  is a part of the key of its own (the route), and the body's `model`
 *  is whatever the gateway renamed it to (an alias, a fallback's
 *  served_as), which a request refused by a limit never was. */
extern const char *const mg_cache_ignored_routed[];

/**
 * Fetch SHA-256 once for every key made after it (in post_config, before
 * any thread runs): without it each key fetches it again (slower, same
 * keys).  @return 0, or -1 when OpenSSL has no SHA-256
 */
int mg_cache_key_init(void);

/**
 * Read a JSON body of `len` bytes and make it canonical, from its bytes
 * (mg_cache_canon.c: no tree; the work is the body's size plus sorting
 * each object's members, however deep or unsorted it is).  What it
 * accepts is what json_loadb(JSON_REJECT_DUPLICATES) accepts, as
 * mg_json_scan.h says (its one difference: a NUL byte right after a
 * number or a literal is refused), nested duplicate names refused too.
 * @param ignore NULL-terminated names of top-level members left out (NULL:
 *        none)
 * @param out filled on MG_CACHE_BODY_OK; `canonical` and `model` are
 *        allocated from `p`, each NUL-terminated (and holding no other
 *        NUL: \u0000 is refused)
 */
mg_cache_body_status mg_cache_body_read(apr_pool_t *p, const char *buf,
                                        apr_size_t len,
                                        const char *const *ignore,
                                        mg_cache_body *out);

/**
 * The key of an answer: a SHA-256 over every part, each preceded by its
 * length, so no two different lists of parts make the same input.
 * @param scope    "tenant", "key" or "global"
 * @param subject  the tenant or key id ("" for global)
 * @param generation the purge generation of the subject's tenant (or of
 *                 the global scope): a purge changes it, so every answer
 *                 stored before is out of reach (0: never purged)
 * @param model_generation the purge generation of the request's model
 *                 (mg_cache_generation_key("model", NAME)), likewise
 * @param route    the served model's name, or the upstream's when the
 *                 request names no declared model
 * @param path     the request's path and query: /v1/chat/completions and
 *                 /v1/completions answer the same body differently
 * @param body     the canonical body (mg_cache_body_read)
 * @return 0, or -1 when OpenSSL failed (then the request is not cached)
 */
int mg_cache_key(const char *scope, const char *subject,
                 apr_uint64_t generation, apr_uint64_t model_generation,
                 const char *route,
                 const char *path, const char *body, apr_size_t body_len,
                 unsigned char key[MG_CACHE_KEY_LEN]);

/**
 * The key under which the purge generation of `owner` is kept, in the same
 * socache as the answers (so a purge works on every provider, none of
 * which can be iterated portably).  Never equal to an answer's key: its
 * first part differs.
 * @param kind   "tenant", "global" or "model"
 * @param owner  the tenant's or the model's name ("" for global)
 * @return 0, or -1 when OpenSSL failed
 */
int mg_cache_generation_key(const char *kind, const char *owner,
                            unsigned char key[MG_CACHE_KEY_LEN]);

/** Lengths the socache ids of keys are spread over (a power of two). */
#define MG_CACHE_ID_SPREAD 32
/** The longest socache id of a key. */
#define MG_CACHE_ID_MAX (MG_CACHE_KEY_LEN + MG_CACHE_ID_SPREAD - 1)

/**
 * The id a key is kept under in the socache: the key, then 0 to
 * MG_CACHE_ID_SPREAD - 1 zero bytes as the key's second byte says.
 *
 * Why not the key alone: shmcb finds an entry by scanning the index of
 * one of its subcaches and, for every entry whose id has the length
 * asked for, comparing the id's bytes where they lie in the subcache's
 * data -- a cache line of its own for each entry.  Keys of one length made
 * every lookup read one line per answer held (a miss twice: the lookup,
 * then the store's scan for an older copy): 18 us more a miss with 40,000
 * answers in 64 MB (bench/README.md).  Spread over 32 lengths, an entry
 * is compared only when its length matches, one in 32, and the index
 * itself is read in order.  The first byte, which picks shmcb's subcache,
 * is the key's own; other providers (memcache, redis) just take a longer
 * id.
 * @return the id's length
 */
unsigned int mg_cache_id(const unsigned char key[MG_CACHE_KEY_LEN],
                         unsigned char id[MG_CACHE_ID_MAX]);

#endif /* MG_CACHE_KEY_H */
