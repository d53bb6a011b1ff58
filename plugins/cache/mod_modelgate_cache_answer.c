/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_cache_answer.c -- the response cache's answers: a hit
 * sent by the cache's handler, a miss's answer kept by the store filter
 * (a JSON answer held to its end, a stream passed on as it comes and
 * copied aside), and an upstream's 5xx replaced by a stale answer
 * (stale-if-error).  mod_modelgate_cache.c decides which of them a
 * request gets.
 */
#include "mod_modelgate_cache.h"
/* ---- a hit -------------------------------------------------------------- */

/* Is what retrieve() gave (`rv`, `len` bytes in `buf`) an answer for this
 * request?  Fills cr when it is. */
static int usable(request_rec *r, cache_request *cr, apr_status_t rv,
                  const unsigned char *buf, unsigned int len,
                  apr_int64_t max_age, int stale_ok)
{
    apr_uint32_t magic, ctlen;
    apr_time_t stored, expiry, now;

    if (rv != APR_SUCCESS) {
        if (!APR_STATUS_IS_NOTFOUND(rv)) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, r, MGCLOGNO(00002)
                          "response cache lookup failed: a miss");
        }
        return 0;
    }
    if (len < MG_CACHE_ENTRY_HEAD) {
        return 0;
    }
    memcpy(&magic, buf, 4);
    memcpy(&ctlen, buf + 4, 4);
    memcpy(&stored, buf + 8, 8);
    memcpy(&expiry, buf + 16, 8);
    if (magic != MG_CACHE_MAGIC || ctlen > MG_CACHE_CTYPE_MAX
        || MG_CACHE_ENTRY_HEAD + ctlen > len) {
        return 0;
    }
    now = apr_time_now();
    /* The socache keeps an entry for its TTL and the grace of the
     * location that stored it: its freshness is its own (and the provider
     * may expire lazily). */
    if (now >= expiry
        && (!stale_ok || now >= expiry + apr_time_from_sec(cr->stale))) {
        return 0;
    }
    cr->age = now > stored ? apr_time_sec(now - stored) : 0;
    cr->left = now < expiry ? apr_time_sec(expiry - now)
                            : -1 - apr_time_sec(now - expiry);
    if (now < expiry && max_age >= 0 && cr->age > max_age) {
        return 0;               /* older than this client accepts */
    }
    cr->ctype = apr_pstrmemdup(r->pool, (const char *)buf + MG_CACHE_ENTRY_HEAD,
                               ctlen);
    cr->body = (const char *)buf + MG_CACHE_ENTRY_HEAD + ctlen;
    cr->body_len = len - MG_CACHE_ENTRY_HEAD - ctlen;
    return 1;
}

/* Look `cr->key` up; 1 when a usable entry was found (cr filled).  With
 * `stale_ok`, an entry up to cr->stale seconds past its TTL is usable too
 * (cr->left then negative). */
int mg_cache_lookup(request_rec *r, const cache_server_conf *sc,
                  cache_request *cr, apr_int64_t max_age, int stale_ok)
{
    unsigned int cap = (unsigned int)(MG_CACHE_ENTRY_HEAD + MG_CACHE_CTYPE_MAX
                                      + mg_cache_max_object(sc));
    unsigned char *buf = apr_palloc(r->pool, cap);
    unsigned int len = cap;
    apr_status_t rv;

    if (mg_cache_lock(r->server) != APR_SUCCESS) {
        return 0;
    }
    rv = mg_cache_retrieve(r->server, sc, cr->key, buf, &len, r->pool);
    mg_cache_unlock();
    count(lookups, 1);
    if (APR_STATUS_IS_NOTFOUND(rv)) {
        mg_cache_note_missing(cr->key, apr_time_now());
    }
    if (!usable(r, cr, rv, buf, len, max_age, stale_ok)) {
        count(misses, 1);
        return 0;
    }
    count(hits, 1);
    if (cr->left < 0) {
        count(stale_hits, 1);
    }
    return 1;
}

int mg_cache_handler(request_rec *r)
{
    cache_request *cr;
    apr_bucket_brigade *bb;

    if (!r->handler || strcmp(r->handler, MG_CACHE_HANDLER)) {
        return DECLINED;
    }
    cr = ap_get_module_config(r->request_config, &modelgate_cache_module);
    if (!cr || !cr->body) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    r->status = HTTP_OK;
    ap_set_content_type(r, cr->ctype);
    ap_set_content_length(r, (apr_off_t)cr->body_len);
    apr_table_setn(r->headers_out, "Age",
                   apr_psprintf(r->pool, "%" APR_INT64_T_FMT, cr->age));
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    if (!r->header_only) {
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_pool_create(
            cr->body, cr->body_len, r->pool, r->connection->bucket_alloc));
    }
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(
                                    r->connection->bucket_alloc));
    return ap_pass_brigade(r->output_filters, bb) == APR_SUCCESS
           ? OK : AP_FILTER_ERROR;
}

/* ---- a miss: keep the answer, store it at its end ----------------------- */

static int is_type(const char *ct, const char *want)
{
    apr_size_t n = strlen(want);

    return ct && !strncasecmp(ct, want, n)
           && (ct[n] == '\0' || ct[n] == ';' || apr_isspace(ct[n]));
}

/* Why this answer must not be stored, or NULL.  A streaming request's
 * answer is an event stream, any other a JSON document. */
static const char *unstorable(request_rec *r, const cache_server_conf *sc,
                              const cache_request *cr)
{
    const char *cc, *ce, *cl;

    if (r->status != HTTP_OK) {
        return "status";
    }
    if (!is_type(r->content_type, cr->stream ? "text/event-stream"
                                             : "application/json")) {
        return "type";
    }
    ce = apr_table_get(r->headers_out, "Content-Encoding");
    if (ce && strcasecmp(ce, "identity")) {
        return "encoded";
    }
    if (apr_table_get(r->headers_out, "Set-Cookie")
        || apr_table_get(r->err_headers_out, "Set-Cookie")) {
        return "set-cookie";
    }
    cc = apr_table_get(r->headers_out, "Cache-Control");
    if (cc && (mg_cache_directive(r->pool, cc, "no-store")
               || mg_cache_directive(r->pool, cc, "private"))) {
        return "cache-control";
    }
    if (r->content_type && strlen(r->content_type) > MG_CACHE_CTYPE_MAX) {
        return "type";
    }
    cl = apr_table_get(r->headers_out, "Content-Length");
    if (cl) {
        char *end;
        apr_off_t n;
        if (apr_strtoff(&n, cl, &end, 10) == APR_SUCCESS && !*end
            && n > (apr_off_t)mg_cache_max_object(sc)) {
            return "size";
        }
    }
    return NULL;
}

/* The copy's first size: the answer's Content-Length (unstorable() saw it
 * within the limit), else a few KB. */
static apr_size_t initial_size(request_rec *r, const cache_server_conf *sc)
{
    const char *cl = apr_table_get(r->headers_out, "Content-Length");
    apr_size_t max = mg_cache_max_object(sc);
    apr_off_t n;
    char *end;

    if (cl && apr_strtoff(&n, cl, &end, 10) == APR_SUCCESS && !*end
        && n > 0 && n <= (apr_off_t)max) {
        return (apr_size_t)n;
    }
    return max < 8192 ? max : 8192;
}

/* Store the answer kept in `cr`; 1 when the socache took it. */
static int store(request_rec *r, const cache_server_conf *sc,
                 cache_request *cr)
{
    apr_uint32_t magic = MG_CACHE_MAGIC;
    apr_uint32_t ctlen = (apr_uint32_t)strlen(r->content_type);
    apr_time_t now = apr_time_now();
    apr_time_t expiry = now + apr_time_from_sec(cr->ttl);
    /* Kept for the grace too: served then only while the upstream fails. */
    apr_time_t kept = expiry + apr_time_from_sec(cr->stale);
    apr_size_t len = MG_CACHE_ENTRY_HEAD + ctlen + cr->len;
    unsigned char *e = apr_palloc(r->pool, len);
    apr_status_t rv;

    memcpy(e, &magic, 4);
    memcpy(e + 4, &ctlen, 4);
    memcpy(e + 8, &now, 8);
    memcpy(e + 16, &expiry, 8);
    memcpy(e + MG_CACHE_ENTRY_HEAD, r->content_type, ctlen);
    if (cr->len) {
        memcpy(e + MG_CACHE_ENTRY_HEAD + ctlen, cr->buf, cr->len);
    }
    if (mg_cache_lock(r->server) != APR_SUCCESS) {
        return 0;
    }
    rv = mg_cache_store(r->server, sc, cr->key, kept, e, (unsigned int)len,
                        r->pool);
    mg_cache_unlock();
    if (rv != APR_SUCCESS) {
        count(store_failures, 1);
        /* Too large for the provider (shmcb: one subcache), or the
         * provider is down: the client has its answer anyway. */
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, r, MGCLOGNO(00003)
                      "answer of %" APR_SIZE_T_FMT " bytes not stored by "
                      "socache '%s'", len, sc->spec);
        return 0;
    }
    count(stores, 1);
    count(bytes_stored, cr->len);
    mg_cache_note_stored(cr->key, expiry);
    mg_cache_outcome(r, "stored", NULL);
    return 1;
}

/* Done with this answer, stored or not: the requests waiting for it go. */
static void done(ap_filter_t *f, cache_request *cr)
{
    mg_cache_lock_release(f->r, cr);
    ap_remove_output_filter(f);
}

/* Let go of what was held, and of `bb` after it, as they came. */
static apr_status_t release(ap_filter_t *f, cache_request *cr,
                            apr_bucket_brigade *bb)
{
    APR_BRIGADE_CONCAT(cr->held, bb);
    done(f, cr);
    return ap_pass_brigade(f->next, cr->held);
}

static void too_large(request_rec *r, const cache_server_conf *sc)
{
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, MGCLOGNO(00005)
                  "answer over ModelGateCacheMaxObject (%" APR_SIZE_T_FMT
                  " bytes): not stored", mg_cache_max_object(sc));
}

/* Copy `len` more bytes of the answer aside; 0 past the object limit.
 * The copy grows as the answer does (from its Content-Length when it has
 * one): most answers are far below ModelGateCacheMaxObject. */
static int keep(request_rec *r, const cache_server_conf *sc,
                cache_request *cr, const char *data, apr_size_t len)
{
    apr_size_t max = mg_cache_max_object(sc);

    if (len > max - cr->len) {
        return 0;
    }
    if (len > cr->cap - cr->len) {
        apr_size_t cap = cr->cap * 2 > cr->len + len ? cr->cap * 2
                                                     : cr->len + len;
        char *buf = apr_palloc(r->pool, cap > max ? max : cap);
        memcpy(buf, cr->buf, cr->len);
        cr->buf = buf;
        cr->cap = cap > max ? max : cap;
    }
    memcpy(cr->buf + cr->len, data, len);
    cr->len += len;
    return 1;
}

/* A stream is of use to its client as it comes: each brigade is passed on
 * at once, its bytes copied aside (up to ModelGateCacheMaxObject; past
 * that the copy stops and the filter goes), and the copy stored at the
 * end.  Cache-Status went out with the first bytes: it says fwd=miss, the
 * log note says whether the copy was stored. */
static apr_status_t pass_stream(ap_filter_t *f, cache_request *cr,
                                const cache_server_conf *sc,
                                apr_bucket_brigade *bb)
{
    request_rec *r = f->r;
    apr_bucket *e;

    for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
         e = APR_BUCKET_NEXT(e)) {
        const char *data;
        apr_size_t len;

        if (APR_BUCKET_IS_EOS(e)) {
            if (!r->connection->aborted && !r->no_cache) {
                store(r, sc, cr);
            }
            done(f, cr);
            break;
        }
        if (APR_BUCKET_IS_METADATA(e)) {
            if (AP_BUCKET_IS_ERROR(e)) {
                /* The model server broke off (mod_proxy's error bucket,
                 * then EOS): the copy is a part of an answer. */
                done(f, cr);
                break;
            }
            continue;
        }
        if (apr_bucket_read(e, &data, &len, APR_BLOCK_READ) != APR_SUCCESS) {
            done(f, cr);
            break;
        }
        if (!keep(r, sc, cr, data, len)) {
            too_large(r, sc);
            done(f, cr);
            break;
        }
    }
    return ap_pass_brigade(f->next, bb);
}

/* stale-if-error on the upstream's own 5xx: is there an answer within the
 * location's grace?  Then the stale filter goes after every content filter
 * added so far -- the core's MODELGATE_OBSERVE among them, which records
 * the upstream's real status for its health before the stale answer
 * takes the 5xx's place. */
static int stale_instead(request_rec *r, const cache_server_conf *sc,
                         cache_request *cr)
{
    if (r->status < 500 || cr->stale <= 0 || !cr->forwarded || cr->fwd_status
        || !mg_cache_lookup(r, sc, cr, -1, 1)) {
        return 0;
    }
    cr->fwd_status = r->status;
    ap_add_output_filter(MG_CACHE_STALE_FILTER, cr, r, r->connection);
    return 1;
}

/* The answer of a miss.  A JSON answer is held back until its end (at
 * most ModelGateCacheMaxObject bytes; it is of no use to a client before
 * its last byte anyway), stored, and sent with a Cache-Status that says
 * whether it was; a stream passes on as it comes (pass_stream). */
apr_status_t mg_cache_store_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    request_rec *r = f->r;
    cache_request *cr = f->ctx;
    const cache_server_conf *sc = mg_cache_main_conf(r->server);
    apr_bucket *e;

    if (!cr->buf) {
        const char *why = unstorable(r, sc, cr);
        if (why) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, MGCLOGNO(00004)
                          "answer not stored: %s", why);
            stale_instead(r, sc, cr);
            done(f, cr);
            return ap_pass_brigade(f->next, bb);
        }
        cr->cap = initial_size(r, sc);
        cr->buf = apr_palloc(r->pool, cr->cap);
        cr->held = apr_brigade_create(r->pool, f->c->bucket_alloc);
    }
    if (cr->stream) {
        return pass_stream(f, cr, sc, bb);
    }
    while ((e = APR_BRIGADE_FIRST(bb)) != APR_BRIGADE_SENTINEL(bb)) {
        const char *data;
        apr_size_t len;

        if (APR_BUCKET_IS_EOS(e)) {
            if (!r->connection->aborted && !r->no_cache
                && store(r, sc, cr)) {
                const char *cs = apr_table_get(r->err_headers_out,
                                               "Cache-Status");
                if (cs) {
                    apr_table_setn(r->err_headers_out, "Cache-Status",
                                   apr_pstrcat(r->pool, cs, "; stored",
                                               NULL));
                }
            }
            return release(f, cr, bb);
        }
        if (AP_BUCKET_IS_ERROR(e)) {
            /* mod_proxy's: the model server broke off mid-answer. */
            return release(f, cr, bb);
        }
        if (!APR_BUCKET_IS_METADATA(e)) {
            if (apr_bucket_read(e, &data, &len, APR_BLOCK_READ)
                != APR_SUCCESS) {
                return release(f, cr, bb);
            }
            if (!keep(r, sc, cr, data, len)) {
                too_large(r, sc);
                return release(f, cr, bb);
            }
        }
        /* The buckets may point into mod_proxy's buffers, reused for the
         * next read: kept in the request's pool while held. */
        if (apr_bucket_setaside(e, r->pool) != APR_SUCCESS) {
            return release(f, cr, bb);
        }
        APR_BUCKET_REMOVE(e);
        APR_BRIGADE_INSERT_TAIL(cr->held, e);
    }
    return APR_SUCCESS;
}

/* ---- stale-if-error on an upstream's 5xx -------------------------------- */

/* insert_error_filter: mod_proxy's own failures (502 on a refused or broken
 * connection, 504 past ProxyTimeout) are answered by httpd's error
 * response, which drops the content filters the store filter was among;
 * the stale answer takes its place the same way.  Run after the core's
 * (which records the failure for the upstream's health first). */
void mg_cache_insert_error_filter(request_rec *r)
{
    cache_request *cr = ap_get_module_config(r->request_config,
                                             &modelgate_cache_module);

    if (cr && cr->stale > 0) {
        cr->error_response = 1;
        stale_instead(r, mg_cache_main_conf(r->server), cr);
    }
}

/* The upstream's error answer goes nowhere; at its end the stale answer
 * goes out instead, as a hit would, with the upstream's status in
 * Cache-Status (RFC 9211: fwd=miss, fwd-status, a negative ttl). */
apr_status_t mg_cache_stale_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    request_rec *r = f->r;
    cache_request *cr = f->ctx;
    apr_bucket *e;
    int eos = 0;

    for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
         e = APR_BUCKET_NEXT(e)) {
        if (APR_BUCKET_IS_EOS(e)) {
            eos = 1;
            break;
        }
    }
    apr_brigade_cleanup(bb);
    if (!eos) {
        return APR_SUCCESS;
    }
    ap_remove_output_filter(f);
    r->status = HTTP_OK;
    r->status_line = NULL;
    if (!cr->error_response) {
        /* Nothing of the upstream's error answer describes this one (its
         * headers are all in headers_out: mod_proxy_http replaced them
         * there; the gate's own are in err_headers_out).  On httpd's own
         * error response, headers_out holds the gate's headers instead
         * (ap_send_error_response swapped them in). */
        apr_table_clear(r->headers_out);
    }
    else {
        /* ... the miss's Cache-Status among them: said anew below. */
        apr_table_unset(r->headers_out, "Cache-Status");
    }
    ap_set_content_type(r, cr->ctype);
    ap_set_content_length(r, (apr_off_t)cr->body_len);
    apr_table_setn(r->headers_out, "Age",
                   apr_psprintf(r->pool, "%" APR_INT64_T_FMT, cr->age));
    apr_table_setn(r->err_headers_out, "X-Modelgate-Degraded", "stale");
    mg_cache_outcome(r, "stale", apr_psprintf(
        r->pool, "modelgate; fwd=miss; fwd-status=%d; ttl=%" APR_INT64_T_FMT,
        cr->fwd_status, cr->left));
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, MGCLOGNO(00017)
                  "upstream answered %d: a stale answer (%" APR_INT64_T_FMT
                  " s past its TTL) served instead", cr->fwd_status,
                  -cr->left);
    if (!r->header_only) {
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_pool_create(
            cr->body, cr->body_len, r->pool, f->c->bucket_alloc));
    }
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(f->c->bucket_alloc));
    return ap_pass_brigade(f->next, bb);
}
