/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_usage.c -- what an answer cost in tokens, and settling it
 * against what the request reserved.
 *
 * The MODELGATE_USAGE output filter reads the model server's answer as it
 * passes (mg_usage.c).  A JSON document goes on as it came, chunk for
 * chunk.  A stream goes on event by event: each is held until it ends (at
 * most MG_USAGE_ONLY_MAX bytes; a longer one goes on as it comes but for
 * its last MG_USAGE_TAIL bytes), which costs a client nothing (it can use
 * an event only once it ends) and lets the filter read only the events
 * that may carry a usage (lexing every chunk cost several times more).
 * Where the gateway itself asked for stream_options.include_usage, it
 * also drops the usage-only event the client did not ask for and strips
 * the `"usage": null` that request added to every other event.
 *
 * Settling runs once, as soon as the outcome is known and before the
 * client has all of the answer (its next request must meet settled
 * counters): when the answer's end passes this filter, or when httpd
 * inserts an error response's filters; log_transaction catches whatever
 * ended otherwise (a connection gone mid-answer).  Each token and budget
 * layer's counter gets what the answer used minus what was reserved
 * (mg_store's settle).  What counts as used:
 *
 *   usage reported (2xx)      prompt, completion or total, per layer
 *   the answer failed         nothing: the reservation is given back --
 *     (status >= 400 from        the upstream's own error, mod_proxy's
 *     the upstream or proxy)     502/503/504, a refusal after admission
 *   2xx without usage, or     the reservation stays charged: an upstream
 *     with usage not taken,      that does not report, a broken stream,
 *     or the client left         a client that disconnected mid-stream
 *                                (logged; never zero by accident)
 */
#include <stddef.h>
#include <apr_strings.h>
#include <apr_lib.h>
#include <http_core.h>
#include <http_protocol.h>
#include <http_request.h>
#include <util_filter.h>
#include "mod_modelgate_private.h"
#include "mg_usage.h"
#include "mg_error.h"
#include "mg_clock.h"

#define MG_USAGE_FILTER "MODELGATE_USAGE"

/** Of an event too long to hold, the bytes held back until its end: room
 * for `, "usage": null}` with white space around and the blank line. */
#define MG_USAGE_TAIL 256

/** A stream event this large is logged (MG00507). */
#define MG_USAGE_LARGE_EVENT (1024 * 1024)

typedef struct usage_ctx {
    mg_request *req;
    mg_reservation *res;
    int started;
    int scanning;                 /* the answer has a shape with usage */
    int drop_usage_only;          /* the gateway added include_usage */
    int hold;                     /* a stream: events held until they end */
    int whole;                    /* the event so far is all held;
                                     else only its last MG_USAGE_TAIL
                                     bytes are */
    char *held;                   /* an event that may be usage-only */
    apr_size_t held_len;
    apr_bucket_brigade *out;      /* what goes on, when events are held:
                                     made once, emptied after each pass */
    int fed;                      /* the event being held is being given
                                     to `scan` as it comes (too long to
                                     hold whole) */
    int usage_only;               /* `scan` said the event is that one */
    int lf_tail;                  /* an event was ended at its blank
                                     line's CR: an LF next ends that line */
    int tail_dropped;             /* ... and was dropped: so is the LF */
    mg_usage_scanner scan;        /* the answer's usage */
    mg_usage_scanner *frames;     /* where events are held: their ends
                                     (a stream only) */
} usage_ctx;

/* Added by its handle: by name, httpd looks the filter up in its
 * registry on every request. */
static ap_filter_rec_t *usage_filter_handle;

void mg_usage_watch(request_rec *r, mg_request *req)
{
    /* Not zeroed whole: `scan` (most of it) is started by the filter,
     * when the answer's shape is known, and only when it has one. */
    usage_ctx *ctx = apr_palloc(r->pool, sizeof(*ctx));

    memset(ctx, 0, offsetof(usage_ctx, scan));
    ctx->req = req;
    ctx->res = req->reservation;
    ctx->drop_usage_only = req->reservation->added_include_usage;
    ctx->whole = 1;
    ctx->frames = NULL;
    ap_add_output_filter_handle(usage_filter_handle, ctx, r, r->connection);
}

static int is_type(const char *ct, const char *want, apr_size_t n)
{
    return ct && !strncasecmp(ct, want, n) && (ct[n] == '\0' || ct[n] == ';'
                                              || apr_isspace(ct[n]));
}

/* Which shape the answer has, or -1 when it has no usage to read. */
static int mode_of(request_rec *r)
{
    const char *ce = apr_table_get(r->headers_out, "Content-Encoding");

    if (r->status < 200 || r->status >= 300) {
        return -1;
    }
    if (ce && strcasecmp(ce, "identity")) {
        /* The request asked for identity (mg_proxy_hand_off); a server
         * that compresses anyway is not read. */
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, MGLOGNO(00501)
                      "the model server's answer is %s-encoded: its usage "
                      "cannot be read", ce);
        return -1;
    }
    if (is_type(r->content_type, "text/event-stream", 17)) {
        return MG_USAGE_SSE;
    }
    if (is_type(r->content_type, "application/json", 16)) {
        return MG_USAGE_JSON;
    }
    return -1;
}

static void hold(request_rec *r, usage_ctx *ctx, const char *buf,
                 apr_size_t len)
{
    if (!ctx->held) {
        ctx->held = apr_palloc(r->pool, MG_USAGE_ONLY_MAX);
    }
    memcpy(ctx->held + ctx->held_len, buf, len);
    ctx->held_len += len;
}

/* What was held goes on, then `len` bytes of buf. */
static void release(apr_bucket_brigade *out, usage_ctx *ctx, const char *buf,
                    apr_size_t len)
{
    if (ctx->held_len) {
        apr_brigade_write(out, NULL, NULL, ctx->held, ctx->held_len);
        ctx->held_len = 0;
    }
    if (len) {
        apr_brigade_write(out, NULL, NULL, buf, len);
    }
}

/* An event too long to hold goes on as it comes but for its last
 * MG_USAGE_TAIL bytes, where the `"usage": null` the client did not ask
 * for would be: held until the event ends (then stripped) or more comes. */
static void keep_tail(request_rec *r, apr_bucket_brigade *out,
                      usage_ctx *ctx, const char *buf, apr_size_t len)
{
    apr_size_t drop;

    if (!ctx->held) {
        ctx->held = apr_palloc(r->pool, MG_USAGE_ONLY_MAX);
    }
    if (len >= MG_USAGE_TAIL) {
        release(out, ctx, buf, len - MG_USAGE_TAIL);
        memcpy(ctx->held, buf + len - MG_USAGE_TAIL, MG_USAGE_TAIL);
        ctx->held_len = MG_USAGE_TAIL;
        return;
    }
    if (ctx->held_len + len > MG_USAGE_TAIL) {
        drop = ctx->held_len + len - MG_USAGE_TAIL;
        apr_brigade_write(out, NULL, NULL, ctx->held, drop);
        memmove(ctx->held, ctx->held + drop, ctx->held_len - drop);
        ctx->held_len -= drop;
    }
    memcpy(ctx->held + ctx->held_len, buf, len);
    ctx->held_len += len;
}

/* A JSON value's bytes scanned backwards: skip white space before `at`. */
static apr_size_t back_ws(const char *b, apr_size_t at)
{
    while (at > 0 && (b[at - 1] == ' ' || b[at - 1] == '\t'
                      || b[at - 1] == '\r' || b[at - 1] == '\n')) {
        at--;
    }
    return at;
}

/* Does b[..at) end with `word`?  Then where it starts. */
static int ends_with(const char *b, apr_size_t at, const char *word,
                     apr_size_t *start)
{
    apr_size_t n = strlen(word);

    if (at < n || memcmp(b + at - n, word, n)) {
        return 0;
    }
    *start = at - n;
    return 1;
}

/* With include_usage every chunk of the stream carries "usage": null, the
 * client that did not ask for it would see a member it never sees
 * otherwise.  Where the event's object ends with it as its last member --
 * the final '}' preceded by `, "usage" : null` is the top level's -- those
 * bytes go; anything else is left as it came. */
static void strip_usage_null(usage_ctx *ctx)
{
    char *b = ctx->held;
    apr_size_t end = back_ws(b, ctx->held_len), at, from;

    if (end == 0 || b[end - 1] != '}') {
        return;
    }
    at = back_ws(b, end - 1);
    if (!ends_with(b, at, "null", &at)) {
        return;
    }
    at = back_ws(b, at);
    if (!ends_with(b, at, ":", &at)) {
        return;
    }
    at = back_ws(b, at);
    if (!ends_with(b, at, "\"usage\"", &at)) {
        return;
    }
    at = back_ws(b, at);
    if (!ends_with(b, at, ",", &from)) {
        return;
    }
    /* From the comma up to the closing brace's white space. */
    at = back_ws(b, end - 1);
    memmove(b + from, b + at, ctx->held_len - at);
    ctx->held_len -= at - from;
}

/* Give `scan` bytes of the held event (in order, every byte once). */
static void feed_scan(usage_ctx *ctx, const char *buf, apr_size_t len)
{
    mg_usage_event ev;
    apr_size_t n;

    while (len > 0) {
        n = mg_usage_feed(&ctx->scan, buf, len, &ev);
        if (ev.ended && ev.usage_only) {
            ctx->usage_only = 1;
        }
        buf += n;
        len -= n;
    }
}

/* The held event ended (`frames` said so): `scan` reads it when it may
 * carry a usage.  An event whose blank line ended in CR is still open in
 * `scan` (an LF may follow), while `frames` has ended it: `scan` ends it
 * too, as it is (mg_usage_end_pending), with no byte fed that would count
 * in its length. */
static void event_ended(usage_ctx *ctx)
{
    mg_usage_event ev;

    if (!ctx->fed && mg_usage_may_carry(ctx->held, ctx->held_len)) {
        ctx->fed = 1;
        feed_scan(ctx, ctx->held, ctx->held_len);
    }
    if (ctx->fed && mg_usage_end_pending(&ctx->scan, &ev) && ev.usage_only) {
        ctx->usage_only = 1;
    }
}

/* Scan `len` bytes (JSON: `out` is NULL, the bytes go on unchanged); of a
 * stream, copy what goes on to `out`: each event is held until it ends (at
 * most MG_USAGE_ONLY_MAX bytes; a longer one goes on as it comes but for
 * its last MG_USAGE_TAIL bytes), read if it may carry a usage, then sent
 * -- where the gateway added include_usage, dropped if it is the
 * usage-only chunk, else sent without "usage": null. */
/* The held event ended: dropped when it is the usage-only chunk the client
 * did not ask for (returns 1), else sent, without "usage": null where the
 * gateway added include_usage. */
static int event_done(usage_ctx *ctx, apr_bucket_brigade *out)
{
    int dropped;

    event_ended(ctx);
    dropped = ctx->usage_only && ctx->drop_usage_only;
    if (dropped) {
        ctx->held_len = 0;          /* the client did not ask */
        ctx->res->dropped_usage_event = 1;
    }
    else {
        if (ctx->drop_usage_only) {
            strip_usage_null(ctx);
        }
        release(out, ctx, NULL, 0);
    }
    ctx->whole = 1;
    ctx->fed = ctx->usage_only = 0;
    return dropped;
}

static void scan(request_rec *r, usage_ctx *ctx, const char *buf,
                 apr_size_t len, apr_bucket_brigade *out)
{
    mg_usage_event ev;
    apr_size_t n;

    if (!out) {
        feed_scan(ctx, buf, len);
        return;
    }
    if (ctx->lf_tail && len > 0) {
        ctx->lf_tail = 0;
        if (*buf == '\n') {
            if (!ctx->tail_dropped) {
                apr_brigade_write(out, NULL, NULL, buf, 1);
            }
            buf++;
            len--;
        }
    }
    while (len > 0) {
        n = mg_usage_feed(ctx->frames, buf, len, &ev);
        if (ctx->whole && ctx->held_len + n <= MG_USAGE_ONLY_MAX) {
            hold(r, ctx, buf, n);
        }
        else {
            if (!ctx->fed) {
                /* too long to hold: read as it comes from now on */
                ctx->fed = 1;
                feed_scan(ctx, ctx->held, ctx->held_len);
            }
            feed_scan(ctx, buf, n);
            ctx->whole = 0;
            keep_tail(r, out, ctx, buf, n);
        }
        if (ev.ended) {
            event_done(ctx, out);
        }
        buf += n;
        len -= n;
    }
    /* A blank line ended in CR at the end of what came: the event goes on
     * now, not when the next byte arrives (a decoding step later, or the
     * end of the answer). */
    if (mg_usage_end_pending(ctx->frames, &ev)) {
        ctx->tail_dropped = event_done(ctx, out);
        ctx->lf_tail = 1;
    }
}

static void finish(request_rec *r, usage_ctx *ctx, apr_bucket_brigade *out)
{
    mg_usage_event ev;
    apr_uint64_t largest;

    if (out) {
        mg_usage_finish(ctx->frames, &ev);
        if (ev.ended) {
            event_done(ctx, out);
        }
        else if (ctx->held_len) {
            /* an event the stream did not close goes on as it came */
            release(out, ctx, NULL, 0);
        }
    }
    mg_usage_finish(&ctx->scan, &ev);
    mg_usage_result(&ctx->scan, &ctx->res->usage);
    if (out) {
        largest = ctx->frames->result.largest_event;
        if (largest > ctx->res->usage.largest_event) {
            ctx->res->usage.largest_event = largest;
        }
    }
    ctx->res->usage_read = 1;
    if (ctx->res->usage.largest_event >= MG_USAGE_LARGE_EVENT) {
        /* Read as it passed, never held (the scanner's memory is fixed);
         * said because a model server that sends such events is unusual
         * and an operator who sees memory grow will look for them. */
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, MGLOGNO(00507)
                      "the stream had an event of %" APR_UINT64_T_FMT
                      " bytes: passed on as it came and scanned without "
                      "holding it; usage %s", ctx->res->usage.largest_event,
                      ctx->res->usage.status == MG_USAGE_FOUND
                      ? "found" : "not found");
    }
    /* Before the end of the answer reaches the client: its next request
     * must meet the settled counters, not the reservation. */
    mg_usage_settle(r);
}

static apr_status_t usage_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    request_rec *r = f->r;
    usage_ctx *ctx = f->ctx;
    apr_bucket_brigade *out;
    apr_bucket *e;
    const char *data;
    apr_size_t len;
    apr_status_t rv;
    int mode;

    if (!ctx->started) {
        ctx->started = 1;
        if ((mode = mode_of(r)) >= 0) {
            ctx->scanning = 1;
            mg_usage_init(&ctx->scan, (mg_usage_mode)mode);
        }
        ctx->hold = ctx->scanning && mode == MG_USAGE_SSE;
        ctx->drop_usage_only = ctx->drop_usage_only && ctx->hold;
        if (ctx->hold) {
            ctx->frames = apr_palloc(r->pool, sizeof(*ctx->frames));
            mg_usage_init_frames(ctx->frames);
        }
    }
    if (!ctx->scanning) {
        /* Nothing to read, but the end of the answer settles. */
        for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
             e = APR_BUCKET_NEXT(e)) {
            if (APR_BUCKET_IS_EOS(e)) {
                mg_usage_settle(r);
                ap_remove_output_filter(f);
                break;
            }
        }
        return ap_pass_brigade(f->next, bb);
    }
    if (!ctx->hold) {
        /* JSON: the brigade goes on as it came, chunk for chunk. */
        for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb);
             e = APR_BUCKET_NEXT(e)) {
            if (APR_BUCKET_IS_EOS(e)) {
                finish(r, ctx, NULL);
                break;
            }
            if (APR_BUCKET_IS_METADATA(e)) {
                continue;
            }
            if ((rv = apr_bucket_read(e, &data, &len, APR_BLOCK_READ))
                != APR_SUCCESS) {
                return rv;
            }
            scan(r, ctx, data, len, NULL);
        }
        return ap_pass_brigade(f->next, bb);
    }
    if (!ctx->out) {
        ctx->out = apr_brigade_create(r->pool, f->c->bucket_alloc);
    }
    out = ctx->out;
    while ((e = APR_BRIGADE_FIRST(bb)) != APR_BRIGADE_SENTINEL(bb)) {
        if (APR_BUCKET_IS_EOS(e)) {
            finish(r, ctx, out);
        }
        if (APR_BUCKET_IS_METADATA(e)) {
            /* A flush goes on at once; an event held back follows when
             * it is known not to be the usage-only one. */
            APR_BUCKET_REMOVE(e);
            APR_BRIGADE_INSERT_TAIL(out, e);
            continue;
        }
        if ((rv = apr_bucket_read(e, &data, &len, APR_BLOCK_READ))
            != APR_SUCCESS) {
            return rv;
        }
        scan(r, ctx, data, len, out);
        apr_bucket_delete(e);
    }
    rv = ap_pass_brigade(f->next, out);
    apr_brigade_cleanup(out);
    return rv;
}

/* ---- before the decision: ceilings and the estimate -------------------------- */

/* Endpoints that generate, where a cap the client did not set is added. */
static int generates(const request_rec *r)
{
    apr_size_t n = strlen(r->uri);

    return (n >= 17 && !strcmp(r->uri + n - 17, "/chat/completions"))
           || (n >= 12 && !strcmp(r->uri + n - 12, "/completions"));
}

/* The body's cap `field` set to `value` (the caller keeps info.max_tokens:
 * a body may have two caps). */
static int set_cap(request_rec *r, mg_request *req, const char *field,
                   apr_uint64_t value)
{
    char *out;
    apr_size_t len;
    const char *err = mg_body_set_int(r->pool, req->body, req->body_len,
                                      field, (apr_int64_t)value, &out, &len);

    if (err) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MGLOGNO(00504)
                      "cannot set %s in the request body: %s", field, err);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    mg_body_replace(r, req, out, len);
    return OK;
}

int mg_usage_prepare(request_rec *r, const mg_tier *tier, mg_request *req)
{
    apr_uint64_t ceiling = tier->max_tokens;
    int rv;

    if (!req->body_read) {
        req->reserve_prompt = req->reserve_completion = 0;
        return OK;
    }
    if (ceiling && req->info.max_tokens > (apr_int64_t)ceiling) {
        if (!tier->max_tokens_clamp) {
            apr_table_setn(r->notes, "modelgate-decision", "max-tokens");
            return mg_respond_json(r, HTTP_BAD_REQUEST, mg_error_json_param(
                r->pool, apr_psprintf(r->pool, "%s is too large: %"
                    APR_INT64_T_FMT ". Your tier allows at most %"
                    APR_UINT64_T_FMT " completion tokens per request.",
                    req->info.max_tokens_field, req->info.max_tokens,
                    ceiling),
                MG_ERRT_REQUEST, req->info.max_tokens_field,
                MG_ERR_MAX_TOKENS));
        }
        /* Both caps where both are given: the model server may read
         * either.  The smaller is rewritten only if it too is over. */
        if ((rv = set_cap(r, req, req->info.max_tokens_field, ceiling))
            != OK
            || (req->info.other_cap > (apr_int64_t)ceiling
                && (rv = set_cap(r, req, req->info.other_cap_field, ceiling))
                   != OK)) {
            return rv;
        }
        req->info.max_tokens = (apr_int64_t)ceiling;
        apr_table_setn(r->notes, "modelgate-max-tokens", "clamped");
    }
    else if (ceiling && req->info.max_tokens < 0 && generates(r)) {
        /* The answer can then use no more than is reserved for it: no
         * completion tokens beyond a reservation, by construction. */
        if ((rv = set_cap(r, req, "max_tokens", ceiling)) != OK) {
            return rv;
        }
        req->info.max_tokens = (apr_int64_t)ceiling;
        apr_table_setn(r->notes, "modelgate-max-tokens", "added");
    }
    /* About four bytes of JSON a token: more than the prompt's tokens,
     * which the settle gives back. */
    req->reserve_prompt = (req->body_len + 3) / 4;
    req->reserve_completion = req->info.max_tokens > 0
                              ? (apr_uint64_t)req->info.max_tokens : 0;
    return OK;
}

/* ---- after the decision: what was reserved ----------------------------------- */

int mg_usage_reserve(request_rec *r, mg_request *req, const mg_layer *layers,
                     int n, mg_now now, const mg_store_provider *store,
                     mg_store_instance *inst, apr_uint32_t factor,
                     const mg_model *model)
{
    mg_reservation *res;
    int i, tokens = 0;

    for (i = 0; i < n; i++) {
        tokens |= layers[i].tokens != 0;
    }
    if (!tokens) {
        return OK;
    }
    res = req->reservation = apr_pcalloc(r->pool, sizeof(*res));
    memcpy(res->layers, layers, (apr_size_t)n * sizeof(*layers));
    res->n = n;
    res->decided_at = now;
    res->store = store;
    res->inst = inst;
    res->cost_factor = factor ? factor : 1;
    res->price_in = model ? model->price_in : 0;
    res->price_out = model ? model->price_out : 0;
    /* Its usage is needed: ask the model server for an answer the filter
     * can read, and a stream for the usage it sends only when asked. */
    apr_table_setn(r->headers_in, "Accept-Encoding", "identity");
    if (req->body_read && req->info.stream) {
        char *out;
        apr_size_t len;
        int changed = 0;
        const char *err = mg_body_want_usage(r->pool, req->body,
                                             req->body_len, &changed, &out,
                                             &len);
        if (err) {
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, MGLOGNO(00505)
                          "cannot ask this stream for its usage (%s): the "
                          "reservation will stay charged", err);
        }
        else if (changed) {
            mg_body_replace(r, req, out, len);
            res->added_include_usage = 1;
            /* For the response cache: this body is now the one a client
             * asking for include_usage sends, but this client gets its
             * stream without the usage event. */
            apr_table_setn(r->notes, "modelgate-include-usage", "added");
        }
    }
    return OK;
}

/* ---- settling ------------------------------------------------------------ */

/* What layer `l` counts of the tokens an answer used. */
static apr_int64_t used_by(const mg_reservation *res, const mg_layer *l,
                           apr_int64_t prompt, apr_int64_t completion)
{
    switch (l->tokens) {
    case MG_LAYER_MONEY:
        return (apr_int64_t)mg_policy_spend((apr_uint64_t)prompt,
                                            (apr_uint64_t)completion,
                                            res->price_in, res->price_out);
    case MG_COUNT_PROMPT + 1:
        return prompt;
    case MG_COUNT_COMPLETION + 1:
        return completion;
    default:
        return prompt + completion;
    }
}

static const char *i64(apr_pool_t *p, apr_int64_t v)
{
    /* Four notes a request: no format string to parse. */
    return apr_off_t_toa(p, (apr_off_t)v);
}

/* Notes for the access log: what the answer said it used.  These names
 * and the settle's others are set here only, and the settle runs once
 * (res->settled): added, not set.  apr_table_setn compares the name with
 * every note of the same first four letters, and every note of the
 * module's begins with "modelgate-": five set cost ~2,400 instructions a
 * request, five added ~300. */
static void note_usage(request_rec *r, const mg_usage *u)
{
    if (u->prompt >= 0) {
        apr_table_addn(r->notes, "modelgate-prompt-tokens", i64(r->pool,
                                                                 u->prompt));
    }
    if (u->completion >= 0) {
        apr_table_addn(r->notes, "modelgate-completion-tokens",
                       i64(r->pool, u->completion));
    }
    apr_table_addn(r->notes, "modelgate-total-tokens", i64(r->pool,
                                                            u->total));
}

int mg_usage_settle(request_rec *r)
{
    mg_request *req = ap_get_module_config(r->request_config,
                                           &modelgate_module);
    mg_reservation *res = req ? req->reservation : NULL;
    const mg_usage *u;
    apr_int64_t delta[MG_LIMIT_MAX_LAYERS], prompt, completion, spend = -1;
    const char *how;
    int i, any = 0;
    apr_status_t rv;

    if (!res || res->settled) {
        return DECLINED;
    }
    res->settled = 1;
    u = res->usage_read ? &res->usage : NULL;
    if (u && u->status == MG_USAGE_FOUND) {
        note_usage(r, u);
    }
    if (req->cached) {
        /* A cached answer generated nothing: what a hit costs in token
         * layers is nothing, the whole reservation comes back. */
        how = "cached";
        prompt = completion = -1;
    }
    else if (u && u->status == MG_USAGE_FOUND && r->status < 400) {
        how = "usage";
        prompt = u->prompt > 0 ? u->prompt : 0;
        completion = u->completion > 0 ? u->completion : 0;
        if (u->prompt < 0 && u->completion < 0) {
            prompt = u->total;      /* only a total: count it as prompt */
        }
    }
    else if (r->status >= 400 && !r->connection->aborted) {
        /* Refused after admission, or failed upstream: nothing was
         * generated, the whole reservation comes back. */
        how = "refunded";
        prompt = completion = -1;
    }
    else {
        how = r->connection->aborted ? "aborted"
              : !u ? "absent"
              : u->status == MG_USAGE_FOUND ? "found"
              : u->status == MG_USAGE_INVALID ? "invalid"
              : u->status == MG_USAGE_MALFORMED ? "malformed" : "absent";
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, MGLOGNO(00502)
                      "no usable token usage in the answer (%s%s%s): the "
                      "reservation of %" APR_UINT64_T_FMT " prompt and %"
                      APR_UINT64_T_FMT " completion tokens stays charged",
                      how, u && *u->why ? ": " : "", u ? u->why : "",
                      req->reserve_prompt, req->reserve_completion);
        apr_table_addn(r->notes, "modelgate-usage", how);
        return DECLINED;
    }
    for (i = 0; i < res->n; i++) {
        const mg_layer *l = &res->layers[i];
        apr_int64_t used;
        if (!l->tokens) {
            delta[i] = 0;
            continue;
        }
        used = prompt < 0 ? 0 : used_by(res, l, prompt, completion)
                                * (apr_int64_t)res->cost_factor;
        if (l->tokens == MG_LAYER_MONEY) {
            spend = used;
        }
        delta[i] = used - (apr_int64_t)l->cost;
        any |= delta[i] != 0;
    }
    apr_table_addn(r->notes, "modelgate-usage", how);
    if (spend >= 0) {
        /* In the currency, to the nano-unit. */
        apr_table_addn(r->notes, "modelgate-spend", apr_psprintf(r->pool,
            "%" APR_INT64_T_FMT ".%09" APR_INT64_T_FMT,
            spend / (apr_int64_t)MG_MONEY_UNIT,
            spend % (apr_int64_t)MG_MONEY_UNIT));
    }
    apr_table_addn(r->notes, "modelgate-reserved-tokens",
                   i64(r->pool, (apr_int64_t)(req->reserve_prompt
                                              + req->reserve_completion)));
    if (!any) {
        return DECLINED;
    }
    rv = res->store->settle(res->inst, r->server, res->layers, delta,
                            res->n, res->decided_at, mg_clock_now());
    if (rv != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, rv, r, MGLOGNO(00503)
                      "counter store '%s' failed to settle the tokens of "
                      "this request", res->store->name);
    }
    return DECLINED;
}

void mg_usage_register(apr_pool_t *p)
{
    usage_filter_handle = ap_register_output_filter(MG_USAGE_FILTER,
                                                    usage_filter, NULL,
                                                    AP_FTYPE_RESOURCE);
}
