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
#include "mg_limit.h"

/** Longest tier, key id, tenant or upstream name. */
#define MG_POLICY_NAME_MAX 64

/** A tier: a named limit that callers are assigned to. */
typedef struct mg_tier {
    const char *name;
    mg_limit_spec spec;
} mg_tier;

/** The server-wide policy. */
typedef struct mg_policy {
    apr_hash_t *tiers;        /**< name -> mg_tier* */
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
 * Parse a tier definition: its name, rate and options ("burst=N").  The
 * burst defaults to the quota, so "10/min" admits 10 at once and then one
 * every 6 seconds.
 * @return NULL on success with *out set, else an error message.
 */
const char *mg_policy_parse_tier(apr_pool_t *p, const char *name,
                                 const char *rate, int nopts,
                                 const char *const *opts, mg_tier **out);

/** Add a tier; refuses a second definition of the same name. */
const char *mg_policy_add_tier(mg_policy *policy, mg_tier *tier);

/** The tier called `name`, or NULL. */
const mg_tier *mg_policy_tier(const mg_policy *policy, const char *name);

#endif /* MG_POLICY_H */
