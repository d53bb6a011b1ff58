/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_headers.h -- the rate limit response fields a decision implies.
 *
 * RateLimit-Policy and RateLimit follow draft-ietf-httpapi-ratelimit-
 * headers-10: every policy that applied is listed in RateLimit-Policy
 * ("pro";q=100;w=60), and RateLimit gives the remaining units (r) and the
 * seconds until they are restored (t) of the binding policy.  The legacy
 * X-RateLimit-Limit/-Remaining/-Reset carry the same numbers (Reset as
 * delta seconds, like RateLimit's t).  A rejection adds Retry-After, the
 * retry-after-ms that OpenAI's SDKs honour, and x-should-retry, which tells
 * those SDKs to stop retrying when the wait is longer than they would wait.
 *
 * A request whose cost is above what a limit can ever hold (mg_decision
 * `never`) gets no Retry-After at all: no time would admit it.  That limit
 * binds, RateLimit's t says when its allowance is whole again, and
 * x-should-retry is false.
 */
#ifndef MG_HEADERS_H
#define MG_HEADERS_H

#include <apr_pools.h>
#include "mg_limit.h"

/** Waits longer than this are announced with x-should-retry: false. */
#define MG_HEADERS_RETRY_HORIZON (60 * APR_USEC_PER_SEC)

typedef struct mg_headers {
    const char *policy;          /**< RateLimit-Policy */
    const char *ratelimit;       /**< RateLimit */
    const char *x_limit;         /**< X-RateLimit-Limit */
    const char *x_remaining;     /**< X-RateLimit-Remaining */
    const char *x_reset;         /**< X-RateLimit-Reset */
    const char *retry_after;     /**< Retry-After; NULL when allowed or
                                      when no wait admits the request */
    const char *retry_after_ms;  /**< retry-after-ms; NULL likewise */
    const char *should_retry;    /**< x-should-retry; NULL when allowed,
                                      "false" when no wait admits it */
} mg_headers;

/** The RateLimit-Policy item of a limit: "name";q=Q;w=W. */
const char *mg_headers_policy_item(apr_pool_t *p, const char *name,
                                   const mg_limit_spec *spec);

/** Whole seconds, rounded up: a client that waits that long is on time. */
apr_int64_t mg_headers_seconds(apr_interval_time_t usec);

/**
 * Fill `h` for the decision `d` over `layers`.  With no layers every field
 * is NULL.
 */
void mg_headers_build(apr_pool_t *p, const mg_layer *layers,
                      const mg_decision *d, mg_headers *h);

/** OpenAI's rate limit headers, for tools written against its API. */
typedef struct mg_headers_openai {
    const char *limit_requests;     /**< x-ratelimit-limit-requests */
    const char *remaining_requests; /**< x-ratelimit-remaining-requests */
    const char *reset_requests;     /**< x-ratelimit-reset-requests ("6m0s") */
    const char *limit_tokens;       /**< x-ratelimit-limit-tokens */
    const char *remaining_tokens;   /**< x-ratelimit-remaining-tokens */
    const char *reset_tokens;       /**< x-ratelimit-reset-tokens */
} mg_headers_openai;

/**
 * Fill `h` from the decision `d` over `layers`: the -requests trio from
 * the request-counting layers, the -tokens trio from the token layers
 * (budgets are neither), each from the layer of its kind that binds as
 * mg_limit_combine picks: the one no wait admits the request under
 * (mg_decision `never`), else a refusing enforced one with the longest wait,
 * else the one with the smallest share left of what it can hold
 * (mg_limit_holds).  A kind with no layer leaves its trio NULL.
 */
void mg_headers_build_openai(apr_pool_t *p, const mg_layer *layers,
                             const mg_decision *d, mg_headers_openai *h);

/** A wait as OpenAI writes it (Go's duration format): "17ms", "1s",
 *  "1.5s", "6m0s", "1h0m0s"; rounded up to the millisecond. */
const char *mg_headers_duration(apr_pool_t *p, apr_interval_time_t usec);

/**
 * Does the header field `name` mean `want` (or, with `prefix`, begin with
 * it)?  Letters compare without case, and '_' equals '-': CGI, WSGI and
 * many HTTP stacks behind a proxy read X_Foo and X-Foo as the same field
 * (HTTP_X_FOO), so a name the gateway owns must be recognised in both.
 */
int mg_header_name_is(const char *name, const char *want, int prefix);

/** The gateway's namespace: request headers a client sends and response
 *  headers an upstream sends under it never pass (however spelt, as
 *  mg_header_name_is() compares). */
#define MG_HEADER_NAMESPACE "X-Modelgate-"

/**
 * The families of the response fields the gateway writes, as
 * mg_header_family() tells them.  Where the gateway writes any field of a
 * family on a response (a final refusal writes x-should-retry without
 * Retry-After), the upstream's fields of it are the gateway's to say
 * (dropped); where it writes none, they are the only ones there are
 * (passed).
 */
#define MG_HF_OURS      0x01u  /**< X-Modelgate-*: always the gateway's */
#define MG_HF_RATELIMIT 0x02u  /**< RateLimit-Policy, RateLimit,
                                    X-RateLimit-Limit/-Remaining/-Reset */
#define MG_HF_RETRY     0x04u  /**< Retry-After, retry-after-ms,
                                    x-should-retry */
#define MG_HF_REQUESTS  0x08u  /**< x-ratelimit-{limit,remaining,reset}-
                                    requests */
#define MG_HF_TOKENS    0x10u  /**< x-ratelimit-{limit,remaining,reset}-
                                    tokens */

/**
 * The family (one MG_HF_* bit) of the response field `name`, or 0 for a
 * field the gateway never writes.  Compared as mg_header_name_is() does:
 * X_RateLimit_Remaining is X-RateLimit-Remaining.  Only a name beginning
 * with R or X can have one: a caller on a hot path may test that first.
 */
unsigned mg_header_family(const char *name);

/**
 * The value of a Connection header without the tokens that begin with
 * `prefix` as mg_header_name_is() compares (names a client could use to
 * make mod_proxy strip the gateway's own headers as hop-by-hop); NULL when
 * nothing is left; `list` itself, unallocated, when nothing was dropped.
 */
const char *mg_header_connection_without(apr_pool_t *p, const char *list,
                                         const char *prefix);

#endif /* MG_HEADERS_H */
