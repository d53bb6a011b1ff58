/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_zone.h -- time zones for calendar windows: a day or a month starts at
 * local midnight, and where daylight saving time applies that is not a
 * fixed offset from UTC.
 *
 * A zone is either a fixed offset or a table of the offsets in force from
 * each transition on, precomputed from the system's tz database (through
 * the C library, which reads /usr/share/zoneinfo) when the configuration
 * is read: from a year before start-up to MG_ZONE_YEARS after.  Lookups are
 * then a binary search, with no global state, safe in any thread.
 */
#ifndef MG_ZONE_H
#define MG_ZONE_H

#include <apr_pools.h>
#include <apr_time.h>
#include <apr_hash.h>

/** How far ahead a named zone's transitions are computed. */
#define MG_ZONE_YEARS 30

typedef struct mg_zone {
    const char *name;
    int count;                /**< transitions; 0: the fixed `offset` */
    apr_int32_t offset;       /**< seconds east of UTC before the first
                                   transition, or always */
    const apr_time_t *at;     /**< transition instants, ascending */
    const apr_int32_t *off;   /**< offset from at[i] on */
} mg_zone;

/**
 * Load a named zone ("Europe/Berlin", "America/New_York") around `now`.
 * Not thread-safe (it sets TZ for the moment it reads): call it while the
 * configuration is read.
 * @return NULL with *out set, or why the name is not a zone.
 */
const char *mg_zone_load(apr_pool_t *p, const char *name, apr_time_t now,
                         mg_zone **out);

/**
 * Zones loaded while the configuration is read, by name, so that what is
 * parsed later -- .htaccess, on a request, in a threaded child -- finds
 * them without loading (mg_zone_load sets TZ, which a child must never
 * touch: it would change every thread's local time and race getenv).
 */
typedef struct mg_zone_cache {
    apr_pool_t *pool;         /**< where loaded zones live */
    apr_hash_t *by_name;      /**< name -> mg_zone* */
} mg_zone_cache;

mg_zone_cache *mg_zone_cache_make(apr_pool_t *p);

/**
 * The zone `name`: from `cache` if it holds it, else loaded (and kept in
 * `cache` when there is one) if `may_load`, else refused.  `may_load` only
 * while the configuration is read, in the parent.
 * @return NULL with *out set, or why not (allocated from `p`).
 */
const char *mg_zone_get(mg_zone_cache *cache, int may_load, apr_pool_t *p,
                        const char *name, apr_time_t now,
                        const mg_zone **out);

/** Seconds east of UTC in force at `t`. */
apr_int32_t mg_zone_offset(const mg_zone *zone, apr_time_t t);

/** The UTC instant of local time `local` (microseconds as if UTC): for a
 *  local time that does not exist or exists twice, the later offset's. */
apr_time_t mg_zone_to_utc(const mg_zone *zone, apr_time_t local);

#endif /* MG_ZONE_H */
