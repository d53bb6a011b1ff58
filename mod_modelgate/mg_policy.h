/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_policy.h -- the parsed policy: tiers and their limits.
 *
 * Parsing here is plain C over APR so that the directive handlers stay thin
 * and every syntax rule is unit-tested.  Messages returned by the parsers
 * are complete sentences; the directive handlers prefix the directive name
 * and httpd adds file and line.
 */
#ifndef MG_POLICY_H
#define MG_POLICY_H

#include <apr_pools.h>
#include <apr_hash.h>
#include <apr_tables.h>
#include "mg_limit.h"
#include "mg_body.h"
#include "mg_zone.h"

/** Longest tier, key id, tenant or upstream name. */
#define MG_POLICY_NAME_MAX 64

/** What to do while the counter store cannot decide. */
typedef enum {
    MG_FAIL_UNSET = 0,        /**< the server's ModelGateStoreFailure */
    MG_FAIL_CLOSED,           /**< refuse: 503 with Retry-After */
    MG_FAIL_OPEN,             /**< admit, unlimited, and say so */
    MG_FAIL_LOCAL             /**< count on this host's shared memory */
} mg_failure_policy;

/** Parse closed, open or local. */
const char *mg_policy_parse_failure(apr_pool_t *p, const char *text,
                                    mg_failure_policy *out);

/** What a tier's callers get when a limit refuses them (on_limit=). */
typedef enum {
    MG_ACTION_REJECT = 1,     /**< 429 */
    MG_ACTION_FALLBACK,       /**< serve another declared model instead */
    MG_ACTION_QUEUE,          /**< wait, up to a time, for the limit */
    MG_ACTION_CACHE           /**< the response cache's answer for the
                                   same request (plugins/cache), marked
                                   degraded; a miss goes on */
} mg_action_type;

typedef struct mg_limit_action {
    mg_action_type type;
    const char *model;        /**< fallback: the model to serve */
    apr_interval_time_t wait; /**< queue: the longest wait */
} mg_limit_action;

/** Longest a queue action may hold a request. */
#define MG_ACTION_QUEUE_MAX (60 * APR_USEC_PER_SEC)

/** Whose counter a limit keeps: one for everybody, or one per tier,
 *  tenant, key, route, client address or model. */
typedef enum {
    MG_SCOPE_GLOBAL = 0,
    MG_SCOPE_TIER,
    MG_SCOPE_TENANT,
    MG_SCOPE_KEY,
    MG_SCOPE_ROUTE,
    MG_SCOPE_IP,
    MG_SCOPE_MODEL            /**< the declared model the body names */
} mg_scope;

/** What a limit counts. */
typedef enum {
    MG_UNIT_REQUESTS = 0,     /**< requests, times the location's cost */
    MG_UNIT_TOKENS,           /**< LLM tokens: reserved at admission from the
                                   request's estimate, settled to the usage
                                   the answer reports */
    MG_UNIT_MONEY             /**< spend, in nano-units of a currency (1e-9):
                                   the tokens at the served model's prices,
                                   reserved and settled as tokens are */
} mg_limit_unit;

/** Nano-units in one unit of a currency. */
#define MG_MONEY_UNIT APR_UINT64_C(1000000000)

/**
 * Parse an amount of money ("50", "49.99", "0.000001"): at most 9
 * decimals, at most MG_LIMIT_MAX_WINDOW_QUOTA nano-units.
 * @return NULL with *nano set, else why not
 */
const char *mg_policy_parse_money(apr_pool_t *p, const char *text,
                                  apr_uint64_t *nano);

/**
 * Parse a model's prices, "IN/OUT" in a currency per million prompt and
 * completion tokens ("2.50/10.00"): a token's price must be a whole number
 * of nano-units, so at most 3 decimals.
 * @return NULL with the nano-units per token set, else why not
 */
const char *mg_policy_parse_price(apr_pool_t *p, const char *text,
                                  apr_uint64_t *in, apr_uint64_t *out);

/** The nano-units `prompt` and `completion` tokens cost at these prices,
 *  saturating at MG_LIMIT_MAX_WINDOW_QUOTA + 1 (more than any budget). */
apr_uint64_t mg_policy_spend(apr_uint64_t prompt, apr_uint64_t completion,
                             apr_uint64_t price_in, apr_uint64_t price_out);

/** Which tokens a token limit counts. */
typedef enum {
    MG_COUNT_TOTAL = 0,       /**< prompt and completion */
    MG_COUNT_PROMPT,
    MG_COUNT_COMPLETION
} mg_token_count;

/**
 * A named limit: a spec, the scope of its counters and how it acts.  A tier
 * is a limit of scope key that callers are assigned to by their key.
 */
typedef struct mg_limit_def {
    const char *name;         /**< policy name (RateLimit-Policy) and part of
                                   the counter key: limits of one name and
                                   numbers share counters wherever used */
    mg_scope scope;
    mg_limit_spec spec;
    int shadow;               /**< counts and reports, never rejects */
    mg_limit_unit unit;       /**< requests or tokens */
    mg_token_count count;     /**< tokens: which ones */
    apr_uint64_t max_tokens;  /**< tiers only: the largest completion a
                                   request may ask for; 0: none */
    int max_tokens_clamp;     /**< ... and a larger ask is lowered to it
                                   instead of refused */
    struct mg_limit_def *tokens; /**< tiers only: the per-key token limit
                                   of tokens=RATE, named NAME-tokens; NULL:
                                   none */
    mg_failure_policy on_store_failure; /**< tiers only: this tier's policy
                                   while the store fails */
    apr_array_header_t *on_limit; /**< tiers only: mg_limit_action, tried
                                   in order when a limit refuses; NULL:
                                   reject */
    apr_uint32_t share_pct;   /**< tiers only: the share of an upstream's
                                   max_inflight its callers may fill;
                                   0: all of it */
    apr_uint32_t degraded_cost; /**< tiers only: cost factor while the
                                   upstream is degraded; 0: 1 */
    apr_array_header_t *tiers; /**< only for callers of these tiers
                                   (const char *); NULL: for everybody */
    apr_array_header_t *models; /**< only for requests for these models
                                   (const char *); NULL: for any request */
    /* Made once when the configuration is read, so a request does not:
     * the counter fingerprint's own part, and the header texts. */
    mg_fingerprint fp_base;
    mg_fingerprint global_hash; /**< the empty subject's hash: scope global */
    const char *policy_item;  /**< "name";q=Q;w=W */
    const char *quota_text;   /**< Q */
    const char *conf_file;    /**< where it was declared, for start-up */
    int conf_line;            /**< errors (the glue sets them) */
} mg_limit_def;

typedef mg_limit_def mg_tier;

/** The server-wide policy. */
typedef struct mg_policy {
    apr_hash_t *tiers;        /**< name -> mg_tier* */
    apr_hash_t *names;        /**< every tier and limit name -> mg_limit_def* */
    apr_array_header_t *limits; /**< server-wide limits, mg_limit_def* */
} mg_policy;

mg_policy *mg_policy_create(apr_pool_t *p);

/**
 * Is `name` usable as a tier, tenant, key id or upstream name?  Letters,
 * digits, '.', '_' and '-', 1 to MG_POLICY_NAME_MAX characters.  The set is
 * small on purpose: names appear unescaped in structured header values
 * (RateLimit-Policy) and in counter keys.
 */
int mg_policy_name_valid(const char *name);

/**
 * Parse a rate "QUOTA/PERIOD": PERIOD is a unit (s, sec, second, m, min,
 * minute, h, hour, d, day) optionally preceded by a count ("100/10s",
 * "1000/1d").
 * @return NULL on success, else why the text is not a rate.
 */
const char *mg_policy_parse_rate(apr_pool_t *p, const char *text,
                                 apr_uint64_t *quota, apr_int64_t *window);

/**
 * As mg_policy_parse_rate, and also "QUOTA/month" (month, months, mo): a
 * calendar month, reported in *calendar (MG_CAL_MONTH, window 31 days);
 * any other period gives MG_CAL_NONE.
 */
const char *mg_policy_parse_rate_ex(apr_pool_t *p, const char *text,
                                    apr_uint64_t *quota, apr_int64_t *window,
                                    mg_limit_calendar *calendar);

/** Parse a zone for calendar windows: "UTC", "Z", "+HH:MM", "-HH", ...
 *  into seconds east of UTC. */
const char *mg_policy_parse_zone(apr_pool_t *p, const char *text,
                                 apr_int32_t *offset);

/** Is `name` usable as a model name?  Printable ASCII without spaces,
 *  quotes, commas or backslashes (so "org/model:tag" is), 1 to
 *  MG_BODY_MODEL_MAX characters. */
int mg_policy_model_name_valid(const char *name);

/** Parse a scope name (global, tier, tenant, key, route, ip, model). */
const char *mg_policy_parse_scope(apr_pool_t *p, const char *text,
                                  mg_scope *scope);

/** The name of a scope. */
const char *mg_policy_scope_name(mg_scope scope);

/**
 * Parse a limit: its name, scope, rate and options:
 *   algorithm=token_bucket|leaky_bucket|fixed_window|sliding_log|
 *             sliding_window|gcra   (default token_bucket)
 *   burst=N        bucket size (token/leaky bucket, GCRA; default: quota)
 *   delay=MS       leaky bucket: hold a request up to MS to conform
 *   zone=Z         fixed window of a day or a month: the calendar's zone,
 *                  an offset (+HH:MM) or a tz name (Europe/Berlin); UTC
 *   tiers=a,b      apply only to callers of these tiers
 *   models=a,b     apply only to requests for these models
 *   shadow         count and report, never reject
 *   unit=requests|tokens  what the quota counts (default requests); tokens
 *                  are reserved at admission and settled to the answer's
 *                  usage, so the algorithm must take refunds: not
 *                  sliding_log, and no delay=
 *   count=total|prompt|completion  tokens: which ones (default total)
 *   tokens=RATE    tiers: a per-key token limit beside the request limit,
 *                  a token bucket of RATE named NAME-tokens
 *   max_tokens=N[,clamp]  tiers: the completion ceiling (1 to 10^9): a
 *                  request asking for more is refused (or, with clamp,
 *                  lowered to N); one asking for none gets N
 *   on_store_failure=closed|open|local   tiers: while the store fails
 *   share=P        tiers: fill at most P % of an upstream's max_inflight
 *   degraded_cost=K  tiers: requests cost K times while the upstream is
 *                  degraded
 *   on_limit=ACTION[,ACTION...]  tiers: fallback:MODEL, queue:MS, cache,
 *                  reject
 *                  (in order; a refusal ends the list in any case)
 * @return NULL on success with *out set, else an error message.
 */
const char *mg_policy_parse_limit(apr_pool_t *p, const char *name,
                                  mg_scope scope, const char *rate, int nopts,
                                  const char *const *opts, mg_limit_def **out);

/**
 * mg_policy_parse_limit with named zones from `zones`; loaded there only
 * if `may_load` (the server configuration, in the parent), else a zone not
 * already in `zones` is refused (.htaccess, parsed in a child).
 */
const char *mg_policy_parse_limit_ex(apr_pool_t *p, const char *name,
                                     mg_scope scope, const char *rate,
                                     int nopts, const char *const *opts,
                                     mg_zone_cache *zones, int may_load,
                                     mg_limit_def **out);

/**
 * Parse a budget: "AMOUNT/PERIOD" (50.00/month, 5/day) with the options of
 * a limit but the algorithm's (always a fixed window: a budget is spent,
 * not refilled), unit=, count=, burst= and delay=.  The limit counts
 * MG_UNIT_MONEY.
 */
const char *mg_policy_parse_budget(apr_pool_t *p, const char *name,
                                   mg_scope scope, const char *amount,
                                   int nopts, const char *const *opts,
                                   mg_zone_cache *zones, int may_load,
                                   mg_limit_def **out);

/** Parse an on_limit= list ("fallback:small,queue:2000,reject"). */
const char *mg_policy_parse_actions(apr_pool_t *p, const char *text,
                                    apr_array_header_t **out);

/**
 * Parse a tier definition: its name, rate and options, as a limit of scope
 * key (tiers= is refused).  The burst defaults to the quota, so "10/min"
 * admits 10 at once and then one every 6 seconds.
 * @return NULL on success with *out set, else an error message.
 */
const char *mg_policy_parse_tier(apr_pool_t *p, const char *name,
                                 const char *rate, int nopts,
                                 const char *const *opts,
                                 mg_zone_cache *zones, mg_tier **out);

/** Add a tier; refuses a second definition of the same name. */
const char *mg_policy_add_tier(mg_policy *policy, mg_tier *tier);

/** Add a server-wide limit; refuses a name already used by a tier or
 *  limit. */
const char *mg_policy_add_limit(mg_policy *policy, mg_limit_def *def);

/** Does `def` apply to a caller of `tier`? */
int mg_policy_limit_applies(const mg_limit_def *def, const char *tier);

/** Does `def` apply to a request for `model` (NULL: the body names none,
 *  or names no declared model)? */
int mg_policy_limit_applies_to_model(const mg_limit_def *def,
                                     const char *model);

/** The tier called `name`, or NULL. */
const mg_tier *mg_policy_tier(const mg_policy *policy, const char *name);

/**
 * For a configuration error about a directive that names what is not
 * declared: "the unknown KIND 'NAME' (declared KINDs: a, b)", the `n`
 * declared `names` sorted, or "(no KIND is declared: declare it with
 * DECLARE)".  Names compare exactly, so one that differs from a declared
 * name only in case says so: a silent mismatch would leave a limit off.
 */
const char *mg_policy_unknown_name(apr_pool_t *p, const char *kind,
                                   const char *declare, const char *name,
                                   const char *const *names, int n);

/** NULL if `name` is a declared tier, else mg_policy_unknown_name's text. */
const char *mg_policy_unknown_tier(apr_pool_t *p, const mg_policy *policy,
                                   const char *name);

#endif /* MG_POLICY_H */
