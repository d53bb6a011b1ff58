/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_otlp.h -- span export as plain data: the tail-sampling decision, the
 * bounded in-memory queue spans wait in, and the OTLP/HTTP JSON body of a
 * batch (opentelemetry-proto's ExportTraceServiceRequest in its JSON
 * mapping).  APR and jansson only: no httpd, no libcurl; the glue
 * (mod_modelgate_otlp.c) fills spans in log_transaction and sends batches
 * from a thread.
 *
 * A span is copied into a fixed-size record (mg_otlp_span): the queue is
 * allocated once, a push never allocates, and a full queue refuses the
 * span (counted by the caller) instead of growing or waiting.
 */
#ifndef MG_OTLP_H
#define MG_OTLP_H

#include <apr_pools.h>
#include <apr_thread_mutex.h>
#include <apr_thread_cond.h>
#include <apr_time.h>

/** Room for a declared name (MG_POLICY_NAME_MAX is 64; models may be
 *  longer: cut, never overrun). */
#define MG_OTLP_NAME 80

/** One request's span, as queued. */
typedef struct mg_otlp_span {
    char trace_id[33];        /**< 32 lower-case hex digits */
    char span_id[17];         /**< the gateway's span */
    char parent_id[17];       /**< the client's span; "" when none */
    char request_id[129];
    char method[16];
    char decision[24];        /**< mg_metrics_outcome_names */
    char action[24];          /**< degrade action; "" when none */
    char limit[MG_OTLP_NAME]; /**< binding limit; "" when none */
    char route[MG_OTLP_NAME];
    char model[MG_OTLP_NAME];
    char tier[MG_OTLP_NAME];
    char tenant[MG_OTLP_NAME];
    apr_time_t start;         /**< wall clock, microseconds */
    apr_time_t end;
    int status;
    int upstream_status;      /**< 0: none */
    apr_int64_t prompt_tokens;     /**< -1: not known */
    apr_int64_t completion_tokens;
    apr_uint64_t spend;       /**< nano-units */
    int kept;                 /**< 1: kept for its outcome (tail rule);
                                   0: sampled at the rate */
} mg_otlp_span;

/** Copy `src` into `dst` of `size` bytes, cut if longer; NULL is "". */
void mg_otlp_copy(char *dst, apr_size_t size, const char *src);

/**
 * The tail rule: is a request with this outcome worth a span whatever the
 * rate?  Everything but an admitted request that the upstream (or the
 * cache) answered without a server error: refused (429, 401, 4xx of the
 * gate), degraded, shed, breaker-refused, store failures, and every
 * answer of 5xx.
 * @param allowed  the decision was "allowed" or "cached"
 */
int mg_otlp_must_keep(int allowed, int status);

/**
 * The rate's decision for the others, from the trace id alone (as
 * OpenTelemetry's TraceIdRatioBased sampler): the trace id's last 14 hex
 * digits (56 bits) below rate x 2^56.  So every gateway (and any service
 * using the same rule) keeps or drops a trace alike, and a test can
 * choose.  rate <= 0: none; rate >= 1: all; a malformed id: none.
 */
int mg_otlp_sampled(const char *trace_id, double rate);

/** A bounded queue of spans (one per process), for any thread. */
typedef struct mg_otlp_queue {
    apr_thread_mutex_t *lock;
    apr_thread_cond_t *ready; /**< signalled at a full batch, or to stop */
    mg_otlp_span *ring;
    apr_uint32_t size;        /**< capacity */
    apr_uint32_t head;        /**< the oldest span */
    apr_uint32_t count;
    apr_uint32_t batch;       /**< the consumer is woken at this many */
    int stopping;
} mg_otlp_queue;

/** Make a queue of `size` spans (>= 1); woken at `batch` queued. */
apr_status_t mg_otlp_queue_create(mg_otlp_queue **q, apr_uint32_t size,
                                  apr_uint32_t batch, apr_pool_t *p);

/** Add a copy of `span`; 0 when the queue is full (nothing is waited
 *  for), 1 when queued. */
int mg_otlp_queue_push(mg_otlp_queue *q, const mg_otlp_span *span);

/**
 * Take up to `max` spans into `out`, oldest first, waiting at most `wait`
 * for a full batch or a stop (0: do not wait).
 * @return how many were taken
 */
apr_uint32_t mg_otlp_queue_take(mg_otlp_queue *q, mg_otlp_span *out,
                                apr_uint32_t max, apr_interval_time_t wait);

/** Wake the consumer for good: takes stop waiting. */
void mg_otlp_queue_stop(mg_otlp_queue *q);

/** What the exported spans say about where they come from. */
typedef struct mg_otlp_resource {
    const char *service_name; /**< service.name */
    const char *host_name;    /**< host.name; NULL: left out */
    const char *version;      /**< the instrumentation scope's version */
} mg_otlp_resource;

/**
 * The OTLP/HTTP JSON body for `n` spans: one resourceSpans with one
 * scopeSpans ("mod_modelgate").  Ids are hex strings, 64-bit integers
 * decimal strings, as the OTLP JSON mapping says.
 * @return malloc'ed NUL-terminated text (free() it), NULL on failure
 */
char *mg_otlp_encode(const mg_otlp_resource *res, const mg_otlp_span *spans,
                     apr_uint32_t n);

#endif /* MG_OTLP_H */
