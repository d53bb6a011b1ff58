/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_error.h -- error bodies in the shape OpenAI-compatible clients parse.
 *
 *     {"error":{"message":"...","type":"...","param":null,"code":"..."}}
 *
 * SDKs map the HTTP status to a typed exception and read `code`; the codes
 * below are the gateway's stable contract (docs/ARCHITECTURE.md lists them).
 * Messages never hold a secret: callers pass key ids, never keys.
 */
#ifndef MG_ERROR_H
#define MG_ERROR_H

#include <apr_pools.h>

/* error.code values */
#define MG_ERR_MISSING_KEY      "missing_api_key"
#define MG_ERR_INVALID_KEY      "invalid_api_key"
#define MG_ERR_RATE_LIMITED     "rate_limit_exceeded"
#define MG_ERR_UPSTREAM_DOWN    "upstream_unavailable"
#define MG_ERR_UPSTREAM_TIMEOUT "upstream_timeout"
#define MG_ERR_UPSTREAM_SATURATED "upstream_saturated"
#define MG_ERR_GATEWAY          "gateway_error"
#define MG_ERR_INVALID_JSON     "invalid_json"
#define MG_ERR_INVALID_BODY     "invalid_body"
#define MG_ERR_TOO_LARGE        "request_too_large"
#define MG_ERR_MODEL_NOT_FOUND  "model_not_found"
#define MG_ERR_UNKNOWN_VERSION  "unknown_api_version"
#define MG_ERR_UNSUPPORTED_MEDIA_TYPE "unsupported_media_type"
#define MG_ERR_UNSUPPORTED_ENCODING   "unsupported_encoding"
#define MG_ERR_BODY_TIMEOUT     "request_timeout"
#define MG_ERR_NOT_SUPPORTED    "not_supported"
#define MG_ERR_METHOD_NOT_ALLOWED "method_not_allowed"

/* error.type values */
#define MG_ERRT_REQUEST   "invalid_request_error"
#define MG_ERRT_REQUESTS  "requests"        /* a request-count limit, as OpenAI */
#define MG_ERRT_TOKENS    "tokens"          /* a token limit, as OpenAI */
#define MG_ERRT_SERVER    "server_error"

#define MG_ERR_MAX_TOKENS       "max_tokens_exceeded"
#define MG_ERR_INSUFFICIENT_QUOTA "insufficient_quota"

/** The JSON text of an error body, allocated from `p`. */
const char *mg_error_json(apr_pool_t *p, const char *message,
                          const char *type, const char *code);

/** The same, naming the request parameter at fault (`param`). */
const char *mg_error_json_param(apr_pool_t *p, const char *message,
                                const char *type, const char *param,
                                const char *code);

#endif /* MG_ERROR_H */
