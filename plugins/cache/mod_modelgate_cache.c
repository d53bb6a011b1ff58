/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_cache.c -- the response cache for deterministic inference:
 * exact-match answers to POST JSON requests, scoped to the caller's tenant
 * (or key, or everybody), stored through Apache's ap_socache providers
 * (shmcb on one host; memcache or redis to share one cache between
 * gateways).
 *
 * mod_cache cannot do this: it caches GET only, and answers in the quick
 * handler, before authentication.  This plugin answers only once the gate
 * has admitted the request, and keys on the JSON body made canonical
 * (mg_cache_canon.c).  It never calls the core by name and the core never
 * calls it: the core publishes
 *
 *   mg_request_body    (optional function) the JSON body the gate read
 *   mg_cached_answer   (optional hook) run in fixups for an admitted,
 *                      routed request, and in the decision for a caller a
 *                      limit refused whose tier says on_limit=cache
 *
 * and this plugin listens.  A hit sets r->handler to this module's
 * handler, which sends the stored answer; a miss adds an output filter
 * that keeps a complete 200 answer and stores it at its end
 * (mod_modelgate_cache_answer.c); with ModelGateCacheLock, identical
 * requests wait for the one in flight (mod_modelgate_cache_lock.c).
 *
 * What is cached: POST requests with a JSON body where `ModelGateCacheable
 * On`, that ask for a deterministic answer ("temperature": 0) or whose
 * client accepts a cached one (a request `Cache-Control: max-age=N`: then
 * an answer up to N seconds old).  `Cache-Control: no-cache` (or `Pragma:
 * no-cache`) from the client skips the lookup, `no-store` the store.  An
 * answer is stored only when it is a complete 200 answer of the kind asked
 * for (application/json, or text/event-stream for `"stream": true`)
 * without Content-Encoding, without `Cache-Control: no-store` or
 * `private`, without Set-Cookie, and no larger than
 * ModelGateCacheMaxObject.  A stream and a JSON answer to the same
 * question are different entries (`stream` is in the key): no conversion.
 */
#include "mod_modelgate_cache.h"
#include "mg_shared_lock.h"

static APR_OPTIONAL_FN_TYPE(mg_request_body) *request_body;
static APR_OPTIONAL_FN_TYPE(mg_cached_answer_free) *cached_answer_free;
static APR_OPTIONAL_FN_TYPE(mg_request_caller) *request_caller;
/* The socache's lock when its provider needs one: the futex in the shared
 * segment (lock=shared, the default), or httpd's (lock=httpd). */
static pthread_mutex_t *cache_shared_lock;
static apr_global_mutex_t *cache_mutex;
/* The statistics (NULL without a cache); counted with count(). */
mg_cache_stats *mg_cache_stats_shared;

/* The segment the processes of a generation share: the lock on a line of
 * its own, then the statistics. */
#define SEGMENT_BYTES (MG_SHARED_LOCK_BYTES + sizeof(mg_cache_stats))

/* ---- the socache, serialised when the provider needs it ----------------- */

apr_status_t mg_cache_lock(server_rec *s)
{
    apr_status_t rv;
    int recovered;

    if (cache_shared_lock) {
        rv = mg_shared_lock(cache_shared_lock, &recovered);
        if (recovered) {
            /* shmcb's own updates are a few stores; an answer being
             * stored may be lost, as with httpd's robust mutex. */
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, MGCLOGNO(00020)
                         "response cache: a process died holding the "
                         "cache's lock; recovered it");
        }
    }
    else if (cache_mutex) {
        rv = apr_global_mutex_lock(cache_mutex);
    }
    else {
        return APR_SUCCESS;
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, MGCLOGNO(00001)
                     "cannot lock the response cache");
    }
    return rv;
}

void mg_cache_unlock(void)
{
    if (cache_shared_lock) {
        mg_shared_unlock(cache_shared_lock);
    }
    else if (cache_mutex) {
        apr_global_mutex_unlock(cache_mutex);
    }
}

/* The socache under the ids of keys (mg_cache_id); the caller holds the
 * lock. */
apr_status_t mg_cache_retrieve(server_rec *s, const cache_server_conf *sc,
                               const unsigned char *key, unsigned char *buf,
                               unsigned int *len, apr_pool_t *p)
{
    unsigned char id[MG_CACHE_ID_MAX];
    unsigned int idlen = mg_cache_id(key, id);

    return sc->provider->retrieve(sc->inst, s, id, idlen, buf, len, p);
}

apr_status_t mg_cache_store(server_rec *s, const cache_server_conf *sc,
                            const unsigned char *key, apr_time_t expiry,
                            unsigned char *data, unsigned int len,
                            apr_pool_t *p)
{
    unsigned char id[MG_CACHE_ID_MAX];
    unsigned int idlen = mg_cache_id(key, id);

    return sc->provider->store(sc->inst, s, id, idlen, expiry, data, len, p);
}

/* ---- purge generations -------------------------------------------------- */

/* The last owner of each kind this thread asked for: its record's key (a
 * digest as costly as the answer's own key) and the generation read.  The
 * same tenant and model come again and again, and with shmcb every read is
 * a scan of a subcache's index under the cache's mutex.  The generation is
 * read again after a purge on this host (the shared `purges` count moved:
 * at once) and at least once a MEMO_FRESH (a purge through another gateway
 * sharing memcache or redis).  Per thread, so without a lock; owners
 * longer than a slot are looked up each time. */
#define MEMO_OWNER 64
#define MEMO_FRESH apr_time_from_sec(1)
typedef struct generation_memo {
    char kind;                        /* 't', 'g', 'm'; 0: empty */
    char owner[MEMO_OWNER];
    unsigned char key[MG_CACHE_KEY_LEN];
    apr_uint64_t gen;
    apr_uint64_t epoch;               /* `purges` when gen was read */
    apr_time_t at;                    /* ... and the time; 0: not read */
} generation_memo;
static __thread generation_memo memo[2];

/* The purge generation of `kind` ("tenant", "global", "model") and `owner`,
 * mixed into every answer's key, in *out: 0 while never purged.  Not
 * APR_SUCCESS when the socache cannot say: then the request must neither
 * look up nor store -- 0 is the generation of the answers stored before the
 * first purge, and a lookup that worked a moment later would serve them. */
static apr_status_t generation(server_rec *s, const cache_server_conf *sc,
                               const char *kind, const char *owner,
                               apr_pool_t *p, apr_uint64_t *out)
{
    generation_memo *m = &memo[*kind == 'm'];
    apr_size_t n = strlen(owner);
    int kept = n < MEMO_OWNER;
    unsigned char key[MG_CACHE_KEY_LEN], buf[sizeof(apr_uint64_t)];
    unsigned int len = sizeof(buf);
    apr_uint64_t gen = 0, epoch = 0;
    apr_time_t now = 0;
    apr_status_t rv;

    if (kept && m->kind == *kind && !strcmp(m->owner, owner)) {
        if (mg_cache_stats_shared) {
            epoch = apr_atomic_read64(&mg_cache_stats_shared->purges);
            now = apr_time_now();
            if (m->at && m->epoch == epoch && now - m->at < MEMO_FRESH) {
                *out = m->gen;
                return APR_SUCCESS;
            }
        }
        memcpy(key, m->key, MG_CACHE_KEY_LEN);
    }
    else {
        if (mg_cache_generation_key(kind, owner, key) != 0) {
            return APR_EGENERAL;
        }
        if (kept) {
            m->kind = *kind;
            memcpy(m->owner, owner, n + 1);
            memcpy(m->key, key, MG_CACHE_KEY_LEN);
            m->at = 0;
        }
        if (mg_cache_stats_shared) {
            epoch = apr_atomic_read64(&mg_cache_stats_shared->purges);
            now = apr_time_now();
        }
    }
    if ((rv = mg_cache_lock(s)) != APR_SUCCESS) {
        return rv;
    }
    rv = mg_cache_retrieve(s, sc, key, buf, &len, p);
    mg_cache_unlock();
    if (rv == APR_SUCCESS && len == sizeof(buf)) {
        memcpy(&gen, buf, sizeof(gen));
    }
    else if (!APR_STATUS_IS_NOTFOUND(rv)) {
        /* The socache failed (memcache or redis down): not kept. */
        return rv == APR_SUCCESS ? APR_EGENERAL : rv;
    }
    if (kept && now) {
        m->gen = gen;
        m->epoch = epoch;
        m->at = now;
    }
    *out = gen;
    return APR_SUCCESS;
}

/* ---- reading the request ------------------------------------------------ */

/* A token list's member `name`: its value after '=' (or "" without one), or
 * NULL when the list does not have it. */
const char *mg_cache_directive(apr_pool_t *p, const char *list,
                             const char *name)
{
    apr_size_t n = strlen(name);

    while (list && *list) {
        const char *end;
        apr_size_t len;

        while (*list == ',' || apr_isspace(*list)) {
            list++;
        }
        end = ap_strchr_c(list, ',');
        len = end ? (apr_size_t)(end - list) : strlen(list);
        if (len >= n && !strncasecmp(list, name, n)
            && (len == n || list[n] == '=' || apr_isspace(list[n]))) {
            const char *v = list + n;
            while (apr_isspace(*v)) {
                v++;
            }
            return *v == '=' ? apr_pstrmemdup(p, v + 1,
                                              len - (apr_size_t)(v + 1 - list))
                             : "";
        }
        list = end;
    }
    return NULL;
}

/* The request's max-age= in seconds, or -1. */
static apr_int64_t client_max_age(request_rec *r, const char *cc)
{
    const char *v = mg_cache_directive(r->pool, cc, "max-age");
    char *end;
    apr_int64_t n;

    if (!v) {
        return -1;
    }
    n = apr_strtoi64(v, &end, 10);
    return end != v && n >= 0 ? n : -1;
}

/* Whose answers these are: the tenant or key id as the gate found them,
 * never the MODELGATE_* variables, which a later module (an .htaccess
 * RewriteRule's [E=]) may have rewritten by now.  NULL: nobody known. */
static const char *subject_of(request_rec *r, int scope, const char **tenant)
{
    const char *key_id;

    /* cache_check_config refused to start without the function. */
    if (!request_caller(r, tenant, &key_id)) {
        return NULL;
    }
    switch (scope) {
    case MG_CACHE_SCOPE_KEY:
        /* A key id is unique in the key file only: a JWT's is its subject,
         * which any issuer may give any tenant (a token of one tenant whose
         * subject is another's API key id).  The key of its tenant: the
         * tenant's length first, so no two pairs make the same text. */
        if (!*tenant || !key_id) {
            return NULL;
        }
        return apr_psprintf(r->pool, "%" APR_SIZE_T_FMT ":%s%s",
                            strlen(*tenant), *tenant, key_id);
    case MG_CACHE_SCOPE_GLOBAL:
        return "";
    default:
        return *tenant;
    }
}

/* The served model's declared name, or the upstream's when the request
 * names no declared model (`*routed` 0: then the body's `model` counts). */
static const char *route_of(request_rec *r, int *routed)
{
    const char *m = apr_table_get(r->notes, "modelgate-model");
    const char *u;

    *routed = m != NULL;
    if (m) {
        return apr_pstrcat(r->pool, "model:", m, NULL);
    }
    u = apr_table_get(r->notes, "modelgate-upstream");
    return apr_pstrcat(r->pool, "upstream:", u ? u : "", NULL);
}

void mg_cache_outcome(request_rec *r, const char *note, const char *status)
{
    apr_table_setn(r->notes, "modelgate-cache", note);
    if (status) {
        apr_table_setn(r->err_headers_out, "Cache-Status", status);
    }
}

/* What the body says, for the key: from its bytes as they go upstream,
 * without a tree (mg_cache_canon.c). */
static mg_cache_body_status canonical_body(request_rec *r, const char *body,
                                           apr_size_t len, int routed,
                                           mg_cache_body *cb)
{
    return mg_cache_body_read(r->pool, body, len,
                              routed ? mg_cache_ignored_routed
                                     : mg_cache_ignored_default, cb);
}

/* ---- the core asks ------------------------------------------------------ */

/* A hit: the cache's handler answers, mod_proxy does not.  Answered in
 * fixups (`why` NULL), the gate admitted and charged it: with
 * ModelGateCacheHitCost 0 the core gives its request layers back. */
static int answer_from_cache(request_rec *r, const cache_dir_conf *dc,
                             const char *why)
{
    if (!why && dc->hit_cost != 1 && cached_answer_free) {
        cached_answer_free(r);
    }
    r->handler = MG_CACHE_HANDLER;
    /* translate_name handed it to mod_proxy: take it back. */
    r->proxyreq = PROXYREQ_NONE;
    return OK;
}

/* mg_cached_answer (mod_modelgate.h): `why` NULL in fixups, "cache" when a
 * limit refused the caller and its tier says on_limit=cache, "stale" when
 * the upstream's breaker is open (then an entry within the location's
 * stale-if-error grace answers too). */
static int cached_answer(request_rec *r, const char *why)
{
    const cache_dir_conf *dc = ap_get_module_config(r->per_dir_config,
                                                    &modelgate_cache_module);
    const cache_server_conf *sc = mg_cache_main_conf(r->server);
    const char *body, *cc, *subject, *route;
    apr_size_t len;
    apr_int64_t max_age;
    mg_cache_body cb;
    cache_request *cr;
    int no_cache, no_store, scope, routed, stale_ok;
    const char *tenant = NULL;
    const char *model;
    apr_uint64_t gen = 0, model_gen = 0;
    apr_status_t rv;

    if (dc->cacheable != 1 || !sc->inst) {
        return DECLINED;
    }
    route = route_of(r, &routed);
    if (r->method_number != M_POST || !request_body
        || !request_body(r, &body, &len)
        || canonical_body(r, body, len, routed, &cb) != MG_CACHE_BODY_OK) {
        mg_cache_outcome(r, "bypass", why ? NULL : "modelgate; fwd=bypass");
        return DECLINED;
    }
    cc = apr_table_get(r->headers_in, "Cache-Control");
    max_age = client_max_age(r, cc);
    if (!cb.deterministic && max_age < 0) {
        /* Sampled answers differ by design unless the client says a
         * cached one will do. */
        mg_cache_outcome(r, "bypass", why ? NULL : "modelgate; fwd=bypass");
        return DECLINED;
    }
    scope = dc->scope == MG_CACHE_UNSET ? MG_CACHE_SCOPE_TENANT : dc->scope;
    if (!(subject = subject_of(r, scope, &tenant))) {
        mg_cache_outcome(r, "bypass", why ? NULL : "modelgate; fwd=bypass");
        return DECLINED;
    }
    cr = apr_pcalloc(r->pool, sizeof(*cr));
    /* A tenant's purge reaches its answers in the tenant and key scopes;
     * answers shared by everybody have a generation of their own; a
     * model's purge reaches its answers in every scope.  The model is the
     * declared one the route names, else the body's. */
    model = routed ? apr_table_get(r->notes, "modelgate-model") : cb.model;
    if ((rv = generation(r->server, sc,
                         scope == MG_CACHE_SCOPE_GLOBAL ? "global" : "tenant",
                         scope == MG_CACHE_SCOPE_GLOBAL || !tenant ? ""
                                                                   : tenant,
                         r->pool, &gen)) != APR_SUCCESS
        || (rv = generation(r->server, sc, "model", model ? model : "",
                            r->pool, &model_gen)) != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, r, MGCLOGNO(00022)
                      "the purge generations could not be read from "
                      "socache '%s': neither looked up nor stored",
                      sc->spec);
        mg_cache_outcome(r, "miss", why ? NULL : "modelgate; fwd=miss");
        return DECLINED;
    }
    /* `stream` stays in the canonical body: a streaming request and a
     * JSON one never share an entry (a miss, not a conversion).  Where the
     * gateway added include_usage to a stream's body (token limits), the
     * body is the one a client asking for the usage event sends, but this
     * client's stream goes out without that event: another entry. */
    if (mg_cache_key(cb.stream && apr_table_get(r->notes,
                                                "modelgate-include-usage")
                     ? apr_pstrcat(r->pool, mg_cache_scope_names[scope],
                                   "+usage-dropped", NULL)
                     : mg_cache_scope_names[scope],
                     subject, gen, model_gen,
                     route, apr_pstrcat(r->pool, r->uri, r->args ? "?" : "",
                                        r->args, NULL),
                     cb.canonical, cb.len, cr->key) != 0) {
        mg_cache_outcome(r, "bypass", why ? NULL : "modelgate; fwd=bypass");
        return DECLINED;
    }
    cr->stream = cb.stream;
    cr->ttl = dc->ttl == MG_CACHE_UNSET ? MG_CACHE_TTL_DEFAULT : dc->ttl;
    cr->stale = dc->stale == MG_CACHE_UNSET ? 0 : dc->stale;
    stale_ok = why && !strcmp(why, "stale") && cr->stale > 0;
    no_cache = mg_cache_directive(r->pool, cc, "no-cache")
               || mg_cache_directive(r->pool,
                                     apr_table_get(r->headers_in, "Pragma"),
                                     "no-cache");
    no_store = mg_cache_directive(r->pool, cc, "no-store") != NULL;
    ap_set_module_config(r->request_config, &modelgate_cache_module, cr);
    if (!no_cache && mg_cache_lookup(r, sc, cr, max_age, stale_ok)) {
        if (cr->left < 0) {
            mg_cache_outcome(r, "stale", "modelgate; hit; stale");
        }
        else {
            mg_cache_outcome(r, "hit", apr_psprintf(
                r->pool, "modelgate; hit; ttl=%" APR_INT64_T_FMT, cr->left));
        }
        return answer_from_cache(r, dc, why);
    }
    if (why) {
        /* Refused by a limit: not forwarded, nothing to store. */
        mg_cache_outcome(r, "miss", NULL);
        return DECLINED;
    }
    if (dc->lock == 1 && !no_cache && !no_store) {
        int wait_ms = dc->lock_wait == MG_CACHE_UNSET
                      ? MG_CACHE_LOCK_WAIT_DEFAULT : dc->lock_wait;
        /* Another request is forwarding this one: its answer, once
         * stored, answers this one too (RFC 9211's collapsed).  Past the
         * wait, or when it stored nothing, this one forwards. */
        int led = mg_cache_lock_take(r, sc, cr, wait_ms);
        /* Taken: the one in flight before may have stored its answer
         * and let go between the lookup above and now (looked up again);
         * not taken: wait for the one in flight. */
        if ((led || mg_cache_lock_wait(r, sc, cr, wait_ms))
            && mg_cache_lookup(r, sc, cr, max_age, 0)) {
            mg_cache_lock_release(r, cr);
            mg_cache_outcome(r, "hit", apr_psprintf(
                r->pool, "modelgate; hit; ttl=%" APR_INT64_T_FMT
                "; collapsed", cr->left));
            return answer_from_cache(r, dc, why);
        }
    }
    mg_cache_outcome(r, "miss", no_cache ? "modelgate; fwd=request"
                                         : "modelgate; fwd=miss");
    cr->forwarded = 1;
    if (!no_store) {
        ap_add_output_filter(MG_CACHE_FILTER, cr, r, r->connection);
    }
    return DECLINED;
}

/* ---- lifecycle ---------------------------------------------------------- */

static int cache_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                            apr_pool_t *ptemp)
{
    mg_cache_cacheable_somewhere = mg_cache_lock_somewhere = 0;
    return ap_mutex_register(pconf, MG_CACHE_MUTEX_TYPE, NULL,
                             APR_LOCK_DEFAULT, 0) == APR_SUCCESS
           ? OK : HTTP_INTERNAL_SERVER_ERROR;
}

static apr_status_t destroy_cache(void *data)
{
    server_rec *s = data;
    cache_server_conf *sc = mg_cache_main_conf(s);

    if (sc->inst) {
        sc->provider->destroy(sc->inst, s);
        sc->inst = NULL;
    }
    cache_mutex = NULL;
    cache_shared_lock = NULL;           /* the segment goes with pconf */
    mg_cache_stats_shared = NULL;
    return APR_SUCCESS;
}

/* What `apachectl -t` can tell: the core is there, and a cache exists
 * where one is used. */
static int cache_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                              apr_pool_t *ptemp, server_rec *s)
{
    cache_server_conf *sc = mg_cache_main_conf(s);

    request_body = APR_RETRIEVE_OPTIONAL_FN(mg_request_body);
    request_caller = APR_RETRIEVE_OPTIONAL_FN(mg_request_caller);
    /* A core without it charges a hit as a request. */
    cached_answer_free = APR_RETRIEVE_OPTIONAL_FN(mg_cached_answer_free);
    if (!request_body || !request_caller) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, s,
                     MGCLOGNO(00006) "mod_modelgate_cache needs "
                     "mod_modelgate: load it (LoadModule modelgate_module "
                     ".../mod_modelgate.so)");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (!sc->inst && mg_cache_cacheable_somewhere) {
        /* The default, as SSLSessionCache's: shmcb with its own size. */
        sc->provider = ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, "shmcb",
                                          AP_SOCACHE_PROVIDER_VERSION);
        if (!sc->provider
            || sc->provider->create(&sc->inst, "", ptemp, pconf)) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, s,
                         MGCLOGNO(00007) "ModelGateCacheable On needs a "
                         "cache: load mod_socache_shmcb (LoadModule "
                         "socache_shmcb_module modules/mod_socache_shmcb.so) "
                         "or name one with ModelGateCache");
            sc->inst = NULL;
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        sc->spec = "shmcb";
    }
    return OK;
}

static int cache_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                             apr_pool_t *ptemp, server_rec *s)
{
    /* Hints for shmcb: a typical JSON answer of 1 KB makes 8 subcaches of
     * its default 512000 bytes, so one answer may take up to about 63 KB
     * (a subcache); and sizes down to 8192 bytes still initialise. */
    static struct ap_socache_hints hints = {
        MG_CACHE_KEY_LEN + MG_CACHE_ID_SPREAD / 2, /* avg_id_len (mg_cache_id) */
        1024,                  /* avg_obj_size */
        MG_CACHE_TTL_DEFAULT   /* expiry_interval */
    };
    cache_server_conf *sc = mg_cache_main_conf(s);
    apr_shm_t *shm;
    char *base;
    apr_status_t rv;

    /* The first pass over the configuration is a dry run. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG
        || !sc->inst) {
        return OK;
    }
    if (mg_cache_key_init() != 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, MGCLOGNO(00018)
                     "response cache: SHA-256 could not be fetched once; "
                     "each key fetches it");
    }
    /* The segment first: the lock may live in it.  Anonymous shared
     * memory, inherited by the children of this generation; pconf's
     * cleanup unmaps it in the parent (which serves no request) and
     * destroy_cache forgets it. */
    rv = apr_shm_create(&shm, SEGMENT_BYTES, NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, MGCLOGNO(00012)
                     "response cache: cannot create %" APR_SIZE_T_FMT
                     " bytes of shared memory for its lock and statistics",
                     (apr_size_t)SEGMENT_BYTES);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    base = apr_shm_baseaddr_get(shm);
    memset(base, 0, SEGMENT_BYTES);
    if (sc->provider->flags & AP_SOCACHE_FLAG_NOTMPSAFE) {
        if (sc->httpd_mutex) {
            rv = ap_global_mutex_create(&cache_mutex, NULL,
                                        MG_CACHE_MUTEX_TYPE, NULL, s, pconf,
                                        0);
        }
        else if ((rv = mg_shared_lock_init((pthread_mutex_t *)base))
                 == APR_SUCCESS) {
            cache_shared_lock = (pthread_mutex_t *)base;
        }
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, MGCLOGNO(00021)
                         "response cache: cannot make the lock of %s",
                         sc->spec);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    rv = sc->provider->init(sc->inst, MG_CACHE_NAMESPACE, &hints, s, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, MGCLOGNO(00008)
                     "ModelGateCache %s could not be initialised", sc->spec);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    apr_pool_cleanup_register(pconf, s, destroy_cache, apr_pool_cleanup_null);
    if (mg_cache_lock_somewhere) {
        /* A failure is logged there: requests then forward as without it. */
        mg_cache_lock_init(s, pconf);
    }
    mg_cache_stats_shared = (mg_cache_stats *)(base + MG_SHARED_LOCK_BYTES);
    return OK;
}

static void cache_child_init(apr_pool_t *p, server_rec *s)
{
    apr_status_t rv;

    if (!cache_mutex) {
        return;
    }
    rv = apr_global_mutex_child_init(&cache_mutex,
                                     apr_global_mutex_lockfile(cache_mutex),
                                     p);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, MGCLOGNO(00009)
                     "response cache: the mutex could not be opened in "
                     "this child");
    }
}

static void register_hooks(apr_pool_t *p)
{
    ap_hook_pre_config(cache_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    /* The core registers its optional function in its register_hooks:
     * by check_config it is there whatever the LoadModule order. */
    ap_hook_check_config(cache_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(cache_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(cache_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(mg_cache_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_insert_error_filter(mg_cache_insert_error_filter, NULL, NULL,
                                APR_HOOK_LAST);
    ap_hook_handler(mg_cache_status_handler, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(modelgate, mg_cached_answer, cached_answer, NULL, NULL,
                      APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(modelgate, mg_metrics_scrape, mg_cache_metrics_scrape,
                      NULL, NULL, APR_HOOK_MIDDLE);
    ap_register_output_filter(MG_CACHE_FILTER, mg_cache_store_filter, NULL,
                              AP_FTYPE_CONTENT_SET);
    ap_register_output_filter(MG_CACHE_STALE_FILTER, mg_cache_stale_filter,
                              NULL, AP_FTYPE_CONTENT_SET);
}

module AP_MODULE_DECLARE_DATA modelgate_cache_module = {
    STANDARD20_MODULE_STUFF,
    mg_cache_create_dir_conf,
    mg_cache_merge_dir_conf,
    mg_cache_create_server_conf,
    mg_cache_merge_server_conf,
    mg_cache_cmds,
    register_hooks,
    AP_MODULE_FLAG_NONE
};
