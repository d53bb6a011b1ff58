/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_usage_json_skip.h -- inside mg_usage_json.c: the fast path over the
 * bytes of an answer that do not matter (the plain runs of its strings,
 * most of a chat completion's content).  A header of its own so the
 * lexer's state machine and this byte arithmetic stay apart; inline,
 * because a call per string would cost what the step saves on short ones.
 */
#ifndef MG_USAGE_JSON_SKIP_H
#define MG_USAGE_JSON_SKIP_H

#include <string.h>
#include <apr.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Bytes that end the plain run of a string: '"', '\\' and controls. */
static const unsigned char string_stop[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0
    /* the rest: 0 */
};

/* Where the plain run of a string that starts at b[i] ends: the first of
 * b[i .. len) that is '"', '\\' or a control, else len.  A message's
 * content is most of an answer: byte by byte through the table it cost 6
 * instructions a byte.  With SSE2 (every x86-64), sixteen bytes a step
 * (about 1 instruction a byte); else eight: a byte that is zero after the
 * XOR with '"' (or '\\'), or below 0x20, sets its top bit in `hit` (bytes
 * of 0x80 and more never do; a borrow can set the top bit of a later byte
 * too, never of an earlier one, so the lowest bit set is the first stop),
 * about 3 a byte. */
__attribute__((always_inline))
static inline apr_size_t plain_run(const unsigned char *b, apr_size_t i,
                                   apr_size_t len)
{
#if !APR_IS_BIGENDIAN
    const apr_uint64_t ones = APR_UINT64_C(0x0101010101010101);
    const apr_uint64_t tops = APR_UINT64_C(0x8080808080808080);
#endif
#ifdef __SSE2__
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    const __m128i ctl = _mm_set1_epi8(0x1f);

    while (len - i >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(b + i));
        /* min(v, 0x1f) == v: v is a control (unsigned) */
        int hit = _mm_movemask_epi8(_mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
            _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v)));

        if (hit) {
            return i + (apr_size_t)__builtin_ctz((unsigned int)hit);
        }
        i += 16;
    }
#endif
#if !APR_IS_BIGENDIAN
    while (len - i >= 8) {
        apr_uint64_t v, q, e, hit;

        memcpy(&v, b + i, 8);
        q = v ^ (ones * '"');
        e = v ^ (ones * '\\');
        hit = (((q - ones) & ~q) | ((e - ones) & ~e)
               | ((v - ones * 0x20) & ~v)) & tops;
        if (hit) {
            return i + ((apr_size_t)__builtin_ctzll(hit) >> 3);
        }
        i += 8;
    }
#endif
    while (i < len && !string_stop[b[i]]) {
        i++;
    }
    return i;
}

#endif /* MG_USAGE_JSON_SKIP_H */
