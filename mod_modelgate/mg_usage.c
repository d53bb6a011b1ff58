/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_usage.c -- reading the token usage of a model server's answer as it
 * streams past (see mg_usage.h).
 *
 * The JSON lexer is in mg_usage_json.c; here is the SSE framing around
 * it, a second small state machine, and the API.
 */
#include <stddef.h>
#include <string.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include "mg_usage_json.h"

/* SSE line states */
enum { L_START, L_FIELD, L_SPACE, L_DATA, L_IGNORE };

#define DONE_TEXT "[DONE]"
#define DONE_LEN 6
#define NO_MATCH 0xff

/* ---- SSE framing --------------------------------------------------------- */

static void event_reset(mg_usage_scanner *s)
{
    mg_usage_json_init(&s->json);
    s->line = L_START;
    s->has_data = 0;
    s->done_pos = 0;
    s->data_lines = 0;
    s->event_bytes = 0;
}

void mg_usage_init(mg_usage_scanner *s, mg_usage_mode mode)
{
    /* Field by field, not a memset of the whole (~920 bytes, most of them
     * the lexer's stack and two `why` texts that need no zeros): every
     * answer with token layers starts one. */
    s->mode = mode;
    s->frames_only = 0;
    s->field_pos = s->skip_lf = s->pending_end = s->bom = 0;
    event_reset(s);
    mg_usage_json_eval(&s->json, 0, &s->result);
    mg_usage_json_eval(&s->json, 0, &s->event);
}

void mg_usage_init_frames(mg_usage_scanner *s)
{
    mg_usage_init(s, MG_USAGE_SSE);
    s->frames_only = 1;
}

static void data_bytes(mg_usage_scanner *s, const unsigned char *b,
                       apr_size_t n)
{
    apr_size_t i;

    if (s->frames_only) {
        return;
    }
    for (i = 0; i < n && s->done_pos != NO_MATCH; i++) {
        s->done_pos = s->done_pos < DONE_LEN
                      && (unsigned char)DONE_TEXT[s->done_pos] == b[i]
                      ? s->done_pos + 1 : NO_MATCH;
    }
    mg_usage_json_feed(&s->json, b, n);
}

/* A data line starts: lines after the first are joined with "\n". */
static void data_line(mg_usage_scanner *s)
{
    s->has_data = 1;
    if (s->data_lines++) {
        data_bytes(s, (const unsigned char *)"\n", 1);
    }
}

static int ruled_out(const mg_usage_scanner *s)
{
    const mg_usage_json_ *j = &s->json;

    return j->state == J_BAD || j->not_object || j->choices_ruled
           || s->event_bytes > MG_USAGE_ONLY_MAX;
}

int mg_usage_may_be_usage_only(const mg_usage_scanner *s)
{
    return s->mode == MG_USAGE_SSE && !ruled_out(s);
}

static void event_end(mg_usage_scanner *s, mg_usage_event *ev,
                      apr_size_t end)
{
    mg_usage_json_ *j = &s->json;
    int nonempty;

    ev->ended = 1;
    ev->end = end;
    ev->has_data = s->has_data;
    ev->done = 0;
    ev->usage_only = 0;
    ev->usage = &s->event;
    if (s->event_bytes > s->result.largest_event) {
        s->result.largest_event = s->event_bytes;
    }
    if (s->frames_only) {
        /* s->event stays the ABSENT of mg_usage_init */
        ev->has_data = s->has_data;
        s->line = L_START;
        s->has_data = 0;
        s->data_lines = 0;
        s->event_bytes = 0;
        return;
    }
    if (!s->has_data || s->done_pos == DONE_LEN) {
        /* nothing to read: no usage (the lexer choked on [DONE]) */
        ev->done = s->has_data;
        mg_usage_json_init(j);
        mg_usage_json_eval(j, 0, &s->event);
    }
    else {
        s->result.events++;
        nonempty = mg_usage_json_finish(j);
        mg_usage_json_eval(j, nonempty, &s->event);
        if (s->event.status == MG_USAGE_MALFORMED) {
            s->result.malformed_events++;
        }
        else if (s->event.status != MG_USAGE_ABSENT) {
            /* The last usage carried is the answer. */
            apr_uint64_t events = s->result.events;
            apr_uint64_t malformed = s->result.malformed_events;
            apr_uint64_t largest = s->result.largest_event;

            s->result = s->event;
            s->result.events = events;
            s->result.malformed_events = malformed;
            s->result.largest_event = largest;
        }
        ev->usage_only = !ruled_out(s) && j->choices == CH_EMPTY
                         && j->slot[0].state == U_OBJECT;
    }
    event_reset(s);
}

static void line_end(mg_usage_scanner *s, unsigned char c)
{
    s->line = L_START;
    s->skip_lf = c == '\r';
}

apr_size_t mg_usage_feed(mg_usage_scanner *s, const char *buf,
                         apr_size_t len, mg_usage_event *ev)
{
    const unsigned char *b = (const unsigned char *)buf;
    apr_size_t i = 0, k;
    unsigned char c;

    ev->ended = 0;
    if (s->mode == MG_USAGE_JSON) {
        mg_usage_json_feed(&s->json, b, len);
        return len;
    }
    while (i < len) {
        c = b[i];
        if (s->pending_end) {
            /* A blank line ended in CR: an LF after it is part of it. */
            s->pending_end = 0;
            if (c == '\n') {
                s->event_bytes++;
                event_end(s, ev, i + 1);
                return i + 1;
            }
            event_end(s, ev, i);
            return i;
        }
        if (s->line == L_START && s->bom == 3 && c == 'd' && len - i >= 5
            && !memcmp(b + i, "data:", 5)) {
            /* a data line's field name, nearly every line of a stream:
             * what the byte loop below does with these five bytes */
            s->skip_lf = 0;
            s->event_bytes += 5;
            i += 5;
            data_line(s);
            s->line = L_SPACE;
            continue;
        }
        if (s->line == L_DATA && c != '\r' && c != '\n') {
            /* the bulk of a stream: data bytes straight to the lexer, up
             * to the line's end (memchr: a byte loop cost as much as the
             * lexer) */
            const unsigned char *lf = memchr(b + i, '\n', len - i);
            const unsigned char *cr;

            k = lf ? (apr_size_t)(lf - b) : len;
            if ((cr = memchr(b + i, '\r', k - i)) != NULL) {
                k = (apr_size_t)(cr - b);
            }
            s->event_bytes += k - i;
            data_bytes(s, b + i, k - i);
            i = k;
            continue;
        }
        s->event_bytes++;
        i++;
        if (s->bom < 3) {
            /* One leading byte order mark is not part of the stream (the
             * SSE standard); a broken one is a field name's first bytes. */
            if ((unsigned char)"\xef\xbb\xbf"[s->bom] == c) {
                s->bom++;
                continue;
            }
            if (s->bom) {
                s->line = L_FIELD;
                s->field_pos = NO_MATCH;
            }
            s->bom = 3;
        }
        if (s->skip_lf) {
            s->skip_lf = 0;
            if (c == '\n') {
                continue;
            }
        }
        switch (s->line) {
        case L_START:
            if (c == '\n') {
                event_end(s, ev, i);
                return i;
            }
            if (c == '\r') {
                s->pending_end = 1;
                continue;
            }
            if (c == ':') {
                s->line = L_IGNORE;     /* a comment */
                continue;
            }
            s->line = L_FIELD;
            s->field_pos = 0;
            /* fall through - c is the first byte of a field name */
        case L_FIELD:
            if (c == ':' || c == '\r' || c == '\n') {
                if (s->field_pos == 4) {
                    data_line(s);
                }
                if (c == ':') {
                    s->line = s->field_pos == 4 ? L_SPACE : L_IGNORE;
                }
                else {
                    line_end(s, c);     /* "data" alone: an empty value */
                }
            }
            else {
                s->field_pos = s->field_pos < 4 && "data"[s->field_pos] == c
                               ? s->field_pos + 1 : NO_MATCH;
            }
            continue;
        case L_SPACE:
            s->line = L_DATA;
            if (c == ' ') {
                continue;
            }
            if (c == '\r' || c == '\n') {
                line_end(s, c);
                continue;
            }
            data_bytes(s, &c, 1);
            continue;
        case L_DATA:
        case L_IGNORE:
            if (c == '\r' || c == '\n') {
                line_end(s, c);
            }
            continue;
        }
    }
    return len;
}

int mg_usage_end_pending(mg_usage_scanner *s, mg_usage_event *ev)
{
    ev->ended = 0;
    if (s->mode != MG_USAGE_SSE || !s->pending_end) {
        return 0;
    }
    s->pending_end = 0;
    event_end(s, ev, 0);
    return 1;
}

void mg_usage_finish(mg_usage_scanner *s, mg_usage_event *ev)
{
    int nonempty;

    if (ev) {
        ev->ended = 0;
    }
    if (s->mode == MG_USAGE_JSON) {
        nonempty = mg_usage_json_finish(&s->json);
        mg_usage_json_eval(&s->json, nonempty, &s->result);
        return;
    }
    if (s->pending_end) {
        s->pending_end = 0;
        event_end(s, ev, 0);
    }
    /* An event the stream did not close is not dispatched. */
    event_reset(s);
}

void mg_usage_result(const mg_usage_scanner *s, mg_usage *u)
{
    *u = s->result;
}

/* ---- what a finished document says --------------------------------------- */

/* Why a member's value is refused, by P_*. */
static const char *const problems[] = {
    "", "is negative", "is not a whole number", "is larger than 10^12",
    "is a string, not a number", "is null", "is a boolean, not a number",
    "is an object or array, not a number"
};

/* What a finished document says. */
void mg_usage_json_eval(const mg_usage_json_ *j, int nonempty, mg_usage *u)
{
    const mg_usage_slot_ *slot;
    const char *name;
    int s, f, given = 0;

    /* `why` is written only for a usage not taken */
    memset(u, 0, offsetof(mg_usage, why));
    u->why[0] = '\0';
    u->prompt = u->completion = u->total = u->reported_total = -1;
    if (j->state == J_BAD) {
        u->status = MG_USAGE_MALFORMED;
        apr_snprintf(u->why, sizeof(u->why), "not JSON: %s at byte %"
                     APR_UINT64_T_FMT, j->err, j->err_pos);
        return;
    }
    if (!nonempty) {
        u->status = MG_USAGE_ABSENT;
        return;
    }
    /* The top-level usage first; a usage: null leaves room for
     * response.usage. */
    for (s = 0; s < 2; s++) {
        if (j->slot[s].state == U_OBJECT || j->slot[s].state == U_OTHER) {
            break;
        }
    }
    if (s == 2) {
        u->status = MG_USAGE_ABSENT;
        return;
    }
    slot = &j->slot[s];
    name = s ? "response.usage" : "usage";
    u->from_response = s;
    u->status = MG_USAGE_INVALID;
    if (slot->state == U_OTHER) {
        apr_snprintf(u->why, sizeof(u->why), "%s is not an object", name);
        return;
    }
    for (f = 0; f < F_COUNT; f++) {
        if (slot->f[f].problem) {
            apr_snprintf(u->why, sizeof(u->why), "%s.%s %s", name,
                         mg_usage_json_field_name(f), problems[slot->f[f].problem]);
            return;
        }
        given |= slot->f[f].value >= 0;
    }
    if (!given) {
        apr_snprintf(u->why, sizeof(u->why), "%s has no token count", name);
        return;
    }
    u->status = MG_USAGE_FOUND;
    u->prompt = slot->f[F_PROMPT].value >= 0 ? slot->f[F_PROMPT].value
                : slot->f[F_INPUT].value;
    u->completion = slot->f[F_COMPLETION].value >= 0
                    ? slot->f[F_COMPLETION].value : slot->f[F_OUTPUT].value;
    u->reported_total = slot->f[F_TOTAL].value;
    if (u->prompt >= 0 || u->completion >= 0) {
        u->total = (u->prompt > 0 ? u->prompt : 0)
                   + (u->completion > 0 ? u->completion : 0);
        u->total_disagrees = u->reported_total >= 0
                             && u->reported_total != u->total;
    }
    else {
        u->total = u->reported_total;
    }
}

/* Most events of a stream need not be read at all.  Every `"usage"` has its
 * `g` four bytes in, and in a chunk `g` is rare (`logprobs`, `usage`, a
 * word of the text now and then) where quotes are not (forty a chunk):
 * finding each `g` with memchr costs a call per candidate, so this is
 * about five times cheaper than trying every quote. */
int mg_usage_may_carry(const char *b, apr_size_t n)
{
    const char *end = b + n, *p, *q;
    int brk;

    /* A '\\' as the last byte escapes nothing here: looked for before
     * it, so p += 2 stays within b[0 .. n] (a pointer past that is
     * undefined behaviour, even unread). */
    for (p = b; end - p > 1 && (p = memchr(p, '\\', (apr_size_t)(end - p - 1)))
                               != NULL; p += 2) {
        if (p[1] == 'u') {
            return 1;
        }
    }
    if (n < 7) {
        return 0;
    }
    for (p = b + 4; p < end && (p = memchr(p, 'g', (apr_size_t)(end - p)))
                           != NULL; p++) {
        if (end - p < 3 || memcmp(p - 4, "\"usage\"", 7)) {
            continue;
        }
        /* The bytes are the raw event: a line break between the name, its
         * ':' and its value may hide the SSE framing of the next data line
         * (joined with LF, the data still says "usage": {...}), or a
         * comment line: in doubt. */
        brk = 0;
        for (q = p + 3; q < end && apr_isspace(*q); q++) {
            brk |= *q == '\n' || *q == '\r';
        }
        if (q == end) {
            continue;
        }
        if (brk) {
            return 1;       /* the line ends: what follows may be framing */
        }
        if (*q != ':') {
            continue;                   /* a value, not a member name */
        }
        for (q++; q < end && apr_isspace(*q); q++) {
            brk |= *q == '\n' || *q == '\r';
        }
        if (brk || end - q < 4 || memcmp(q, "null", 4)) {
            return 1;
        }
    }
    return 0;
}
