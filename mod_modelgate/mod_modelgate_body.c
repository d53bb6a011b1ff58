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
 * Which bodies are read depends on whether the gateway routes by model
 * (once any ModelGateModel is declared, every gated location does):
 *
 *   - JSON (application/json, application/...+json): read, strictly.
 *   - untyped or text/plain: many model servers parse such a body as JSON
 *     anyway, so where models are declared it is read, and if it looks
 *     like JSON (its first byte after white space is '{' or '[') it is
 *     JSON to the gateway too, strictly: a model hidden there is found, a
 *     malformed one is 400.  A body that does not look like JSON has no
 *     model and goes on untouched.
 *   - any other type (forms, multipart, octet-stream, ...) or a
 *     Content-Encoding other than identity, where models are declared:
 *     415, as the gateway cannot see which model it asks for.
 *   - where no model is declared, or where the server configuration says
 *     `ModelGateOpaqueBodies On` (multipart uploads such as audio
 *     transcriptions), only JSON bodies are read; others stream through
 *     untouched, and per-model limits do not see them.
 *
 * A Transfer-Encoding other than plain chunked (`gzip, chunked`) is 501
 * for every gated request, before anything is charged: mod_proxy would
 * refuse to forward it after the limits had counted it.
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

typedef enum {
    BODY_JSON,                /* says it is JSON */
    BODY_UNTYPED,             /* no type, or text/plain: may be JSON */
    BODY_OTHER                /* a type that is not JSON */
} body_kind;

/* "application/json", "application/vnd.x+json", parameters ignored. */
static body_kind kind_of(const char *ct)
{
    const char *semi;
    apr_size_t n;

    if (!ct) {
        return BODY_UNTYPED;
    }
    while (apr_isspace(*ct)) {
        ct++;
    }
    semi = strchr(ct, ';');
    n = semi ? (apr_size_t)(semi - ct) : strlen(ct);
    while (n > 0 && apr_isspace(ct[n - 1])) {
        n--;
    }
    if ((n == 16 && !strncasecmp(ct, "application/json", 16))
        || (n > 5 && !strncasecmp(ct + n - 5, "+json", 5)
            && !strncasecmp(ct, "application/", 12))) {
        return BODY_JSON;
    }
    return n == 0 || (n == 10 && !strncasecmp(ct, "text/plain", 10))
           ? BODY_UNTYPED : BODY_OTHER;
}

/* Is every coding in the list "identity" (a no-op, if a needless one)? */
static int only_identity(const char *list)
{
    while (*list) {
        apr_size_t n;
        while (*list == ',' || apr_isspace(*list)) {
            list++;
        }
        if (!*list) {
            break;
        }
        n = strcspn(list, ", \t");
        if (n != 8 || strncasecmp(list, "identity", 8)) {
            return 0;
        }
        list += n;
    }
    return 1;
}

/* Does the body look like JSON: '{' or '[' after white space and a BOM? */
static int looks_like_json(const char *buf, apr_size_t len)
{
    apr_size_t i = 0;

    if (len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3)) {
        i = 3;
    }
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r'
                       || buf[i] == '\n')) {
        i++;
    }
    return i < len && (buf[i] == '{' || buf[i] == '[');
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

static int refuse_body(request_rec *r, int status, const char *decision,
                       const char *message, const char *code)
{
    apr_table_setn(r->notes, "modelgate-decision", decision);
    return mg_respond_error(r, status, message, MG_ERRT_REQUEST, code);
}

static int empty_body(request_rec *r)
{
    return refuse_body(r, HTTP_BAD_REQUEST, "invalid-json",
        "The request body is empty: a JSON object is expected.",
        MG_ERR_INVALID_JSON);
}

int mg_body_read(request_rec *r, const mg_server_conf *sc,
                 const mg_dir_conf *dc, mg_request *req)
{
    apr_off_t limit = dc->body_limit == MG_UNSET ? MG_BODY_LIMIT_DEFAULT
                                                 : dc->body_limit;
    const char *te, *ce, *cl;
    int by_model = apr_hash_count(sc->models) > 0 && dc->opaque_bodies != 1;
    apr_bucket_brigade *bb, *kept;
    apr_off_t total = 0;
    apr_size_t len;
    apr_status_t rv;
    const char *why;
    body_kind kind;
    char *buf;
    int seen_eos = 0;

    if (!ap_request_has_body(r)) {
        /* Content-Length: 0 (a Transfer-Encoding would make a body).  A
         * JSON request without its JSON is as malformed as one cut short,
         * and is answered so before anything is charged, as an empty
         * chunked body is below; a GET pays one compare for it. */
        if ((r->method_number == M_POST || r->method_number == M_PUT
             || r->method_number == M_PATCH)
            && kind_of(apr_table_get(r->headers_in, "Content-Type"))
               == BODY_JSON) {
            return empty_body(r);
        }
        return DECLINED;
    }
    te = apr_table_get(r->headers_in, "Transfer-Encoding");
    if (te && strcasecmp(te, "chunked")) {
        /* HTTP_IN took off the chunking and left the rest to us; no model
         * server gets such a body through mod_proxy. */
        return refuse_body(r, HTTP_NOT_IMPLEMENTED, "unsupported-encoding",
            "Only 'Transfer-Encoding: chunked' is supported for request "
            "bodies.", MG_ERR_UNSUPPORTED_ENCODING);
    }
    /* Looked up only for a body: most API calls that have none are GETs. */
    ce = apr_table_get(r->headers_in, "Content-Encoding");
    cl = apr_table_get(r->headers_in, "Content-Length");
    kind = kind_of(apr_table_get(r->headers_in, "Content-Type"));
    if (!by_model) {
        if (kind != BODY_JSON || (ce && !only_identity(ce))) {
            return DECLINED;
        }
    }
    else if (ce && !only_identity(ce)) {
        return refuse_body(r, HTTP_UNSUPPORTED_MEDIA_TYPE,
            "unsupported-encoding", "Request bodies here are read to find "
            "the model: send them without a Content-Encoding.",
            MG_ERR_UNSUPPORTED_ENCODING);
    }
    else if (kind == BODY_OTHER) {
        return refuse_body(r, HTTP_UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type", "Request bodies here must be JSON: "
            "send them with Content-Type: application/json.",
            MG_ERR_UNSUPPORTED_MEDIA_TYPE);
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
            int status = ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
            ap_log_rerror(APLOG_MARK, APLOG_INFO, rv, r, MGLOGNO(00301)
                          "reading the request body failed");
            if (status == HTTP_REQUEST_TIME_OUT) {
                /* mod_reqtimeout: a body trickled too slowly. */
                return refuse_body(r, status, "body-timeout", "The request "
                    "body arrived too slowly.", MG_ERR_BODY_TIMEOUT);
            }
            return status;
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
    if (len == 0 && kind == BODY_JSON) {
        return empty_body(r);
    }
    if (kind == BODY_UNTYPED && !looks_like_json(buf, len)) {
        return DECLINED;      /* text, not JSON: no model in it */
    }
    /* No tree: mg_json_scan checks the body and reads its members at a
     * few instructions a byte (a jansson tree costs ~140 a byte). */
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
    mg_body_replace(r, req, out, len);
    return OK;
}

void mg_body_replace(request_rec *r, mg_request *req, const char *buf,
                     apr_size_t len)
{
    replay(r, req, buf, len);
    /* mod_proxy frames what it is given; the length is the new body's. */
    apr_table_unset(r->headers_in, "Transfer-Encoding");
    apr_table_setn(r->headers_in, "Content-Length",
                   apr_psprintf(r->pool, "%" APR_SIZE_T_FMT, len));
}

void mg_body_register(apr_pool_t *p)
{
    ap_register_input_filter(MG_BODY_FILTER, body_replay_filter, NULL,
                             AP_FTYPE_RESOURCE);
}
