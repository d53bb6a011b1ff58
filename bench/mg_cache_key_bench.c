/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_cache_key_bench.c -- what the response cache's key costs on this CPU,
 * natively (callgrind counts SHA-256 as valgrind runs it: without the CPU's
 * SHA extensions, which OpenSSL uses outside valgrind).
 *
 *   make bench/mg-cache-key-bench && bench/mg-cache-key-bench [N]
 *
 * Per iteration, what a miss does with the body the gate parsed: the
 * canonical text from the tree (mg_cache_body_of) and the key's SHA-256
 * (mg_cache_key), in a pool cleared each time; and, apart, the parse the
 * cache no longer does (json_loadb + json_decref).  Median of 9 runs of N.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <apr_general.h>
#include <apr_pools.h>
#include <jansson.h>
#include "mg_cache_key.h"

/* bench/cache_client.py's body, one of its --unique questions. */
static const char body[] =
    "{\"model\": \"bench\", \"temperature\": 0, \"messages\": [{\"role\": "
    "\"user\", \"content\": \"question 000042\"}]}";

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000, i;
    double key_ns[9], parse_ns[9], sha_ns[9], t;
    mg_cache_body fixed;
    apr_pool_t *p;
    json_t *root;
    int run;
    volatile unsigned sink = 0;

    apr_initialize();
    apr_pool_create(&p, NULL);
    if (mg_cache_key_init() != 0) {
        fprintf(stderr, "no SHA-256\n");
        return 1;
    }
    root = json_loadb(body, sizeof(body) - 1, JSON_REJECT_DUPLICATES, NULL);
    mg_cache_body_of(p, root, 0, mg_cache_ignored_default, &fixed);
    fixed.canonical = strdup(fixed.canonical);
    for (run = 0; run < 9; run++) {
        t = now_ns();
        for (i = 0; i < n; i++) {
            mg_cache_body cb;
            unsigned char key[MG_CACHE_KEY_LEN];
            mg_cache_body_of(p, root, sizeof(body) - 1,
                             mg_cache_ignored_default, &cb);
            mg_cache_key("tenant", "bench", 0, 0, "upstream:bench",
                         "/v1/chat/completions", cb.canonical, cb.len, key);
            sink += key[0];
            apr_pool_clear(p);
        }
        key_ns[run] = (now_ns() - t) / n;
        t = now_ns();
        for (i = 0; i < n; i++) {
            json_t *j = json_loadb(body, sizeof(body) - 1,
                                   JSON_REJECT_DUPLICATES, NULL);
            sink += (unsigned)json_object_size(j);
            json_decref(j);
        }
        parse_ns[run] = (now_ns() - t) / n;
        t = now_ns();
        for (i = 0; i < n; i++) {
            unsigned char key[MG_CACHE_KEY_LEN];
            mg_cache_key("tenant", "bench", 0, 0, "upstream:bench",
                         "/v1/chat/completions", fixed.canonical, fixed.len,
                         key);
            sink += key[0];
        }
        sha_ns[run] = (now_ns() - t) / n;
    }
    qsort(key_ns, 9, sizeof(double), cmp);
    qsort(parse_ns, 9, sizeof(double), cmp);
    qsort(sha_ns, 9, sizeof(double), cmp);
    printf("canonical text + SHA-256 key: %.0f ns (min %.0f, max %.0f)\n",
           key_ns[4], key_ns[0], key_ns[8]);
    printf("... of which the key (SHA-256) alone: %.0f ns (min %.0f, max "
           "%.0f)\n", sha_ns[4], sha_ns[0], sha_ns[8]);
    printf("a second jansson parse (no longer done): %.0f ns (min %.0f, "
           "max %.0f)\n", parse_ns[4], parse_ns[0], parse_ns[8]);
    free((char *)fixed.canonical);
    json_decref(root);
    apr_pool_destroy(p);
    apr_terminate();
    return sink == 12345 ? 2 : 0;
}
