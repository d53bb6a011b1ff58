/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_policy_money.c -- prices, spend and budgets: exact integer
 * micro-units of a currency, parsed from the configuration's decimals.
 */
#include <apr_strings.h>
#include <apr_lib.h>
#include <stdlib.h>
#include <strings.h>
#include "mg_policy.h"

/* Whole and fractional part of a decimal, in units of 10^-decimals. */
static const char *parse_decimal(apr_pool_t *p, const char *text,
                                 int decimals, apr_uint64_t max,
                                 apr_uint64_t *out)
{
    apr_uint64_t v = 0;
    const char *s = text;
    int frac = -1, digits = 0;

    for (; *s; s++) {
        if (*s == '.' && frac < 0) {
            frac = 0;
            continue;
        }
        if (*s < '0' || *s > '9') {
            return apr_psprintf(p, "'%s' is not an amount", text);
        }
        if (frac >= 0 && ++frac > decimals) {
            return apr_psprintf(p, "'%s' has more than %d decimals", text,
                                decimals);
        }
        if (v > (max - (apr_uint64_t)(*s - '0')) / 10) {
            return apr_psprintf(p, "'%s' is too large", text);
        }
        v = v * 10 + (apr_uint64_t)(*s - '0');
        digits++;
    }
    if (!digits) {
        return apr_psprintf(p, "'%s' is not an amount", text);
    }
    for (frac = frac < 0 ? 0 : frac; frac < decimals; frac++) {
        if (v > max / 10) {
            return apr_psprintf(p, "'%s' is too large", text);
        }
        v *= 10;
    }
    *out = v;
    return NULL;
}

const char *mg_policy_parse_money(apr_pool_t *p, const char *text,
                                  apr_uint64_t *nano)
{
    return parse_decimal(p, text, 9, MG_LIMIT_MAX_WINDOW_QUOTA, nano);
}

const char *mg_policy_parse_price(apr_pool_t *p, const char *text,
                                  apr_uint64_t *in, apr_uint64_t *out)
{
    const char *slash = strchr(text, '/');
    const char *err;

    if (!slash) {
        return apr_psprintf(p, "'%s': a price is IN/OUT per million "
                            "tokens, e.g. 2.50/10.00", text);
    }
    /* Per token, in nano-units: the price per million in milli-units. */
    if ((err = parse_decimal(p, apr_pstrndup(p, text, (apr_size_t)(slash
                                                                   - text)),
                             3, APR_UINT64_C(1000000000000), in))
        || (err = parse_decimal(p, slash + 1, 3,
                                APR_UINT64_C(1000000000000), out))) {
        return apr_psprintf(p, "price '%s': %s (prices per million tokens "
                            "may have at most 3 decimals)", text, err);
    }
    return NULL;
}

apr_uint64_t mg_policy_spend(apr_uint64_t prompt, apr_uint64_t completion,
                             apr_uint64_t price_in, apr_uint64_t price_out)
{
    const apr_uint64_t cap = MG_LIMIT_MAX_WINDOW_QUOTA + 1;
    apr_uint64_t a, b;

    a = price_in && prompt > cap / price_in ? cap : prompt * price_in;
    b = price_out && completion > cap / price_out ? cap
        : completion * price_out;
    return a >= cap || b >= cap - a ? cap : a + b;
}

const char *mg_policy_parse_budget(apr_pool_t *p, const char *name,
                                   mg_scope scope, const char *amount,
                                   int nopts, const char *const *opts,
                                   mg_zone_cache *zones, int may_load,
                                   mg_limit_def **out)
{
    const char *slash = strchr(amount, '/'), **all;
    apr_uint64_t nano;
    const char *err;
    int i;

    if (!slash) {
        return apr_psprintf(p, "'%s' is not a budget: AMOUNT/PERIOD, e.g. "
                            "50.00/month", amount);
    }
    if ((err = mg_policy_parse_money(p, apr_pstrndup(p, amount,
                                                     (apr_size_t)(slash
                                                                  - amount)),
                                     &nano))) {
        return err;
    }
    if (nano == 0) {
        return apr_psprintf(p, "'%s': a budget must be more than 0", amount);
    }
    all = apr_palloc(p, sizeof(*all) * (apr_size_t)(nopts + 1));
    for (i = 0; i < nopts; i++) {
        if (!strncasecmp(opts[i], "algorithm=", 10)
            || !strncasecmp(opts[i], "unit=", 5)
            || !strncasecmp(opts[i], "count=", 6)
            || !strncasecmp(opts[i], "burst=", 6)
            || !strncasecmp(opts[i], "delay=", 6)) {
            return apr_psprintf(p, "'%s' does not apply to a budget (a "
                                "fixed window of money)", opts[i]);
        }
        all[i] = opts[i];
    }
    all[nopts] = "algorithm=fixed_window";
    /* One unit per period, to be given the amount below: the period's
     * calendar and zone come from the limit's own parsing. */
    if ((err = mg_policy_parse_limit_ex(p, name, scope,
                                        apr_pstrcat(p, "1", slash, NULL),
                                        nopts + 1, all, zones, may_load,
                                        out))) {
        return err;
    }
    if ((*out)->tokens || (*out)->max_tokens || (*out)->on_limit
        || (*out)->share_pct || (*out)->degraded_cost
        || (*out)->on_store_failure != MG_FAIL_UNSET) {
        return "a budget takes the options of a limit (zone=, tiers=, "
               "models=, shadow)";
    }
    /* A fixed window scales nothing (mg_limit_spec_init): its quota is the
     * amount, whatever it is, up to MG_LIMIT_MAX_WINDOW_QUOTA. */
    (*out)->spec.quota = (*out)->spec.burst = nano;
    (*out)->unit = MG_UNIT_MONEY;
    return NULL;
}
