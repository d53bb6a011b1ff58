/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_json_scan.h -- a strict JSON validator that also finds a few
 * top-level members, without building a tree.
 *
 * Every POST carries a JSON body of which the gateway reads a handful of
 * top-level members (mg_body.h).  Building a jansson tree for that costs
 * ~140 instructions a byte (a malloc per value, a buffer append per string
 * byte); this scanner validates the same grammar in one pass over the bytes
 * and reports the members asked for as byte spans.
 *
 * What it accepts is what json_loadb(buf, len, JSON_REJECT_DUPLICATES)
 * accepts (jansson 2.14; the unit test test_json_scan.c checks it
 * differentially), with one documented difference:
 *  - RFC 8259 grammar; the root must be an object or an array; only
 *    whitespace may follow it;
 *  - strings: no control character (< 0x20), escapes \" \\ \/ \b \f \n \r
 *    \t \uXXXX, surrogates only in pairs, no \u0000 (jansson refuses it
 *    without JSON_ALLOW_NUL), UTF-8 well formed (no overlong form, no
 *    encoded surrogate, nothing above U+10FFFF);
 *  - numbers: integers must fit in 64 bits signed (jansson's json_int_t),
 *    reals must not overflow a double (1e400 is refused, 1e-400 is 0);
 *  - nesting: a value at depth more than MG_JSON_MAX_DEPTH (the root is at
 *    depth 1) is refused, as jansson's JSON_PARSER_MAX_DEPTH;
 *  - a member name given twice in the ROOT object is refused (the gateway
 *    and the model server must read the same model, stream, max_tokens);
 *  - DIFFERENCE: a member name given twice in a NESTED object is accepted
 *    (jansson refuses it).  Refusing it needs a key set per object, a cost
 *    on every body for members the gateway never reads; what a nested
 *    duplicate means is the model server's business;
 *  - DIFFERENCE: a NUL byte right after a number or a literal ("[1\0]") is
 *    refused; jansson drops it (its one-byte lookahead, pushed back, reads
 *    as "no byte held"), which no other parser does.
 */
#ifndef MG_JSON_SCAN_H
#define MG_JSON_SCAN_H

#include <apr_pools.h>

/** Deepest value accepted (jansson's JSON_PARSER_MAX_DEPTH). */
#define MG_JSON_MAX_DEPTH 2048

typedef enum {
    MG_JSON_ABSENT = 0,       /**< the member was not in the body */
    MG_JSON_OBJECT,
    MG_JSON_ARRAY,
    MG_JSON_STRING,
    MG_JSON_INTEGER,          /**< a number without fraction or exponent */
    MG_JSON_REAL,             /**< a number with a fraction or exponent */
    MG_JSON_TRUE,
    MG_JSON_FALSE,
    MG_JSON_NULL
} mg_json_kind;

/** A top-level member asked for, and what the scan found of it. */
typedef struct mg_json_member {
    const char *name;         /**< in: the member's name (decoded, no NUL) */
    mg_json_kind kind;        /**< out: MG_JSON_ABSENT when not found */
    apr_size_t start;         /**< out: the value's first byte */
    apr_size_t end;           /**< out: one past the value's last byte */
    apr_int64_t integer;      /**< out: the value when kind is INTEGER */
    int escaped;              /**< out: a STRING value holds escapes */
} mg_json_member;

/** The outcome of a scan. */
typedef struct mg_json_result {
    mg_json_kind root;        /**< MG_JSON_OBJECT or MG_JSON_ARRAY on success */
    const char *error;        /**< NULL on success, else why (static text) */
    apr_size_t offset;        /**< where the error was found (byte offset) */
    int line;                 /**< the same as a line (from 1) ... */
    int column;               /**< ... and a byte column (from 1) */
} mg_json_result;

/**
 * Validate `buf` (`len` bytes) and fill the `n` members asked for.
 * Allocates from `p` only for a root object of more than 48 members or a
 * member name holding escapes (the duplicate check's key set).
 * @return 0 when the text is valid JSON, -1 otherwise (res says why)
 */
int mg_json_scan(apr_pool_t *p, const char *buf, apr_size_t len,
                 mg_json_member *members, int n, mg_json_result *res);

/**
 * The decoded text of the string value at [start, end) (quotes included)
 * of a text mg_json_scan accepted, NUL-terminated, in `p`.
 * @param outlen set to its length (it holds no NUL: the scan refuses \u0000)
 */
char *mg_json_string(apr_pool_t *p, const char *buf, apr_size_t start,
                     apr_size_t end, apr_size_t *outlen);

/** Room a real's text needs past its NUL for mg_json_real_to_locale(). */
#define MG_JSON_POINT_ROOM 16

/**
 * Make the text of a JSON real what strtod reads, in place: its '.' made
 * LC_NUMERIC's decimal point (one byte or more: a module or a script may
 * set a locale whose point is ',' or U+066B), as jansson does before its
 * strtod.  The point is asked of nl_langinfo(), which is thread-safe
 * (localeconv() fills one static struct for every thread).
 * @param t a NUL-terminated text, in a buffer of `size` bytes: at least
 *        its length + 1 + MG_JSON_POINT_ROOM
 * @return 0, or -1 when the point does not fit (t is left as it was)
 */
int mg_json_real_to_locale(char *t, apr_size_t size);

/**
 * The reverse, for a real that printf wrote in LC_NUMERIC's decimal point:
 * JSON's '.' instead, in place (jansson's dump does the same).
 * @param t a NUL-terminated text of `len` bytes
 * @return its new length
 */
apr_size_t mg_json_real_from_locale(char *t, apr_size_t len);

#endif /* MG_JSON_SCAN_H */
