/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_jwt_admin.c -- the revoked list's admin call:
 *
 *     <Location "/modelgate/jwt">
 *         SetHandler modelgate-jwt-admin
 *         ModelGateJWTAdmin On
 *         Require ip 127.0.0.1
 *     </Location>
 *
 *   GET                      {"revoked": N}: the token ids in force
 *   POST (no form)           re-read ModelGateJWTRevoked in every process
 *   POST jti=ID[&jti=ID...]  append the ids to the file, then the same
 *
 * (application/x-www-form-urlencoded).  Whoever may call it is the
 * operator's Require.  ModelGateJWTAdmin On, which .htaccess cannot say,
 * must stand beside the SetHandler, which it can: without it the handler
 * answers 403, so no .htaccess author revokes other people's tokens.
 * The call counts up the generation in shared memory
 * (mgj_revoked_shared), so every process re-reads the file on its next
 * request, not within the second its own stat would take; the answer
 * comes after this process re-read it.  The file must be writable by the
 * User the children run as for jti=; a reload needs only read access.
 */
#include <apr_lib.h>
#include <http_protocol.h>
#include "mod_modelgate_jwt.h"

#define MGJ_ADMIN_BODY_MAX (64 * 1024)
#define MGJ_ADMIN_JTIS_MAX 1024
#define MGJ_JTI_MAX 255

static int answer(request_rec *r, int status, const char *json)
{
    r->status = status;
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_type(r, "application/json");
    ap_rputs(json, r);
    ap_rputs("\n", r);
    return OK;
}

static int fail(request_rec *r, int status, const char *code,
                const char *message)
{
    return answer(r, status, mg_error_json(r->pool, message,
                                           "invalid_request_error", code));
}

/* A jti the list can hold as one line, and that a reader cannot take for
 * something else: printable, no blank, not a comment. */
static int jti_ok(const char *v, apr_size_t len)
{
    apr_size_t i;

    if (len == 0 || len > MGJ_JTI_MAX || v[0] == '#') {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* The form's jti values (NULL and *bad set: the first wrong field). */
static apr_array_header_t *read_jtis(request_rec *r,
                                     apr_array_header_t *pairs,
                                     const char **bad)
{
    apr_array_header_t *jtis = apr_array_make(r->pool, 4, sizeof(char *));
    int i;

    for (i = 0; pairs && i < pairs->nelts; i++) {
        ap_form_pair_t *pair = &APR_ARRAY_IDX(pairs, i, ap_form_pair_t);
        apr_off_t len = 0;
        apr_size_t n;
        char *v;

        if (strcmp(pair->name, "jti")) {
            *bad = "The only field is jti.";
            return NULL;
        }
        apr_brigade_length(pair->value, 1, &len);
        if (len > MGJ_JTI_MAX) {
            *bad = "A jti is 1 to 255 printable characters without blanks.";
            return NULL;
        }
        n = (apr_size_t)len;
        v = apr_palloc(r->pool, n + 1);
        apr_brigade_flatten(pair->value, v, &n);
        v[n] = '\0';
        if (!jti_ok(v, n)) {
            *bad = "A jti is 1 to 255 printable characters without blanks.";
            return NULL;
        }
        APR_ARRAY_PUSH(jtis, const char *) = v;
    }
    return jtis;
}

/* Append `jtis` to the list, one a line, in one write under an exclusive
 * lock (two admin calls in two processes do not interleave; a line never
 * joins the last one of a file that lacks a final newline).  NULL, or
 * what went wrong. */
static const char *append(request_rec *r, const char *path,
                          apr_array_header_t *jtis)
{
    apr_file_t *f;
    apr_finfo_t fi;
    apr_status_t rv;
    apr_off_t at;
    char last = '\n';
    apr_size_t one = 1, len;
    const char *text = "";
    int i;

    if ((rv = apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_WRITE
                            | APR_FOPEN_APPEND, 0, r->pool)) != APR_SUCCESS) {
        return apr_psprintf(r->pool, "cannot open it for writing: %pm",
                            &rv);
    }
    if ((rv = apr_file_lock(f, APR_FLOCK_EXCLUSIVE)) != APR_SUCCESS
        || (rv = apr_file_info_get(&fi, APR_FINFO_SIZE, f))
           != APR_SUCCESS) {
        apr_file_close(f);
        return apr_psprintf(r->pool, "cannot lock it: %pm", &rv);
    }
    if (fi.size > 0) {
        at = fi.size - 1;
        if (apr_file_seek(f, APR_SET, &at) != APR_SUCCESS
            || apr_file_read(f, &last, &one) != APR_SUCCESS) {
            last = '\n';
        }
    }
    for (i = 0; i < jtis->nelts; i++) {
        text = apr_pstrcat(r->pool, text, APR_ARRAY_IDX(jtis, i, char *),
                           "\n", NULL);
    }
    if (last != '\n') {
        text = apr_pstrcat(r->pool, "\n", text, NULL);
    }
    len = strlen(text);
    if (fi.size + (apr_off_t)len > MGJ_FILE_MAX) {
        apr_file_close(f);
        return "it would grow larger than 1 MiB";
    }
    rv = apr_file_write_full(f, text, len, NULL);
    apr_file_close(f);          /* the lock goes with it */
    if (rv != APR_SUCCESS) {
        return apr_psprintf(r->pool, "cannot write it: %pm", &rv);
    }
    return NULL;
}

int mgj_admin_handler(request_rec *r)
{
    mgj_server_conf *c;
    mgj_denylist *d;
    apr_array_header_t *pairs = NULL, *jtis, *added;
    apr_int64_t now = apr_time_sec(apr_time_now());
    const char *err = NULL;
    int rv, i;

    if (!r->handler || strcmp(r->handler, MGJ_ADMIN_HANDLER)) {
        return DECLINED;
    }
    c = conf_of(r->server);
    d = &c->revoked;
    r->allowed = (AP_METHOD_BIT << M_GET) | (AP_METHOD_BIT << M_POST);
    if (r->method_number != M_GET && r->method_number != M_POST) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (dir_conf_of(r)->admin != 1) {
        ap_discard_request_body(r);
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, "MGJ00013: "
                      "SetHandler " MGJ_ADMIN_HANDLER " without "
                      "ModelGateJWTAdmin On (server configuration): refused");
        return fail(r, HTTP_FORBIDDEN, "admin_not_enabled",
                    "This location does not enable the JWT admin call.");
    }
    if (!d->path || !d->sh) {
        ap_discard_request_body(r);
        return fail(r, HTTP_NOT_FOUND, "not_configured",
                    "No ModelGateJWTRevoked list is configured.");
    }
    if (r->method_number == M_GET) {
        return answer(r, HTTP_OK, apr_psprintf(r->pool, "{\"revoked\":%u}",
                      mgj_revoked_size(r->server, d, now)));
    }
    if ((rv = ap_parse_form_data(r, NULL, &pairs, MGJ_ADMIN_JTIS_MAX,
                                 MGJ_ADMIN_BODY_MAX)) != OK) {
        return rv;
    }
    if (!(jtis = read_jtis(r, pairs, &err))) {
        return fail(r, HTTP_BAD_REQUEST, "invalid_jti", err);
    }
    /* ids the list holds already are not written twice */
    added = apr_array_make(r->pool, jtis->nelts, sizeof(char *));
    for (i = 0; i < jtis->nelts; i++) {
        const char *jti = APR_ARRAY_IDX(jtis, i, const char *);
        int j, dup = mgj_revoked(r->server, d, jti, now);
        for (j = 0; !dup && j < added->nelts; j++) {
            dup = !strcmp(APR_ARRAY_IDX(added, j, const char *), jti);
        }
        if (!dup) {
            APR_ARRAY_PUSH(added, const char *) = jti;
        }
    }
    if (added->nelts && (err = append(r, d->path, added)) != NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "MGJ00011: "
                      "ModelGateJWTRevoked %s: %s", d->path, err);
        return fail(r, HTTP_INTERNAL_SERVER_ERROR, "revoked_list_unwritable",
                    "The revoked list cannot be written; see the error "
                    "log.");
    }
    /* every process, this one first: the answer counts the ids in force */
    apr_atomic_inc32(&d->sh->gen);
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r, "MGJ00012: "
                  "ModelGateJWTRevoked: %d token ids added, re-read by "
                  "every process (admin call)", added->nelts);
    return answer(r, HTTP_OK, apr_psprintf(r->pool,
                  "{\"revoked\":%u,\"added\":%d}",
                  mgj_revoked_size(r->server, d, now), added->nelts));
}
