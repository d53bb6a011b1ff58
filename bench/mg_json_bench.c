/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_json_bench.c -- the request body's reading, natively: a chat body with
 * a prompt of N ASCII bytes, read R times by mg_body_inspect (mg_json_scan)
 * or by json_loadb.  Count it with callgrind (bench/README.md, "Reading the
 * request body"):
 *   valgrind --tool=callgrind --toggle-collect=mg_body_inspect \
 *       bench/mg-json-bench scan 4096 100
 *   valgrind --tool=callgrind --toggle-collect=json_loadb \
 *       bench/mg-json-bench jansson 4096 100
 * Usage: mg-json-bench scan|jansson PROMPT_BYTES ROUNDS
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <apr_general.h>
#include <apr_strings.h>
#include <jansson.h>
#include "mg_body.h"

int main(int argc, char **argv)
{
    apr_pool_t *p;
    mg_body_info info;
    const char *why;
    char *body, *prompt;
    size_t n, i, rounds;
    int scan;

    if (argc != 4) {
        fprintf(stderr, "usage: %s scan|jansson PROMPT_BYTES ROUNDS\n",
                argv[0]);
        return 2;
    }
    scan = !strcmp(argv[1], "scan");
    n = (size_t)atol(argv[2]);
    rounds = (size_t)atol(argv[3]);
    apr_initialize();
    apr_pool_create(&p, NULL);
    prompt = apr_palloc(p, n + 1);
    for (i = 0; i < n; i++) {
        prompt[i] = "Tell me a story about the sea. "[i % 31];
    }
    prompt[n] = '\0';
    body = apr_psprintf(p, "{\"model\":\"mock-small\",\"messages\":[{\"role\":"
                        "\"user\",\"content\":\"%s\"}],\"max_tokens\":64,"
                        "\"stream\":false}", prompt);
    n = strlen(body);
    for (i = 0; i < rounds; i++) {
        if (scan) {
            if (mg_body_inspect(p, body, n, &info, &why) != MG_BODY_OK) {
                return 1;
            }
        }
        else {
            json_t *root = json_loadb(body, n, JSON_REJECT_DUPLICATES, NULL);

            if (!root) {
                return 1;
            }
            json_decref(root);
        }
    }
    printf("%lu bytes a body\n", (unsigned long)n);
    apr_pool_destroy(p);
    return 0;
}
