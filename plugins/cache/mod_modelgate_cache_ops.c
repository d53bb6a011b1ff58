/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_cache_ops.c -- operating the response cache: its
 * statistics and purging a tenant's or a model's answers, on `SetHandler
 * modelgate-cache-status` (the operator protects it with Require, as
 * server-status).
 */
#include "mod_modelgate_cache.h"

/* Purge: a new generation for `kind`/`owner`, so every answer stored
 * under the old one is out of reach (and expires in the socache in its
 * time).  The socache cannot be iterated portably (only shmcb has
 * iterate), but every provider can keep this record.  The new value is
 * the time in microseconds (or the old one plus one), so gateways sharing
 * memcache or redis never reuse one. */
static apr_status_t purge(server_rec *s, const cache_server_conf *sc,
                          const char *kind, const char *owner, apr_pool_t *p,
                          apr_uint64_t *gen)
{
    unsigned char key[MG_CACHE_KEY_LEN], buf[sizeof(apr_uint64_t)];
    unsigned int len = sizeof(buf);
    apr_uint64_t old = 0, now = (apr_uint64_t)apr_time_now();
    apr_status_t rv;

    if (mg_cache_generation_key(kind, owner, key) != 0) {
        return APR_EGENERAL;
    }
    if ((rv = mg_cache_lock(s)) != APR_SUCCESS) {
        return rv;
    }
    if (mg_cache_retrieve(s, sc, key, buf, &len, p) == APR_SUCCESS
        && len == sizeof(buf)) {
        memcpy(&old, buf, sizeof(old));
    }
    *gen = now > old ? now : old + 1;
    memcpy(buf, gen, sizeof(buf));
    rv = mg_cache_store(s, sc, key, apr_time_now() + GENERATION_KEPT, buf,
                        sizeof(buf), p);
    mg_cache_unlock();
    return rv;
}

/* ---- evictions ---------------------------------------------------------- */

#define SEC_MASK 0xFFFFFFu            /* the seconds kept: mod 2^24 */

/* The slot of `key` and the 40 bits of it kept there (the top one set,
 * so no key matches an empty slot).  The key is a SHA-256 digest: any of
 * its bytes are as good as random. */
static volatile apr_uint64_t *stored_slot(const unsigned char *key,
                                          apr_uint64_t *fp)
{
    apr_size_t slot = (((apr_size_t)key[0] << 8) | key[1])
                      & (MG_CACHE_STORED_SLOTS - 1);

    *fp = (apr_uint64_t)1 << 39 | (apr_uint64_t)(key[2] & 0x7f) << 32
          | (apr_uint64_t)key[3] << 24 | (apr_uint64_t)key[4] << 16
          | (apr_uint64_t)key[5] << 8 | key[6];
    return &mg_cache_stats_shared->stored[slot];
}

void mg_cache_note_stored(const unsigned char *key, apr_time_t expiry)
{
    apr_uint64_t fp;
    volatile apr_uint64_t *slot;

    if (!mg_cache_stats_shared) {
        return;
    }
    slot = stored_slot(key, &fp);
    apr_atomic_set64(slot, fp << 24
                     | ((apr_uint64_t)apr_time_sec(expiry) & SEC_MASK));
}

void mg_cache_note_missing(const unsigned char *key, apr_time_t now)
{
    apr_uint64_t fp, v;
    apr_uint32_t left;
    volatile apr_uint64_t *slot;

    if (!mg_cache_stats_shared) {
        return;
    }
    slot = stored_slot(key, &fp);
    v = apr_atomic_read64(slot);
    if (v >> 24 != fp) {
        return;                 /* not stored here, or forgotten since */
    }
    /* Seconds until its TTL ends, mod 2^24: more than half of that range
     * is a time past (a TTL is at most a day). */
    left = (apr_uint32_t)((v - (apr_uint64_t)apr_time_sec(now)) & SEC_MASK);
    if (left == 0 || left >= (SEC_MASK + 1) / 2) {
        return;                 /* expired: a miss, not an eviction */
    }
    /* Counted once: the slot is emptied by whoever counts it. */
    if (apr_atomic_cas64(slot, 0, v) == v) {
        count(evicted, 1);
    }
}

/* ---- operations: statistics and purge ----------------------------------- */

/* DELETE ?tenant=NAME (or ?global, or ?model=NAME): that tenant's answers
 * (or those shared by everybody, or every answer of that model, in every
 * scope) are purged, on every provider.  The model is the declared model's
 * name where the request named one, else the body's `model`. */
static int purge_handler(request_rec *r, const cache_server_conf *sc)
{
    char *args = apr_pstrdup(r->pool, r->args ? r->args : ""), *last;
    const char *kind = NULL, *owner = NULL, *pair;
    apr_uint64_t gen;
    apr_status_t rv;

    for (pair = apr_strtok(args, "&", &last); pair;
         pair = apr_strtok(NULL, "&", &last)) {
        if (!strncmp(pair, "tenant=", 7) && pair[7]) {
            char *v = apr_pstrdup(r->pool, pair + 7);
            if (ap_unescape_urlencoded(v) != OK) {
                return HTTP_BAD_REQUEST;
            }
            kind = "tenant";
            owner = v;
        }
        else if (!strncmp(pair, "model=", 6) && pair[6]) {
            char *v = apr_pstrdup(r->pool, pair + 6);
            if (ap_unescape_urlencoded(v) != OK) {
                return HTTP_BAD_REQUEST;
            }
            kind = "model";
            owner = v;
        }
        else if (!strcmp(pair, "global")) {
            kind = "global";
            owner = "";
        }
    }
    if (!kind) {
        return HTTP_BAD_REQUEST;
    }
    if (!sc->inst) {
        return HTTP_NOT_FOUND;
    }
    if ((rv = purge(r->server, sc, kind, owner, r->pool, &gen))
        != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r, MGCLOGNO(00010)
                      "response cache: purge of %s '%s' failed: socache "
                      "'%s' did not keep the new generation", kind, owner,
                      sc->spec);
        return HTTP_SERVICE_UNAVAILABLE;
    }
    count(purges, 1);
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r, MGCLOGNO(00011)
                  "response cache: %s '%s' purged (generation %"
                  APR_UINT64_T_FMT ")", kind, owner, gen);
    ap_set_content_type(r, "text/plain; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_rprintf(r, "Purged: %s %s\nGeneration: %" APR_UINT64_T_FMT "\n",
               kind, owner, gen);
    return OK;
}

/* SetHandler modelgate-cache-status: the statistics, in mod_status's
 * `?auto` form (one `Name: value` a line, whatever the query); DELETE
 * purges where ModelGateCacheAdmin On says so.  The operator protects the
 * location with Require, as server-status. */
int mg_cache_status_handler(request_rec *r)
{
    const cache_server_conf *sc;
    mg_cache_stats zero = { 0 };
    const mg_cache_stats *st = mg_cache_stats_shared ? mg_cache_stats_shared : &zero;

    if (!r->handler || strcmp(r->handler, MG_CACHE_STATUS_HANDLER)) {
        return DECLINED;
    }
    sc = mg_cache_main_conf(r->server);
    r->allowed = (AP_METHOD_BIT << M_GET) | (AP_METHOD_BIT << M_DELETE);
    if (r->method_number == M_DELETE) {
        if (((const cache_dir_conf *)ap_get_module_config(
                 r->per_dir_config, &modelgate_cache_module))->admin != 1) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MGCLOGNO(00019)
                          "response cache: purge refused: no "
                          "ModelGateCacheAdmin On for this location in the "
                          "server's configuration");
            return HTTP_FORBIDDEN;
        }
        return purge_handler(r, sc);
    }
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    ap_set_content_type(r, "text/plain; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    if (r->header_only) {
        return OK;
    }
    ap_rprintf(r, "Cache: %s\n", sc->inst ? sc->spec : "none");
#define FIELD(name, f) \
    ap_rprintf(r, name ": %" APR_UINT64_T_FMT "\n", \
               apr_atomic_read64((volatile apr_uint64_t *)&st->f))
    FIELD("Lookups", lookups);
    FIELD("Hits", hits);
    FIELD("StaleHits", stale_hits);
    FIELD("Misses", misses);
    FIELD("Stores", stores);
    FIELD("StoreFailures", store_failures);
    FIELD("BytesStored", bytes_stored);
    FIELD("Purges", purges);
    FIELD("Evicted", evicted);
#undef FIELD
    return OK;
}
