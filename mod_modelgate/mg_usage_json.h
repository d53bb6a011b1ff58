/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_usage_json.h -- inside mg_usage.c: the incremental JSON lexer that
 * finds a document's usage (mg_usage_json.c), and the states the SSE
 * framing reads of it.  Not for other callers: mg_usage.h is the API.
 */
#ifndef MG_USAGE_JSON_H
#define MG_USAGE_JSON_H

#include "mg_usage.h"

/* lexer states */
enum { J_VALUE, J_KEY, J_COLON, J_AFTER, J_END, J_STRING, J_NUMBER,
       J_LITERAL, J_BAD };
/* string sub-states; S_HEX + n: n hex digits of a \u escape read */
enum { S_CHAR, S_ESC, S_HEX };
/* number sub-states */
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };
/* kinds of value */
enum { V_OBJ, V_ARR, V_STR, V_NUM, V_TRUE, V_FALSE, V_NULL };
/* what a container is (ctx[]); C_TOP is the document itself */
enum { C_SKIP, C_ROOT, C_RESPONSE, C_USAGE_TOP, C_USAGE_RESP, C_CHOICES,
       C_TOP };
/* `choices` of the root object */
enum { CH_NONE, CH_OPEN, CH_EMPTY, CH_FULL, CH_OTHER };
/* a usage slot */
enum { U_NONE, U_NULL, U_OBJECT, U_OTHER };
/* why a member's value is refused */
enum { P_NONE, P_NEGATIVE, P_FRACTION, P_TOO_LARGE, P_STRING, P_NULL,
       P_BOOL, P_CONTAINER };
/* fields of a slot */
enum { F_PROMPT, F_COMPLETION, F_TOTAL, F_INPUT, F_OUTPUT, F_COUNT };
/** Start a document. */
void mg_usage_json_init(mg_usage_json_ *j);

/** Read `n` more bytes of it. */
void mg_usage_json_feed(mg_usage_json_ *j, const unsigned char *b,
                        apr_size_t n);

/** The document ended: 1 if it was complete JSON, else 0 (malformed). */
int mg_usage_json_finish(mg_usage_json_ *j);

/** What the document said (`nonempty`: any byte but white space came):
 *  mg_usage.h's rules for parts and total, in mg_usage.c. */
void mg_usage_json_eval(const mg_usage_json_ *j, int nonempty, mg_usage *u);

/** The member name of field `f` (F_PROMPT ...): "prompt_tokens" ... */
const char *mg_usage_json_field_name(int f);

#endif /* MG_USAGE_JSON_H */
