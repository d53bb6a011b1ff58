/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_usage.c -- reading the token usage of model servers' answers
 * (mg_usage.c).
 *
 * Every fixture is read whole, split at every byte boundary and one byte at
 * a time, and must say the same each way: the same usage and, for event
 * streams, the same events ending at the same offsets.  A property test
 * compares random documents, split at random, with jansson's reading of
 * the whole.
 */
#include "mg_test.h"
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>
#include <jansson.h>
#include "mg_usage.h"

/* ---- feeding ------------------------------------------------------------- */

#define MAX_EVENTS 64

typedef struct scan_out {
    mg_usage result;
    apr_size_t n;                       /* events ended */
    apr_size_t end[MAX_EVENTS];         /* where, from the answer's start */
    int has_data[MAX_EVENTS];
    int done[MAX_EVENTS];
    int usage_only[MAX_EVENTS];
    mg_usage_status status[MAX_EVENTS];
} scan_out;

static void record(scan_out *o, apr_size_t at, const mg_usage_event *ev)
{
    if (o->n < MAX_EVENTS) {
        o->end[o->n] = at;
        o->has_data[o->n] = ev->has_data;
        o->done[o->n] = ev->done;
        o->usage_only[o->n] = ev->usage_only;
        o->status[o->n] = ev->usage->status;
    }
    o->n++;
}

/* Feed `t` in pieces: the first of `first` bytes, then of `step` bytes (0:
 * the rest at once). */
static void scan(mg_usage_mode mode, const char *t, apr_size_t len,
                 apr_size_t first, apr_size_t step, scan_out *o)
{
    mg_usage_scanner s;
    mg_usage_event ev;
    apr_size_t pos = 0, piece, n, off;

    memset(o, 0, sizeof(*o));
    /* mg_usage_init starts a scanner field by field, not zeroing it
     * whole: what it leaves must not matter, whatever the memory held. */
    memset(&s, 0xa5, sizeof(s));
    mg_usage_init(&s, mode);
    while (pos < len) {
        piece = pos == 0 ? first : step;
        if (piece == 0 || piece > len - pos) {
            piece = len - pos;
        }
        for (off = 0; off < piece; off += n) {
            n = mg_usage_feed(&s, t + pos + off, piece - off, &ev);
            if (ev.ended) {
                assert_int_equal(ev.end, n);
                record(o, pos + off + n, &ev);
            }
            else {
                assert_int_equal(n, piece - off);
            }
        }
        pos += piece;
    }
    mg_usage_finish(&s, &ev);
    if (ev.ended) {
        assert_int_equal(ev.end, 0);
        record(o, len, &ev);
    }
    mg_usage_result(&s, &o->result);
}

static void assert_same(const scan_out *a, const scan_out *b, const char *how)
{
    apr_size_t i;

    if (a->result.status != b->result.status
        || a->result.prompt != b->result.prompt
        || a->result.completion != b->result.completion
        || a->result.total != b->result.total
        || a->result.reported_total != b->result.reported_total
        || a->result.from_response != b->result.from_response
        || a->result.events != b->result.events
        || a->result.malformed_events != b->result.malformed_events
        || strcmp(a->result.why, b->result.why) || a->n != b->n) {
        fail_msg("%s: status %d/%d, prompt %lld/%lld, why '%s'/'%s', "
                 "events %lu/%lu", how, a->result.status, b->result.status,
                 (long long)a->result.prompt, (long long)b->result.prompt,
                 a->result.why, b->result.why, (unsigned long)a->n,
                 (unsigned long)b->n);
    }
    for (i = 0; i < a->n && i < MAX_EVENTS; i++) {
        if (a->end[i] != b->end[i] || a->has_data[i] != b->has_data[i]
            || a->done[i] != b->done[i] || a->status[i] != b->status[i]
            || a->usage_only[i] != b->usage_only[i]) {
            fail_msg("%s: event %lu differs (end %lu/%lu)", how,
                     (unsigned long)i, (unsigned long)a->end[i],
                     (unsigned long)b->end[i]);
        }
    }
}

/* Read whole, then split at every byte boundary, then byte by byte: the
 * same each way.  Returns the whole reading. */
static scan_out scan_every_way(mg_usage_mode mode, const char *t)
{
    apr_size_t len = strlen(t), k;
    scan_out whole, split;
    char how[64];

    scan(mode, t, len, 0, 0, &whole);
    for (k = 1; k < len; k++) {
        scan(mode, t, len, k, 0, &split);
        apr_snprintf(how, sizeof(how), "split at %lu", (unsigned long)k);
        assert_same(&whole, &split, how);
    }
    scan(mode, t, len, 1, 1, &split);
    assert_same(&whole, &split, "byte by byte");
    scan(mode, t, len, 3, 7, &split);
    assert_same(&whole, &split, "3, then 7 at a time");
    return whole;
}

static void assert_found(const mg_usage *u, apr_int64_t prompt,
                         apr_int64_t completion, apr_int64_t total)
{
    if (u->status != MG_USAGE_FOUND) {
        fail_msg("status %d (%s), expected FOUND", u->status, u->why);
    }
    assert_int_equal(u->prompt, prompt);
    assert_int_equal(u->completion, completion);
    assert_int_equal(u->total, total);
}

static mg_usage json_usage(const char *t)
{
    return scan_every_way(MG_USAGE_JSON, t).result;
}

/* ---- JSON answers -------------------------------------------------------- */

static void test_chat_completion_usage_anywhere(void **state)
{
    /* A message whose text talks about usage, with braces and escapes. */
    static const char *const choices =
        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
        "\"content\":\"Hello! \\\"usage\\\": {\\\"prompt_tokens\\\": 999} "
        "{[}] \\\\ \\u00e9\\ud83d\\ude00\"},\"logprobs\":null,"
        "\"finish_reason\":\"stop\"}]";
    static const char *const usage =
        "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,"
        "\"total_tokens\":19,\"prompt_tokens_details\":{\"cached_tokens\":0,"
        "\"audio_tokens\":0},\"completion_tokens_details\":"
        "{\"reasoning_tokens\":0}}";
    apr_pool_t *p = *state;
    mg_usage u;

    /* at the end */
    u = json_usage(apr_pstrcat(p, "{\"id\":\"chatcmpl-1\",\"object\":"
                               "\"chat.completion\",\"created\":1700000000,"
                               "\"model\":\"gpt-4o-mini\",", choices, ",",
                               usage, "}", NULL));
    assert_found(&u, 12, 7, 19);
    assert_int_equal(u.reported_total, 19);
    assert_int_equal(u.total_disagrees, 0);
    assert_int_equal(u.from_response, 0);
    /* at the start */
    u = json_usage(apr_pstrcat(p, "{", usage, ",", choices,
                               ",\"model\":\"m\"}", NULL));
    assert_found(&u, 12, 7, 19);
    /* in the middle, pretty-printed */
    u = json_usage(apr_pstrcat(p, "{\n  \"id\" : \"x\",\n  ", usage,
                               " ,\r\n\t", choices, "\n}\n", NULL));
    assert_found(&u, 12, 7, 19);
}

static void test_nested_usage_is_not_the_answers(void **state)
{
    mg_usage u;

    (void)state;
    u = json_usage("{\"metadata\":{\"usage\":{\"prompt_tokens\":5}},"
                   "\"choices\":[{\"message\":{\"content\":\"{\\\"usage\\\":"
                   "{\\\"prompt_tokens\\\":1}}\",\"tool_calls\":[{\"usage\":"
                   "{\"prompt_tokens\":3}}]}}],\"usage\":{\"prompt_tokens\":2,"
                   "\"completion_tokens\":3},\"x\":[{\"usage\":{}}]}");
    assert_found(&u, 2, 3, 5);
    assert_int_equal(u.reported_total, -1);

    /* only nested ones: none */
    u = json_usage("{\"metadata\":{\"usage\":{\"prompt_tokens\":5}},"
                   "\"content\":\"\\\"usage\\\":{\\\"prompt_tokens\\\":1}\","
                   "\"data\":[{\"usage\":{\"prompt_tokens\":1}}],"
                   "\"response\":{\"data\":{\"usage\":{\"input_tokens\":1}}}}");
    assert_int_equal(u.status, MG_USAGE_ABSENT);
    /* a usage member of usage's own members is skipped */
    u = json_usage("{\"usage\":{\"prompt_tokens_details\":{\"prompt_tokens\":"
                   "-5,\"total_tokens\":\"x\"},\"prompt_tokens\":4}}");
    assert_found(&u, 4, -1, 4);
    /* names that are almost usage */
    u = json_usage("{\"usag\":{\"prompt_tokens\":1},\"usages\":{\"prompt_tokens"
                   "\":1},\"Usage\":{\"prompt_tokens\":1}}");
    assert_int_equal(u.status, MG_USAGE_ABSENT);
    /* a top-level array or scalar has no usage */
    u = json_usage("[{\"usage\":{\"prompt_tokens\":1}}]");
    assert_int_equal(u.status, MG_USAGE_ABSENT);
    u = json_usage(" 42 ");
    assert_int_equal(u.status, MG_USAGE_ABSENT);
    u = json_usage("{}");
    assert_int_equal(u.status, MG_USAGE_ABSENT);
    /* no body at all */
    u = json_usage("");
    assert_int_equal(u.status, MG_USAGE_ABSENT);
    u = json_usage(" \r\n");
    assert_int_equal(u.status, MG_USAGE_ABSENT);
    /* usage: null is no usage */
    u = json_usage("{\"usage\":null}");
    assert_int_equal(u.status, MG_USAGE_ABSENT);
}

static void test_embeddings_and_completions(void **state)
{
    mg_usage u;

    (void)state;
    u = json_usage("{\"object\":\"list\",\"data\":[{\"object\":\"embedding\","
                   "\"embedding\":[0.0023064255,-0.009327292,1e-3,-2E+2,0],"
                   "\"index\":0}],\"model\":\"text-embedding-3-small\","
                   "\"usage\":{\"prompt_tokens\":8,\"total_tokens\":8}}");
    assert_found(&u, 8, -1, 8);
    assert_int_equal(u.total_disagrees, 0);

    u = json_usage("{\"id\":\"cmpl-1\",\"object\":\"text_completion\","
                   "\"choices\":[{\"text\":\"\\n\\nThis is\",\"index\":0,"
                   "\"logprobs\":null,\"finish_reason\":\"length\"}],"
                   "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,"
                   "\"total_tokens\":12}}");
    assert_found(&u, 5, 7, 12);
}

static void test_responses_api(void **state)
{
    mg_usage u;

    (void)state;
    /* non-streaming: top-level usage with input/output names */
    u = json_usage("{\"id\":\"resp_1\",\"object\":\"response\",\"status\":"
                   "\"completed\",\"output\":[{\"type\":\"message\","
                   "\"content\":[{\"type\":\"output_text\",\"text\":"
                   "\"usage: {}\"}]}],"
                   "\"usage\":{\"input_tokens\":36,\"input_tokens_details\":"
                   "{\"cached_tokens\":0},\"output_tokens\":87,"
                   "\"output_tokens_details\":{\"reasoning_tokens\":0},"
                   "\"total_tokens\":123}}");
    assert_found(&u, 36, 87, 123);
    assert_int_equal(u.from_response, 0);

    /* the response.completed event's shape */
    u = json_usage("{\"type\":\"response.completed\",\"sequence_number\":9,"
                   "\"response\":{\"id\":\"resp_1\",\"output\":[],\"usage\":"
                   "{\"input_tokens\":10,\"output_tokens\":2,"
                   "\"total_tokens\":12},\"metadata\":{}}}");
    assert_found(&u, 10, 2, 12);
    assert_int_equal(u.from_response, 1);
    /* response.usage: null is none */
    u = json_usage("{\"type\":\"response.created\",\"response\":{\"usage\":"
                   "null}}");
    assert_int_equal(u.status, MG_USAGE_ABSENT);
    /* a top-level usage comes first; usage: null leaves response.usage */
    u = json_usage("{\"response\":{\"usage\":{\"input_tokens\":1}},"
                   "\"usage\":{\"prompt_tokens\":2}}");
    assert_found(&u, 2, -1, 2);
    u = json_usage("{\"usage\":null,\"response\":{\"usage\":"
                   "{\"input_tokens\":1}}}");
    assert_found(&u, 1, -1, 1);
    assert_int_equal(u.from_response, 1);
    /* response.usage deeper down is not it */
    u = json_usage("{\"response\":{\"x\":{\"usage\":{\"input_tokens\":1}}}}");
    assert_int_equal(u.status, MG_USAGE_ABSENT);
    /* prompt_tokens wins over input_tokens when both are sent */
    u = json_usage("{\"usage\":{\"input_tokens\":1,\"prompt_tokens\":2,"
                   "\"output_tokens\":3,\"completion_tokens\":4}}");
    assert_found(&u, 2, 4, 6);
}

static void test_values(void **state)
{
    static const struct {
        const char *usage;
        const char *why;        /* NULL: found */
        apr_int64_t prompt, completion, total;
    } cases[] = {
        { "{\"prompt_tokens\":0,\"completion_tokens\":0}", NULL, 0, 0, 0 },
        { "{\"prompt_tokens\":-0,\"completion_tokens\":1}", NULL, 0, 1, 1 },
        { "{\"prompt_tokens\":1000000000000}", NULL,
          MG_USAGE_MAX_TOKENS, -1, MG_USAGE_MAX_TOKENS },
        { "{\"total_tokens\":7}", NULL, -1, -1, 7 },
        { "{\"completion_tokens\":7}", NULL, -1, 7, 7 },
        { "{\"prompt_tokens\":-1,\"completion_tokens\":2}",
          "usage.prompt_tokens is negative", 0, 0, 0 },
        { "{\"prompt_tokens\":-1.5}", "usage.prompt_tokens is negative", 0,
          0, 0 },
        { "{\"completion_tokens\":1.5}",
          "usage.completion_tokens is not a whole number", 0, 0, 0 },
        { "{\"completion_tokens\":1.0}",
          "usage.completion_tokens is not a whole number", 0, 0, 0 },
        { "{\"total_tokens\":1e3}", "usage.total_tokens is not a whole number",
          0, 0, 0 },
        { "{\"total_tokens\":1E+3}",
          "usage.total_tokens is not a whole number", 0, 0, 0 },
        { "{\"prompt_tokens\":-0.0}",
          "usage.prompt_tokens is not a whole number", 0, 0, 0 },
        { "{\"prompt_tokens\":1000000000001}",
          "usage.prompt_tokens is larger than 10^12", 0, 0, 0 },
        { "{\"prompt_tokens\":99999999999999999999999999999999999999999}",
          "usage.prompt_tokens is larger than 10^12", 0, 0, 0 },
        { "{\"prompt_tokens\":-99999999999999999999999999999999999999999}",
          "usage.prompt_tokens is negative", 0, 0, 0 },
        { "{\"prompt_tokens\":\"12\"}",
          "usage.prompt_tokens is a string, not a number", 0, 0, 0 },
        { "{\"prompt_tokens\":1,\"output_tokens\":null}",
          "usage.output_tokens is null", 0, 0, 0 },
        { "{\"input_tokens\":true}",
          "usage.input_tokens is a boolean, not a number", 0, 0, 0 },
        { "{\"input_tokens\":{\"n\":1}}",
          "usage.input_tokens is an object or array, not a number", 0, 0, 0 },
        { "{\"input_tokens\":[1]}",
          "usage.input_tokens is an object or array, not a number", 0, 0, 0 },
        { "{}", "usage has no token count", 0, 0, 0 },
        { "{\"cost\":1.5,\"details\":{}}", "usage has no token count", 0, 0,
          0 },
        { "5", "usage is not an object", 0, 0, 0 },
        { "\"x\"", "usage is not an object", 0, 0, 0 },
        { "[]", "usage is not an object", 0, 0, 0 },
        { "false", "usage is not an object", 0, 0, 0 },
        /* the last member given counts */
        { "{\"prompt_tokens\":-1,\"prompt_tokens\":3}", NULL, 3, -1, 3 },
        { "{\"prompt_tokens\":3,\"prompt_tokens\":\"3\"}",
          "usage.prompt_tokens is a string, not a number", 0, 0, 0 },
        /* escaped names are names */
        { "{\"prompt_\\u0074okens\":5,\"completion\\u005ftokens\":1}", NULL,
          5, 1, 6 },
    };
    apr_pool_t *p = *state;
    apr_size_t i;
    mg_usage u;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        u = json_usage(apr_pstrcat(p, "{\"id\":1,\"usage\":", cases[i].usage,
                                   ",\"z\":[]}", NULL));
        if (!cases[i].why) {
            assert_found(&u, cases[i].prompt, cases[i].completion,
                         cases[i].total);
        }
        else if (u.status != MG_USAGE_INVALID
                 || strcmp(u.why, cases[i].why)) {
            fail_msg("%s: status %d, '%s'", cases[i].usage, u.status, u.why);
        }
        /* the same under response */
        if (cases[i].why) {
            u = json_usage(apr_pstrcat(p, "{\"response\":{\"usage\":",
                                       cases[i].usage, "}}", NULL));
            assert_int_equal(u.status, MG_USAGE_INVALID);
            assert_string_equal(u.why, apr_pstrcat(p, "response.",
                                                   cases[i].why, NULL));
        }
    }

    /* a total that is not the sum of its parts: the parts win */
    u = json_usage("{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,"
                   "\"total_tokens\":5}}");
    assert_found(&u, 1, 2, 3);
    assert_int_equal(u.reported_total, 5);
    assert_int_equal(u.total_disagrees, 1);
    /* a usage given twice: the last */
    u = json_usage("{\"usage\":{\"prompt_tokens\":-1},\"usage\":"
                   "{\"prompt_tokens\":3}}");
    assert_found(&u, 3, -1, 3);
    u = json_usage("{\"usage\":{\"prompt_tokens\":3},\"usage\":null}");
    assert_int_equal(u.status, MG_USAGE_ABSENT);
    u = json_usage("{\"response\":{\"usage\":{\"input_tokens\":3}},"
                   "\"response\":{}}");
    assert_int_equal(u.status, MG_USAGE_ABSENT);
    u = json_usage("{\"us\\u0061ge\":{\"prompt_tokens\":9}}");
    assert_found(&u, 9, -1, 9);
}

static void test_malformed_json(void **state)
{
    static const struct {
        const char *text;
        const char *why;
    } cases[] = {
        { "{", "the document is truncated at byte 1" },
        { "{\"usage\":{\"prompt_tokens\":1}", "the document is truncated" },
        { "{\"usage\":{\"prompt_tokens\":1", "the document is truncated" },
        { "{\"usage\":{\"prompt_tokens\":1}} x",
          "text after the end of the document at byte 30" },
        { "{\"usage\":{\"prompt_tokens\":1}}{}",
          "text after the end of the document" },
        { "{\"usage\":{\"prompt_tokens\":1,}}",
          "a member name was expected at byte 28" },
        { "[1,]", "a value was expected at byte 3" },
        { "{\"a\":01}", "a number with a leading zero" },
        { "{\"a\":-}", "a digit was expected after '-'" },
        { "{\"a\":1.}", "a digit was expected after '.'" },
        { "{\"a\":1e}", "a digit was expected in an exponent" },
        { "{\"a\":1e+}", "a digit was expected in an exponent" },
        { "{\"a\":.5}", "a value was expected" },
        { "{\"a\":+1}", "a value was expected" },
        { "{\"a\":\"\\x\"}", "an invalid escape in a string" },
        { "{\"a\":\"\\u00g0\"}", "an invalid \\u escape in a string" },
        { "{\"a\":\"tab\there\"}", "a control character in a string" },
        { "{\"a\":tru}", "an invalid literal" },
        { "{\"a\":nul}", "an invalid literal" },
        { "{\"a\":True}", "a value was expected" },
        { "{\"a\":1]", "']' closes an object" },
        { "[1}", "'}' closes an array" },
        { "{\"a\" 1}", "':' was expected" },
        { "{\"a\":1 \"b\":2}", "',' or a closing bracket was expected" },
        { "{'a':1}", "a member name was expected" },
        { "{a:1}", "a member name was expected" },
        { "\"open", "the document is truncated" },
        { "{\"usage\":{\"prompt_tokens\":1}}\xef\xbb\xbf",
          "text after the end" },
    };
    apr_size_t i;
    mg_usage u;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        u = json_usage(cases[i].text);
        if (u.status != MG_USAGE_MALFORMED || !strstr(u.why, cases[i].why)
            || strncmp(u.why, "not JSON: ", 10)) {
            fail_msg("'%s': status %d, '%s'", cases[i].text, u.status, u.why);
        }
    }
}

/* Strings are skipped sixteen or eight bytes a step: a quote, a
 * backslash or a control at every offset of a long string (past two
 * sixteen-byte steps) ends its plain run there and nowhere else (bytes
 * with the top bit set, 0xa2 and 0xdc among them, are plain), in a value
 * and in a member name, read whole and split. */
static void test_long_strings_every_offset(void **state)
{
    static const char *const stops[] = { "\\\"", "\\\\", "\\u0041",
                                         "\xa2", "\xdc", "\x80\xff", "\x1f" };
    apr_pool_t *p = *state;
    char run[48];
    apr_size_t at, k;
    mg_usage u;

    for (k = 0; k < sizeof(stops) / sizeof(stops[0]); k++) {
        for (at = 0; at <= 40; at++) {
            const char *str;
            int control = stops[k][0] == '\x1f';

            memset(run, 'a', at);
            run[at] = '\0';
            str = apr_pstrcat(p, run, stops[k], "bcdefghijklmnop", NULL);
            /* a value */
            u = json_usage(apr_pstrcat(p, "{\"id\":\"", str, "\",\"usage\":"
                                       "{\"prompt_tokens\":4}}", NULL));
            if (control) {
                assert_int_equal(u.status, MG_USAGE_MALFORMED);
                assert_non_null(strstr(u.why, "a control character"));
                assert_non_null(strstr(u.why, apr_psprintf(p, "at byte %lu",
                    (unsigned long)(7 + at))));
            }
            else {
                assert_found(&u, 4, -1, 4);
            }
            /* a member name where names matter, and one that is the
             * wanted name with more after it */
            u = json_usage(apr_pstrcat(p, "{\"usage\":{\"", str, "\":1,"
                                       "\"total_tokens\":2}}", NULL));
            if (control) {
                assert_int_equal(u.status, MG_USAGE_MALFORMED);
            }
            else {
                assert_found(&u, -1, -1, 2);
            }
            u = json_usage(apr_pstrcat(p, "{\"usage\":{\"prompt_tokens", str,
                                       "\":1,\"output_tokens\":2}}", NULL));
            if (!control) {
                assert_found(&u, -1, 2, 2);
            }
        }
    }
    /* names of the right length that are not the names */
    u = json_usage("{\"usagE\":{\"prompt_tokens\":1},\"usage\":{\"input_"
                   "tokenz\":5,\"output_tokens\":3,\"total_tokenss\":9}}");
    assert_found(&u, -1, 3, 3);
}

static void test_nesting_limit(void **state)
{
    apr_pool_t *p = *state;
    char *t = apr_palloc(p, 2 * 2049 + 64);
    mg_usage u;
    scan_out o;
    int d;

    /* 2048 levels are read (jansson's limit too), 2049 are not */
    for (d = 2048; d <= 2049; d++) {
        memset(t, '[', d);
        memset(t + d, ']', d);
        t[2 * d] = '\0';
        scan(MG_USAGE_JSON, t, 2 * d, 0, 0, &o);
        assert_int_equal(o.result.status, d == 2048 ? MG_USAGE_ABSENT
                                                    : MG_USAGE_MALFORMED);
    }
    /* and the usage after a deep value is still found */
    strcpy(t, "{\"x\":");
    memset(t + 5, '[', 2047);
    memset(t + 5 + 2047, ']', 2047);
    strcpy(t + 5 + 2 * 2047, ",\"usage\":{\"prompt_tokens\":3}}");
    scan(MG_USAGE_JSON, t, strlen(t), 1000, 0, &o);
    u = o.result;
    assert_found(&u, 3, -1, 3);
}

/* ---- event streams ------------------------------------------------------- */

/* Where each event of `t` should end: after each blank line. */
static void assert_ends_at_blank_lines(const scan_out *o, const char *t,
                                       const char *sep)
{
    const char *q = t;
    apr_size_t i = 0;

    while ((q = strstr(q, sep)) != NULL) {
        q += strlen(sep);
        assert_true(i < o->n);
        assert_int_equal(o->end[i], (apr_size_t)(q - t));
        i++;
    }
    assert_int_equal(i, o->n);
}

static const char *chat_stream(apr_pool_t *p, const char *eol)
{
    static const char *const deltas[] = {
        "{\"role\":\"assistant\",\"content\":\"\"}", "{\"content\":\"Hel\"}",
        "{\"content\":\"lo \\\"usage\\\":{}\"}", "{\"content\":\"!\"}", "{}"
    };
    const char *t = "";
    int i;

    for (i = 0; i < 5; i++) {
        t = apr_pstrcat(p, t, "data: {\"id\":\"chatcmpl-1\",\"object\":"
                        "\"chat.completion.chunk\",\"created\":1,\"model\":"
                        "\"gpt-4o-mini\",\"system_fingerprint\":\"fp\","
                        "\"choices\":[{\"index\":0,\"delta\":", deltas[i],
                        ",\"logprobs\":null,\"finish_reason\":",
                        i == 4 ? "\"stop\"" : "null", "}],\"usage\":null}",
                        eol, eol, NULL);
    }
    return apr_pstrcat(p, t, "data: {\"id\":\"chatcmpl-1\",\"object\":"
                       "\"chat.completion.chunk\",\"created\":1,\"model\":"
                       "\"gpt-4o-mini\",\"choices\":[],\"usage\":"
                       "{\"prompt_tokens\":9,\"completion_tokens\":5,"
                       "\"total_tokens\":14}}", eol, eol,
                       "data: [DONE]", eol, eol, NULL);
}

static void test_chat_stream(void **state)
{
    static const char *const eols[] = { "\n", "\r\n", "\r" };
    apr_pool_t *p = *state;
    scan_out o;
    int e, i;

    for (e = 0; e < 3; e++) {
        const char *t = chat_stream(p, eols[e]);

        o = scan_every_way(MG_USAGE_SSE, t);
        assert_found(&o.result, 9, 5, 14);
        assert_int_equal(o.result.events, 6);
        assert_int_equal(o.result.malformed_events, 0);
        assert_int_equal(o.n, 7);
        assert_ends_at_blank_lines(&o, t, apr_pstrcat(p, eols[e], eols[e],
                                                      NULL));
        for (i = 0; i < 7; i++) {
            assert_int_equal(o.has_data[i], 1);
            assert_int_equal(o.usage_only[i], i == 5);
            assert_int_equal(o.done[i], i == 6);
            assert_int_equal(o.status[i], i == 5 ? MG_USAGE_FOUND
                                                 : MG_USAGE_ABSENT);
        }
    }
}

static void test_usage_only_needs_empty_choices_and_usage(void **state)
{
    static const struct {
        const char *data;
        int usage_only;
    } cases[] = {
        { "{\"choices\":[],\"usage\":{\"prompt_tokens\":1}}", 1 },
        { "{\"usage\":{\"prompt_tokens\":1},\"choices\":[ ]}", 1 },
        /* an invalid usage is still the usage chunk */
        { "{\"choices\":[],\"usage\":{\"prompt_tokens\":-1}}", 1 },
        { "{\"choices\":[{}],\"usage\":{\"prompt_tokens\":1}}", 0 },
        { "{\"choices\":[],\"usage\":null}", 0 },
        { "{\"choices\":[]}", 0 },
        { "{\"usage\":{\"prompt_tokens\":1}}", 0 },
        { "{\"choices\":{},\"usage\":{\"prompt_tokens\":1}}", 0 },
        { "{\"choices\":null,\"usage\":{\"prompt_tokens\":1}}", 0 },
        { "{\"x\":{\"choices\":[]},\"usage\":{\"prompt_tokens\":1}}", 0 },
        { "{\"choices\":[],\"usage\":{\"prompt_tokens\":1},}", 0 },
        { "{\"choices\":[],\"response\":{\"usage\":{\"input_tokens\":1}}}",
          0 },
        /* ruled out by the first choices, whatever comes after */
        { "{\"choices\":[1],\"choices\":[],\"usage\":{\"prompt_tokens\":1}}",
          0 },
    };
    apr_pool_t *p = *state;
    apr_size_t i;
    scan_out o;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        o = scan_every_way(MG_USAGE_SSE, apr_pstrcat(p, "data: ",
                                                     cases[i].data, "\n\n",
                                                     NULL));
        assert_int_equal(o.n, 1);
        if (o.usage_only[0] != cases[i].usage_only) {
            fail_msg("%s: usage_only %d", cases[i].data, o.usage_only[0]);
        }
    }
}

static void test_sse_fields_and_comments(void **state)
{
    scan_out o;

    (void)state;
    o = scan_every_way(MG_USAGE_SSE,
        ": this is a comment data: {\"usage\":{\"prompt_tokens\":100}}\n"
        "event: message\n"
        "id: 7\n"
        "retry: 1000\n"
        ":data: {\"usage\":{\"prompt_tokens\":101}}\n"
        "dat: {\"usage\":{\"prompt_tokens\":102}}\n"
        "datas: {\"usage\":{\"prompt_tokens\":103}}\n"
        "Data: {\"usage\":{\"prompt_tokens\":104}}\n"
        "data:{\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n"
        "\n"
        ": keep-alive\n"
        "\n"
        "\n"
        "event: ping\n"
        "data\n"
        "\n"
        "data:  {\"usage\":{\"prompt_tokens\":4}}\n"
        "id\n"
        "\n");
    assert_found(&o.result, 4, -1, 4);
    assert_int_equal(o.n, 5);
    assert_int_equal(o.has_data[0], 1);
    assert_int_equal(o.status[0], MG_USAGE_FOUND);
    assert_int_equal(o.has_data[1], 0);     /* a comment */
    assert_int_equal(o.has_data[2], 0);     /* a lone blank line */
    assert_int_equal(o.has_data[3], 1);     /* "data" alone: empty data */
    assert_int_equal(o.status[3], MG_USAGE_ABSENT);
    assert_int_equal(o.status[4], MG_USAGE_FOUND);
    assert_int_equal(o.result.events, 3);
    assert_int_equal(o.result.malformed_events, 0);
}

static void test_sse_byte_order_mark(void **state)
{
    scan_out o;

    (void)state;
    /* one leading BOM is skipped */
    o = scan_every_way(MG_USAGE_SSE, "\xef\xbb\xbf" "data: {\"usage\":"
                       "{\"prompt_tokens\":3}}\n\n");
    assert_found(&o.result, 3, -1, 3);
    assert_int_equal(o.end[0], 40);
    /* a second one, or a broken one, makes a field name that is not data */
    o = scan_every_way(MG_USAGE_SSE, "\xef\xbb\xbf\xef\xbb\xbf" "data: "
                       "{\"usage\":{\"prompt_tokens\":3}}\n\n");
    assert_int_equal(o.result.status, MG_USAGE_ABSENT);
    assert_int_equal(o.n, 1);
    o = scan_every_way(MG_USAGE_SSE, "\xef\xbb" "data: {\"usage\":"
                       "{\"prompt_tokens\":3}}\n\n");
    assert_int_equal(o.result.status, MG_USAGE_ABSENT);
    o = scan_every_way(MG_USAGE_SSE, "\xef\n\ndata: {\"usage\":"
                       "{\"prompt_tokens\":3}}\n\n");
    assert_found(&o.result, 3, -1, 3);
    assert_int_equal(o.n, 2);
    assert_int_equal(o.end[0], 3);
}

static void test_sse_multi_line_data(void **state)
{
    static const char *const eols[] = { "\n", "\r\n", "\r" };
    apr_pool_t *p = *state;
    scan_out o;
    int e;

    for (e = 0; e < 3; e++) {
        const char *n = eols[e];

        o = scan_every_way(MG_USAGE_SSE, apr_pstrcat(p,
            "data: {\"choices\":[],", n,
            "id: 1", n,
            ": between", n,
            "data: \"usage\":{\"prompt_tokens\":4,", n,
            "data:  \"completion_tokens\"", n,
            "data", n,
            "data: :1}}", n, n, NULL));
        assert_found(&o.result, 4, 1, 5);
        assert_int_equal(o.n, 1);
        assert_int_equal(o.usage_only[0], 1);
    }
    /* a number split over two lines is two numbers: malformed */
    o = scan_every_way(MG_USAGE_SSE, "data: {\"usage\":{\"prompt_tokens\":1\n"
                       "data: 2}}\n\n");
    assert_int_equal(o.result.status, MG_USAGE_ABSENT);
    assert_int_equal(o.result.malformed_events, 1);
    /* [DONE] on two lines is not [DONE] */
    o = scan_every_way(MG_USAGE_SSE, "data: [DONE]\ndata: x\n\ndata: [DONE]"
                       "\n\ndata: [DONE] \n\n");
    assert_int_equal(o.done[0], 0);
    assert_int_equal(o.done[1], 1);
    assert_int_equal(o.done[2], 0);
    assert_int_equal(o.result.events, 2);
    assert_int_equal(o.result.malformed_events, 2);
}

static void test_sse_malformed_events(void **state)
{
    scan_out o;

    (void)state;
    o = scan_every_way(MG_USAGE_SSE,
        "data: {\"usage\":{\"prompt_tokens\":1,}}\n\n"
        "data: not json {\"usage\":{\"prompt_tokens\":2}}\n\n"
        "data: {\"usage\":{\"prompt_tokens\":3}\n\n"
        "data: \"open string\n\n"
        "data: {\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":6}}\n\n"
        "data: {\"usage\":{\"prompt_tokens\":7}} trailing\n\n"
        "data: {\"usage\":{\"prompt_tokens\":8\n\n");
    assert_found(&o.result, 5, 6, 11);
    assert_int_equal(o.n, 7);
    assert_int_equal(o.result.events, 7);
    assert_int_equal(o.result.malformed_events, 6);
    assert_int_equal(o.status[0], MG_USAGE_MALFORMED);
    assert_int_equal(o.status[4], MG_USAGE_FOUND);

    /* the last usage carried is the answer, an invalid one too */
    o = scan_every_way(MG_USAGE_SSE,
        "data: {\"usage\":{\"prompt_tokens\":5}}\n\n"
        "data: {\"usage\":{\"prompt_tokens\":-5}}\n\n"
        "data: {\"usage\":null}\n\n"
        "data: {}\n\n");
    assert_int_equal(o.result.status, MG_USAGE_INVALID);
    assert_string_equal(o.result.why, "usage.prompt_tokens is negative");
    assert_int_equal(o.result.events, 4);

    /* an event the stream does not close is not read */
    o = scan_every_way(MG_USAGE_SSE,
        "data: {\"usage\":{\"prompt_tokens\":5}}\n\n"
        "data: {\"usage\":{\"prompt_tokens\":6}}\n");
    assert_found(&o.result, 5, -1, 5);
    assert_int_equal(o.n, 1);
    /* an answer of nothing */
    o = scan_every_way(MG_USAGE_SSE, "");
    assert_int_equal(o.result.status, MG_USAGE_ABSENT);
    assert_int_equal(o.n, 0);
}

static void test_sse_responses_api(void **state)
{
    static const char *const stream =
        "event: response.created\n"
        "data: {\"type\":\"response.created\",\"sequence_number\":0,"
        "\"response\":{\"id\":\"resp_1\",\"object\":\"response\","
        "\"status\":\"in_progress\",\"usage\":null}}\n\n"
        "event: response.output_text.delta\n"
        "data: {\"type\":\"response.output_text.delta\",\"delta\":"
        "\"usage: {\\\"input_tokens\\\":1}\",\"sequence_number\":1}\n\n"
        "event: response.completed\n"
        "data: {\"type\":\"response.completed\",\"sequence_number\":2,"
        "\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"output\":"
        "[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\","
        "\"text\":\"usage: {\\\"input_tokens\\\":1}\"}]}],\"usage\":"
        "{\"input_tokens\":10,\"input_tokens_details\":{\"cached_tokens\":0},"
        "\"output_tokens\":2,\"output_tokens_details\":"
        "{\"reasoning_tokens\":0},\"total_tokens\":12}}}\n\n";
    scan_out o;

    (void)state;
    o = scan_every_way(MG_USAGE_SSE, stream);
    assert_found(&o.result, 10, 2, 12);
    assert_int_equal(o.result.from_response, 1);
    assert_int_equal(o.n, 3);
    assert_int_equal(o.usage_only[2], 0);
    assert_ends_at_blank_lines(&o, stream, "\n\n");
}

static void test_sse_cr_at_chunk_end(void **state)
{
    /* A blank line ending in CR at a chunk's end: the event ends where the
     * next chunk starts, with its LF when one follows. */
    static const char *const t = "data: {}\r\r\n:c\r\rdata: {}\r";
    mg_usage_scanner s;
    mg_usage_event ev;
    apr_size_t n;

    (void)state;
    mg_usage_init(&s, MG_USAGE_SSE);
    n = mg_usage_feed(&s, t, 9, &ev);       /* "data: {}\r" */
    assert_int_equal(n, 9);
    assert_int_equal(ev.ended, 0);
    n = mg_usage_feed(&s, t + 9, 1, &ev);   /* "\r": blank line, LF? */
    assert_int_equal(n, 1);
    assert_int_equal(ev.ended, 0);
    n = mg_usage_feed(&s, t + 10, 5, &ev);  /* "\n:c\r\r" */
    assert_int_equal(ev.ended, 1);
    assert_int_equal(n, 1);                 /* the LF was the event's */
    n = mg_usage_feed(&s, t + 11, 4, &ev);  /* ":c\r\r" */
    assert_int_equal(n, 4);
    assert_int_equal(ev.ended, 0);
    n = mg_usage_feed(&s, t + 15, 10, &ev); /* "data: {}\r" */
    assert_int_equal(ev.ended, 1);
    assert_int_equal(n, 0);                 /* the comment ended before it */
    assert_int_equal(ev.has_data, 0);
    n = mg_usage_feed(&s, t + 15, 10, &ev);
    assert_int_equal(n, 10);
    assert_int_equal(ev.ended, 0);
    mg_usage_finish(&s, &ev);               /* no blank line: dropped */
    assert_int_equal(ev.ended, 0);
    n = mg_usage_feed(&s, "\r", 1, &ev);
    mg_usage_finish(&s, &ev);               /* a lone CR line at the end */
    assert_int_equal(ev.ended, 1);
    assert_int_equal(ev.end, 0);
}

/* A filter that drops usage-only events, written the way the httpd output
 * filter would use the API: pass bytes on at once unless the event may
 * still be usage-only, and then hold them back until it is known. */
static apr_size_t filter(const char *t, apr_size_t len, apr_size_t step,
                         char *out, apr_size_t *max_held)
{
    mg_usage_scanner s;
    mg_usage_event ev;
    apr_size_t pos = 0, piece, n, olen = 0, hlen = 0;
    char *held = malloc(MG_USAGE_ONLY_MAX + step + 1);
    int passing = 0;

    *max_held = 0;
    mg_usage_init(&s, MG_USAGE_SSE);
    while (pos < len) {
        const char *b = t + pos;

        piece = len - pos < step ? len - pos : step;
        pos += piece;
        while (piece) {
            n = mg_usage_feed(&s, b, piece, &ev);
            if (passing) {
                memcpy(out + olen, b, n);
                olen += n;
            }
            else {
                memcpy(held + hlen, b, n);
                hlen += n;
                *max_held = hlen > *max_held ? hlen : *max_held;
            }
            if (ev.ended) {
                if (!passing && !ev.usage_only) {
                    memcpy(out + olen, held, hlen);
                    olen += hlen;
                }
                hlen = 0;
                passing = 0;
            }
            else if (!passing && !mg_usage_may_be_usage_only(&s)) {
                memcpy(out + olen, held, hlen);
                olen += hlen;
                hlen = 0;
                passing = 1;
            }
            b += n;
            piece -= n;
        }
    }
    mg_usage_finish(&s, &ev);
    if (!(ev.ended && ev.usage_only)) {
        memcpy(out + olen, held, hlen);
        olen += hlen;
    }
    free(held);
    return olen;
}

static void test_filter_drops_the_usage_only_event(void **state)
{
    apr_pool_t *p = *state;
    const char *t = chat_stream(p, "\r\n");
    const char *usage_ev = strstr(t, "data: {\"id\":\"chatcmpl-1\",\"object\":"
                                  "\"chat.completion.chunk\",\"created\":1,"
                                  "\"model\":\"gpt-4o-mini\",\"choices\":[]");
    const char *done = strstr(t, "data: [DONE]");
    const char *want = apr_pstrcat(p, apr_pstrmemdup(p, t, usage_ev - t),
                                   done, NULL);
    apr_size_t len = strlen(t), step, olen, held;
    char *out = apr_palloc(p, len + 1);

    for (step = 1; step <= len; step++) {
        olen = filter(t, len, step, out, &held);
        out[olen] = '\0';
        assert_string_equal(out, want);
        /* it held back no more than the events that might be dropped:
         * here the usage-only one and [DONE] (plus what it fed last) */
        assert_true(held <= strlen(usage_ev) - strlen(done) + step);
    }
}

/* ---- a 10 MB event ------------------------------------------------------- */

/* head, then text to 10 MB (escapes, braces and "usage" in it), then tail */
static apr_size_t big(char *t, const char *head, const char *tail)
{
    static const char *const piece =
        "lorem \\\"usage\\\": {\\\"prompt_tokens\\\": 1} [{]} \\\\ \\u00e9 ";
    apr_size_t plen = strlen(piece), len = strlen(head);

    memcpy(t, head, len);
    while (len + plen < 10 * 1024 * 1024) {
        memcpy(t + len, piece, plen);
        len += plen;
    }
    strcpy(t + len, tail);
    return len + strlen(tail);
}

static void test_ten_megabyte_event(void **state)
{
    static const struct {
        mg_usage_mode mode;
        const char *head, *tail;
    } cases[] = {
        { MG_USAGE_SSE,
          "data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":\"",
          "\"}}],\"usage\":{\"prompt_tokens\":11,"
          "\"completion_tokens\":2500000}}\n\n" },
        /* no choices: ruled out as usage-only by its size alone */
        { MG_USAGE_SSE, "data: {\"usage\":null,\"x\":\"",
          "\",\"usage\":{\"prompt_tokens\":11,"
          "\"completion_tokens\":2500000}}\r\n\r\n" },
        { MG_USAGE_JSON,
          "{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"",
          "\"}}],\"usage\":{\"prompt_tokens\":11,"
          "\"completion_tokens\":2500000}}" },
    };
    apr_pool_t *p = *state;
    char *t = apr_palloc(p, 10 * 1024 * 1024 + 256);
    mg_usage_scanner *s = apr_palloc(p, sizeof(*s));
    mg_usage_event ev;
    mg_usage u;
    struct mallinfo2 before, after;
    apr_size_t len, at, n, i;

    /* The scanner is one fixed struct, whatever it reads. */
    assert_true(sizeof(mg_usage_scanner) < 2048);

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        len = big(t, cases[i].head, cases[i].tail);
        /* The heap does not grow while it reads: the scanner allocates
         * nothing and keeps no copy of what it reads. */
        before = mallinfo2();
        mg_usage_init(s, cases[i].mode);
        for (at = 0; at < len; at += n) {
            n = mg_usage_feed(s, t + at, len - at < 65536 ? len - at : 65536,
                              &ev);
            if (at >= MG_USAGE_ONLY_MAX && !ev.ended) {
                assert_int_equal(mg_usage_may_be_usage_only(s), 0);
            }
        }
        assert_int_equal(ev.ended, cases[i].mode == MG_USAGE_SSE);
        assert_int_equal(at, len);
        mg_usage_finish(s, &ev);
        mg_usage_result(s, &u);
        after = mallinfo2();
        assert_int_equal(after.uordblks, before.uordblks);
        assert_found(&u, 11, 2500000, 2500011);
    }
}

/* ---- random documents against jansson ------------------------------------ */

typedef struct gen {
    char *b;
    apr_size_t len, cap;
    mg_test_rng rng;
} gen;

static void put(gen *g, const char *s)
{
    apr_size_t n = strlen(s);

    if (g->len + n < g->cap) {
        memcpy(g->b + g->len, s, n);
        g->len += n;
    }
}

static apr_uint64_t rnd(gen *g, apr_uint64_t n)
{
    return mg_test_below(&g->rng, n);
}

static void gen_string(gen *g)
{
    static const char *const bits[] = {
        "abc", "usage", "\\\"", "\\\\", "\\n", "\\u0041", "\\u00e9", "{",
        "}", "[", "]", ":", ",", "\\/", "\xc3\xa9", " ", "prompt_tokens",
        "\\t"
    };
    int n = (int)rnd(g, 4), i;

    put(g, "\"");
    for (i = 0; i < n; i++) {
        put(g, bits[rnd(g, sizeof(bits) / sizeof(bits[0]))]);
    }
    put(g, "\"");
}

static void gen_key(gen *g)
{
    static const char *const keys[] = {
        "usage", "response", "choices", "prompt_tokens", "completion_tokens",
        "total_tokens", "input_tokens", "output_tokens", "id", "content",
        "us\\u0061ge", "prompt_\\u0074okens", "usage ", "x", "u\\u0073age",
        "total\\u005Ftokens"
    };

    if (rnd(g, 8) == 0) {
        gen_string(g);
        return;
    }
    put(g, "\"");
    put(g, keys[rnd(g, sizeof(keys) / sizeof(keys[0]))]);
    put(g, "\"");
}

static void gen_ws(gen *g)
{
    static const char *const ws[] = { "", "", "", " ", "\n", " \r\n\t" };

    put(g, ws[rnd(g, sizeof(ws) / sizeof(ws[0]))]);
}

static void gen_value(gen *g, int depth)
{
    static const char *const numbers[] = {
        "0", "-0", "7", "12", "100", "-1", "1.5", "2e3", "1E-2", "-0.0",
        "1000000000000", "1000000000001", "123456789012345", "3.0", "0e0",
        "-12.5e+3"
    };
    static const char *const literals[] = { "true", "false", "null" };
    int kind = (int)rnd(g, depth > 4 ? 4 : 7), n, i;

    gen_ws(g);
    switch (kind) {
    case 0:
        put(g, numbers[rnd(g, sizeof(numbers) / sizeof(numbers[0]))]);
        break;
    case 1:
        {
            char num[24];
            apr_snprintf(num, sizeof(num), "%u", (unsigned)rnd(g, 100000));
            put(g, num);
        }
        break;
    case 2:
        gen_string(g);
        break;
    case 3:
        put(g, literals[rnd(g, 3)]);
        break;
    case 4:
    case 5:
        put(g, "{");
        n = (int)rnd(g, 5);
        for (i = 0; i < n; i++) {
            if (i) {
                put(g, ",");
            }
            gen_ws(g);
            gen_key(g);
            gen_ws(g);
            put(g, ":");
            gen_value(g, depth + 1);
        }
        gen_ws(g);
        put(g, "}");
        break;
    default:
        put(g, "[");
        n = (int)rnd(g, 4);
        for (i = 0; i < n; i++) {
            if (i) {
                put(g, ",");
            }
            gen_value(g, depth + 1);
        }
        gen_ws(g);
        put(g, "]");
        break;
    }
    gen_ws(g);
}

/* A usage object, mostly well-formed. */
static void gen_usage(gen *g)
{
    static const char *const keys[] = {
        "prompt_tokens", "completion_tokens", "total_tokens", "input_tokens",
        "output_tokens", "prompt_\\u0074okens", "cached_tokens"
    };
    int n = (int)rnd(g, 4), i;
    char num[24];

    put(g, "{");
    for (i = 0; i < n; i++) {
        if (i) {
            put(g, ",");
        }
        gen_ws(g);
        put(g, "\"");
        put(g, keys[rnd(g, sizeof(keys) / sizeof(keys[0]))]);
        put(g, "\":");
        if (rnd(g, 6)) {
            apr_snprintf(num, sizeof(num), "%u", (unsigned)rnd(g, 100000));
            put(g, num);
        }
        else {
            gen_value(g, 3);
        }
    }
    put(g, "}");
}

/* What the rules of mg_usage.h make of jansson's reading. */
static void oracle(json_t *root, mg_usage *u)
{
    static const char *const names[] = {
        "prompt_tokens", "completion_tokens", "total_tokens", "input_tokens",
        "output_tokens"
    };
    apr_int64_t v[5];
    json_t *usage = NULL, *r, *f;
    int i, given = 0;

    memset(u, 0, sizeof(*u));
    u->prompt = u->completion = u->total = u->reported_total = -1;
    u->status = MG_USAGE_ABSENT;
    if (!json_is_object(root)) {
        return;
    }
    usage = json_object_get(root, "usage");
    if (!usage || json_is_null(usage)) {
        usage = NULL;
        r = json_object_get(root, "response");
        if (json_is_object(r)) {
            usage = json_object_get(r, "usage");
            if (json_is_null(usage)) {
                usage = NULL;
            }
            u->from_response = usage != NULL;
        }
    }
    if (!usage) {
        return;
    }
    u->status = MG_USAGE_INVALID;
    if (!json_is_object(usage)) {
        return;
    }
    for (i = 0; i < 5; i++) {
        f = json_object_get(usage, names[i]);
        v[i] = -1;
        if (f) {
            if (!json_is_integer(f) || json_integer_value(f) < 0
                || json_integer_value(f) > MG_USAGE_MAX_TOKENS) {
                return;
            }
            v[i] = json_integer_value(f);
            given = 1;
        }
    }
    if (!given) {
        return;
    }
    u->status = MG_USAGE_FOUND;
    u->prompt = v[0] >= 0 ? v[0] : v[3];
    u->completion = v[1] >= 0 ? v[1] : v[4];
    u->reported_total = v[2];
    if (u->prompt >= 0 || u->completion >= 0) {
        u->total = (u->prompt > 0 ? u->prompt : 0)
                   + (u->completion > 0 ? u->completion : 0);
    }
    else {
        u->total = v[2];
    }
}

static void corrupt(gen *g)
{
    static const char ins[] = "{}[],:\"\\ 01-.eE\nnt";
    apr_size_t at;

    if (g->len == 0) {
        return;
    }
    at = rnd(g, g->len);
    switch (rnd(g, 3)) {
    case 0:                         /* truncate */
        g->len = at;
        break;
    case 1:                         /* drop a byte */
        memmove(g->b + at, g->b + at + 1, g->len - at - 1);
        g->len--;
        break;
    default:                        /* insert one */
        memmove(g->b + at + 1, g->b + at, g->len - at);
        g->b[at] = ins[rnd(g, sizeof(ins) - 1)];
        g->len++;
        break;
    }
}

static void test_random_documents_against_jansson(void **state)
{
    apr_pool_t *p = *state;
    gen g;
    int iter, k, valid = 0, found = 0, invalid = 0;
    scan_out whole, split;
    mg_usage want;
    json_error_t jerr;
    json_t *root;

    g.cap = 1 << 16;
    g.b = apr_palloc(p, g.cap + 2);
    g.rng.s = 20261202;
    for (iter = 0; iter < 4000; iter++) {
        g.len = 0;
        if (rnd(&g, 2)) {
            /* mostly objects that look like answers */
            put(&g, rnd(&g, 3) ? "{\"usage\":" : "{\"response\":{\"usage\":");
            if (rnd(&g, 3)) {
                gen_usage(&g);
            }
            else {
                gen_value(&g, 1);
            }
            if (g.b[1] == 'r') {
                put(&g, "}");
            }
            put(&g, ",");
            gen_key(&g);
            put(&g, ":");
            gen_value(&g, 1);
            put(&g, "}");
        }
        else {
            gen_value(&g, 0);
        }
        if (rnd(&g, 4) == 0) {
            corrupt(&g);
        }
        g.b[g.len] = '\0';
        if (g.len == 0 || strspn(g.b, " \t\r\n") == g.len) {
            continue;               /* jansson calls nothing an error */
        }
        scan(MG_USAGE_JSON, g.b, g.len, 0, 0, &whole);
        root = json_loadb(g.b, g.len, JSON_DECODE_ANY, &jerr);
        if (!root && (strstr(jerr.text, "overflow")
                      || strstr(jerr.text, "decode byte"))) {
            /* 1E999 is JSON, but not to jansson; invalid UTF-8 in a
             * string is let through here (mg_usage.h) */
            continue;
        }
        if (!root) {
            if (whole.result.status != MG_USAGE_MALFORMED) {
                fail_msg("jansson refuses '%s', scanner says %d", g.b,
                         whole.result.status);
            }
        }
        else {
            valid++;
            oracle(root, &want);
            json_decref(root);
            found += want.status == MG_USAGE_FOUND;
            invalid += want.status == MG_USAGE_INVALID;
            if (whole.result.status != want.status
                || whole.result.prompt != want.prompt
                || whole.result.completion != want.completion
                || whole.result.total != want.total
                || whole.result.reported_total != want.reported_total
                || whole.result.from_response != want.from_response) {
                fail_msg("'%s': scanner %d (%s) %lld/%lld/%lld, jansson %d "
                         "%lld/%lld/%lld", g.b, whole.result.status,
                         whole.result.why, (long long)whole.result.prompt,
                         (long long)whole.result.completion,
                         (long long)whole.result.total, want.status,
                         (long long)want.prompt, (long long)want.completion,
                         (long long)want.total);
            }
        }
        for (k = 0; k < 3; k++) {
            scan(MG_USAGE_JSON, g.b, g.len, 1 + rnd(&g, g.len),
                 1 + rnd(&g, 16), &split);
            assert_same(&whole, &split, g.b);
        }
        scan(MG_USAGE_JSON, g.b, g.len, 1, 1, &split);
        assert_same(&whole, &split, g.b);
    }
    print_message("%d documents, %d valid: %d with a usage, %d invalid\n",
                  4000, valid, found, invalid);
    /* the generator reaches every outcome often */
    assert_true(valid > 2000);
    assert_true(found > 200);
    assert_true(invalid > 200);
}

/* The same documents as an event stream: each one an event whose lines
 * are data lines, with random line endings; the last usage carried wins. */
static void test_random_streams_against_jansson(void **state)
{
    static const char *const eols[] = { "\n", "\r\n", "\r" };
    apr_pool_t *p = *state;
    gen g;
    char *t = apr_palloc(p, 1 << 18);
    apr_size_t tlen, i;
    int iter, d, k;
    scan_out whole, split;
    mg_usage want, doc;
    json_t *root;

    g.cap = 1 << 14;
    g.b = apr_palloc(p, g.cap + 2);
    g.rng.s = 7;
    for (iter = 0; iter < 500; iter++) {
        const char *eol = eols[rnd(&g, 3)];
        memset(&want, 0, sizeof(want));
        want.status = MG_USAGE_ABSENT;
        tlen = 0;
        for (d = 0; d < 4; d++) {
            g.len = 0;
            put(&g, "{\"choices\":[],\"usage\":");
            if (rnd(&g, 2)) {
                gen_usage(&g);
            }
            else {
                gen_value(&g, 2);
            }
            put(&g, "}");
            if (rnd(&g, 3) == 0) {
                corrupt(&g);
            }
            g.b[g.len] = '\0';
            root = json_loadb(g.b, g.len, JSON_DECODE_ANY, NULL);
            if (root) {
                oracle(root, &doc);
                json_decref(root);
                if (doc.status != MG_USAGE_ABSENT) {
                    want = doc;
                }
            }
            /* "data: " + each line of the document + the blank line */
            memcpy(t + tlen, "data: ", 6);
            tlen += 6;
            for (i = 0; i < g.len; i++) {
                if (g.b[i] == '\r' || g.b[i] == '\n') {
                    if (g.b[i] == '\r' && i + 1 < g.len && g.b[i + 1] == '\n') {
                        i++;
                    }
                    tlen += apr_cpystrn(t + tlen, eol, 3) - (t + tlen);
                    memcpy(t + tlen, "data:", 5);
                    tlen += 5;
                }
                else {
                    t[tlen++] = g.b[i];
                }
            }
            tlen += apr_cpystrn(t + tlen, eol, 3) - (t + tlen);
            tlen += apr_cpystrn(t + tlen, eol, 3) - (t + tlen);
        }
        t[tlen] = '\0';
        scan(MG_USAGE_SSE, t, tlen, 0, 0, &whole);
        if (whole.result.status != want.status
            || (want.status == MG_USAGE_FOUND
                && (whole.result.prompt != want.prompt
                    || whole.result.completion != want.completion
                    || whole.result.total != want.total))) {
            fail_msg("'%s': scanner %d (%s), jansson %d", t,
                     whole.result.status, whole.result.why, want.status);
        }
        assert_int_equal(whole.n, 4);
        for (k = 0; k < 3; k++) {
            scan(MG_USAGE_SSE, t, tlen, 1 + rnd(&g, tlen), 1 + rnd(&g, 32),
                 &split);
            assert_same(&whole, &split, t);
        }
        scan(MG_USAGE_SSE, t, tlen, 1, 1, &split);
        assert_same(&whole, &split, t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_chat_completion_usage_anywhere),
        MG_TEST(test_nested_usage_is_not_the_answers),
        MG_TEST(test_embeddings_and_completions),
        MG_TEST(test_responses_api),
        MG_TEST(test_values),
        MG_TEST(test_malformed_json),
        MG_TEST(test_long_strings_every_offset),
        MG_TEST(test_nesting_limit),
        MG_TEST(test_chat_stream),
        MG_TEST(test_usage_only_needs_empty_choices_and_usage),
        MG_TEST(test_sse_fields_and_comments),
        MG_TEST(test_sse_byte_order_mark),
        MG_TEST(test_sse_multi_line_data),
        MG_TEST(test_sse_malformed_events),
        MG_TEST(test_sse_responses_api),
        MG_TEST(test_sse_cr_at_chunk_end),
        MG_TEST(test_filter_drops_the_usage_only_event),
        MG_TEST(test_ten_megabyte_event),
        MG_TEST(test_random_documents_against_jansson),
        MG_TEST(test_random_streams_against_jansson),
    };
    return MG_RUN(tests);
}
