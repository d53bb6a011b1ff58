/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_body.c -- reading a JSON request body before mod_proxy
 * does, and handing it to mod_proxy again.
 *
 * Routing and per-model limits need the body's `model` before the request
 * is forwarded, so the access checker reads the whole body (up to
 * ModelGateBodyLimit, 413 past it) and an input filter of type RESOURCE,
 * MODELGATE_BODY, serves the same bytes to whoever reads next: mod_proxy
 * sends them on as if it read them from the client.  Chunked bodies come
 * out of HTTP_IN de-chunked, which is what the filter replays.  A rewritten
 * body (another model) replaces the kept bytes, with a Content-Length of
 * its own.
 *
 * Only bodies that say they are JSON (Content-Type application/json or
 * +json, no Content-Encoding) are read; any other body streams through
 * untouched, as before.
 */
#include <apr_strings.h>
#include <apr_buckets.h>
#include <apr_lib.h>
#include <http_protocol.h>
#include <http_request.h>
#include <util_filter.h>
#include "mod_modelgate_private.h"
#include "mg_error.h"

#define MG_BODY_FILTER "MODELGATE_BODY"

/* "application/json", "application/vnd.x+json", parameters ignored. */
static int is_json(const char *ct)
{
    const char *semi = strchr(ct, ';');
    apr_size_t n = semi ? (apr_size_t)(semi - ct) : strlen(ct);

    while (n > 0 && apr_isspace(ct[n - 1])) {
        n--;
    }
    return (n == 16 && !strncasecmp(ct, "application/json", 16))
           || (n > 5 && !strncasecmp(ct + n - 5, "+json", 5)
               && !strncasecmp(ct, "application/", 12));
}

/* ---- the replay filter ------------------------------------------------------ */

static apr_status_t body_replay_filter(ap_filter_t *f, apr_bucket_brigade *bb,
                                       ap_input_mode_t mode,
                                       apr_read_type_e block,
                                       apr_off_t readbytes)
{
    apr_bucket_brigade *kept = f->ctx;
    apr_bucket *after, *e;
    apr_status_t rv;

    if (mode == AP_MODE_INIT) {
        return ap_get_brigade(f->next, bb, mode, block, readbytes);
    }
    if (mode != AP_MODE_READBYTES && mode != AP_MODE_SPECULATIVE
        && mode != AP_MODE_EXHAUSTIVE) {
        return APR_ENOTIMPL;
    }
    if (APR_BRIGADE_EMPTY(kept)) {
        /* Everything was served: the body is over, as HTTP_IN says. */
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(bb->bucket_alloc));
        return APR_SUCCESS;
    }
    if (mode == AP_MODE_EXHAUSTIVE) {
        APR_BRIGADE_CONCAT(bb, kept);
        return APR_SUCCESS;
    }
    rv = apr_brigade_partition(kept, readbytes, &after);
    if (rv != APR_SUCCESS && rv != APR_INCOMPLETE) {
        return rv;
    }
    while ((e = APR_BRIGADE_FIRST(kept)) != after) {
        if (mode == AP_MODE_SPECULATIVE) {
            /* A peek: the bytes stay for the next read. */
            apr_bucket *copy;
            for (; e != after; e = APR_BUCKET_NEXT(e)) {
                if ((rv = apr_bucket_copy(e, &copy)) != APR_SUCCESS) {
                    return rv;
                }
                APR_BRIGADE_INSERT_TAIL(bb, copy);
            }
            break;
        }
        APR_BUCKET_REMOVE(e);
        APR_BRIGADE_INSERT_TAIL(bb, e);
    }
    return APR_SUCCESS;
}

/* From now on, reads of the request body get `len` bytes of `buf`. */
static void replay(request_rec *r, mg_request *req, const char *buf,
                   apr_size_t len)
{
    apr_bucket_alloc_t *ba = r->connection->bucket_alloc;
    apr_bucket_brigade *kept = apr_brigade_create(r->pool, ba);

    req->body = buf;
    req->body_len = len;
    if (len) {
        APR_BRIGADE_INSERT_TAIL(kept, apr_bucket_pool_create(buf, len,
                                                             r->pool, ba));
    }
    APR_BRIGADE_INSERT_TAIL(kept, apr_bucket_eos_create(ba));
    if (req->body_filter) {
        req->body_filter->ctx = kept;
    }
    else {
        req->body_filter = ap_add_input_filter(MG_BODY_FILTER, kept, r,
                                               r->connection);
    }
}

/* ---- reading ------------------------------------------------------------------ */

static int too_large(request_rec *r, apr_off_t limit)
{
    /* 413 drops the connection (ap_status_drops_connection): httpd does
     * not read the rest of a body it refused. */
    r->connection->keepalive = AP_CONN_CLOSE;
    apr_table_setn(r->notes, "modelgate-decision", "body-too-large");
    return mg_respond_error(r, HTTP_REQUEST_ENTITY_TOO_LARGE,
        apr_psprintf(r->pool, "The request body is larger than the %"
                     APR_OFF_T_FMT " bytes this endpoint accepts.", limit),
        MG_ERRT_REQUEST, MG_ERR_TOO_LARGE);
}

int mg_body_read(request_rec *r, const mg_dir_conf *dc, mg_request *req)
{
    apr_off_t limit = dc->body_limit == MG_UNSET ? MG_BODY_LIMIT_DEFAULT
                                                 : dc->body_limit;
    const char *ct = apr_table_get(r->headers_in, "Content-Type");
    const char *ce = apr_table_get(r->headers_in, "Content-Encoding");
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    apr_bucket_brigade *bb, *kept;
    apr_off_t total = 0;
    apr_size_t len;
    apr_status_t rv;
    const char *why;
    char *buf;
    int seen_eos = 0;

    if (!ap_request_has_body(r) || !ct || !is_json(ct)
        || (ce && strcasecmp(ce, "identity"))) {
        return DECLINED;
    }
    if (cl) {
        char *end;
        apr_off_t n;
        if (apr_strtoff(&n, cl, &end, 10) == APR_SUCCESS && !*end
            && n > limit) {
            return too_large(r, limit);
        }
    }
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    kept = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    while (!seen_eos) {
        apr_bucket *e;
        rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES,
                            APR_BLOCK_READ, HUGE_STRING_LEN);
        if (rv != APR_SUCCESS) {
            ap_log_rerror(APLOG_MARK, APLOG_INFO, rv, r, MGLOGNO(00301)
                          "reading the request body failed");
            return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
        }
        while ((e = APR_BRIGADE_FIRST(bb)) != APR_BRIGADE_SENTINEL(bb)) {
            if (APR_BUCKET_IS_EOS(e)) {
                seen_eos = 1;
                apr_bucket_delete(e);
                continue;
            }
            if (APR_BUCKET_IS_METADATA(e)) {
                apr_bucket_delete(e);
                continue;
            }
            total += (apr_off_t)e->length;
            if (total > limit) {
                apr_brigade_cleanup(bb);
                return too_large(r, limit);
            }
            /* The buckets may point into HTTP_IN's buffers: keep them in
             * the request's pool. */
            if ((rv = apr_bucket_setaside(e, r->pool)) != APR_SUCCESS) {
                return HTTP_INTERNAL_SERVER_ERROR;
            }
            APR_BUCKET_REMOVE(e);
            APR_BRIGADE_INSERT_TAIL(kept, e);
        }
    }
    if (apr_brigade_pflatten(kept, &buf, &len, r->pool) != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    apr_brigade_destroy(kept);
    replay(r, req, buf, len);
    switch (mg_body_inspect(r->pool, buf, len, &req->info, &why)) {
    case MG_BODY_OK:
        req->body_read = 1;
        return OK;
    case MG_BODY_MALFORMED:
        apr_table_setn(r->notes, "modelgate-decision", "invalid-json");
        return mg_respond_error(r, HTTP_BAD_REQUEST, why, MG_ERRT_REQUEST,
                                MG_ERR_INVALID_JSON);
    default:
        apr_table_setn(r->notes, "modelgate-decision", "invalid-body");
        return mg_respond_error(r, HTTP_BAD_REQUEST, why, MG_ERRT_REQUEST,
                                MG_ERR_INVALID_BODY);
    }
}

int mg_body_set_model_for(request_rec *r, mg_request *req, const char *model)
{
    char *out;
    apr_size_t len;
    const char *err;

    err = mg_body_set_model(r->pool, req->body, req->body_len, model, &out,
                            &len);
    if (err) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MGLOGNO(00302)
                      "cannot set the model of the request body: %s", err);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    replay(r, req, out, len);
    /* mod_proxy frames what it is given; the length is the new body's. */
    apr_table_unset(r->headers_in, "Transfer-Encoding");
    apr_table_setn(r->headers_in, "Content-Length",
                   apr_psprintf(r->pool, "%" APR_SIZE_T_FMT, len));
    return OK;
}

void mg_body_register(apr_pool_t *p)
{
    ap_register_input_filter(MG_BODY_FILTER, body_replay_filter, NULL,
                             AP_FTYPE_RESOURCE);
}
