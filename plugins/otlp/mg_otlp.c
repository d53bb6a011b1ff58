/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_otlp.c -- tail sampling, the span queue and the OTLP JSON encoding
 * (see mg_otlp.h).
 */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <apr_strings.h>
#include "mg_otlp.h"

void mg_otlp_copy(char *dst, apr_size_t size, const char *src)
{
    apr_size_t n = src ? strlen(src) : 0;

    if (n >= size) {
        n = size - 1;
    }
    if (n) {
        memcpy(dst, src, n);
    }
    dst[n] = '\0';
}

int mg_otlp_must_keep(int allowed, int status)
{
    return !allowed || status >= 500;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

int mg_otlp_sampled(const char *trace_id, double rate)
{
    apr_uint64_t v = 0;
    int i, d;

    if (rate <= 0.0 || !trace_id || strlen(trace_id) != 32) {
        return 0;
    }
    if (rate >= 1.0) {
        return 1;
    }
    for (i = 32 - 14; i < 32; i++) {
        if ((d = hexval(trace_id[i])) < 0) {
            return 0;
        }
        v = (v << 4) | (apr_uint64_t)d;
    }
    /* 2^56 is exact in a double, and so is every multiple below it that
     * the comparison needs to be right for. */
    return (double)v < rate * 72057594037927936.0;
}

/* ---- the queue ---------------------------------------------------------- */

apr_status_t mg_otlp_queue_create(mg_otlp_queue **out, apr_uint32_t size,
                                  apr_uint32_t batch, apr_pool_t *p)
{
    mg_otlp_queue *q = apr_pcalloc(p, sizeof(*q));
    apr_status_t rv;

    if (size < 1) {
        size = 1;
    }
    q->ring = apr_palloc(p, sizeof(*q->ring) * size);
    q->size = size;
    q->batch = batch < 1 ? 1 : batch > size ? size : batch;
    if ((rv = apr_thread_mutex_create(&q->lock, APR_THREAD_MUTEX_DEFAULT, p))
        != APR_SUCCESS
        || (rv = apr_thread_cond_create(&q->ready, p)) != APR_SUCCESS) {
        return rv;
    }
    *out = q;
    return APR_SUCCESS;
}

int mg_otlp_queue_push(mg_otlp_queue *q, const mg_otlp_span *span)
{
    int wake;

    apr_thread_mutex_lock(q->lock);
    if (q->count == q->size || q->stopping) {
        apr_thread_mutex_unlock(q->lock);
        return 0;
    }
    q->ring[(q->head + q->count) % q->size] = *span;
    q->count++;
    wake = q->count == q->batch;
    apr_thread_mutex_unlock(q->lock);
    if (wake) {
        apr_thread_cond_signal(q->ready);
    }
    return 1;
}

apr_uint32_t mg_otlp_queue_take(mg_otlp_queue *q, mg_otlp_span *out,
                                apr_uint32_t max, apr_interval_time_t wait)
{
    apr_uint32_t n, i;

    apr_thread_mutex_lock(q->lock);
    if (wait > 0 && q->count < q->batch && !q->stopping) {
        /* One wait: a spurious wake-up sends a smaller batch early, which
         * is harmless. */
        apr_thread_cond_timedwait(q->ready, q->lock, wait);
    }
    n = q->count < max ? q->count : max;
    for (i = 0; i < n; i++) {
        out[i] = q->ring[(q->head + i) % q->size];
    }
    q->head = (q->head + n) % q->size;
    q->count -= n;
    apr_thread_mutex_unlock(q->lock);
    return n;
}

void mg_otlp_queue_stop(mg_otlp_queue *q)
{
    apr_thread_mutex_lock(q->lock);
    q->stopping = 1;
    apr_thread_mutex_unlock(q->lock);
    apr_thread_cond_broadcast(q->ready);
}

/* ---- OTLP JSON ---------------------------------------------------------- */

static int add_attr(json_t *attrs, const char *key, json_t *value)
{
    json_t *a = json_object();

    if (!a || !value) {
        json_decref(a);
        json_decref(value);
        return -1;
    }
    json_object_set_new(a, "key", json_string(key));
    json_object_set_new(a, "value", value);
    return json_array_append_new(attrs, a);
}

static void add_str(json_t *attrs, const char *key, const char *v)
{
    json_t *val;

    if (!v || !*v) {
        return;
    }
    val = json_object();
    json_object_set_new(val, "stringValue", json_string(v));
    add_attr(attrs, key, val);
}

/* OTLP JSON: 64-bit integers are decimal strings. */
static void add_int(json_t *attrs, const char *key, apr_int64_t v)
{
    char text[32];
    json_t *val = json_object();

    apr_snprintf(text, sizeof(text), "%" APR_INT64_T_FMT, v);
    json_object_set_new(val, "intValue", json_string(text));
    add_attr(attrs, key, val);
}

static json_t *nanos(apr_time_t usec)
{
    char text[32];

    apr_snprintf(text, sizeof(text), "%" APR_UINT64_T_FMT "000",
                 (apr_uint64_t)(usec > 0 ? usec : 0));
    return json_string(text);
}

static json_t *span_json(const mg_otlp_span *s)
{
    json_t *o = json_object(), *attrs = json_array(), *status;
    const char *name = s->route[0] ? s->route : "gateway";

    json_object_set_new(o, "traceId", json_string(s->trace_id));
    json_object_set_new(o, "spanId", json_string(s->span_id));
    if (s->parent_id[0]) {
        json_object_set_new(o, "parentSpanId", json_string(s->parent_id));
    }
    json_object_set_new(o, "name", json_pack("s++", s->method, " ", name));
    json_object_set_new(o, "kind", json_integer(2));     /* SERVER */
    json_object_set_new(o, "startTimeUnixNano", nanos(s->start));
    json_object_set_new(o, "endTimeUnixNano",
                        nanos(s->end >= s->start ? s->end : s->start));
    add_str(attrs, "http.request.method", s->method);
    add_int(attrs, "http.response.status_code", s->status);
    add_str(attrs, "modelgate.request_id", s->request_id);
    add_str(attrs, "modelgate.decision", s->decision);
    add_str(attrs, "modelgate.degrade_action", s->action);
    add_str(attrs, "modelgate.limit", s->limit);
    add_str(attrs, "modelgate.route", s->route);
    add_str(attrs, "modelgate.model", s->model);
    add_str(attrs, "modelgate.tier", s->tier);
    add_str(attrs, "modelgate.tenant", s->tenant);
    if (s->upstream_status) {
        add_int(attrs, "modelgate.upstream.status_code", s->upstream_status);
    }
    if (s->prompt_tokens >= 0) {
        add_int(attrs, "gen_ai.usage.input_tokens", s->prompt_tokens);
        add_int(attrs, "gen_ai.usage.output_tokens", s->completion_tokens);
        add_int(attrs, "modelgate.spend_nano", (apr_int64_t)s->spend);
    }
    add_str(attrs, "modelgate.sampling", s->kept ? "kept" : "sampled");
    json_object_set_new(o, "attributes", attrs);
    /* A server span's 4xx is the client's error, not the span's (the
     * OpenTelemetry HTTP conventions): only 5xx sets ERROR. */
    status = json_object();
    json_object_set_new(status, "code", json_integer(s->status >= 500 ? 2
                                                                      : 0));
    json_object_set_new(o, "status", status);
    return o;
}

char *mg_otlp_encode(const mg_otlp_resource *res, const mg_otlp_span *spans,
                     apr_uint32_t n)
{
    json_t *root, *rattrs, *spans_json, *scope;
    char *text;
    apr_uint32_t i;

    rattrs = json_array();
    add_str(rattrs, "service.name", res->service_name ? res->service_name
                                                      : "mod_modelgate");
    add_str(rattrs, "host.name", res->host_name);
    spans_json = json_array();
    for (i = 0; i < n; i++) {
        json_array_append_new(spans_json, span_json(&spans[i]));
    }
    scope = json_pack("{s:s,s:s}", "name", "mod_modelgate", "version",
                      res->version ? res->version : "");
    root = json_pack("{s:[{s:{s:o},s:[{s:o,s:o}]}]}",
                     "resourceSpans", "resource", "attributes", rattrs,
                     "scopeSpans", "scope", scope, "spans", spans_json);
    if (!root) {
        return NULL;
    }
    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}
