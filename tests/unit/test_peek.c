/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_peek.c -- mg_table_peek: what a decision of cost 0 answers, with
 * nothing in the table changed, for every algorithm.
 */
#include "mg_test.h"
#include <string.h>

#include <apr_strings.h>
#include "mg_table.h"

static mg_table *new_table(apr_pool_t *p, apr_uint32_t capacity,
                           apr_size_t *size, void **mem)
{
    mg_table *t = apr_pcalloc(p, sizeof(*t));

    *size = mg_table_bytes(capacity);
    *mem = apr_palloc(p, *size);
    mg_table_format(*mem, capacity);
    assert_int_equal(mg_table_attach(t, *mem, *size), 1);
    return t;
}

static mg_layer mk_layer(const char *policy, const mg_limit_spec *spec,
                         const char *key)
{
    mg_layer l;

    memset(&l, 0, sizeof(l));
    l.policy = policy;
    l.spec = spec;
    l.fp = mg_table_fingerprint(key, strlen(key), spec);
    l.cost = 1;
    return l;
}

/* After k admitted requests, peek says quota - k remain, the same number
 * the k-th decision reported; a hundred peeks change no byte of the table
 * and the next decision reports one less. */
static void peek_algo(apr_pool_t *p, mg_limit_algo algo)
{
    mg_limit_spec spec;
    mg_layer l[2];
    mg_decision d, pd;
    apr_size_t size;
    void *mem, *copy;
    mg_table *t = new_table(p, 64, &size, &mem);
    mg_now now = mg_now_at(MG_T0);
    int i;

    assert_null(mg_limit_spec_init(&spec, algo, 5, MG_MIN(1), 5));
    l[0] = mk_layer("a", &spec, "key-a");
    l[1] = mk_layer("b", &spec, "key-b");
    /* Fresh: the whole quota, and no entry is made. */
    assert_int_equal(mg_table_peek(t, l, 2, now, &pd), APR_SUCCESS);
    assert_true(pd.allowed);
    assert_int_equal(pd.layer[0].remaining, 5);
    assert_int_equal(t->hdr->stats.inserted, 0);
    for (i = 0; i < 3; i++) {
        assert_int_equal(mg_table_decide(t, l, 1, now, &d), APR_SUCCESS);
        assert_true(d.allowed);
    }
    copy = apr_pmemdup(p, mem, size);
    for (i = 0; i < 100; i++) {
        assert_int_equal(mg_table_peek(t, l, 2, now, &pd), APR_SUCCESS);
    }
    assert_memory_equal(mem, copy, size);
    assert_int_equal(pd.nlayers, 2);
    assert_int_equal(pd.layer[0].remaining, d.layer[0].remaining);
    assert_int_equal(pd.layer[0].remaining, 2);
    assert_int_equal(pd.layer[0].limit, 5);
    assert_int_equal(pd.layer[1].remaining, 5);
    assert_int_equal(pd.binding, 0);      /* the nearer to its limit */
    assert_int_equal(mg_table_decide(t, l, 1, now, &d), APR_SUCCESS);
    assert_int_equal(d.layer[0].remaining, 1);
}

static void test_peek_every_algorithm(void **state)
{
    static const mg_limit_algo algos[] = {
        MG_ALGO_TOKEN_BUCKET, MG_ALGO_LEAKY_BUCKET, MG_ALGO_FIXED_WINDOW,
        MG_ALGO_SLIDING_WINDOW, MG_ALGO_GCRA
    };
    apr_size_t i;

    for (i = 0; i < sizeof(algos) / sizeof(algos[0]); i++) {
        peek_algo(*state, algos[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_peek_every_algorithm,
                                        mg_test_setup,
                                        mg_test_teardown),
    };
    return cmocka_run_group_tests(tests, mg_test_group_setup,
                                  mg_test_group_teardown);
}
