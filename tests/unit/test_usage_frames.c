/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_usage_frames.c -- the SSE scanner's framing-only mode
 * (mg_usage_init_frames): the MODELGATE_USAGE filter frames every event
 * with it and gives a full scanner only the events that may carry a usage,
 * so its event ends must be the full scanner's, byte for byte, however the
 * stream is cut; and which events may carry a usage (mg_usage_may_carry)
 * must be what the plain rule says, however the bytes fall.
 */
#include <string.h>
#include "mg_test.h"
#include "mg_usage.h"

/* Every event end (absolute offset) a scanner reports over `t` fed in
 * pieces of `step` bytes; returns how many. */
static apr_size_t ends(mg_usage_scanner *s, const char *t, apr_size_t len,
                       apr_size_t step, apr_size_t *at, apr_size_t max)
{
    mg_usage_event ev;
    apr_size_t off = 0, n, count = 0, end;

    while (off < len) {
        end = len - off < step ? len : off + step;
        while (off < end) {
            n = mg_usage_feed(s, t + off, end - off, &ev);
            if (ev.ended && count < max) {
                at[count++] = off + n;
            }
            off += n;
        }
    }
    mg_usage_finish(s, &ev);
    if (ev.ended && count < max) {
        at[count++] = len;
    }
    return count;
}

static void test_frames_end_where_the_scanner_ends(void **state)
{
    static const char *const streams[] = {
        /* a chat stream with include_usage, LF */
        "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"a\"}}],"
        "\"usage\":null}\n\n"
        ": a comment\n\n"
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
        "\"completion_tokens\":1}}\n\ndata: [DONE]\n\n",
        /* CRLF, CR, multi-line data, a BOM, fields */
        "\xef\xbb\xbf" "event: x\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n"
        "data: {\"usage\":{\"total_tokens\":9}}\r\r"
        "id: 7\ndata: [DONE]\r\r",
        /* what the "data:" fast path must tell apart: no space, a field
         * named like it, "data" alone, an empty one, a data line after a
         * CR line end (in one event), two spaces, an LF right after a
         * data line's colon that follows a CR */
        "data:{\"x\":1}\n\ndatax: 1\ndata\ndat: 2\n\n"
        "data:\r\rdata: {\"usage\":\rdata: {\"total_tokens\":4}}\r\r"
        "data:  {\"y\":2}\n\nid: 1\rdata:\n\ndata: [DONE]\n\n",
    };
    mg_usage_scanner *full = apr_palloc(*state, sizeof(*full));
    mg_usage_scanner *frames = apr_palloc(*state, sizeof(*frames));
    apr_size_t want[16], got[16], one[16], nw, ng, n1, step, i, len;
    mg_usage u, u1;

    for (i = 0; i < sizeof(streams) / sizeof(streams[0]); i++) {
        len = strlen(streams[i]);
        /* a byte at a time: never the fast path for "data:" */
        mg_usage_init(full, MG_USAGE_SSE);
        n1 = ends(full, streams[i], len, 1, one, 16);
        mg_usage_result(full, &u1);
        for (step = 1; step <= len; step++) {
            mg_usage_init(full, MG_USAGE_SSE);
            mg_usage_init_frames(frames);
            nw = ends(full, streams[i], len, step, want, 16);
            ng = ends(frames, streams[i], len, step, got, 16);
            assert_int_equal(ng, nw);
            assert_memory_equal(got, want, nw * sizeof(want[0]));
            assert_int_equal(nw, n1);
            assert_memory_equal(want, one, n1 * sizeof(one[0]));
            /* nothing read: no usage, no event counted */
            mg_usage_result(frames, &u);
            assert_int_equal(u.status, MG_USAGE_ABSENT);
            assert_int_equal(u.events, 0);
            mg_usage_result(full, &u);
            assert_int_equal(u.status, MG_USAGE_FOUND);
            assert_int_equal(u.total, u1.total);
            assert_int_equal(u.events, u1.events);
            assert_int_equal(u.malformed_events, u1.malformed_events);
            assert_int_equal(u.largest_event, u1.largest_event);
        }
        assert_true(nw >= 3);
    }
}

static void test_frames_keep_the_largest_event(void **state)
{
    mg_usage_scanner *s = apr_palloc(*state, sizeof(*s));
    char *t = apr_palloc(*state, 70000);
    mg_usage_event ev;
    mg_usage u;
    apr_size_t len, at = 0;

    memcpy(t, "data: \"", 7);
    memset(t + 7, 'x', 65536);
    memcpy(t + 7 + 65536, "\"\n\ndata: 1\n\n", 12);
    len = 7 + 65536 + 12;
    mg_usage_init_frames(s);
    while (at < len) {
        at += mg_usage_feed(s, t + at, len - at < 1000 ? len - at : 1000, &ev);
    }
    mg_usage_finish(s, &ev);
    mg_usage_result(s, &u);
    assert_int_equal(u.largest_event, 7 + 65536 + 3);
}

/* An event whose blank line ends in CR at the end of what was fed is
 * reported by mg_usage_feed only when the next byte comes; a filter ends it
 * at once with mg_usage_end_pending, then takes an LF that follows as that
 * line's end itself. */
static void test_end_pending(void **state)
{
    mg_usage_scanner *s = apr_palloc(*state, sizeof(*s));
    mg_usage_event ev;
    mg_usage u;
    const char *a = "data: {\"choices\":[],\"usage\":{\"total_tokens\":5}}\r\r";
    const char *b = "data: [DONE]\r\r";

    mg_usage_init(s, MG_USAGE_SSE);
    assert_int_equal(mg_usage_feed(s, a, strlen(a), &ev), strlen(a));
    assert_false(ev.ended);
    assert_int_equal(mg_usage_end_pending(s, &ev), 1);
    assert_true(ev.ended);
    assert_true(ev.usage_only);
    assert_int_equal(ev.usage->total, 5);
    assert_int_equal(mg_usage_end_pending(s, &ev), 0);
    assert_false(ev.ended);
    /* the next event as usual (the caller took no LF: none came) */
    assert_int_equal(mg_usage_feed(s, b, strlen(b), &ev), strlen(b));
    assert_false(ev.ended);
    assert_int_equal(mg_usage_end_pending(s, &ev), 1);
    assert_true(ev.done);
    mg_usage_finish(s, &ev);
    assert_false(ev.ended);
    mg_usage_result(s, &u);
    assert_int_equal(u.status, MG_USAGE_FOUND);
    assert_int_equal(u.total, 5);
    assert_int_equal(u.largest_event, strlen(a));
    /* nothing pends after an LF line end, nor in JSON */
    mg_usage_init(s, MG_USAGE_SSE);
    mg_usage_feed(s, "data: 1\n", 8, &ev);
    assert_int_equal(mg_usage_end_pending(s, &ev), 0);
    mg_usage_init(s, MG_USAGE_JSON);
    assert_int_equal(mg_usage_end_pending(s, &ev), 0);
}

/* The rule as first written, trying every quote: the oracle.  A line
 * break after the name or its ':' is a doubt (the SSE framing of a next
 * data line may be there). */
static int may_carry_oracle(const char *b, apr_size_t n)
{
    const char *end = b + n, *p, *q;

    for (p = b; p < end && (p = memchr(p, '\\', (apr_size_t)(end - p)))
                           != NULL; p += 2) {
        if (p + 1 < end && p[1] == 'u') {
            return 1;
        }
    }
    for (p = b; (p = memchr(p, '"', (apr_size_t)(end - p))) != NULL; p++) {
        int brk = 0;

        if (end - p < 7 || memcmp(p, "\"usage\"", 7)) {
            continue;
        }
        for (q = p + 7; q < end && (*q == ' ' || *q == '\t' || *q == '\n'
                                    || *q == '\r' || *q == '\v'
                                    || *q == '\f'); q++) {
            brk |= *q == '\n' || *q == '\r';
        }
        if (q == end) {
            continue;
        }
        if (brk) {
            return 1;               /* a line break: maybe SSE framing */
        }
        if (*q != ':') {
            continue;
        }
        for (q++; q < end && (*q == ' ' || *q == '\t' || *q == '\n'
                              || *q == '\r' || *q == '\v' || *q == '\f');
             q++) {
            brk |= *q == '\n' || *q == '\r';
        }
        if (brk || end - q < 4 || memcmp(q, "null", 4)) {
            return 1;
        }
    }
    return 0;
}

static void test_may_carry_cases(void **state)
{
    static const struct { const char *text; int want; } cases[] = {
        { "{\"choices\":[],\"usage\":null}", 0 },
        { "{\"choices\":[],\"usage\": \tnull }", 0 },
        { "{\"choices\":[],\"usage\":{\"prompt_tokens\":1}}", 1 },
        { "{\"usage\" : 0}", 1 },
        { "{\"usage\":nul", 1 },              /* cut short: in doubt */
        { "{\"usage\"", 0 },                  /* a name, no value yet */
        { "{\"x\":\"usage\"}", 0 },             /* a value */
        { "{\"x\":\"\\u0075sage\"}", 1 },       /* an escape: in doubt */
        { "{\"logprobs\":null,\"x\":\"big\"}", 0 },
        { "\"usage\":1", 1 },                 /* at the very start */
        { "usage\":1", 0 },
        { "g", 0 },
        { "", 0 },
    };
    apr_size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *t = cases[i].text;

        assert_int_equal(mg_usage_may_carry(t, strlen(t)), cases[i].want);
        assert_int_equal(may_carry_oracle(t, strlen(t)), cases[i].want);
    }
}

/* SSE joins an event's data lines with LF: a member name and its ':' may be
 * on two lines, with the framing of the next (and comments) between them.
 * The full scanner reads such a usage, so may_carry, which sees the raw
 * event, must not say 0 for it. */
static void test_may_carry_across_data_lines(void **state)
{
    static const char *const events[] = {
        "data: {\"choices\":[],\"usage\"\ndata: :{\"prompt_tokens\":3}}\n\n",
        "data: {\"choices\":[],\"usage\"\r\ndata: :{\"prompt_tokens\":3}}"
        "\r\n\r\n",
        "data: {\"choices\":[],\"usage\"\rdata: :{\"prompt_tokens\":3}}\r\r",
        "data: {\"choices\":[],\"usage\"\n: a comment\ndata: :"
        "{\"prompt_tokens\":3}}\n\n",
        /* a comment that looks like the rest of a `"usage": null` */
        "data: {\"choices\":[],\"usage\"\n: null\ndata: :"
        "{\"prompt_tokens\":3}}\n\n",
        "data: {\"choices\":[],\"usage\":\n:null\ndata: "
        "{\"prompt_tokens\":3}}\n\n",
    };
    mg_usage_scanner *full = apr_palloc(*state, sizeof(*full));
    mg_usage_event ev;
    mg_usage u;
    apr_size_t i, len, at, n;

    for (i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        len = strlen(events[i]);
        mg_usage_init(full, MG_USAGE_SSE);
        for (at = 0; at < len; at += n) {
            n = mg_usage_feed(full, events[i] + at, len - at, &ev);
        }
        mg_usage_finish(full, &ev);
        mg_usage_result(full, &u);
        assert_int_equal(u.status, MG_USAGE_FOUND);
        assert_int_equal(u.prompt, 3);
        assert_int_equal(mg_usage_may_carry(events[i], len), 1);
    }
}

static unsigned int next(unsigned int *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 16;
}

/* Random events made of the pieces the rule turns on, every prefix and
 * suffix of each: the memchr for `g` must find what trying every quote
 * finds, wherever the bytes fall. */
static void test_may_carry_agrees_with_the_rule(void **state)
{
    static const char *const pieces[] = {
        "\"usage\"", "\"usage\"", ":", " ", "\n", "null", "nul", "0", "{",
        "}", ",", "\"", "g", "u", "usage", "\\", "\\u", "x", "\"lo",
        "gprobs\"", "\"usag", "e\"", "gg", "\"g\"", "\ndata: ", "\r", "\n: ",
    };
    char buf[512];
    unsigned int seed = 12345;
    apr_size_t len, i, k, checked = 0, carried = 0;
    int t;

    (void)state;
    for (t = 0; t < 20000; t++) {
        len = 0;
        for (i = 0, k = next(&seed) % 16; i <= k; i++) {
            const char *piece =
                pieces[next(&seed) % (sizeof(pieces) / sizeof(pieces[0]))];
            apr_size_t plen = strlen(piece);

            if (len + plen >= sizeof(buf)) {
                break;
            }
            memcpy(buf + len, piece, plen);
            len += plen;
        }
        for (i = 0; i <= len; i++) {
            assert_int_equal(mg_usage_may_carry(buf, i),
                             may_carry_oracle(buf, i));
            assert_int_equal(mg_usage_may_carry(buf + i, len - i),
                             may_carry_oracle(buf + i, len - i));
            carried += (apr_size_t)may_carry_oracle(buf, i);
            checked += 2;
        }
    }
    /* both answers were met often */
    assert_true(carried > checked / 50);
    assert_true(carried < checked / 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_frames_end_where_the_scanner_ends),
        MG_TEST(test_frames_keep_the_largest_event),
        MG_TEST(test_end_pending),
        MG_TEST(test_may_carry_cases),
        MG_TEST(test_may_carry_across_data_lines),
        MG_TEST(test_may_carry_agrees_with_the_rule),
    };

    return MG_RUN(tests);
}
