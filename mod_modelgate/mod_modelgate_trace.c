/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_trace.c -- W3C trace context and the request id of every
 * request where ModelGate is on (mg_trace.c does the parsing).
 *
 *   traceparent   the client's trace kept when valid, else a new one; the
 *                 upstream gets "00-TRACE-SPAN-FLAGS" whose parent is the
 *                 gateway's new span, never the client's header as sent
 *   tracestate    passed on with a kept trace (cut as the spec says when
 *                 too long), dropped with a new one
 *   X-Request-Id  passed on when valid, else replaced by the gateway's
 *                 span id (unique per request, and it ties the two)
 *
 * Notes for the access log: modelgate-trace-id, modelgate-span-id,
 * modelgate-parent-id (the client's span, when it sent one) and
 * modelgate-request-id; the trace id also goes into every JSON error body
 * the gateway makes (mod_modelgate_request.c, on the error path only).
 *
 * Two steps.  In access_checker, before the gate, the trace is read or
 * made and noted, so the gate's own answers (401, 429) carry it.  In
 * fixups, once the gate let the request through, the headers for the
 * upstream are written: a refused request never pays for them, and the
 * gate's header scrub does not walk two more headers.  Both steps run
 * again from fixups for a request httpd let skip the access hooks; a
 * subrequest or internal redirect inherits its chain's trace (and its
 * headers, which are the same table).
 */
#include <stddef.h>
#include <unistd.h>
#include <apr_strings.h>
#include <http_request.h>
#include "mod_modelgate_private.h"
#include "mg_trace.h"

/* This process's id generator, seeded in child_init. */
static mg_trace_rng rng;

static void trace_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_uint64_t seed;

    if (apr_generate_random_bytes((unsigned char *)&seed, sizeof(seed))
        != APR_SUCCESS) {
        seed = (apr_uint64_t)apr_time_now() ^ ((apr_uint64_t)getpid() << 32);
    }
    mg_trace_rng_seed(&rng, seed);
}

/* One request's trace, in one allocation.  mg_request.trace_id points at
 * t.trace_id, which is where the struct begins: fixups finds the rest
 * from it without another field in mg_request. */
typedef struct trace_texts {
    mg_trace t;
    char traceparent[MG_TRACEPARENT_LEN + 1];
    const char *state;        /* tracestate to send; NULL: none */
    int state_changed;        /* ... differs from the client's (or the
                                 client's is dropped) */
    int sent_traceparent;     /* the client sent one (to be replaced) */
    const char *request_id;
    int request_id_made;      /* the client's was absent or invalid */
    int sent_request_id;      /* ... and it sent one (to be replaced) */
    int forwarded;            /* the headers are written */
} trace_texts;

typedef char trace_first[offsetof(trace_texts, t) == 0
                         && offsetof(mg_trace, trace_id) == 0 ? 1 : -1];

static trace_texts *trace_of(const mg_request *req)
{
    return (trace_texts *)(void *)req->trace_id;
}

/* A request of the chain that has a trace: a redirect or subrequest
 * continues it. */
static int traced(const mg_request *req)
{
    return req->trace_id != NULL;
}

/* Read or make the trace; note it.  NULL where ModelGate is off. */
static mg_request *trace_begin(request_rec *r)
{
    const mg_dir_conf *dc = ap_get_module_config(r->per_dir_config,
                                                 &modelgate_module);
    const mg_request *prq;
    mg_request *req;
    trace_texts *x;
    const char *state;

    if (dc->enabled != 1 || dc->trace == 0) {
        return NULL;
    }
    req = mg_request_get(r);
    if (req->trace_id) {
        return req;
    }
    if ((prq = mg_request_earlier(r, traced)) != NULL) {
        req->trace_id = prq->trace_id;
        return req;
    }
    x = apr_palloc(r->pool, sizeof(*x));
    state = apr_table_get(r->headers_in, "traceparent");
    x->sent_traceparent = state != NULL;
    mg_trace_start(&rng, state, &x->t);
    mg_trace_format(&x->t, x->traceparent);
    x->state = NULL;
    x->state_changed = 0;
    if ((state = apr_table_get(r->headers_in, "tracestate")) != NULL) {
        /* It belongs to the client's trace: dropped with it. */
        x->state = x->t.kept ? mg_trace_state_trim(r->pool, state) : NULL;
        x->state_changed = x->state != state;
    }
    x->request_id = apr_table_get(r->headers_in, "X-Request-Id");
    x->sent_request_id = x->request_id != NULL;
    x->request_id_made = !mg_request_id_valid(x->request_id);
    if (x->request_id_made) {
        x->request_id = x->t.span_id;
    }
    x->forwarded = 0;
    /* Notes nobody else sets: added, without a scan of the table. */
    apr_table_addn(r->notes, "modelgate-trace-id", x->t.trace_id);
    apr_table_addn(r->notes, "modelgate-span-id", x->t.span_id);
    if (x->t.kept) {
        apr_table_addn(r->notes, "modelgate-parent-id", x->t.parent_id);
    }
    apr_table_addn(r->notes, "modelgate-request-id", x->request_id);
    req->trace_id = x->t.trace_id;
    return req;
}

static int trace_access(request_rec *r)
{
    trace_begin(r);
    return DECLINED;
}

/* The headers the upstream gets, once the request is let through. */
static int trace_fixups(request_rec *r)
{
    mg_request *req = trace_begin(r);
    trace_texts *x;

    if (!req || !req->trace_id || (req->gated && req->gate_status != OK)) {
        return DECLINED;
    }
    x = trace_of(req);
    if (x->forwarded) {
        return DECLINED;
    }
    x->forwarded = 1;
    /* Added where the client sent none: no scan of the table. */
    (x->sent_traceparent ? apr_table_setn : apr_table_addn)(
        r->headers_in, "traceparent", x->traceparent);
    if (x->state_changed) {
        if (x->state) {
            apr_table_setn(r->headers_in, "tracestate", x->state);
        }
        else {
            apr_table_unset(r->headers_in, "tracestate");
        }
    }
    if (x->request_id_made) {
        (x->sent_request_id ? apr_table_setn : apr_table_addn)(
            r->headers_in, "X-Request-Id", x->request_id);
    }
    return DECLINED;
}

void mg_trace_register(apr_pool_t *p)
{
    ap_hook_child_init(trace_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    /* Before the gate (APR_HOOK_FIRST), so its own answers carry it. */
    ap_hook_access_checker(trace_access, NULL, NULL, APR_HOOK_REALLY_FIRST);
    /* ... also where httpd skipped the access hooks and the gate runs in
     * fixups. */
    ap_hook_fixups(trace_access, NULL, NULL, APR_HOOK_REALLY_FIRST);
    /* After the gate's fixups (which may run the gate), before mod_proxy's
     * handler reads the headers. */
    ap_hook_fixups(trace_fixups, NULL, NULL, APR_HOOK_LAST);
}
