/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_decide_bench.c -- what one limit decision costs in the core, without
 * httpd: a 3-layer decision (per-key token bucket, per-tenant GCRA, global
 * sliding window counter) against a table of 1M counters, as the shm store
 * makes it, and the same with a process-shared mutex around it (the store's
 * lock, uncontended).
 *
 *   bench/mg-decide-bench [decisions] [keys]
 *
 * Prints the table's memory for 1M keys, ns per decision (median of 9
 * runs) and the per-run spread.  Under `valgrind --tool=callgrind` the
 * instruction count per decision is repeatable whatever the machine does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <apr_general.h>
#include <apr_strings.h>
#include "mg_table.h"
#include "mg_policy.h"

#define RUNS 9

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static apr_uint64_t xorshift(apr_uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

int main(int argc, char **argv)
{
    long decisions = argc > 1 ? atol(argv[1]) : 2000000;
    long nkeys = argc > 2 ? atol(argv[2]) : 1000000;
    apr_pool_t *pool;
    mg_limit_def *key_def, *tenant_def, *global_def;
    mg_fingerprint key_base, *tenant_fp, global_fp;
    mg_table table;
    pthread_mutex_t mutex;
    pthread_mutexattr_t attr;
    apr_size_t bytes;
    void *mem;
    double plain[RUNS], locked[RUNS];
    long i, admitted = 0;
    int run;
    apr_uint64_t rng = 88172645463325252ULL;
    apr_time_t t = APR_INT64_C(1700000000000000);

    apr_initialize();
    apr_pool_create(&pool, NULL);
    if (mg_policy_parse_limit(pool, "pro", MG_SCOPE_KEY, "1000/s", 0, NULL,
                              &key_def)
        || mg_policy_parse_limit(pool, "tenant", MG_SCOPE_TENANT, "100000/s",
                                 0, NULL, &tenant_def)
        || mg_policy_parse_limit(pool, "global", MG_SCOPE_GLOBAL,
                                 "100000000/min", 0, NULL, &global_def)) {
        fprintf(stderr, "bad limits\n");
        return 1;
    }
    tenant_def->spec.algo = MG_ALGO_GCRA;
    global_def->spec.algo = MG_ALGO_SLIDING_WINDOW;
    global_def->spec.wall_clock = 1;

    bytes = mg_table_bytes((apr_uint32_t)nkeys);
    mem = malloc(bytes);
    mg_table_format(mem, (apr_uint32_t)nkeys);
    mg_table_attach(&table, mem, bytes);
    printf("table: %ld counters in %zu bytes (%.1f MiB, %zu bytes each)\n",
           nkeys, bytes, bytes / 1048576.0, table.entry_size);

    /* As in the gateway, a limit's own part of the fingerprint is made
     * once and each decision hashes only the subject (here the key's
     * number, 8 bytes, as short as a key id); tenants and the global
     * counter are few and hot, so theirs are made once. */
    key_base = mg_table_fingerprint("key\x1fpro", 7, &key_def->spec);
    tenant_fp = malloc(sizeof(*tenant_fp) * 1000);
    for (i = 0; i < 1000; i++) {
        char k[64];
        snprintf(k, sizeof(k), "tenant\x1ftenant\x1ft-%ld", i);
        tenant_fp[i] = mg_table_fingerprint(k, strlen(k), &tenant_def->spec);
    }
    global_fp = mg_table_fingerprint("global\x1fglobal\x1f", 14,
                                     &global_def->spec);

    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&mutex, &attr);

    for (run = 0; run < RUNS; run++) {
        int with_lock;
        for (with_lock = 0; with_lock < 2; with_lock++) {
            double start = now_ns();
            for (i = 0; i < decisions; i++) {
                mg_layer layers[3];
                mg_decision d;
                apr_uint64_t r = xorshift(&rng);
                long k = (long)(r % (apr_uint64_t)nkeys);

                t += 1;   /* one microsecond per decision */
                memset(layers, 0, sizeof(layers));
                layers[0].policy = "pro";
                layers[0].spec = &key_def->spec;
                layers[0].fp = mg_table_fingerprint_subject(&key_base,
                                                            (const char *)&k,
                                                            sizeof(k));
                layers[0].cost = 1;
                layers[1].policy = "tenant";
                layers[1].spec = &tenant_def->spec;
                layers[1].fp = tenant_fp[k % 1000];
                layers[1].cost = 1;
                layers[2].policy = "global";
                layers[2].spec = &global_def->spec;
                layers[2].fp = global_fp;
                layers[2].cost = 1;
                if (with_lock) {
                    pthread_mutex_lock(&mutex);
                }
                mg_table_decide(&table, layers, 3, mg_now_at(t), &d);
                if (with_lock) {
                    pthread_mutex_unlock(&mutex);
                }
                admitted += d.allowed;
            }
            (with_lock ? locked : plain)[run] = (now_ns() - start) / decisions;
        }
    }
    qsort(plain, RUNS, sizeof(double), cmp_double);
    qsort(locked, RUNS, sizeof(double), cmp_double);
    printf("3-layer decision, %ld keys, %ld decisions per run, %d runs:\n",
           nkeys, decisions, RUNS);
    printf("  core only:        median %.0f ns (min %.0f, max %.0f)\n",
           plain[RUNS / 2], plain[0], plain[RUNS - 1]);
    printf("  with shared lock: median %.0f ns (min %.0f, max %.0f)\n",
           locked[RUNS / 2], locked[0], locked[RUNS - 1]);
    printf("  admitted %ld of %ld\n", admitted, (long)RUNS * 2 * decisions);
    free(mem);
    free(tenant_fp);
    apr_pool_destroy(pool);
    apr_terminate();
    return 0;
}
