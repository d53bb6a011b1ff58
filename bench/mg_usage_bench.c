/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_usage_bench.c -- reading an answer's usage, natively: a chat
 * completion whose message content is N ASCII bytes (N = 0: the answer
 * bench/tokens.sh's backend sends, 273 bytes), read R times as one JSON
 * document, in chunks of C bytes (0: whole).  Count it with callgrind
 * (bench/README.md, "Token accounting (issue 11)"):
 *   valgrind --tool=callgrind --toggle-collect=read_answer \
 *       bench/mg-usage-bench 4096 100 0
 * Usage: mg-usage-bench CONTENT_BYTES ROUNDS [CHUNK]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_strings.h>
#include "mg_usage.h"

/* One answer read, from init to result: what the usage filter does with
 * a JSON answer. */
__attribute__((noinline))
static int read_answer(mg_usage_scanner *s, const char *b, apr_size_t n,
                       apr_size_t chunk)
{
    mg_usage_event ev;
    mg_usage u;
    apr_size_t at, k;

    mg_usage_init(s, MG_USAGE_JSON);
    for (at = 0; at < n; at += k) {
        k = chunk && n - at > chunk ? chunk : n - at;
        mg_usage_feed(s, b + at, k, &ev);
    }
    mg_usage_finish(s, NULL);
    mg_usage_result(s, &u);
    return u.status == MG_USAGE_FOUND && u.total == 8;
}

int main(int argc, char **argv)
{
    static mg_usage_scanner s;
    apr_pool_t *p;
    const char *answer;
    char *content;
    size_t n, i, rounds, chunk;

    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s CONTENT_BYTES ROUNDS [CHUNK]\n", argv[0]);
        return 2;
    }
    n = (size_t)atol(argv[1]);
    rounds = (size_t)atol(argv[2]);
    chunk = argc > 3 ? (size_t)atol(argv[3]) : 0;
    apr_initialize();
    apr_pool_create(&p, NULL);
    content = apr_palloc(p, n + 1);
    for (i = 0; i < n; i++) {
        content[i] = "Once upon a time, by the sea. "[i % 30];
    }
    content[n] = '\0';
    answer = apr_psprintf(p, "{\"id\":\"chatcmpl-1\",\"object\":"
        "\"chat.completion\",\"created\":1,\"model\":\"mock-small\","
        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
        "\"content\":\"%s\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
        "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5,"
        "\"total_tokens\":8}}", n ? content : "This is a mock reply");
    n = strlen(answer);
    for (i = 0; i < rounds; i++) {
        if (!read_answer(&s, answer, n, chunk)) {
            fprintf(stderr, "the usage was not read\n");
            return 1;
        }
    }
    printf("%zu bytes, %zu rounds\n", n, rounds);
    apr_pool_destroy(p);
    apr_terminate();
    return 0;
}
