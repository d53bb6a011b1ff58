/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_body.c -- reading and rewriting OpenAI-style request bodies (see
 * mg_body.h).  mg_json_scan validates and finds the members read, without
 * a tree; a small scanner over the already validated text finds where a
 * value stands, so a rewrite changes only it.
 */
#include <string.h>
#include <apr_strings.h>
#include <jansson.h>
#include "mg_body.h"
#include "mg_json_scan.h"

/* The members read, in the order of mg_body_inspect's array. */
enum { M_MODEL, M_STREAM, M_MAX_COMPLETION, M_MAX_TOKENS, M_COUNT };

/* A token cap's member: 0 when it is neither absent, null nor a whole
 * number >= 0.  Keeps the larger of two in max_tokens, the other in
 * other_cap. */
static int cap_of(const mg_json_member *v, const char *field,
                  mg_body_info *info)
{
    if (v->kind == MG_JSON_ABSENT || v->kind == MG_JSON_NULL) {
        return 1;
    }
    if (v->kind != MG_JSON_INTEGER || v->integer < 0) {
        return 0;
    }
    if (!info->max_tokens_field) {
        info->max_tokens = v->integer;
        info->max_tokens_field = field;
    }
    else if (v->integer > info->max_tokens) {
        info->other_cap = info->max_tokens;
        info->other_cap_field = info->max_tokens_field;
        info->max_tokens = v->integer;
        info->max_tokens_field = field;
    }
    else {
        info->other_cap = v->integer;
        info->other_cap_field = field;
    }
    return 1;
}

mg_body_status mg_body_inspect(apr_pool_t *p, const char *buf,
                               apr_size_t len, mg_body_info *info,
                               const char **why)
{
    mg_json_member m[M_COUNT], *v;
    mg_json_result res;
    apr_size_t n = 0;

    info->model = NULL;
    info->stream = 0;
    info->max_tokens = info->other_cap = -1;
    info->max_tokens_field = info->other_cap_field = NULL;
    *why = NULL;
    m[M_MODEL].name = "model";
    m[M_STREAM].name = "stream";
    m[M_MAX_COMPLETION].name = "max_completion_tokens";
    m[M_MAX_TOKENS].name = "max_tokens";
    /* Validated as jansson would (JSON_REJECT_DUPLICATES), without a tree:
     * a root member given twice is refused, for the gateway and the model
     * server must not read different values from one body; a nested one is
     * the model server's business (mg_json_scan.h). */
    if (mg_json_scan(p, buf, len, m, M_COUNT, &res) != 0) {
        *why = apr_psprintf(p, "The request body is not valid JSON: %s "
                            "(line %d, column %d).", res.error, res.line,
                            res.column);
        return MG_BODY_MALFORMED;
    }
    if (res.root != MG_JSON_OBJECT) {
        *why = "The request body must be a JSON object.";
        return MG_BODY_INVALID;
    }
    v = &m[M_MODEL];
    if (v->kind != MG_JSON_ABSENT) {
        if (v->kind == MG_JSON_STRING) {
            /* Escapes decoded ("mock\u002dsmall" is "mock-small"), as the
             * model server reads it; the scan refused \u0000. */
            if (v->escaped) {
                info->model = mg_json_string(p, buf, v->start, v->end, &n);
            }
            else {
                n = v->end - v->start - 2;
                info->model = apr_pstrmemdup(p, buf + v->start + 1, n);
            }
        }
        if (v->kind != MG_JSON_STRING || n == 0 || n > MG_BODY_MODEL_MAX) {
            info->model = NULL;
            *why = apr_psprintf(p, "'model' must be a non-empty string of "
                                "at most %d bytes.", MG_BODY_MODEL_MAX);
            return MG_BODY_INVALID;
        }
    }
    v = &m[M_STREAM];
    if (v->kind != MG_JSON_ABSENT && v->kind != MG_JSON_NULL) {
        if (v->kind != MG_JSON_TRUE && v->kind != MG_JSON_FALSE) {
            *why = "'stream' must be true or false.";
            return MG_BODY_INVALID;
        }
        info->stream = v->kind == MG_JSON_TRUE;
    }
    /* Both caps are read: OpenAI's newer name wins at OpenAI and vLLM,
     * older servers read only max_tokens, and a body that sends both must
     * not have its ceiling checked and reserved on the smaller while the
     * model server honours the larger. */
    if (!cap_of(&m[M_MAX_COMPLETION], "max_completion_tokens", info)
        || !cap_of(&m[M_MAX_TOKENS], "max_tokens", info)) {
        *why = "'max_tokens' and 'max_completion_tokens' must be "
               "whole numbers of at least 0.";
        return MG_BODY_INVALID;
    }
    return MG_BODY_OK;
}

/* ---- where a value stands in the text -------------------------------------- */

static apr_size_t skip_ws(const char *b, apr_size_t len, apr_size_t i)
{
    while (i < len && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n'
                       || b[i] == '\r')) {
        i++;
    }
    return i;
}

/* b[i] is '"': the index after the closing quote. */
static apr_size_t skip_string(const char *b, apr_size_t len, apr_size_t i)
{
    for (i++; i < len; i++) {
        if (b[i] == '\\') {
            i++;
        }
        else if (b[i] == '"') {
            return i + 1;
        }
    }
    return len;
}

/* The index after the value starting at b[i] (the text is valid JSON). */
static apr_size_t skip_value(const char *b, apr_size_t len, apr_size_t i)
{
    int depth = 0;

    if (b[i] == '"') {
        return skip_string(b, len, i);
    }
    if (b[i] != '{' && b[i] != '[') {
        /* number, true, false, null */
        while (i < len && !strchr(",}] \t\r\n", b[i])) {
            i++;
        }
        return i;
    }
    for (; i < len; i++) {
        if (b[i] == '"') {
            i = skip_string(b, len, i) - 1;
        }
        else if (b[i] == '{' || b[i] == '[') {
            depth++;
        }
        else if ((b[i] == '}' || b[i] == ']') && --depth == 0) {
            return i + 1;
        }
    }
    return len;
}

/* Is the JSON string b[from, to) (quotes included) the text `name`? */
static int key_is(const char *b, apr_size_t from, apr_size_t to,
                  const char *name)
{
    apr_size_t n = strlen(name);
    json_t *k;
    int is;

    if (to - from == n + 2 && !memcmp(b + from + 1, name, n)) {
        return 1;
    }
    if (!memchr(b + from, '\\', to - from)) {
        return 0;
    }
    /* Escapes ("mod\u0065l") are rare; let jansson decode them. */
    k = json_loadb(b + from, to - from, JSON_DECODE_ANY, NULL);
    is = k && json_is_string(k) && !strcmp(json_string_value(k), name);
    json_decref(k);
    return is;
}

/* The member `name` of the object whose '{' is b[obj]: its value stands at
 * [*vs, *ve) (*vs == *ve == 0 when there is none).  *last is where a new
 * last member goes: just after the last member's value, or just after the
 * brace when the object is *empty.  0 when b[obj] is not an object. */
static int find_member(const char *b, apr_size_t len, apr_size_t obj,
                       const char *name, apr_size_t *vs, apr_size_t *ve,
                       apr_size_t *last, int *empty)
{
    apr_size_t i = obj, ks, ke, v;

    *vs = *ve = 0;
    *empty = 1;
    if (i >= len || b[i] != '{') {
        return 0;
    }
    *last = ++i;
    for (;;) {
        i = skip_ws(b, len, i);
        if (i >= len || b[i] == '}') {
            return 1;
        }
        if (b[i] != '"') {
            return 0;
        }
        ks = i;
        ke = i = skip_string(b, len, i);
        i = skip_ws(b, len, i);
        if (i >= len || b[i] != ':') {
            return 0;
        }
        v = i = skip_ws(b, len, i + 1);
        if (i >= len) {
            return 0;
        }
        *last = i = skip_value(b, len, i);
        *empty = 0;
        if (!*ve && key_is(b, ks, ke, name)) {
            *vs = v;
            *ve = i;
        }
        i = skip_ws(b, len, i);
        if (i < len && b[i] == ',') {
            i++;
        }
    }
}

/* Where the top-level "model" value stands: [*vs, *ve), or the index just
 * after the opening brace when there is none (*vs == *ve == 0). */
static int find_model(const char *b, apr_size_t len, apr_size_t *vs,
                      apr_size_t *ve, apr_size_t *open)
{
    apr_size_t obj = skip_ws(b, len, 0), last;
    int empty;

    *open = obj + 1;
    return find_member(b, len, obj, "model", vs, ve, &last, &empty);
}

const char *mg_body_set_model(apr_pool_t *p, const char *buf, apr_size_t len,
                              const char *model, char **out,
                              apr_size_t *outlen)
{
    apr_size_t vs, ve, open = 0, nlen, i;
    json_t *s = json_string(model);
    char *text, *o;
    int empty;

    if (!s) {
        return "the model name is not UTF-8";
    }
    text = json_dumps(s, JSON_ENCODE_ANY);
    json_decref(s);
    if (!text) {
        return "out of memory";
    }
    if (!find_model(buf, len, &vs, &ve, &open)) {
        free(text);
        return "the body is not a JSON object";
    }
    nlen = strlen(text);
    if (ve > vs) {
        /* Replace the value's bytes only. */
        *outlen = vs + nlen + (len - ve);
        o = *out = apr_palloc(p, *outlen + 1);
        memcpy(o, buf, vs);
        memcpy(o + vs, text, nlen);
        memcpy(o + vs + nlen, buf + ve, len - ve);
    }
    else {
        /* No model yet: it becomes the first member. */
        i = skip_ws(buf, len, open);
        empty = i < len && buf[i] == '}';
        *outlen = open + 8 + nlen + !empty + (len - open);
        o = *out = apr_palloc(p, *outlen + 1);
        memcpy(o, buf, open);
        o += open;
        memcpy(o, "\"model\":", 8);
        o += 8;
        memcpy(o, text, nlen);
        o += nlen;
        if (!empty) {
            *o++ = ',';
        }
        memcpy(o, buf + open, len - open);
    }
    (*out)[*outlen] = '\0';
    free(text);
    return NULL;
}

/* buf with [from, to) replaced by `ins`. */
static void splice(apr_pool_t *p, const char *buf, apr_size_t len,
                   apr_size_t from, apr_size_t to, const char *ins,
                   char **out, apr_size_t *outlen)
{
    apr_size_t n = strlen(ins);
    char *o;

    *outlen = from + n + (len - to);
    o = *out = apr_palloc(p, *outlen + 1);
    memcpy(o, buf, from);
    memcpy(o + from, ins, n);
    memcpy(o + from + n, buf + to, len - to);
    o[*outlen] = '\0';
}

const char *mg_body_want_usage(apr_pool_t *p, const char *buf,
                               apr_size_t len, int *changed, char **out,
                               apr_size_t *outlen)
{
    apr_size_t vs, ve, last, ivs, ive, ilast;
    int empty, iempty;

    *changed = 0;
    if (!find_member(buf, len, skip_ws(buf, len, 0), "stream_options", &vs,
                     &ve, &last, &empty)) {
        return "the body is not a JSON object";
    }
    if (ve == vs) {
        /* No stream_options: it becomes the last member. */
        splice(p, buf, len, last, last,
               empty ? "\"stream_options\":{\"include_usage\":true}"
                     : ",\"stream_options\":{\"include_usage\":true}",
               out, outlen);
    }
    else if (buf[vs] == 'n') {
        /* null: as good as absent */
        splice(p, buf, len, vs, ve, "{\"include_usage\":true}", out,
               outlen);
    }
    else if (buf[vs] != '{') {
        return "stream_options is not an object";
    }
    else {
        find_member(buf, len, vs, "include_usage", &ivs, &ive, &ilast,
                    &iempty);
        if (ive == ivs) {
            splice(p, buf, len, ilast, ilast,
                   iempty ? "\"include_usage\":true"
                          : ",\"include_usage\":true", out, outlen);
        }
        else if (buf[ivs] == 't') {
            return NULL;        /* asked for already: nothing to do */
        }
        else if (buf[ivs] == 'f' || buf[ivs] == 'n') {
            splice(p, buf, len, ivs, ive, "true", out, outlen);
        }
        else {
            return "stream_options.include_usage is not true or false";
        }
    }
    *changed = 1;
    return NULL;
}

const char *mg_body_set_int(apr_pool_t *p, const char *buf, apr_size_t len,
                            const char *name, apr_int64_t value, char **out,
                            apr_size_t *outlen)
{
    apr_size_t vs, ve, last;
    int empty;
    const char *text = apr_psprintf(p, "%" APR_INT64_T_FMT, value);

    if (!find_member(buf, len, skip_ws(buf, len, 0), name, &vs, &ve, &last,
                     &empty)) {
        return "the body is not a JSON object";
    }
    if (ve == vs) {
        splice(p, buf, len, last, last, apr_psprintf(p, "%s\"%s\":%s",
                                                     empty ? "" : ",", name,
                                                     text), out, outlen);
    }
    else {
        splice(p, buf, len, vs, ve, text, out, outlen);
    }
    return NULL;
}
