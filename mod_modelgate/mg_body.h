/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_body.h -- what an OpenAI-style request body says, and changing the
 * model it names.
 *
 * The gateway reads three fields of a JSON request body: `model` (routing,
 * per-model limits), `stream` and the token cap (`max_completion_tokens`
 * and `max_tokens`: the larger when a client sends both, for a model server
 * may read either).  Everything else passes through untouched: when the
 * model must change (an alias, a fallback), only the bytes of that one
 * value are replaced, so numbers, key order and spacing reach the model
 * server as the client wrote them.
 *
 * The body is validated without a tree (mg_json_scan.h): what jansson's
 * json_loadb(JSON_REJECT_DUPLICATES) accepts, but for two chosen
 * differences.  A member named twice in the ROOT object is refused (the
 * gateway and the model server must read the same model, stream and token
 * cap, however the name is spelt: "model", "mod\u0065l"); one named twice
 * in a NESTED object is accepted and forwarded as sent (refusing it needs a
 * key set per object on every body, for members the gateway never reads).
 * A NUL byte right after a number, which jansson drops, is refused.
 */
#ifndef MG_BODY_H
#define MG_BODY_H

#include <apr_pools.h>

/** Longest model name accepted. */
#define MG_BODY_MODEL_MAX 256

typedef struct mg_body_info {
    const char *model;        /**< NULL when the body names none */
    int stream;               /**< "stream": true */
    apr_int64_t max_tokens;   /**< the token cap; -1 when none is given;
                                   the larger when both are */
    const char *max_tokens_field; /**< the member it came from
                                   (max_completion_tokens or max_tokens);
                                   NULL when none is given */
    apr_int64_t other_cap;    /**< when both are given, the other's value
                                   (never larger); else -1 */
    const char *other_cap_field; /**< ... and its member; else NULL */
} mg_body_info;

typedef enum {
    MG_BODY_OK = 0,
    MG_BODY_MALFORMED,        /**< not JSON (or a root member given twice) */
    MG_BODY_INVALID           /**< JSON, but not a request we can read */
} mg_body_status;

/**
 * Read the fields of a JSON body of `len` bytes.
 * @param why set to a sentence for the client when the status is not OK
 */
mg_body_status mg_body_inspect(apr_pool_t *p, const char *buf,
                               apr_size_t len, mg_body_info *info,
                               const char **why);

/**
 * The body with its top-level `model` set to `model` (added when absent),
 * all other bytes kept.  `buf` must have passed mg_body_inspect.
 * @return NULL on success, else why it could not be done
 */
const char *mg_body_set_model(apr_pool_t *p, const char *buf, apr_size_t len,
                              const char *model, char **out,
                              apr_size_t *outlen);

/**
 * Ask a streaming request's model server for its usage: the body with
 * `"stream_options":{"include_usage":true}` (OpenAI chat/completions and
 * completions), all other bytes kept.  When stream_options is absent (or
 * null) it is added as the last member; when it lacks include_usage,
 * include_usage is added as its last member; when include_usage is false
 * (or null) the value becomes true; when it is true already nothing
 * changes.  The caller knows then that the usage-only chunk the server
 * adds at the end of the stream was its own doing, not the client's, and
 * drops it from what the client sees (mg_usage.h, usage_only).
 * `buf` must have passed mg_body_inspect with "stream": true (a server
 * refuses stream_options on a request that does not stream).
 * @param changed set to 1 when *out and *outlen hold a new body; 0 when
 *        the body already asked for usage (or on failure: then they are
 *        not set)
 * @return NULL on success, else why it could not be done (stream_options
 *         or include_usage of a type the server would refuse anyway)
 */
const char *mg_body_want_usage(apr_pool_t *p, const char *buf,
                               apr_size_t len, int *changed, char **out,
                               apr_size_t *outlen);

/**
 * The body with its top-level `name` (a token cap: max_tokens,
 * max_completion_tokens) set to `value`: the value's bytes replaced when
 * the member is there, else the member added last; all other bytes kept.
 * `buf` must have passed mg_body_inspect.
 * @return NULL on success, else why it could not be done
 */
const char *mg_body_set_int(apr_pool_t *p, const char *buf, apr_size_t len,
                            const char *name, apr_int64_t value, char **out,
                            apr_size_t *outlen);

#endif /* MG_BODY_H */
