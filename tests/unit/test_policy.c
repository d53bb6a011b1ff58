/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_policy.c -- rates, tiers and names (mg_policy.c).
 */
#include "mg_test.h"
#include <string.h>

#include <apr_strings.h>
#include "mg_policy.h"

/* ---- mg_policy_parse_rate ------------------------------------------------- */

static void rate_ok(apr_pool_t *p, const char *text, apr_uint64_t quota,
                    apr_int64_t window)
{
    apr_uint64_t q = 0;
    apr_int64_t w = 0;
    const char *err = mg_policy_parse_rate(p, text, &q, &w);

    if (err) {
        fail_msg("'%s': unexpected error: %s", text, err);
    }
    assert_int_equal(q, quota);
    assert_int_equal(w, window);
}

static void rate_err(apr_pool_t *p, const char *text, const char *expected)
{
    apr_uint64_t q = 0;
    apr_int64_t w = 0;
    const char *err = mg_policy_parse_rate(p, text, &q, &w);

    if (!err) {
        fail_msg("'%s' was accepted as %llu per %lld us", text,
                 (unsigned long long)q, (long long)w);
    }
    assert_string_equal(err, expected);
}

static void test_parse_rate_ok(void **state)
{
    apr_pool_t *p = *state;

    rate_ok(p, "10/min", 10, MG_MIN(1));
    rate_ok(p, "100/60s", 100, MG_SEC(60));
    rate_ok(p, "5/s", 5, MG_SEC(1));
    rate_ok(p, "1000/day", 1000, MG_DAY(1));
    rate_ok(p, "50/h", 50, MG_HOUR(1));
    rate_ok(p, "10/2m", 10, MG_MIN(2));
    rate_ok(p, "1/366d", 1, MG_DAY(366));

    /* Every unit spelling, any case. */
    rate_ok(p, "1/sec", 1, MG_SEC(1));
    rate_ok(p, "1/second", 1, MG_SEC(1));
    rate_ok(p, "1/seconds", 1, MG_SEC(1));
    rate_ok(p, "1/m", 1, MG_MIN(1));
    rate_ok(p, "1/minute", 1, MG_MIN(1));
    rate_ok(p, "1/minutes", 1, MG_MIN(1));
    rate_ok(p, "1/hour", 1, MG_HOUR(1));
    rate_ok(p, "1/hours", 1, MG_HOUR(1));
    rate_ok(p, "1/d", 1, MG_DAY(1));
    rate_ok(p, "1/days", 1, MG_DAY(1));
    rate_ok(p, "10/MIN", 10, MG_MIN(1));
    rate_ok(p, "10/Day", 10, MG_DAY(1));

    /* The bounds. */
    rate_ok(p, "1000000000000/min", APR_UINT64_C(1000000000000), MG_MIN(1));
    rate_ok(p, "1/31622400s", 1, MG_DAY(366));
    rate_ok(p, "1/8784h", 1, MG_DAY(366));
    rate_ok(p, "007/01s", 7, MG_SEC(1));
}

static void test_parse_rate_errors(void **state)
{
    apr_pool_t *p = *state;

    rate_err(p, "", "empty rate: expected QUOTA/PERIOD such as 10/min");
    rate_err(p, NULL, "empty rate: expected QUOTA/PERIOD such as 10/min");
    rate_err(p, "10", "'10' is not a rate: expected '/' after the quota "
                      "(as in 10/min)");
    rate_err(p, "10min", "'10min' is not a rate: expected '/' after the "
                         "quota (as in 10/min)");
    rate_err(p, "10/", "'10/' is not a rate: unknown period unit '' (use "
                       "s, min, h, day or month)");
    rate_err(p, "0/min", "'0/min' is not a rate: the quota must be a whole "
                         "number from 1 to 10^12 (as in 10/min)");
    rate_err(p, "10/fortnight", "'10/fortnight' is not a rate: unknown "
                                "period unit 'fortnight' (use s, min, h, "
                                "day or month)");
    rate_err(p, "-1/min", "'-1/min' is not a rate: the quota must be a "
                          "whole number from 1 to 10^12 (as in 10/min)");
    rate_err(p, "+1/min", "'+1/min' is not a rate: the quota must be a "
                          "whole number from 1 to 10^12 (as in 10/min)");
    rate_err(p, " 10/min", "' 10/min' is not a rate: the quota must be a "
                           "whole number from 1 to 10^12 (as in 10/min)");
    rate_err(p, "/min", "'/min' is not a rate: the quota must be a whole "
                        "number from 1 to 10^12 (as in 10/min)");
    rate_err(p, "10/400d", "'10/400d': the period must not exceed 366 days");
    rate_err(p, "10/367d", "'10/367d': the period must not exceed 366 days");
    rate_err(p, "10/8785h", "'10/8785h': the period must not exceed 366 "
                            "days");
    rate_err(p, "10/31622401s", "'10/31622401s' is not a rate: the period "
                                "count must be from 1 to 31622400");
    rate_err(p, "10/0s", "'10/0s' is not a rate: the period count must be "
                         "from 1 to 31622400");
    rate_err(p, "10/99999999999999999999999s",
             "'10/99999999999999999999999s' is not a rate: the period "
             "count must be from 1 to 31622400");
    /* Overflow of the quota: just past 10^12, and past 2^64. */
    rate_err(p, "1000000000001/min", "'1000000000001/min' is not a rate: "
             "the quota must be a whole number from 1 to 10^12 (as in "
             "10/min)");
    rate_err(p, "18446744073709551617/min", "'18446744073709551617/min' is "
             "not a rate: the quota must be a whole number from 1 to 10^12 "
             "(as in 10/min)");
    /* Trailing garbage. */
    rate_err(p, "10/min ", "'10/min ' is not a rate: unknown period unit "
                           "'min ' (use s, min, h, day or month)");
    rate_err(p, "10/minx", "'10/minx' is not a rate: unknown period unit "
                           "'minx' (use s, min, h, day or month)");
    rate_err(p, "10/min/2", "'10/min/2' is not a rate: unknown period unit "
                            "'min/2' (use s, min, h, day or month)");
    rate_err(p, "10/1.5s", "'10/1.5s' is not a rate: unknown period unit "
                           "'.5s' (use s, min, h, day or month)");
    rate_err(p, "10x/min", "'10x/min' is not a rate: expected '/' after "
                           "the quota (as in 10/min)");
    rate_err(p, "10/ min", "'10/ min' is not a rate: unknown period unit "
                           "' min' (use s, min, h, day or month)");
    rate_err(p, "10/-1s", "'10/-1s' is not a rate: unknown period unit "
                          "'-1s' (use s, min, h, day or month)");
}

/* ---- names ------------------------------------------------------------------ */

static void test_name_valid(void **state)
{
    char name[MG_POLICY_NAME_MAX + 2];

    (void)state;
    assert_true(mg_policy_name_valid("free"));
    assert_true(mg_policy_name_valid("a"));
    assert_true(mg_policy_name_valid("Pro-2.tier_X"));
    assert_true(mg_policy_name_valid("0"));
    assert_true(mg_policy_name_valid("..."));

    memset(name, 'x', MG_POLICY_NAME_MAX);
    name[MG_POLICY_NAME_MAX] = '\0';
    assert_int_equal(strlen(name), 64);
    assert_true(mg_policy_name_valid(name));
    name[MG_POLICY_NAME_MAX] = 'x';
    name[MG_POLICY_NAME_MAX + 1] = '\0';
    assert_int_equal(strlen(name), 65);
    assert_false(mg_policy_name_valid(name));

    assert_false(mg_policy_name_valid(NULL));
    assert_false(mg_policy_name_valid(""));
    assert_false(mg_policy_name_valid("a b"));
    assert_false(mg_policy_name_valid("a\tb"));
    assert_false(mg_policy_name_valid("a/b"));
    assert_false(mg_policy_name_valid("a:b"));
    assert_false(mg_policy_name_valid("a;b"));
    assert_false(mg_policy_name_valid("a,b"));
    assert_false(mg_policy_name_valid("a=b"));
    assert_false(mg_policy_name_valid("a\"b"));
    assert_false(mg_policy_name_valid("a\\b"));
    assert_false(mg_policy_name_valid("a*"));
    assert_false(mg_policy_name_valid("caf\xc3\xa9"));   /* UTF-8 e-acute */
    assert_false(mg_policy_name_valid("\xff"));
    assert_false(mg_policy_name_valid("free\n"));
}

/* ---- tiers ------------------------------------------------------------------ */

static void test_parse_tier_ok(void **state)
{
    apr_pool_t *p = *state;
    mg_tier *t = NULL;
    const char *opts[2];

    assert_null(mg_policy_parse_tier(p, "free", "10/min", 0, NULL, NULL, &t));
    assert_non_null(t);
    assert_string_equal(t->name, "free");
    assert_int_equal(t->spec.algo, MG_ALGO_TOKEN_BUCKET);
    assert_int_equal(t->spec.quota, 10);
    assert_int_equal(t->spec.window, MG_MIN(1));
    assert_int_equal(t->spec.burst, 10);          /* defaults to the quota */
    assert_int_equal(t->spec.unit_scale, 6000000);
    assert_int_equal(t->spec.refill_per_us, 1);
    assert_int_equal(t->spec.capacity, 60000000);

    opts[0] = "burst=25";
    assert_null(mg_policy_parse_tier(p, "pro", "100/60s", 1, opts, NULL, &t));
    assert_string_equal(t->name, "pro");
    assert_int_equal(t->spec.quota, 100);
    assert_int_equal(t->spec.burst, 25);
    assert_int_equal(t->spec.capacity, 25 * t->spec.unit_scale);

    opts[0] = "BURST=1";
    assert_null(mg_policy_parse_tier(p, "tiny", "5/s", 1, opts, NULL, &t));
    assert_int_equal(t->spec.burst, 1);

    /* The last burst= wins. */
    opts[0] = "burst=3";
    opts[1] = "burst=4";
    assert_null(mg_policy_parse_tier(p, "twice", "5/s", 2, opts, NULL, &t));
    assert_int_equal(t->spec.burst, 4);

    opts[0] = "burst=1000000000000";
    assert_null(mg_policy_parse_tier(p, "big", "1000000000000/min", 1, opts, NULL, &t));
    assert_int_equal(t->spec.burst, APR_UINT64_C(1000000000000));

    /* The tier keeps its own copy of the name. */
    {
        char name[] = "copied";
        assert_null(mg_policy_parse_tier(p, name, "1/s", 0, NULL, NULL, &t));
        name[0] = 'X';
        assert_string_equal(t->name, "copied");
    }
}

static void tier_err(apr_pool_t *p, const char *name, const char *rate,
                     const char *opt, const char *expected)
{
    mg_tier *t = NULL;
    const char *opts[1];
    const char *err;

    opts[0] = opt;
    err = mg_policy_parse_tier(p, name, rate, opt ? 1 : 0, opts, NULL, &t);
    if (!err) {
        fail_msg("tier '%s' '%s' '%s' was accepted", name, rate,
                 opt ? opt : "");
    }
    assert_string_equal(err, expected);
    assert_null(t);
}

static void test_parse_tier_errors(void **state)
{
    apr_pool_t *p = *state;
    char longname[MG_POLICY_NAME_MAX + 2];

    /* Bad bursts. */
    tier_err(p, "free", "10/min", "burst=0",
             "'burst=0': burst must be a whole number from 1 to 10^12");
    tier_err(p, "free", "10/min", "burst=",
             "'burst=': expected a whole number up to 1000000000000");
    tier_err(p, "free", "10/min", "burst=abc",
             "'burst=abc': expected a whole number up to 1000000000000");
    tier_err(p, "free", "10/min", "burst=5x",
             "'burst=5x': expected a whole number up to 1000000000000");
    tier_err(p, "free", "10/min", "burst=-1",
             "'burst=-1': expected a whole number up to 1000000000000");
    tier_err(p, "free", "10/min", "burst= 5",
             "'burst= 5': expected a whole number up to 1000000000000");
    tier_err(p, "free", "10/min", "burst=1000000000001",
             "'burst=1000000000001': expected a whole number up to "
             "1000000000000");
    /* Unknown options. */
    tier_err(p, "free", "10/min", "rate=5",
             "unknown option 'rate=5' (known: algorithm=, burst=, "
             "delay=, zone=, tiers=, models=, shadow, unit=, count=, tokens=, max_tokens=, on_store_failure=, on_limit=, share=, degraded_cost=)");
    tier_err(p, "free", "10/min", "burst",
             "unknown option 'burst' (known: algorithm=, burst=, "
             "delay=, zone=, tiers=, models=, shadow, unit=, count=, tokens=, max_tokens=, on_store_failure=, on_limit=, share=, degraded_cost=)");
    tier_err(p, "free", "10/min", "",
             "unknown option '' (known: algorithm=, burst=, "
             "delay=, zone=, tiers=, models=, shadow, unit=, count=, tokens=, max_tokens=, on_store_failure=, on_limit=, share=, degraded_cost=)");
    /* Bad names. */
    tier_err(p, "", "10/min", NULL,
             "'' is not a valid tier name (letters, digits, '.', '_', '-'; "
             "at most 64)");
    tier_err(p, "my tier", "10/min", NULL,
             "'my tier' is not a valid tier name (letters, digits, '.', "
             "'_', '-'; at most 64)");
    tier_err(p, "a\"b", "10/min", NULL,
             "'a\"b' is not a valid tier name (letters, digits, '.', '_', "
             "'-'; at most 64)");
    memset(longname, 'n', MG_POLICY_NAME_MAX + 1);
    longname[MG_POLICY_NAME_MAX + 1] = '\0';
    tier_err(p, longname, "10/min", NULL,
             apr_psprintf(p, "'%s' is not a valid tier name (letters, "
                          "digits, '.', '_', '-'; at most 64)", longname));
    /* Bad rates come through as they are. */
    tier_err(p, "free", "10/fortnight", NULL,
             "'10/fortnight' is not a rate: unknown period unit 'fortnight' "
             "(use s, min, h, day or month)");
    /* A burst the arithmetic cannot hold under this window. */
    tier_err(p, "slow", "1/366d", "burst=145837",
             "'slow': burst and window are too large together for "
             "exact arithmetic: lower the burst or pick a quota that "
             "divides the window more evenly");
    {
        mg_tier *t = NULL;
        const char *opts[1] = { "burst=145836" };
        assert_null(mg_policy_parse_tier(p, "slow", "1/366d", 1, opts, NULL, &t));
        assert_int_equal(t->spec.burst, 145836);
    }
}

static void test_policy_tiers(void **state)
{
    apr_pool_t *p = *state;
    mg_policy *policy = mg_policy_create(p);
    mg_tier *free1, *free2, *pro;

    assert_null(mg_policy_tier(policy, "free"));
    assert_null(mg_policy_parse_tier(p, "free", "10/min", 0, NULL, NULL, &free1));
    assert_null(mg_policy_parse_tier(p, "free", "20/min", 0, NULL, NULL, &free2));
    assert_null(mg_policy_parse_tier(p, "pro", "100/min", 0, NULL, NULL, &pro));

    assert_null(mg_policy_add_tier(policy, free1));
    assert_null(mg_policy_add_tier(policy, pro));
    assert_string_equal(mg_policy_add_tier(policy, free2),
                        "tier 'free' is already defined (tiers and "
                        "server-wide limits share one set of names)");
    /* The first definition stays. */
    assert_ptr_equal(mg_policy_tier(policy, "free"), free1);
    assert_int_equal(mg_policy_tier(policy, "free")->spec.quota, 10);
    assert_ptr_equal(mg_policy_tier(policy, "pro"), pro);
    assert_null(mg_policy_tier(policy, "Free"));    /* names are exact */
    assert_null(mg_policy_tier(policy, "enterprise"));
    assert_int_equal(apr_hash_count(policy->tiers), 2);

    /* What a directive naming an undeclared tier is told. */
    assert_null(mg_policy_unknown_tier(p, policy, "pro"));
    assert_string_equal(mg_policy_unknown_tier(p, policy, "gold"),
                        "the unknown tier 'gold' (declared tiers: free, pro)");
    assert_string_equal(mg_policy_unknown_tier(p, policy, "Free"),
                        "the unknown tier 'Free' (declared tiers: free, pro; "
                        "names are case-sensitive: did you mean 'free'?)");
    assert_string_equal(mg_policy_unknown_tier(p, mg_policy_create(p),
                                               "free"),
                        "the unknown tier 'free' (no tier is declared: "
                        "declare it with ModelGateTier)");
}

static void test_failure_policy(void **state)
{
    apr_pool_t *p = *state;
    mg_failure_policy f = MG_FAIL_UNSET;
    const char *opts[] = { "on_store_failure=local" };
    mg_tier *t = NULL;

    assert_null(mg_policy_parse_failure(p, "closed", &f));
    assert_int_equal(f, MG_FAIL_CLOSED);
    assert_null(mg_policy_parse_failure(p, "OPEN", &f));
    assert_int_equal(f, MG_FAIL_OPEN);
    assert_null(mg_policy_parse_failure(p, "local", &f));
    assert_int_equal(f, MG_FAIL_LOCAL);
    assert_string_equal(mg_policy_parse_failure(p, "maybe", &f),
                        "'maybe' is not a failure policy (closed, open, local)");
    assert_null(mg_policy_parse_tier(p, "pro", "10/min", 1, opts, NULL, &t));
    assert_int_equal(t->on_store_failure, MG_FAIL_LOCAL);
}

/* Model names, the model scope and models= (per-model limits). */
static void test_models(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_def *def = NULL;
    mg_tier *t = NULL;
    mg_scope scope;
    const char *opts[2];
    char longname[MG_BODY_MODEL_MAX + 2];

    assert_true(mg_policy_model_name_valid("gpt-4o-mini"));
    assert_true(mg_policy_model_name_valid("meta-llama/Llama-3.1-8B:q4"));
    assert_false(mg_policy_model_name_valid(""));
    assert_false(mg_policy_model_name_valid("a b"));
    assert_false(mg_policy_model_name_valid("a,b"));
    assert_false(mg_policy_model_name_valid("a\"b"));
    assert_false(mg_policy_model_name_valid("a\\b"));
    assert_false(mg_policy_model_name_valid("caf\xc3\xa9"));
    memset(longname, 'm', MG_BODY_MODEL_MAX);
    longname[MG_BODY_MODEL_MAX] = '\0';
    assert_true(mg_policy_model_name_valid(longname));
    longname[MG_BODY_MODEL_MAX] = 'm';
    longname[MG_BODY_MODEL_MAX + 1] = '\0';
    assert_false(mg_policy_model_name_valid(longname));

    assert_null(mg_policy_parse_scope(p, "model", &scope));
    assert_int_equal(scope, MG_SCOPE_MODEL);
    assert_string_equal(mg_policy_scope_name(MG_SCOPE_MODEL), "model");

    opts[0] = "models=gpt-4o,org/big:v2";
    assert_null(mg_policy_parse_limit(p, "big-models", MG_SCOPE_MODEL,
                                      "100/day", 1, opts, &def));
    assert_int_equal(def->models->nelts, 2);
    assert_true(mg_policy_limit_applies_to_model(def, "gpt-4o"));
    assert_true(mg_policy_limit_applies_to_model(def, "org/big:v2"));
    assert_false(mg_policy_limit_applies_to_model(def, "gpt-4o-mini"));
    assert_false(mg_policy_limit_applies_to_model(def, NULL));
    def->models = NULL;
    assert_true(mg_policy_limit_applies_to_model(def, NULL));

    opts[0] = "models=";
    assert_string_equal(mg_policy_parse_limit(p, "x", MG_SCOPE_GLOBAL,
                                              "1/s", 1, opts, &def),
                        "'models=': name at least one model");
    opts[0] = "models=a b";
    assert_string_equal(mg_policy_parse_limit(p, "x", MG_SCOPE_GLOBAL,
                                              "1/s", 1, opts, &def),
                        "'models=a b': 'a b' is not a model name");
    opts[0] = "models=a";
    assert_string_equal(mg_policy_parse_tier(p, "free", "1/s", 1, opts, NULL, &t),
                        "a tier applies to all its callers' requests: "
                        "tiers= and models= are for ModelGateLimit");
}

/* on_limit=: the actions a tier's callers get when a limit refuses. */
static void test_actions(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *acts = NULL;
    const mg_limit_action *a;
    mg_tier *t = NULL;
    const char *opts[1];

    assert_null(mg_policy_parse_actions(p, "fallback:llama-8b,queue:2500,"
                                        "reject", &acts));
    assert_int_equal(acts->nelts, 3);
    a = &APR_ARRAY_IDX(acts, 0, mg_limit_action);
    assert_int_equal(a->type, MG_ACTION_FALLBACK);
    assert_string_equal(a->model, "llama-8b");
    a = &APR_ARRAY_IDX(acts, 1, mg_limit_action);
    assert_int_equal(a->type, MG_ACTION_QUEUE);
    assert_int_equal(a->wait, MG_MSEC(2500));
    a = &APR_ARRAY_IDX(acts, 2, mg_limit_action);
    assert_int_equal(a->type, MG_ACTION_REJECT);

    assert_string_equal(mg_policy_parse_actions(p, "reject,queue:10", &acts),
                        "'queue:10' comes after reject, which ends the list");
    assert_string_equal(mg_policy_parse_actions(p, "queue:0", &acts),
                        "'queue:0': queue:MS waits from 1 to 60000 "
                        "milliseconds");
    assert_string_equal(mg_policy_parse_actions(p, "queue:60001", &acts),
                        "'queue:60001': queue:MS waits from 1 to 60000 "
                        "milliseconds");
    assert_string_equal(mg_policy_parse_actions(p, "fallback:", &acts),
                        "'fallback:': fallback:MODEL names a model declared "
                        "with ModelGateModel");
    /* cache parses; check_config refuses it when no cache listens */
    assert_null(mg_policy_parse_actions(p, "cache,fallback:small", &acts));
    assert_int_equal(acts->nelts, 2);
    assert_int_equal(APR_ARRAY_IDX(acts, 0, mg_limit_action).type,
                     MG_ACTION_CACHE);
    assert_int_equal(APR_ARRAY_IDX(acts, 1, mg_limit_action).type,
                     MG_ACTION_FALLBACK);
    assert_string_equal(mg_policy_parse_actions(p, "retry", &acts),
                        "'retry' is not an action (fallback:MODEL, queue:MS, "
                        "cache, reject)");
    assert_string_equal(mg_policy_parse_actions(p, ",", &acts),
                        "name at least one action");

    opts[0] = "on_limit=queue:100";
    assert_null(mg_policy_parse_tier(p, "free", "1/s", 1, opts, NULL, &t));
    assert_int_equal(t->on_limit->nelts, 1);
    opts[0] = "on_limit=wait";
    assert_string_equal(mg_policy_parse_tier(p, "free", "1/s", 1, opts, NULL, &t),
                        "'on_limit=wait': 'wait' is not an action "
                        "(fallback:MODEL, queue:MS, cache, reject)");
}

/* Token limits: unit=tokens, count=, a tier's tokens=, and the algorithms
 * that cannot give a reservation back refused with a reason. */
static void test_token_units(void **state)
{
    apr_pool_t *p = *state;
    mg_limit_def *def = NULL;
    mg_tier *t = NULL;
    const char *tpm[] = { "unit=tokens", "count=completion",
                          "algorithm=sliding_window" };
    const char *tier_opts[] = { "tokens=20000/min", "burst=5" };
    const char *log_opts[] = { "unit=tokens", "algorithm=sliding_log" };
    const char *delay_opts[] = { "unit=tokens", "algorithm=leaky_bucket",
                                 "delay=100" };
    const char *count_only[] = { "count=prompt" };
    const char *bad_unit[] = { "unit=bytes" };
    const char *limit_tokens[] = { "tokens=5/min" };

    assert_null(mg_policy_parse_limit(p, "tpm", MG_SCOPE_KEY, "40000/min", 3,
                                      tpm, &def));
    assert_int_equal(def->unit, MG_UNIT_TOKENS);
    assert_int_equal(def->count, MG_COUNT_COMPLETION);
    assert_int_equal(def->spec.quota, 40000);
    assert_null(mg_policy_parse_limit(p, "rpm", MG_SCOPE_KEY, "10/min", 0,
                                      NULL, &def));
    assert_int_equal(def->unit, MG_UNIT_REQUESTS);
    assert_null(def->tokens);

    assert_null(mg_policy_parse_tier(p, "free", "10/min", 2, tier_opts, NULL,
                                     &t));
    assert_int_equal(t->unit, MG_UNIT_REQUESTS);
    assert_int_equal(t->spec.burst, 5);
    assert_non_null(t->tokens);
    assert_string_equal(t->tokens->name, "free-tokens");
    assert_int_equal(t->tokens->unit, MG_UNIT_TOKENS);
    assert_int_equal(t->tokens->count, MG_COUNT_TOTAL);
    assert_int_equal(t->tokens->spec.quota, 20000);
    assert_int_equal(t->tokens->spec.burst, 20000);
    assert_int_equal(t->tokens->spec.algo, MG_ALGO_TOKEN_BUCKET);

    assert_non_null(strstr(mg_policy_parse_limit(p, "x", MG_SCOPE_KEY,
        "100/min", 2, log_opts, &def), "sliding log"));
    assert_non_null(strstr(mg_policy_parse_limit(p, "x", MG_SCOPE_KEY,
        "100/min", 3, delay_opts, &def), "cannot queue"));
    assert_non_null(strstr(mg_policy_parse_limit(p, "x", MG_SCOPE_KEY,
        "100/min", 1, count_only, &def), "count= applies to limits with "
        "unit=tokens"));
    assert_non_null(strstr(mg_policy_parse_limit(p, "x", MG_SCOPE_KEY,
        "100/min", 1, bad_unit, &def), "unit= is requests or tokens"));
    assert_non_null(strstr(mg_policy_parse_limit(p, "x", MG_SCOPE_TENANT,
        "100/min", 1, limit_tokens, &def), "tokens= is a tier's option"));
    {
        const char *ceil[] = { "max_tokens=4096" };
        const char *clamp[] = { "max_tokens=512,clamp" };
        const char *bad[] = { "max_tokens=0" };
        const char *bad2[] = { "max_tokens=5,cut" };
        assert_null(mg_policy_parse_tier(p, "c", "1/s", 1, ceil, NULL, &t));
        assert_int_equal(t->max_tokens, 4096);
        assert_false(t->max_tokens_clamp);
        assert_null(mg_policy_parse_tier(p, "c", "1/s", 1, clamp, NULL, &t));
        assert_int_equal(t->max_tokens, 512);
        assert_true(t->max_tokens_clamp);
        assert_non_null(mg_policy_parse_tier(p, "c", "1/s", 1, bad, NULL, &t));
        assert_non_null(mg_policy_parse_tier(p, "c", "1/s", 1, bad2, NULL,
                                             &t));
        assert_non_null(strstr(mg_policy_parse_limit(p, "x", MG_SCOPE_GLOBAL,
            "1/s", 1, ceil, &def), "max_tokens= is a tier's option"));
    }
}

/* Money is counted in whole nano-units: no rounding drifts. */
static void test_money(void **state)
{
    apr_pool_t *p = *state;
    apr_uint64_t v, in, out, total = 0;
    mg_limit_def *def = NULL;
    const char *zone[] = { "zone=+02:00", "tiers=free" };
    const char *algo[] = { "algorithm=gcra" };
    int i;

    assert_null(mg_policy_parse_money(p, "50", &v));
    assert_int_equal(v, APR_UINT64_C(50000000000));
    assert_null(mg_policy_parse_money(p, "49.99", &v));
    assert_int_equal(v, APR_UINT64_C(49990000000));
    assert_null(mg_policy_parse_money(p, "0.000000001", &v));
    assert_int_equal(v, 1);
    assert_non_null(mg_policy_parse_money(p, "0.0000000001", &v));
    assert_non_null(mg_policy_parse_money(p, "1.2.3", &v));
    assert_non_null(mg_policy_parse_money(p, "", &v));
    assert_non_null(mg_policy_parse_money(p, "99999999999", &v));
    assert_null(mg_policy_parse_price(p, "2.50/10", &in, &out));
    assert_int_equal(in, 2500);
    assert_int_equal(out, 10000);
    assert_null(mg_policy_parse_price(p, "0.075/0.3", &in, &out));
    assert_int_equal(in, 75);
    assert_non_null(mg_policy_parse_price(p, "0.0375/1", &in, &out));
    assert_non_null(mg_policy_parse_price(p, "2.5", &in, &out));
    /* A million charges of 7 and 3 tokens at 2.50/10.00: exact. */
    mg_policy_parse_price(p, "2.50/10.00", &in, &out);
    for (i = 0; i < 1000000; i++) {
        total += mg_policy_spend(7, 3, in, out);
    }
    assert_int_equal(total, APR_UINT64_C(1000000) * (7 * 2500 + 3 * 10000));
    assert_int_equal(total / MG_MONEY_UNIT, 47);       /* 47.5 of the currency */
    /* Saturates rather than wraps. */
    assert_int_equal(mg_policy_spend(APR_UINT64_C(1) << 40, 0, 1 << 20, 0),
                     MG_LIMIT_MAX_WINDOW_QUOTA + 1);
    assert_null(mg_policy_parse_budget(p, "acme", MG_SCOPE_TENANT,
                                       "50.00/month", 2, zone, NULL, 1,
                                       &def));
    assert_int_equal(def->unit, MG_UNIT_MONEY);
    assert_int_equal(def->spec.quota, APR_UINT64_C(50000000000));
    assert_int_equal(def->spec.algo, MG_ALGO_FIXED_WINDOW);
    assert_int_equal(def->spec.calendar, MG_CAL_MONTH);
    assert_int_equal(def->spec.utc_offset, 7200);
    assert_non_null(def->tiers);
    assert_non_null(strstr(mg_policy_parse_budget(p, "b", MG_SCOPE_TENANT,
        "5/day", 1, algo, NULL, 1, &def), "does not apply to a budget"));
    assert_non_null(mg_policy_parse_budget(p, "b", MG_SCOPE_TENANT, "5",
                                           0, NULL, NULL, 1, &def));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_money),
        MG_TEST(test_token_units),
        MG_TEST(test_failure_policy),
        MG_TEST(test_parse_rate_ok),
        MG_TEST(test_parse_rate_errors),
        MG_TEST(test_name_valid),
        MG_TEST(test_parse_tier_ok),
        MG_TEST(test_parse_tier_errors),
        MG_TEST(test_policy_tiers),
        MG_TEST(test_models),
        MG_TEST(test_actions),
    };

    return MG_RUN(tests);
}
