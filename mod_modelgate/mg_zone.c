/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_zone.c -- calendar time zones (see mg_zone.h).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include <apr_file_info.h>
#include "mg_zone.h"

static long offset_at(time_t t)
{
    struct tm tm;

    localtime_r(&t, &tm);
    return tm.tm_gmtoff;
}

/* Between lo and hi (offset_at differs at the two ends) find the first
 * second with hi's offset. */
static time_t find_change(time_t lo, time_t hi)
{
    long before = offset_at(lo);

    while (hi - lo > 1) {
        time_t mid = lo + (hi - lo) / 2;
        if (offset_at(mid) == before) {
            lo = mid;
        }
        else {
            hi = mid;
        }
    }
    return hi;
}

const char *mg_zone_load(apr_pool_t *p, const char *name, apr_time_t now,
                         mg_zone **out)
{
    const char *saved = getenv("TZ"), *path;
    char *keep = saved ? strdup(saved) : NULL;
    apr_array_header_t *at, *off;
    apr_finfo_t finfo;
    mg_zone *zone;
    time_t t, from, to;
    long cur;

    /* A name the C library does not know silently means UTC: insist on a
     * file in the tz database instead. */
    if (!*name || name[0] == '/' || strstr(name, "..")
        || apr_stat(&finfo, path = apr_pstrcat(p, "/usr/share/zoneinfo/",
                                               name, NULL),
                    APR_FINFO_TYPE, p) != APR_SUCCESS
        || finfo.filetype != APR_REG) {
        free(keep);
        return apr_psprintf(p, "'%s' is not a time zone of the tz database "
                            "(/usr/share/zoneinfo; install Debian's tzdata)",
                            name);
    }
    (void)path;
    setenv("TZ", name, 1);
    tzset();

    zone = apr_pcalloc(p, sizeof(*zone));
    zone->name = apr_pstrdup(p, name);
    at = apr_array_make(p, 64, sizeof(apr_time_t));
    off = apr_array_make(p, 64, sizeof(apr_int32_t));
    from = (time_t)apr_time_sec(now) - 366 * 86400;
    to = (time_t)apr_time_sec(now) + (time_t)MG_ZONE_YEARS * 366 * 86400;
    zone->offset = (apr_int32_t)(cur = offset_at(from));
    /* Zones change offset at most a few times a year and never twice in
     * a day: stepping a day at a time finds every change. */
    for (t = from; t < to; t += 86400) {
        time_t next = t + 86400;
        long o = offset_at(next);
        if (o != cur) {
            APR_ARRAY_PUSH(at, apr_time_t) = apr_time_from_sec(find_change(t, next));
            APR_ARRAY_PUSH(off, apr_int32_t) = (apr_int32_t)o;
            cur = o;
        }
    }
    zone->count = at->nelts;
    zone->at = (const apr_time_t *)at->elts;
    zone->off = (const apr_int32_t *)off->elts;

    if (keep) {
        setenv("TZ", keep, 1);
        free(keep);
    }
    else {
        unsetenv("TZ");
    }
    tzset();
    *out = zone;
    return NULL;
}

mg_zone_cache *mg_zone_cache_make(apr_pool_t *p)
{
    mg_zone_cache *cache = apr_pcalloc(p, sizeof(*cache));

    cache->pool = p;
    cache->by_name = apr_hash_make(p);
    return cache;
}

const char *mg_zone_get(mg_zone_cache *cache, int may_load, apr_pool_t *p,
                        const char *name, apr_time_t now,
                        const mg_zone **out)
{
    mg_zone *zone;
    const char *err;

    if (cache && (zone = apr_hash_get(cache->by_name, name,
                                      APR_HASH_KEY_STRING)) != NULL) {
        *out = zone;
        return NULL;
    }
    if (!may_load) {
        return apr_psprintf(p, "zone '%s' is not one the server "
                            "configuration uses: here only those, or an "
                            "offset such as +02:00, can be named", name);
    }
    if ((err = mg_zone_load(cache ? cache->pool : p, name, now, &zone))) {
        return err;
    }
    if (cache) {
        apr_hash_set(cache->by_name, zone->name, APR_HASH_KEY_STRING, zone);
    }
    *out = zone;
    return NULL;
}

apr_int32_t mg_zone_offset(const mg_zone *zone, apr_time_t t)
{
    int lo = 0, hi = zone->count;

    /* The last transition at or before t. */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (zone->at[mid] <= t) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo == 0 ? zone->offset : zone->off[lo - 1];
}

apr_time_t mg_zone_to_utc(const mg_zone *zone, apr_time_t local)
{
    apr_time_t guess = local - apr_time_from_sec(mg_zone_offset(zone, local));

    /* Once more with the offset in force at the first guess: right unless
     * the local time falls in a gap or an overlap. */
    return local - apr_time_from_sec(mg_zone_offset(zone, guess));
}
