/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_usage.h -- the token usage a model server reports in its answer,
 * read as the answer streams past.
 *
 * Two shapes of answer are read:
 *
 *   MG_USAGE_JSON  one JSON document (chat completions, completions,
 *                  embeddings, the Responses API): its top-level `usage`
 *                  object, else `response.usage` (the Responses API's
 *                  `response.completed` event shape).
 *   MG_USAGE_SSE   a text/event-stream: every event's `data` is scanned as
 *                  one such document; the usage of the LAST event that
 *                  carried one is the answer.  `data: [DONE]` and data that
 *                  is not JSON are ignored.  Framing as the SSE standard
 *                  has it: events end at a blank line (LF, CRLF or CR
 *                  line ends), data lines are joined with LF, comments and
 *                  other fields are skipped, one leading BOM is dropped.
 *
 * Inside a usage object these members are read, each an integer in
 * 0 .. MG_USAGE_MAX_TOKENS:
 *   prompt_tokens     (else input_tokens, the Responses API's name)
 *   completion_tokens (else output_tokens; embeddings have neither)
 *   total_tokens
 * Every other member, and a `usage` key anywhere else (in a message, in
 * metadata, inside a string), is skipped.  A member given twice counts
 * with its last value, as jansson and most clients read it.
 *
 * The total: when a part (prompt or completion) is given, total is
 * prompt + completion (a missing part counts 0) and a total_tokens that
 * disagrees is not taken but reported (`total_disagrees`, so the glue can
 * log it).  The parts are what prices and per-direction limits apply to;
 * a total that is not their sum is a server bug the gateway must not
 * charge twice.  Only when neither part is given is total_tokens taken.
 *
 * Memory: the scanner is one fixed-size struct the caller owns (put it in
 * a filter context); it allocates nothing and buffers nothing, whatever
 * the size of the body or of an event.  Bytes may be fed in chunks of any
 * size, split anywhere (inside a string escape, a number, a CRLF).
 * Nesting deeper than MG_USAGE_MAX_DEPTH is malformed (jansson's limit).
 *
 * Leniency: strings are not checked for valid UTF-8 and \u escapes are
 * not checked for surrogate pairing (jansson checks both); every other
 * rule of RFC 8259 is enforced, so a document jansson accepts is read
 * here with the same members and values.
 */
#ifndef MG_USAGE_H
#define MG_USAGE_H

#include <apr.h>

/** The largest token count taken (10^12); more is invalid. */
#define MG_USAGE_MAX_TOKENS APR_INT64_C(1000000000000)

/** Deepest nesting of arrays and objects (jansson's JSON_PARSER_MAX_DEPTH). */
#define MG_USAGE_MAX_DEPTH 2048

/** An SSE event longer than this (framing included) is never usage-only:
 * a usage-only chunk is a few hundred bytes, and this bounds what a filter
 * holds back while it waits to know (mg_usage_may_be_usage_only). */
#define MG_USAGE_ONLY_MAX 16384

typedef enum {
    MG_USAGE_JSON = 0,        /**< one JSON document */
    MG_USAGE_SSE              /**< text/event-stream */
} mg_usage_mode;

typedef enum {
    MG_USAGE_ABSENT = 0,      /**< no usage (none, null, or an empty body) */
    MG_USAGE_FOUND,           /**< prompt/completion/total hold it */
    MG_USAGE_INVALID,         /**< a usage that cannot be taken; see why */
    MG_USAGE_MALFORMED        /**< not JSON (JSON mode, or one SSE event) */
} mg_usage_status;

/** What an answer (or one event) says. */
typedef struct mg_usage {
    mg_usage_status status;
    /** prompt_tokens, else input_tokens; -1 when neither is given */
    apr_int64_t prompt;
    /** completion_tokens, else output_tokens; -1 when neither is given */
    apr_int64_t completion;
    /** the total (see above); -1 unless FOUND */
    apr_int64_t total;
    /** total_tokens as sent; -1 when not sent */
    apr_int64_t reported_total;
    /** reported_total was sent and is not total */
    int total_disagrees;
    /** read from response.usage, not from usage */
    int from_response;
    /** SSE: events whose data was scanned ([DONE] aside) */
    apr_uint64_t events;
    /** SSE: of those, the ones that were not JSON */
    apr_uint64_t malformed_events;
    /** SSE: the bytes of the longest event that ended (framing included) */
    apr_uint64_t largest_event;
    /** INVALID or MALFORMED: a sentence for the log */
    char why[128];
} mg_usage;

/** One SSE event, reported by mg_usage_feed when it ends. */
typedef struct mg_usage_event {
    /** an event ended: the fields below are set */
    int ended;
    /** it ended just before buf[end] (the value mg_usage_feed returns) */
    apr_size_t end;
    /** it carried a data field */
    int has_data;
    /** its data was [DONE] */
    int done;
    /** a chat/completions chunk whose `choices` is [] and that has a
     * `usage` object: the chunk stream_options.include_usage adds */
    int usage_only;
    /** what its data said (valid until the next call); ABSENT without data */
    const mg_usage *usage;
} mg_usage_event;

/* ---- private: the state, read only through the functions below ----------- */

typedef struct mg_usage_field_ {
    apr_int64_t value;        /* -1: not given (or invalid) */
    int problem;              /* why the value given is refused, or 0 */
} mg_usage_field_;

typedef struct mg_usage_slot_ {
    int state;                /* none, null, an object, something else */
    mg_usage_field_ f[5];     /* prompt, completion, total, input, output */
} mg_usage_slot_;

typedef struct mg_usage_json_ {
    apr_uint64_t pos;         /* bytes fed to this document */
    apr_uint64_t err_pos;     /* where it went wrong */
    const char *err;          /* what went wrong (static text) */
    apr_int64_t num;          /* the number being read, capped */
    apr_uint32_t depth;       /* open arrays and objects */
    apr_uint32_t key_mask;    /* names the key being read may still be */
    apr_uint32_t key_len;
    unsigned int hex;         /* a \u escape being read */
    unsigned char state, sub, in_key, key, lit;
    unsigned char num_neg, num_frac, num_big;
    unsigned char val_field, val_slot;  /* the usage member a number goes to */
    unsigned char choices, choices_ruled, not_object;
    unsigned char ctx[4];     /* what the containers at depth 1..3 are */
    unsigned char stack[MG_USAGE_MAX_DEPTH / 8];  /* 1 bit a level: object? */
    mg_usage_slot_ slot[2];   /* usage, response.usage */
} mg_usage_json_;

/** The scanner: fixed size, owned by the caller, no allocation. */
typedef struct mg_usage_scanner {
    mg_usage_mode mode;
    int frames_only;          /* SSE: events framed, data not read */
    mg_usage_json_ json;      /* the document, or the current event's data */
    unsigned char line;       /* SSE: where in a line */
    unsigned char field_pos;  /* SSE: how much of "data" the name matched */
    unsigned char skip_lf;    /* SSE: a line ended in CR; an LF is its own */
    unsigned char pending_end; /* SSE: a blank line ended in CR at the
                                  end of a chunk */
    unsigned char has_data, done_pos;
    unsigned char bom;        /* SSE: bytes of a leading BOM seen; 3: past */
    apr_uint32_t data_lines;
    apr_uint64_t event_bytes; /* SSE: bytes of the current event so far */
    mg_usage result;          /* JSON: the answer; SSE: the last usage */
    mg_usage event;           /* SSE: what the last event said */
} mg_usage_scanner;

/* ---- the calls ----------------------------------------------------------- */

/** Start reading an answer of the given shape. */
void mg_usage_init(mg_usage_scanner *s, mg_usage_mode mode);

/**
 * SSE, framing only: events and where they end are reported as by
 * mg_usage_feed, but their data is not read (every event's usage is
 * ABSENT, none is usage_only, the result counts no event; largest_event
 * is kept).  For a filter that holds each event until it ends and gives
 * a full scanner only the events that may carry a usage: lexing every
 * chunk of a stream costs several times what framing it does.
 */
void mg_usage_init_frames(mg_usage_scanner *s);

/**
 * Read the next `len` bytes of the answer.
 *
 * JSON: reads them all and returns len; ev->ended is 0.
 *
 * SSE: reads up to and including the end of the first event that ends in
 * them (its blank line), fills *ev and returns how many bytes it read, so
 * that buf[0 .. return) closes that event and the caller may pass those
 * bytes on (or drop the event) and call again with the rest.  Returns len
 * with ev->ended == 0 when no event ended.  When a blank line ends in CR
 * at the very end of a chunk, the event ends only when the next byte is
 * seen (an LF belongs to it): the next call then reports it with
 * ev->end == 0 (the boundary is the start of that chunk).  Loop:
 *
 *     while (len) {             // and once more with len 0 is harmless
 *         n = mg_usage_feed(s, buf, len, &ev);
 *         if (ev.ended) { ...event ends at buf + n... }
 *         buf += n; len -= n;
 *     }
 *
 * A malformed event stops only that event's scan; the next starts fresh.
 */
apr_size_t mg_usage_feed(mg_usage_scanner *s, const char *buf,
                         apr_size_t len, mg_usage_event *ev);

/**
 * SSE: when the last byte fed ended a blank line in CR, mg_usage_feed
 * waits for the next byte (an LF would belong to that line) before it
 * reports the event's end.  A filter that should not hold the event until
 * more comes ends it here: returns 1 with ev filled as mg_usage_feed
 * would (ev->end 0), or 0 when no event waits so.  The caller then takes
 * an LF that comes next as the end of that blank line itself: it is not
 * to be fed (it would be an empty line).
 */
int mg_usage_end_pending(mg_usage_scanner *s, mg_usage_event *ev);

/**
 * The answer is complete.  JSON: the document must have ended (else it is
 * MALFORMED, truncated).  SSE: an event whose closing CR was the last byte
 * ends now (ev->ended, ev->end == 0); an event with no blank line after it
 * is dropped, as the SSE standard says.  ev may be NULL in JSON mode.
 */
void mg_usage_finish(mg_usage_scanner *s, mg_usage_event *ev);

/** The answer: JSON, after mg_usage_finish; SSE, the last usage carried
 * so far (after mg_usage_finish: the answer). */
void mg_usage_result(const mg_usage_scanner *s, mg_usage *u);

/**
 * SSE: can the event being read (not yet ended) still turn out to be
 * usage-only?  0 once its data is not a JSON object, its `choices` has an
 * element or is not an array, or it is longer than MG_USAGE_ONLY_MAX.  A
 * filter that drops usage-only events holds back an event's bytes while
 * this says 1 and passes them on as soon as it says 0, so it holds at
 * most MG_USAGE_ONLY_MAX bytes plus the piece it fed last (feed smaller
 * pieces to hold less).  An event ruled out here is never reported
 * usage_only, even if a repeated member would make it one.  Held bytes
 * wait for the event's end: with CR or CRLF line ends split between two
 * chunks, that is the next chunk (see mg_usage_feed).
 */
int mg_usage_may_be_usage_only(const mg_usage_scanner *s);

/**
 * Can the event in `b` (`n` bytes, whole) carry a usage?  0 only when no
 * member named usage has a value other than null (every chunk of a stream
 * whose request asked for usage carries `"usage": null`), no \u escape
 * could spell that name and no line break stands between such a name and
 * its value (the SSE framing of a next data line may be there: the bytes
 * are the raw event).  Conservative: any doubt says 1.  For a filter
 * that frames every event (mg_usage_init_frames) and gives a full scanner
 * only those that may carry one.
 */
int mg_usage_may_carry(const char *b, apr_size_t n);

#endif /* MG_USAGE_H */
