/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_trace.h -- W3C Trace Context (https://www.w3.org/TR/trace-context/)
 * and request ids, as plain data: parsing a client's `traceparent`,
 * starting a trace when it is absent or invalid, the gateway's own span
 * id, `tracestate` kept within the spec's limits, and `X-Request-Id`.
 *
 * Ids come from a generator seeded once per process from the system's
 * random source (apr_generate_random_bytes in the glue's child_init):
 * splitmix64 over an atomically advanced state, so every thread of a
 * process draws distinct values without a lock or a system call per
 * request.  The ids are unique and unguessable enough to correlate logs;
 * they are not secrets and nothing is authorised by them.
 */
#ifndef MG_TRACE_H
#define MG_TRACE_H

#include <apr_pools.h>

/** Hex digits of a trace id, a span (parent) id, the flags. */
#define MG_TRACE_ID_HEX   32
#define MG_TRACE_SPAN_HEX 16
/** "00-" trace "-" span "-" flags */
#define MG_TRACEPARENT_LEN 55
/** tracestate: what a vendor must propagate at least, and the largest
 *  list member it removes first when it must cut. */
#define MG_TRACESTATE_MAX        512
#define MG_TRACESTATE_MEMBER_MAX 128
#define MG_TRACESTATE_MEMBERS    32
/** X-Request-Id: at most this long, [A-Za-z0-9._:-] only. */
#define MG_REQUEST_ID_MAX 128

/** The id generator of a process (thread-safe). */
typedef struct mg_trace_rng {
    apr_uint64_t state;
} mg_trace_rng;

void mg_trace_rng_seed(mg_trace_rng *g, apr_uint64_t seed);
/** The next 64 random-looking bits; distinct for 2^64 calls. */
apr_uint64_t mg_trace_rng_next(mg_trace_rng *g);

/** A request's place in a trace. */
typedef struct mg_trace {
    char trace_id[MG_TRACE_ID_HEX + 1];
    char parent_id[MG_TRACE_SPAN_HEX + 1]; /**< the client's span; "" when
                                                 the gateway started it */
    char span_id[MG_TRACE_SPAN_HEX + 1];   /**< the gateway's span */
    char flags[3];
    int kept;                 /**< 1: the client's trace continues */
} mg_trace;

/**
 * Parse a traceparent header.  Version 00 must be exactly 55 characters;
 * a later version (not ff) at least that, followed by '-' if longer, and
 * is read as version 00.  Lower-case hex only; trace and parent ids not
 * all zeros.
 * @return 1 with `t` filled (trace_id, parent_id, flags), 0 if invalid
 */
int mg_trace_parse(const char *value, mg_trace *t);

/** The trace of a request: the client's `traceparent` (NULL: none) kept
 *  when valid, else a new trace (sampled); a new span id either way. */
void mg_trace_start(mg_trace_rng *g, const char *traceparent, mg_trace *t);

/** The traceparent to forward, "00-TRACE-SPAN-FLAGS" (56 bytes with the
 *  NUL): the gateway's span is the upstream's parent. */
void mg_trace_format(const mg_trace *t, char *out);

/**
 * The tracestate to forward: `value` itself when within the limits; when
 * longer than MG_TRACESTATE_MAX, members longer than
 * MG_TRACESTATE_MEMBER_MAX are removed first, then members from the end
 * until it fits (the spec's truncation); NULL (drop it) when it has more
 * than MG_TRACESTATE_MEMBERS members or nothing is left.
 */
const char *mg_trace_state_trim(apr_pool_t *p, const char *value);

/** Is `id` a request id the gateway passes on (1..128 of [A-Za-z0-9._:-])? */
int mg_request_id_valid(const char *id);

#endif /* MG_TRACE_H */
