/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_cache_key_bench.c -- what the response cache's key costs on this CPU,
 * natively (callgrind counts SHA-256 as valgrind runs it: without the CPU's
 * SHA extensions, which OpenSSL uses outside valgrind).
 *
 *   make bench/mg-cache-key-bench && bench/mg-cache-key-bench [N]
 *
 * Per iteration, what a miss does with the body: the canonical text from
 * its bytes (mg_cache_body_read, no tree) and the key's SHA-256
 * (mg_cache_key), in a pool cleared each time; and, apart, the key alone,
 * the canonical text alone, and the jansson-based writer it replaced
 * (tests/unit/mg_cache_body_tree.c: json_loadb, the tree written, the
 * tree freed).  Median of 9 runs of N.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <apr_general.h>
#include <apr_pools.h>
#include "mg_cache_key.h"
#include "mg_cache_body_tree.h"

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
    double key_ns[9], tree_ns[9], sha_ns[9], canon_ns[9], t;
    mg_cache_body fixed;
    apr_pool_t *p;
    int run;
    volatile unsigned sink = 0;

    apr_initialize();
    apr_pool_create(&p, NULL);
    if (mg_cache_key_init() != 0) {
        fprintf(stderr, "no SHA-256\n");
        return 1;
    }
    if (mg_cache_body_read(p, body, sizeof(body) - 1,
                           mg_cache_ignored_default, &fixed)
        != MG_CACHE_BODY_OK) {
        fprintf(stderr, "the body does not read\n");
        return 1;
    }
    fixed.canonical = strdup(fixed.canonical);
    for (run = 0; run < 9; run++) {
        t = now_ns();
        for (i = 0; i < n; i++) {
            mg_cache_body cb;
            unsigned char key[MG_CACHE_KEY_LEN];
            mg_cache_body_read(p, body, sizeof(body) - 1,
                               mg_cache_ignored_default, &cb);
            mg_cache_key("tenant", "bench", 0, 0, "upstream:bench",
                         "/v1/chat/completions", cb.canonical, cb.len, key);
            sink += key[0];
            apr_pool_clear(p);
        }
        key_ns[run] = (now_ns() - t) / n;
        t = now_ns();
        for (i = 0; i < n; i++) {
            mg_cache_body cb;
            mg_cache_body_read(p, body, sizeof(body) - 1,
                               mg_cache_ignored_default, &cb);
            sink += (unsigned)cb.len;
            apr_pool_clear(p);
        }
        canon_ns[run] = (now_ns() - t) / n;
        t = now_ns();
        for (i = 0; i < n; i++) {
            mg_cache_body cb;
            mg_test_cache_body_tree(p, body, sizeof(body) - 1,
                                    mg_cache_ignored_default, &cb);
            sink += (unsigned)cb.len;
            apr_pool_clear(p);
        }
        tree_ns[run] = (now_ns() - t) / n;
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
    qsort(canon_ns, 9, sizeof(double), cmp);
    qsort(tree_ns, 9, sizeof(double), cmp);
    qsort(sha_ns, 9, sizeof(double), cmp);
    printf("canonical text + SHA-256 key: %.0f ns (min %.0f, max %.0f)\n",
           key_ns[4], key_ns[0], key_ns[8]);
    printf("... of which the key (SHA-256) alone: %.0f ns (min %.0f, max "
           "%.0f)\n", sha_ns[4], sha_ns[0], sha_ns[8]);
    printf("... the canonical text alone, from the bytes: %.0f ns (min %.0f, "
           "max %.0f)\n", canon_ns[4], canon_ns[0], canon_ns[8]);
    printf("the same through a jansson tree (as before): %.0f ns (min "
           "%.0f, max %.0f)\n", tree_ns[4], tree_ns[0], tree_ns[8]);
    free((char *)fixed.canonical);
    apr_pool_destroy(p);
    apr_terminate();
    return sink == 12345 ? 2 : 0;
}
