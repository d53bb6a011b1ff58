/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_policy.c -- parsing tiers and rates.
 */
#include <apr_strings.h>
#include <apr_lib.h>
#include <strings.h>
#include "mg_policy.h"

mg_policy *mg_policy_create(apr_pool_t *p)
{
    mg_policy *policy = apr_pcalloc(p, sizeof(*policy));
    policy->tiers = apr_hash_make(p);
    return policy;
}

int mg_policy_name_valid(const char *name)
{
    apr_size_t n = 0;

    if (!name || !*name) {
        return 0;
    }
    for (; name[n]; n++) {
        char c = name[n];
        if (!(apr_isalnum(c) || c == '.' || c == '_' || c == '-')) {
            return 0;
        }
    }
    return n <= MG_POLICY_NAME_MAX;
}

/* Digits only, no sign, no overflow past `max`. */
static const char *parse_count(const char *s, const char **end,
                               apr_uint64_t max, apr_uint64_t *out)
{
    apr_uint64_t v = 0;

    if (!apr_isdigit(*s)) {
        return "expected a number";
    }
    for (; apr_isdigit(*s); s++) {
        unsigned digit = (unsigned)(*s - '0');
        if (v > (max - digit) / 10) {
            return "number too large";
        }
        v = v * 10 + digit;
    }
    *end = s;
    *out = v;
    return NULL;
}

static const struct {
    const char *name;
    apr_int64_t seconds;
} period_units[] = {
    { "s", 1 }, { "sec", 1 }, { "second", 1 }, { "seconds", 1 },
    { "m", 60 }, { "min", 60 }, { "minute", 60 }, { "minutes", 60 },
    { "h", 3600 }, { "hour", 3600 }, { "hours", 3600 },
    { "d", 86400 }, { "day", 86400 }, { "days", 86400 },
};

const char *mg_policy_parse_rate(apr_pool_t *p, const char *text,
                                 apr_uint64_t *quota, apr_int64_t *window)
{
    const char *s = text, *err;
    apr_uint64_t count = 1;
    apr_size_t i;

    if (!text || !*text) {
        return "empty rate: expected QUOTA/PERIOD such as 10/min";
    }
    if ((err = parse_count(s, &s, MG_LIMIT_MAX_QUOTA, quota)) != NULL
        || *quota == 0) {
        return apr_psprintf(p, "'%s' is not a rate: the quota must be a "
                            "whole number from 1 to 10^12 (as in 10/min)",
                            text);
    }
    if (*s++ != '/') {
        return apr_psprintf(p, "'%s' is not a rate: expected '/' after "
                            "the quota (as in 10/min)", text);
    }
    if (apr_isdigit(*s)) {
        if (parse_count(s, &s, 366 * 86400, &count) != NULL || count == 0) {
            return apr_psprintf(p, "'%s' is not a rate: the period count "
                                "must be from 1 to 31622400", text);
        }
    }
    for (i = 0; i < sizeof(period_units) / sizeof(period_units[0]); i++) {
        if (!strcasecmp(s, period_units[i].name)) {
            apr_int64_t secs = (apr_int64_t)count * period_units[i].seconds;
            if (secs > 366 * 86400) {
                return apr_psprintf(p, "'%s': the period must not exceed "
                                    "366 days", text);
            }
            *window = secs * APR_USEC_PER_SEC;
            return NULL;
        }
    }
    return apr_psprintf(p, "'%s' is not a rate: unknown period unit '%s' "
                        "(use s, min, h or day)", text, s);
}

const char *mg_policy_parse_tier(apr_pool_t *p, const char *name,
                                 const char *rate, int nopts,
                                 const char *const *opts, mg_tier **out)
{
    apr_uint64_t quota, burst = 0;
    apr_int64_t window;
    mg_tier *tier;
    const char *err;
    int i;

    if (!mg_policy_name_valid(name)) {
        return apr_psprintf(p, "'%s' is not a valid tier name (letters, "
                            "digits, '.', '_', '-'; at most %d)", name,
                            MG_POLICY_NAME_MAX);
    }
    if ((err = mg_policy_parse_rate(p, rate, &quota, &window)) != NULL) {
        return err;
    }
    for (i = 0; i < nopts; i++) {
        const char *opt = opts[i], *end;
        if (!strncasecmp(opt, "burst=", 6)) {
            if (parse_count(opt + 6, &end, MG_LIMIT_MAX_QUOTA, &burst) != NULL
                || *end || burst == 0) {
                return apr_psprintf(p, "'%s': burst must be a whole number "
                                    "from 1 to 10^12", opt);
            }
        }
        else {
            return apr_psprintf(p, "unknown tier option '%s' (known: "
                                "burst=N)", opt);
        }
    }
    tier = apr_pcalloc(p, sizeof(*tier));
    tier->name = apr_pstrdup(p, name);
    err = mg_limit_spec_init(&tier->spec, MG_ALGO_TOKEN_BUCKET, quota, window,
                             burst ? burst : quota);
    if (err) {
        return apr_psprintf(p, "tier '%s': %s", name, err);
    }
    *out = tier;
    return NULL;
}

const char *mg_policy_add_tier(mg_policy *policy, mg_tier *tier)
{
    apr_pool_t *p = apr_hash_pool_get(policy->tiers);

    if (apr_hash_get(policy->tiers, tier->name, APR_HASH_KEY_STRING)) {
        return apr_psprintf(p, "tier '%s' is already defined", tier->name);
    }
    apr_hash_set(policy->tiers, tier->name, APR_HASH_KEY_STRING, tier);
    return NULL;
}

const mg_tier *mg_policy_tier(const mg_policy *policy, const char *name)
{
    return apr_hash_get(policy->tiers, name, APR_HASH_KEY_STRING);
}
