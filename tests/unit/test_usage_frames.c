/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_usage_frames.c -- the SSE scanner's framing-only mode
 * (mg_usage_init_frames): the MODELGATE_USAGE filter frames every event
 * with it and gives a full scanner only the events that may carry a usage,
 * so its event ends must be the full scanner's, byte for byte, however the
 * stream is cut.
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
    };
    mg_usage_scanner *full = apr_palloc(*state, sizeof(*full));
    mg_usage_scanner *frames = apr_palloc(*state, sizeof(*frames));
    apr_size_t want[16], got[16], nw, ng, step, i, len;
    mg_usage u;

    for (i = 0; i < sizeof(streams) / sizeof(streams[0]); i++) {
        len = strlen(streams[i]);
        for (step = 1; step <= len; step++) {
            mg_usage_init(full, MG_USAGE_SSE);
            mg_usage_init_frames(frames);
            nw = ends(full, streams[i], len, step, want, 16);
            ng = ends(frames, streams[i], len, step, got, 16);
            assert_int_equal(ng, nw);
            assert_memory_equal(got, want, nw * sizeof(want[0]));
            /* nothing read: no usage, no event counted */
            mg_usage_result(frames, &u);
            assert_int_equal(u.status, MG_USAGE_ABSENT);
            assert_int_equal(u.events, 0);
            mg_usage_result(full, &u);
            assert_int_equal(u.status, MG_USAGE_FOUND);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_frames_end_where_the_scanner_ends),
        MG_TEST(test_frames_keep_the_largest_event),
    };

    return MG_RUN(tests);
}
