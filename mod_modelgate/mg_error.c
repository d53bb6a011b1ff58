/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_error.c -- OpenAI-style error bodies, serialised by jansson so every
 * message is escaped correctly whatever it holds.
 */
#include <stdlib.h>
#include <apr_strings.h>
#include <jansson.h>
#include "mg_error.h"

const char *mg_error_json(apr_pool_t *p, const char *message,
                          const char *type, const char *code)
{
    return mg_error_json_param(p, message, type, NULL, code);
}

const char *mg_error_json_param(apr_pool_t *p, const char *message,
                                const char *type, const char *param,
                                const char *code)
{
    json_t *error, *body;
    char *text;
    const char *out;

    error = json_pack("{s:s, s:s, s:s?, s:s}", "message", message,
                      "type", type, "param", param, "code", code);
    if (!error) {
        /* jansson refuses text that is not UTF-8: keep type and code,
         * which are the contract, and say less. */
        error = json_pack("{s:s, s:s, s:s?, s:s}", "message",
                          "(message withheld: not valid UTF-8)",
                          "type", type, "param", param, "code", code);
    }
    body = error ? json_pack("{s:o}", "error", error) : NULL;
    text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(body);
    if (!text) {
        /* Allocation failure, or a type or code that is not UTF-8 (they
         * are constants): still answer in JSON. */
        return "{\"error\":{\"message\":\"internal error\",\"type\":"
               "\"server_error\",\"param\":null,\"code\":\"gateway_error\"}}";
    }
    out = apr_pstrcat(p, text, "\n", NULL);
    free(text);
    return out;
}
