/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_usage_json.c -- the byte-at-a-time JSON lexer of mg_usage.c.  Besides
 * what validation needs (the lexer state and one bit per open container)
 * it keeps only what the usage needs: what the containers at depth 1..3
 * are (root object, response, usage, choices) and the member name being
 * read when it may matter.  Everything else is skipped, so memory is fixed
 * however large the answer is.
 */
#include <stddef.h>
#include <string.h>
#include <apr_strings.h>
#include "mg_usage_json.h"
#include "mg_usage_json_skip.h"

/* Member names that matter, by key id (0: none). */
enum { K_NONE, K_USAGE, K_RESPONSE, K_CHOICES, K_PROMPT };
static const char *const key_names[] = {
    "", "usage", "response", "choices",
    "prompt_tokens", "completion_tokens", "total_tokens", "input_tokens",
    "output_tokens"
};
#define KEY_COUNT (sizeof(key_names) / sizeof(key_names[0]))
#define MASK_ROOT  ((1u << K_USAGE) | (1u << K_RESPONSE) | (1u << K_CHOICES))
#define MASK_RESP  (1u << K_USAGE)
#define MASK_USAGE (((1u << F_COUNT) - 1) << K_PROMPT)

static const char *const literals[] = { "true", "false", "null" };

/* ---- the JSON lexer ------------------------------------------------------ */

void mg_usage_json_init(mg_usage_json_ *j)
{
    int s, f;

    /* Not the stack of open containers (a quarter of the struct): a
     * level's bit is written when it opens, before anything reads it.
     * This runs for every answer, and for every event of a stream. */
    memset(j, 0, offsetof(mg_usage_json_, stack));
    j->state = J_VALUE;
    for (s = 0; s < 2; s++) {
        j->slot[s].state = U_NONE;
        for (f = 0; f < F_COUNT; f++) {
            j->slot[s].f[f].value = -1;
            j->slot[s].f[f].problem = P_NONE;
        }
    }
}

static void json_bad(mg_usage_json_ *j, const char *err)
{
    if (j->state != J_BAD) {
        j->state = J_BAD;
        j->err = err;
        j->err_pos = j->pos;
    }
}

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static unsigned char ctx_of(const mg_usage_json_ *j, apr_uint32_t depth)
{
    return depth == 0 ? C_TOP : depth < 4 ? j->ctx[depth] : C_SKIP;
}

static void slot_begin(mg_usage_json_ *j, int s, int kind)
{
    mg_usage_slot_ *slot = &j->slot[s];
    int f;

    /* A usage given again replaces the first (the last member wins). */
    for (f = 0; f < F_COUNT; f++) {
        slot->f[f].value = -1;
        slot->f[f].problem = P_NONE;
    }
    slot->state = kind == V_OBJ ? U_OBJECT : kind == V_NULL ? U_NULL
                  : U_OTHER;
}

/* A value of `kind` starts: what it means where it stands.  Returns what
 * it is when it is a container. */
static unsigned char value_begin(mg_usage_json_ *j, int kind)
{
    unsigned char parent = ctx_of(j, j->depth);
    mg_usage_field_ *field;

    j->val_field = 0;
    switch (parent) {
    case C_TOP:
        if (kind == V_OBJ) {
            return C_ROOT;
        }
        j->not_object = 1;
        break;
    case C_ROOT:
        if (j->key == K_USAGE) {
            slot_begin(j, 0, kind);
            return kind == V_OBJ ? C_USAGE_TOP : C_SKIP;
        }
        if (j->key == K_RESPONSE) {
            /* A second "response" replaces the first, usage and all. */
            slot_begin(j, 1, V_NULL);
            j->slot[1].state = U_NONE;
            return kind == V_OBJ ? C_RESPONSE : C_SKIP;
        }
        if (j->key == K_CHOICES) {
            if (kind == V_ARR) {
                j->choices = CH_OPEN;
                return C_CHOICES;
            }
            j->choices = CH_OTHER;
            j->choices_ruled = 1;
        }
        break;
    case C_RESPONSE:
        if (j->key == K_USAGE) {
            slot_begin(j, 1, kind);
            return kind == V_OBJ ? C_USAGE_RESP : C_SKIP;
        }
        break;
    case C_USAGE_TOP:
    case C_USAGE_RESP:
        if (j->key < K_PROMPT) {
            break;
        }
        j->val_slot = parent == C_USAGE_RESP;
        field = &j->slot[j->val_slot].f[j->key - K_PROMPT];
        field->value = -1;
        switch (kind) {
        case V_NUM:
            field->problem = P_NONE;
            j->val_field = (unsigned char)(j->key - K_PROMPT + 1);
            break;
        case V_STR:
            field->problem = P_STRING;
            break;
        case V_NULL:
            field->problem = P_NULL;
            break;
        case V_TRUE:
        case V_FALSE:
            field->problem = P_BOOL;
            break;
        default:
            field->problem = P_CONTAINER;
            break;
        }
        break;
    case C_CHOICES:
        j->choices = CH_FULL;
        j->choices_ruled = 1;
        break;
    default:
        break;
    }
    return C_SKIP;
}

static void after_value(mg_usage_json_ *j)
{
    j->state = j->depth ? J_AFTER : J_END;
}

static void open_container(mg_usage_json_ *j, int is_obj, unsigned char ctx)
{
    if (j->depth >= MG_USAGE_MAX_DEPTH) {
        json_bad(j, "nesting deeper than 2048 levels");
        return;
    }
    if (is_obj) {
        j->stack[j->depth / 8] |= (unsigned char)(1u << (j->depth % 8));
    }
    else {
        j->stack[j->depth / 8] &= (unsigned char)~(1u << (j->depth % 8));
    }
    j->depth++;
    if (j->depth < 4) {
        j->ctx[j->depth] = ctx;
    }
    j->state = is_obj ? J_KEY : J_VALUE;
    j->sub = 1;                 /* may close at once: {} [] */
}

static int top_is_object(const mg_usage_json_ *j)
{
    apr_uint32_t d = j->depth - 1;

    return (j->stack[d / 8] >> (d % 8)) & 1;
}

static void close_container(mg_usage_json_ *j, int is_obj)
{
    if (top_is_object(j) != is_obj) {
        json_bad(j, is_obj ? "'}' closes an array" : "']' closes an object");
        return;
    }
    if (ctx_of(j, j->depth) == C_CHOICES && j->choices == CH_OPEN) {
        j->choices = CH_EMPTY;
    }
    j->depth--;
    after_value(j);
}

static void value_start(mg_usage_json_ *j, unsigned char c)
{
    int kind;

    switch (c) {
    case '{': kind = V_OBJ; break;
    case '[': kind = V_ARR; break;
    case '"': kind = V_STR; break;
    case 't': kind = V_TRUE; break;
    case 'f': kind = V_FALSE; break;
    case 'n': kind = V_NULL; break;
    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            kind = V_NUM;
            break;
        }
        json_bad(j, "a value was expected");
        return;
    }
    if (kind == V_OBJ || kind == V_ARR) {
        open_container(j, kind == V_OBJ, value_begin(j, kind));
        return;
    }
    value_begin(j, kind);
    switch (kind) {
    case V_STR:
        j->state = J_STRING;
        j->sub = S_CHAR;
        j->in_key = 0;
        break;
    case V_NUM:
        j->state = J_NUMBER;
        j->num = 0;
        j->num_neg = c == '-';
        j->num_frac = j->num_big = 0;
        j->sub = c == '-' ? N_MINUS : c == '0' ? N_ZERO : N_INT;
        if (c > '0') {
            j->num = c - '0';
        }
        break;
    default:
        j->state = J_LITERAL;
        j->lit = (unsigned char)(kind - V_TRUE);
        j->sub = 1;
        break;
    }
}

/* One decoded character of a key (cp > 0x7f: not ASCII). */
static void key_char(mg_usage_json_ *j, unsigned int cp)
{
    unsigned int i;
    apr_uint32_t m;

    if (!j->key_mask) {
        return;
    }
    if (cp == 0 || cp > 0x7f) {
        j->key_mask = 0;
        return;
    }
    /* Only the names still possible (at most five): a name shorter than
     * key_len was dropped at its '\0', so none is read past its end. */
    for (m = j->key_mask; m; m &= m - 1) {
        i = (unsigned int)__builtin_ctz(m);
        if ((unsigned char)key_names[i][j->key_len] != cp) {
            j->key_mask &= ~(1u << i);
        }
    }
    j->key_len++;
}

static void key_begin(mg_usage_json_ *j)
{
    switch (ctx_of(j, j->depth)) {
    case C_ROOT:       j->key_mask = MASK_ROOT; break;
    case C_RESPONSE:   j->key_mask = MASK_RESP; break;
    case C_USAGE_TOP:
    case C_USAGE_RESP: j->key_mask = MASK_USAGE; break;
    default:           j->key_mask = 0; break;
    }
    j->key_len = 0;
    j->key = K_NONE;
    j->in_key = 1;
    j->state = J_STRING;
    j->sub = S_CHAR;
}

static void string_end(mg_usage_json_ *j)
{
    unsigned int i;

    if (!j->in_key) {
        after_value(j);
        return;
    }
    for (i = 1; i < KEY_COUNT && j->key_mask; i++) {
        if ((j->key_mask & (1u << i)) && key_names[i][j->key_len] == '\0') {
            j->key = (unsigned char)i;
        }
    }
    j->key_mask = 0;
    j->state = J_COLON;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static void string_byte(mg_usage_json_ *j, unsigned char c)
{
    int h;

    switch (j->sub) {
    case S_CHAR:
        if (c == '"') {
            string_end(j);
        }
        else if (c == '\\') {
            j->sub = S_ESC;
        }
        else if (c < 0x20) {
            json_bad(j, "a control character in a string");
        }
        else if (j->in_key) {
            key_char(j, c);
        }
        return;
    case S_ESC:
        j->sub = S_CHAR;
        switch (c) {
        case '"': case '\\': case '/':
            break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u':
            j->sub = S_HEX;
            j->hex = 0;
            return;
        default:
            json_bad(j, "an invalid escape in a string");
            return;
        }
        if (j->in_key) {
            key_char(j, c);
        }
        return;
    default:
        h = hex_value(c);
        if (h < 0) {
            json_bad(j, "an invalid \\u escape in a string");
            return;
        }
        j->hex = j->hex * 16 + (unsigned int)h;
        if (++j->sub == S_HEX + 4) {
            j->sub = S_CHAR;
            if (j->in_key) {
                key_char(j, j->hex);
            }
        }
        return;
    }
}

/* The number ended: give it to the usage member it is the value of. */
static void number_end(mg_usage_json_ *j)
{
    mg_usage_field_ *field;

    if (j->val_field) {
        field = &j->slot[j->val_slot].f[j->val_field - 1];
        if (j->num_neg && (j->num || j->num_big)) {
            field->problem = P_NEGATIVE;
        }
        else if (j->num_frac) {
            field->problem = P_FRACTION;
        }
        else if (j->num_big) {
            field->problem = P_TOO_LARGE;
        }
        else {
            field->value = j->num;
        }
        j->val_field = 0;
    }
    after_value(j);
}

/* 1 when c belongs to the number (or broke it), 0 when the number ended
 * before c. */
static int number_byte(mg_usage_json_ *j, unsigned char c)
{
    int digit = c >= '0' && c <= '9';

    switch (j->sub) {
    case N_MINUS:
        if (!digit) {
            json_bad(j, "a digit was expected after '-'");
        }
        else if (c == '0') {
            j->sub = N_ZERO;
        }
        else {
            j->sub = N_INT;
            j->num = c - '0';
        }
        return 1;
    case N_ZERO:
    case N_INT:
        if (digit) {
            if (j->sub == N_ZERO) {
                json_bad(j, "a number with a leading zero");
            }
            else if (!j->num_big) {
                /* Capped: 10^12 * 10 + 9 fits, and more is refused. */
                j->num = j->num * 10 + (c - '0');
                if (j->num > MG_USAGE_MAX_TOKENS) {
                    j->num_big = 1;
                }
            }
            return 1;
        }
        break;
    case N_DOT:
        if (!digit) {
            json_bad(j, "a digit was expected after '.'");
        }
        j->sub = N_FRAC;
        return 1;
    case N_FRAC:
        if (digit) {
            return 1;
        }
        break;
    case N_E:
        if (c == '+' || c == '-') {
            j->sub = N_ESIGN;
        }
        else if (digit) {
            j->sub = N_EXP;
        }
        else {
            json_bad(j, "a digit was expected in an exponent");
        }
        return 1;
    case N_ESIGN:
        if (!digit) {
            json_bad(j, "a digit was expected in an exponent");
        }
        j->sub = N_EXP;
        return 1;
    case N_EXP:
        if (digit) {
            return 1;
        }
        return 0;
    }
    /* after the integer or fraction part */
    if (c == '.' && j->sub != N_FRAC) {
        j->sub = N_DOT;
        j->num_frac = 1;
        return 1;
    }
    if (c == 'e' || c == 'E') {
        j->sub = N_E;
        j->num_frac = 1;
        return 1;
    }
    return 0;
}

static void json_byte(mg_usage_json_ *j, unsigned char c)
{
    switch (j->state) {
    case J_VALUE:
        if (is_ws(c)) {
            return;
        }
        if (c == ']' && j->sub) {
            close_container(j, 0);
            return;
        }
        value_start(j, c);
        return;
    case J_KEY:
        if (is_ws(c)) {
            return;
        }
        if (c == '"') {
            key_begin(j);
        }
        else if (c == '}' && j->sub) {
            close_container(j, 1);
        }
        else {
            json_bad(j, "a member name was expected");
        }
        return;
    case J_COLON:
        if (is_ws(c)) {
            return;
        }
        if (c == ':') {
            j->state = J_VALUE;
            j->sub = 0;
        }
        else {
            json_bad(j, "':' was expected");
        }
        return;
    case J_AFTER:
        if (is_ws(c)) {
            return;
        }
        if (c == ',') {
            j->state = top_is_object(j) ? J_KEY : J_VALUE;
            j->sub = 0;
        }
        else if (c == '}' || c == ']') {
            close_container(j, c == '}');
        }
        else {
            json_bad(j, "',' or a closing bracket was expected");
        }
        return;
    case J_END:
        if (!is_ws(c)) {
            json_bad(j, "text after the end of the document");
        }
        return;
    case J_STRING:
        string_byte(j, c);
        return;
    case J_NUMBER:
        if (number_byte(j, c)) {
            return;
        }
        number_end(j);
        json_byte(j, c);        /* c follows the number */
        return;
    case J_LITERAL:
        if ((unsigned char)literals[j->lit][j->sub] != c) {
            json_bad(j, "an invalid literal (true, false or null)");
            return;
        }
        if (literals[j->lit][++j->sub] == '\0') {
            after_value(j);
        }
        return;
    default:
        return;
    }
}

/* Lengths of key_names[], in its order. */
#define LEN(s) (sizeof(s) - 1)
static const unsigned char key_lens[] = {
    0, LEN("usage"), LEN("response"), LEN("choices"), LEN("prompt_tokens"),
    LEN("completion_tokens"), LEN("total_tokens"), LEN("input_tokens"),
    LEN("output_tokens")
};
#undef LEN

/* A member name that may matter, whole in b[i .. k) without escapes: which
 * of the names still possible it is.  One comparison a name instead of a
 * call a byte (key_char: ~24 instructions a byte of a name). */
static unsigned char key_whole(apr_uint32_t mask, const unsigned char *b,
                               apr_size_t n)
{
    unsigned int i;

    for (; mask; mask &= mask - 1) {
        i = (unsigned int)__builtin_ctz(mask);
        if (key_lens[i] == n && !memcmp(key_names[i], b, n)) {
            return (unsigned char)i;
        }
    }
    return K_NONE;
}

void mg_usage_json_feed(mg_usage_json_ *j, const unsigned char *b,
                      apr_size_t len)
{
    /* j->pos, where b starts, is brought up to date only before a call
     * that may find the document malformed (json_bad reads it) and at the
     * end: not at every token. */
    const apr_uint64_t base = j->pos;
    apr_size_t i = 0, k;
    const char *lit;
    unsigned char c;

    /* Most of an answer does not matter: the plain bytes of a string, a
     * number's digits and a literal's letters go by in loops of their own
     * (a stream event is mostly these; byte by byte through json_byte they
     * cost several times more), and the punctuation of compact JSON is
     * taken here without json_byte's second dispatch. */
    while (i < len) {
        switch (j->state) {
        case J_STRING:
            if (j->sub != S_CHAR) {
                break;
            }
            if (j->key_mask && j->key_len == 0
                && (k = plain_run(b, i, len)) < len && b[k] == '"') {
                /* a name that may matter, whole in this chunk */
                j->key = key_whole(j->key_mask, b + i, k - i);
                j->key_mask = 0;
                j->state = J_COLON;
                i = k + 1;
                continue;
            }
            /* a name that may matter: its plain characters matched here */
            while (j->key_mask && i < len && !string_stop[b[i]]) {
                key_char(j, b[i]);
                i++;
            }
            if (j->key_mask) {
                break;
            }
            i = plain_run(b, i, len);
            if (i < len && b[i] == '"') {
                /* string_end of a string no name of interest can be */
                j->state = j->in_key ? J_COLON : j->depth ? J_AFTER : J_END;
                i++;
                continue;
            }
            break;
        case J_KEY:
            if (b[i] == '"') {
                key_begin(j);
                i++;
                continue;
            }
            break;
        case J_VALUE:
            c = b[i];
            if (c == '"') {
                /* value_start of a string */
                value_begin(j, V_STR);
                j->state = J_STRING;
                j->sub = S_CHAR;
                j->in_key = 0;
                i++;
                continue;
            }
            if (!is_ws(c) && c != ']') {
                j->pos = base + i;
                value_start(j, c);
                if (j->state == J_BAD) {
                    return;
                }
                i++;
                continue;
            }
            break;
        case J_COLON:
            if (b[i] == ':') {
                j->state = J_VALUE;
                j->sub = 0;
                i++;
                continue;
            }
            break;
        case J_AFTER:
            c = b[i];
            if (c == ',') {
                j->state = top_is_object(j) ? J_KEY : J_VALUE;
                j->sub = 0;
                i++;
                continue;
            }
            if (c == '}' || c == ']') {
                j->pos = base + i;
                close_container(j, c == '}');
                if (j->state == J_BAD) {
                    return;
                }
                i++;
                continue;
            }
            break;
        case J_NUMBER:
            if (j->sub == N_INT) {
                for (k = i; k < len && b[k] >= '0' && b[k] <= '9'; k++) {
                    /* Only a usage member's value is needed (number_end);
                     * capped: 10^12 * 10 + 9 fits, and more is refused. */
                    if (j->val_field && !j->num_big) {
                        j->num = j->num * 10 + (b[k] - '0');
                        if (j->num > MG_USAGE_MAX_TOKENS) {
                            j->num_big = 1;
                        }
                    }
                }
                i = k;
            }
            if (i < len && (j->sub == N_INT || j->sub == N_ZERO)) {
                c = b[i];
                if ((c < '0' || c > '9') && c != '.' && c != 'e'
                    && c != 'E') {
                    /* an integer ended before c, which the next state
                     * reads */
                    number_end(j);
                    continue;
                }
            }
            break;
        case J_LITERAL:
            lit = literals[j->lit];
            while (i < len && lit[j->sub] && (unsigned char)lit[j->sub] == b[i]) {
                j->sub++;
                i++;
            }
            if (!lit[j->sub]) {
                after_value(j);
                continue;
            }
            break;
        case J_BAD:
            return;             /* j->pos: where it went wrong */
        default:
            break;
        }
        if (i == len) {
            break;
        }
        j->pos = base + i;
        json_byte(j, b[i]);
        if (j->state == J_BAD) {
            return;
        }
        i++;
    }
    j->pos = base + len;
}

/* The document ended: 1 when it is complete, 0 when it is empty. */
int mg_usage_json_finish(mg_usage_json_ *j)
{
    if (j->state == J_NUMBER) {
        if (j->sub == N_ZERO || j->sub == N_INT || j->sub == N_FRAC
            || j->sub == N_EXP) {
            number_end(j);
        }
    }
    if (j->state == J_VALUE && j->depth == 0) {
        return 0;
    }
    if (j->state != J_END) {
        json_bad(j, "the document is truncated");
    }
    return 1;
}

const char *mg_usage_json_field_name(int f)
{
    return key_names[K_PROMPT + f];
}
