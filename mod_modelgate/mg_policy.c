/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_policy.c -- parsing tiers and rates (prices and budgets:
 * mg_policy_money.c).
 */
#include <apr_strings.h>
#include <apr_lib.h>
#include <stdlib.h>
#include <strings.h>
#include "mg_policy.h"
#include "mg_zone.h"

mg_policy *mg_policy_create(apr_pool_t *p)
{
    mg_policy *policy = apr_pcalloc(p, sizeof(*policy));
    policy->tiers = apr_hash_make(p);
    policy->names = apr_hash_make(p);
    policy->limits = apr_array_make(p, 8, sizeof(mg_limit_def *));
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

const char *mg_policy_parse_rate_ex(apr_pool_t *p, const char *text,
                                    apr_uint64_t *quota, apr_int64_t *window,
                                    mg_limit_calendar *calendar)
{
    const char *s = text, *err;
    apr_uint64_t count = 1;
    int counted = 0;
    apr_size_t i;

    *calendar = MG_CAL_NONE;
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
        counted = 1;
        if (parse_count(s, &s, 366 * 86400, &count) != NULL || count == 0) {
            return apr_psprintf(p, "'%s' is not a rate: the period count "
                                "must be from 1 to 31622400", text);
        }
    }
    if (!strcasecmp(s, "month") || !strcasecmp(s, "months")
        || !strcasecmp(s, "mo")) {
        if (counted && count != 1) {
            return apr_psprintf(p, "'%s': a calendar period is one month",
                                text);
        }
        *calendar = MG_CAL_MONTH;
        *window = APR_INT64_C(31) * 86400 * APR_USEC_PER_SEC;
        return NULL;
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
                        "(use s, min, h, day or month)", text, s);
}

const char *mg_policy_parse_rate(apr_pool_t *p, const char *text,
                                 apr_uint64_t *quota, apr_int64_t *window)
{
    mg_limit_calendar calendar;
    const char *err = mg_policy_parse_rate_ex(p, text, quota, window,
                                              &calendar);

    if (!err && calendar != MG_CAL_NONE) {
        return apr_psprintf(p, "'%s': a month is a calendar period, only "
                            "for algorithm=fixed_window", text);
    }
    return err;
}

const char *mg_policy_parse_zone(apr_pool_t *p, const char *text,
                                 apr_int32_t *offset)
{
    const char *s = text;
    apr_uint64_t hh = 0, mm = 0;
    int sign;

    if (!strcasecmp(text, "UTC") || !strcasecmp(text, "Z")
        || !strcasecmp(text, "GMT")) {
        *offset = 0;
        return NULL;
    }
    if (*s != '+' && *s != '-') {
        goto bad;
    }
    sign = *s++ == '-' ? -1 : 1;
    if (!apr_isdigit(s[0]) || !apr_isdigit(s[1])) {
        goto bad;
    }
    hh = (apr_uint64_t)((s[0] - '0') * 10 + (s[1] - '0'));
    s += 2;
    if (*s == ':') {
        s++;
    }
    if (*s) {
        if (!apr_isdigit(s[0]) || !apr_isdigit(s[1]) || s[2]) {
            goto bad;
        }
        mm = (apr_uint64_t)((s[0] - '0') * 10 + (s[1] - '0'));
    }
    if (hh > 14 || mm > 59) {
        goto bad;
    }
    *offset = sign * (apr_int32_t)(hh * 3600 + mm * 60);
    return NULL;
bad:
    return apr_psprintf(p, "'%s' is not a zone offset: use UTC or an "
                        "offset such as +02:00 or -05:00, or a zone name "
                        "such as Europe/Berlin", text);
}

const char *mg_policy_parse_failure(apr_pool_t *p, const char *text,
                                    mg_failure_policy *out)
{
    if (!strcasecmp(text, "closed")) {
        *out = MG_FAIL_CLOSED;
    }
    else if (!strcasecmp(text, "open")) {
        *out = MG_FAIL_OPEN;
    }
    else if (!strcasecmp(text, "local")) {
        *out = MG_FAIL_LOCAL;
    }
    else {
        return apr_psprintf(p, "'%s' is not a failure policy (closed, open, "
                            "local)", text);
    }
    return NULL;
}

static const char *const scope_names[] = {
    "global", "tier", "tenant", "key", "route", "ip", "model"
};

int mg_policy_model_name_valid(const char *name)
{
    apr_size_t n = 0;

    for (; name[n]; n++) {
        unsigned char c = (unsigned char)name[n];
        if (c <= ' ' || c >= 0x7f || c == '"' || c == ',' || c == '\\') {
            return 0;
        }
    }
    return n > 0 && n <= MG_BODY_MODEL_MAX;
}

const char *mg_policy_parse_scope(apr_pool_t *p, const char *text,
                                  mg_scope *scope)
{
    apr_size_t i;

    for (i = 0; i < sizeof(scope_names) / sizeof(scope_names[0]); i++) {
        if (!strcasecmp(text, scope_names[i])) {
            *scope = (mg_scope)i;
            return NULL;
        }
    }
    return apr_psprintf(p, "'%s' is not a scope (global, tier, tenant, key, "
                        "route, ip, model)", text);
}

const char *mg_policy_scope_name(mg_scope scope)
{
    return (apr_size_t)scope < sizeof(scope_names) / sizeof(scope_names[0])
           ? scope_names[scope] : "?";
}

static const char *parse_number_opt(apr_pool_t *p, const char *opt,
                                    apr_size_t skip, apr_uint64_t max,
                                    apr_uint64_t *out)
{
    const char *end;

    if (parse_count(opt + skip, &end, max, out) != NULL || *end) {
        return apr_psprintf(p, "'%s': expected a whole number up to %"
                            APR_UINT64_T_FMT, opt, max);
    }
    return NULL;
}

const char *mg_policy_parse_actions(apr_pool_t *p, const char *text,
                                    apr_array_header_t **out)
{
    char *list = apr_pstrdup(p, text), *state = NULL, *tok;
    apr_array_header_t *acts = apr_array_make(p, 3, sizeof(mg_limit_action));
    int rejected = 0;

    for (tok = apr_strtok(list, ",", &state); tok;
         tok = apr_strtok(NULL, ",", &state)) {
        mg_limit_action *a;
        if (rejected) {
            return apr_psprintf(p, "'%s' comes after reject, which ends the "
                                "list", tok);
        }
        a = apr_array_push(acts);
        memset(a, 0, sizeof(*a));
        if (!strcasecmp(tok, "reject")) {
            a->type = MG_ACTION_REJECT;
            rejected = 1;
        }
        else if (!strncasecmp(tok, "fallback:", 9)) {
            a->type = MG_ACTION_FALLBACK;
            a->model = tok + 9;
            if (!mg_policy_model_name_valid(a->model)) {
                return apr_psprintf(p, "'%s': fallback:MODEL names a model "
                                    "declared with ModelGateModel", tok);
            }
        }
        else if (!strncasecmp(tok, "queue:", 6)) {
            apr_uint64_t ms;
            const char *end;
            a->type = MG_ACTION_QUEUE;
            if (parse_count(tok + 6, &end, MG_ACTION_QUEUE_MAX / 1000, &ms)
                || *end || ms == 0) {
                return apr_psprintf(p, "'%s': queue:MS waits from 1 to %d "
                                    "milliseconds", tok,
                                    (int)(MG_ACTION_QUEUE_MAX / 1000));
            }
            a->wait = (apr_interval_time_t)ms * 1000;
        }
        else if (!strcasecmp(tok, "cache")) {
            /* Whether a cache listens is known only once every module is
             * loaded: check_config says so. */
            a->type = MG_ACTION_CACHE;
        }
        else {
            return apr_psprintf(p, "'%s' is not an action (fallback:MODEL, "
                                "queue:MS, cache, reject)", tok);
        }
    }
    if (acts->nelts == 0) {
        return "name at least one action";
    }
    *out = acts;
    return NULL;
}

const char *mg_policy_parse_limit(apr_pool_t *p, const char *name,
                                  mg_scope scope, const char *rate, int nopts,
                                  const char *const *opts, mg_limit_def **out)
{
    return mg_policy_parse_limit_ex(p, name, scope, rate, nopts, opts, NULL,
                                    1, out);
}

const char *mg_policy_parse_limit_ex(apr_pool_t *p, const char *name,
                                     mg_scope scope, const char *rate,
                                     int nopts, const char *const *opts,
                                     mg_zone_cache *zones, int may_load,
                                     mg_limit_def **out)
{
    apr_uint64_t quota, burst = 0, delay_ms = 0;
    apr_int64_t window;
    mg_limit_calendar calendar;
    mg_limit_algo algo = MG_ALGO_TOKEN_BUCKET;
    apr_int32_t zone = 0;
    const mg_zone *named = NULL;
    int zoned = 0, delayed = 0, counted = 0;
    const char *tokens_rate = NULL;
    mg_limit_def *def;
    const char *err;
    int i;

    if (!mg_policy_name_valid(name)) {
        return apr_psprintf(p, "'%s' is not a valid name (letters, digits, "
                            "'.', '_', '-'; at most %d)", name,
                            MG_POLICY_NAME_MAX);
    }
    if ((err = mg_policy_parse_rate_ex(p, rate, &quota, &window,
                                       &calendar)) != NULL) {
        return err;
    }
    def = apr_pcalloc(p, sizeof(*def));
    def->name = apr_pstrdup(p, name);
    def->scope = scope;
    for (i = 0; i < nopts; i++) {
        const char *opt = opts[i];
        if (!strncasecmp(opt, "burst=", 6)) {
            if ((err = parse_number_opt(p, opt, 6, MG_LIMIT_MAX_QUOTA, &burst))
                || burst == 0) {
                return err ? err : apr_psprintf(p, "'%s': burst must be a "
                                                "whole number from 1 to "
                                                "10^12", opt);
            }
        }
        else if (!strncasecmp(opt, "algorithm=", 10)) {
            algo = mg_limit_algo_parse(opt + 10);
            if (!algo) {
                return apr_psprintf(p, "'%s': unknown algorithm (token_bucket,"
                                    " leaky_bucket, fixed_window, sliding_log,"
                                    " sliding_window, gcra)", opt);
            }
        }
        else if (!strncasecmp(opt, "delay=", 6)) {
            if ((err = parse_number_opt(p, opt, 6, 60000, &delay_ms))) {
                return err;
            }
            delayed = 1;
        }
        else if (!strncasecmp(opt, "zone=", 5)) {
            const char *v = opt + 5;
            if (*v == '+' || *v == '-' || !strcasecmp(v, "UTC")
                || !strcasecmp(v, "Z") || !strcasecmp(v, "GMT")) {
                if ((err = mg_policy_parse_zone(p, v, &zone))) {
                    return err;
                }
            }
            else if ((err = mg_zone_get(zones, may_load, p, v,
                                        apr_time_now(), &named))) {
                return err;
            }
            zoned = 1;
        }
        else if (!strncasecmp(opt, "tiers=", 6)) {
            char *list = apr_pstrdup(p, opt + 6), *state = NULL, *tok;
            def->tiers = apr_array_make(p, 2, sizeof(const char *));
            for (tok = apr_strtok(list, ",", &state); tok;
                 tok = apr_strtok(NULL, ",", &state)) {
                if (!mg_policy_name_valid(tok)) {
                    return apr_psprintf(p, "'%s': '%s' is not a tier name",
                                        opt, tok);
                }
                APR_ARRAY_PUSH(def->tiers, const char *) = tok;
            }
            if (def->tiers->nelts == 0) {
                return apr_psprintf(p, "'%s': name at least one tier", opt);
            }
        }
        else if (!strncasecmp(opt, "models=", 7)) {
            char *list = apr_pstrdup(p, opt + 7), *state = NULL, *tok;
            def->models = apr_array_make(p, 2, sizeof(const char *));
            for (tok = apr_strtok(list, ",", &state); tok;
                 tok = apr_strtok(NULL, ",", &state)) {
                if (!mg_policy_model_name_valid(tok)) {
                    return apr_psprintf(p, "'%s': '%s' is not a model name",
                                        opt, tok);
                }
                APR_ARRAY_PUSH(def->models, const char *) = tok;
            }
            if (def->models->nelts == 0) {
                return apr_psprintf(p, "'%s': name at least one model", opt);
            }
        }
        else if (!strcasecmp(opt, "shadow")) {
            def->shadow = 1;
        }
        else if (!strncasecmp(opt, "unit=", 5)) {
            if (!strcasecmp(opt + 5, "tokens")) {
                def->unit = MG_UNIT_TOKENS;
            }
            else if (strcasecmp(opt + 5, "requests")) {
                return apr_psprintf(p, "'%s': unit= is requests or tokens",
                                    opt);
            }
        }
        else if (!strncasecmp(opt, "count=", 6)) {
            const char *v = opt + 6;
            if (!strcasecmp(v, "total")) {
                def->count = MG_COUNT_TOTAL;
            }
            else if (!strcasecmp(v, "prompt")) {
                def->count = MG_COUNT_PROMPT;
            }
            else if (!strcasecmp(v, "completion")) {
                def->count = MG_COUNT_COMPLETION;
            }
            else {
                return apr_psprintf(p, "'%s': count= is total, prompt or "
                                    "completion", opt);
            }
            counted = 1;
        }
        else if (!strncasecmp(opt, "tokens=", 7)) {
            tokens_rate = opt + 7;
        }
        else if (!strncasecmp(opt, "max_tokens=", 11)) {
            apr_uint64_t n;
            const char *end;
            if (parse_count(opt + 11, &end, 1000000000, &n) || n == 0
                || (*end && strcasecmp(end, ",clamp"))) {
                return apr_psprintf(p, "'%s': max_tokens=N[,clamp] takes a "
                                    "whole number of tokens from 1 to 10^9",
                                    opt);
            }
            def->max_tokens = n;
            def->max_tokens_clamp = *end != '\0';
        }
        else if (!strncasecmp(opt, "on_store_failure=", 17)) {
            if ((err = mg_policy_parse_failure(p, opt + 17,
                                               &def->on_store_failure))) {
                return err;
            }
        }
        else if (!strncasecmp(opt, "share=", 6)) {
            apr_uint64_t pct;
            const char *end;
            if (parse_count(opt + 6, &end, 100, &pct) || pct == 0
                || (*end && strcmp(end, "%"))) {
                return apr_psprintf(p, "'%s': share=P is a percentage from "
                                    "1 to 100", opt);
            }
            def->share_pct = (apr_uint32_t)pct;
        }
        else if (!strncasecmp(opt, "degraded_cost=", 14)) {
            apr_uint64_t k;
            const char *end;
            if (parse_count(opt + 14, &end, 1000, &k) || k == 0 || *end) {
                return apr_psprintf(p, "'%s': degraded_cost=K is a whole "
                                    "factor from 1 to 1000", opt);
            }
            def->degraded_cost = (apr_uint32_t)k;
        }
        else if (!strncasecmp(opt, "on_limit=", 9)) {
            if ((err = mg_policy_parse_actions(p, opt + 9, &def->on_limit))) {
                return apr_psprintf(p, "'%s': %s", opt, err);
            }
        }
        else {
            return apr_psprintf(p, "unknown option '%s' (known: algorithm=, "
                                "burst=, delay=, zone=, tiers=, models=, "
                                "shadow, unit=, count=, tokens=, "
                                "max_tokens=, on_store_failure=, on_limit=, "
                                "share=, degraded_cost=)", opt);
        }
    }
    err = mg_limit_spec_init(&def->spec, algo, quota, window,
                             burst ? burst : quota);
    if (!err && burst && algo != MG_ALGO_TOKEN_BUCKET
        && algo != MG_ALGO_LEAKY_BUCKET && algo != MG_ALGO_GCRA) {
        err = "burst= applies to token_bucket, leaky_bucket and gcra; a "
              "window admits its quota";
    }
    if (!err && calendar == MG_CAL_MONTH) {
        err = mg_limit_spec_calendar(&def->spec, MG_CAL_MONTH, zone);
    }
    else if (!err && zoned) {
        if (algo != MG_ALGO_FIXED_WINDOW
            || window != APR_INT64_C(86400) * APR_USEC_PER_SEC) {
            err = "zone= applies to fixed windows of a day or a month";
        }
        else {
            err = mg_limit_spec_calendar(&def->spec, MG_CAL_DAY, zone);
        }
    }
    if (!err && named) {
        def->spec.zone = named;
    }
    if (!err && delayed) {
        err = mg_limit_spec_delay(&def->spec,
                                  (apr_interval_time_t)delay_ms * 1000);
    }
    if (!err && counted && def->unit != MG_UNIT_TOKENS) {
        err = "count= applies to limits with unit=tokens";
    }
    if (!err && def->unit == MG_UNIT_TOKENS) {
        /* A reservation is settled later: the algorithm must be able to
         * give units back to the counter that holds them. */
        if (algo == MG_ALGO_SLIDING_LOG) {
            err = "a sliding log keeps one timestamp per unit and cannot "
                  "give a reservation back: use sliding_window for tokens";
        }
        else if (delayed) {
            err = "delay= holds requests to a rate; token limits settle "
                  "after the answer and cannot queue";
        }
    }
    if (!err && def->max_tokens && scope != MG_SCOPE_KEY) {
        err = "max_tokens= is a tier's option (ModelGateTier)";
    }
    if (!err && tokens_rate) {
        const char *topts[] = { "unit=tokens" };
        if (scope != MG_SCOPE_KEY) {
            err = "tokens= is a tier's option (ModelGateTier); a limit "
                  "counts tokens with unit=tokens";
        }
        else if ((err = mg_policy_parse_limit_ex(p, apr_pstrcat(p, name,
                                                     "-tokens", NULL),
                                                 MG_SCOPE_KEY, tokens_rate, 1,
                                                 topts, zones, may_load,
                                                 &def->tokens))) {
            err = apr_psprintf(p, "tokens=%s: %s", tokens_rate, err);
        }
    }
    if (err) {
        return apr_psprintf(p, "'%s': %s", name, err);
    }
    *out = def;
    return NULL;
}

const char *mg_policy_parse_tier(apr_pool_t *p, const char *name,
                                 const char *rate, int nopts,
                                 const char *const *opts,
                                 mg_zone_cache *zones, mg_tier **out)
{
    int i;

    if (!mg_policy_name_valid(name)) {
        return apr_psprintf(p, "'%s' is not a valid tier name (letters, "
                            "digits, '.', '_', '-'; at most %d)", name,
                            MG_POLICY_NAME_MAX);
    }
    for (i = 0; i < nopts; i++) {
        if (!strncasecmp(opts[i], "tiers=", 6)
            || !strncasecmp(opts[i], "models=", 7)) {
            return "a tier applies to all its callers' requests: tiers= and "
                   "models= are for ModelGateLimit";
        }
    }
    return mg_policy_parse_limit_ex(p, name, MG_SCOPE_KEY, rate, nopts, opts,
                                    zones, 1, out);
}

static const char *claim_name(mg_policy *policy, mg_limit_def *def,
                              const char *what)
{
    apr_pool_t *p = apr_hash_pool_get(policy->names);

    if (apr_hash_get(policy->names, def->name, APR_HASH_KEY_STRING)) {
        return apr_psprintf(p, "%s '%s' is already defined (tiers and "
                            "server-wide limits share one set of names)",
                            what, def->name);
    }
    apr_hash_set(policy->names, def->name, APR_HASH_KEY_STRING, def);
    return NULL;
}

const char *mg_policy_add_tier(mg_policy *policy, mg_tier *tier)
{
    const char *err = claim_name(policy, tier, "tier");

    if (!err && tier->tokens) {
        /* NAME-tokens keeps counters of its own: no limit may share it. */
        err = claim_name(policy, tier->tokens, "tier token limit");
    }
    if (!err) {
        apr_hash_set(policy->tiers, tier->name, APR_HASH_KEY_STRING, tier);
    }
    return err;
}

const char *mg_policy_add_limit(mg_policy *policy, mg_limit_def *def)
{
    const char *err = claim_name(policy, def, "limit");

    if (!err) {
        APR_ARRAY_PUSH(policy->limits, mg_limit_def *) = def;
    }
    return err;
}

int mg_policy_limit_applies(const mg_limit_def *def, const char *tier)
{
    int i;

    if (!def->tiers) {
        return 1;
    }
    for (i = 0; i < def->tiers->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(def->tiers, i, const char *), tier)) {
            return 1;
        }
    }
    return 0;
}

int mg_policy_limit_applies_to_model(const mg_limit_def *def,
                                     const char *model)
{
    int i;

    if (!def->models) {
        return 1;
    }
    for (i = 0; model && i < def->models->nelts; i++) {
        if (!strcmp(APR_ARRAY_IDX(def->models, i, const char *), model)) {
            return 1;
        }
    }
    return 0;
}

const mg_tier *mg_policy_tier(const mg_policy *policy, const char *name)
{
    return apr_hash_get(policy->tiers, name, APR_HASH_KEY_STRING);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

const char *mg_policy_unknown_name(apr_pool_t *p, const char *kind,
                                   const char *declare, const char *name,
                                   const char *const *names, int n)
{
    const char **sorted, *list = "", *alike = NULL;
    int i;

    if (n == 0) {
        return apr_psprintf(p, "the unknown %s '%s' (no %s is declared: "
                            "declare it with %s)", kind, name, kind, declare);
    }
    /* sorted, so that the message is the same from one start to the next
     * (tiers come from a hash) */
    sorted = apr_pmemdup(p, names, n * sizeof(*names));
    qsort(sorted, n, sizeof(*sorted), compare_names);
    for (i = 0; i < n; i++) {
        list = apr_pstrcat(p, list, i ? ", " : "", sorted[i], NULL);
        if (!alike && !strcasecmp(sorted[i], name)) {
            alike = sorted[i];
        }
    }
    return apr_psprintf(p, "the unknown %s '%s' (declared %ss: %s%s%s%s)",
                        kind, name, kind, list,
                        alike ? "; names are case-sensitive: did you mean '"
                              : "", alike ? alike : "", alike ? "'?" : "");
}

const char *mg_policy_unknown_tier(apr_pool_t *p, const mg_policy *policy,
                                   const char *name)
{
    apr_hash_index_t *hi;
    const char **names;
    int n = 0;

    if (mg_policy_tier(policy, name)) {
        return NULL;
    }
    names = apr_palloc(p, (apr_hash_count(policy->tiers) + 1)
                          * sizeof(*names));
    for (hi = apr_hash_first(p, policy->tiers); hi; hi = apr_hash_next(hi)) {
        names[n++] = apr_hash_this_key(hi);
    }
    return mg_policy_unknown_name(p, "tier", "ModelGateTier", name, names, n);
}
