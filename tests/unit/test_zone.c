/* Unit tests of mg_zone.c: named zones from the tz database, and calendar
 * windows across daylight saving time changes. */
#include <stdlib.h>
#include "mg_test.h"
#include "mg_zone.h"
#include "mg_policy.h"

/* 2026-03-29 01:00:00 UTC: Europe/Berlin goes from +01:00 to +02:00. */
#define SPRING APR_INT64_C(1774746000000000)
/* 2026-10-25 01:00:00 UTC: and back. */
#define AUTUMN APR_INT64_C(1792890000000000)
/* 2026-01-15 12:00:00 UTC */
#define JAN15 APR_INT64_C(1768478400000000)

static void test_berlin_offsets(void **state)
{
    apr_pool_t *p = *state;
    mg_zone *z = NULL;

    assert_null(mg_zone_load(p, "Europe/Berlin", JAN15, &z));
    assert_non_null(z);
    assert_true(z->count >= 2 * MG_ZONE_YEARS);
    assert_int_equal(mg_zone_offset(z, JAN15), 3600);
    assert_int_equal(mg_zone_offset(z, SPRING - 1), 3600);
    assert_int_equal(mg_zone_offset(z, SPRING), 7200);
    assert_int_equal(mg_zone_offset(z, AUTUMN - 1), 7200);
    assert_int_equal(mg_zone_offset(z, AUTUMN), 3600);
    /* local midnight of 2026-03-29 is 2026-03-28 23:00 UTC */
    assert_int_equal(mg_zone_to_utc(z, SPRING + MG_HOUR(1) - MG_HOUR(2)),
                     SPRING - MG_HOUR(2));
}

static void test_unknown_zone(void **state)
{
    apr_pool_t *p = *state;
    mg_zone *z = NULL;

    assert_non_null(mg_zone_load(p, "Mars/Olympus_Mons", JAN15, &z));
    assert_non_null(mg_zone_load(p, "../../etc/passwd", JAN15, &z));
    assert_non_null(mg_zone_load(p, "", JAN15, &z));
    assert_null(z);
}

/* A calendar day in Berlin that loses an hour is 23 hours long. */
static void test_day_window_across_dst(void **state)
{
    apr_pool_t *p = *state;
    const char *opts[] = { "algorithm=fixed_window", "zone=Europe/Berlin" };
    mg_limit_def *def = NULL;
    mg_limit_state st, next;
    mg_limit_decision d;

    assert_null(mg_policy_parse_limit(p, "daily", MG_SCOPE_KEY, "2/day", 2,
                                      opts, &def));
    assert_int_equal(def->spec.calendar, MG_CAL_DAY);
    assert_non_null(def->spec.zone);
    memset(&st, 0, sizeof(st));
    /* 2026-03-29 12:00 local (10:00 UTC): the day began 2026-03-28 23:00
     * UTC and ends 2026-03-29 22:00 UTC. */
    mg_limit_decide(&def->spec, &st, SPRING + MG_HOUR(9), 1, &next, &d);
    assert_true(d.allowed);
    assert_int_equal(next.stamp, SPRING - MG_HOUR(2));
    assert_int_equal(d.expires, SPRING + MG_HOUR(21));
    assert_int_equal(d.reset, MG_HOUR(12));
    assert_int_equal(d.expires - next.stamp, MG_HOUR(23));
}

/* What is parsed in a child (.htaccess) finds only zones the server
 * configuration loaded, and never sets TZ. */
static void test_cache_without_loading(void **state)
{
    apr_pool_t *p = *state;
    mg_zone_cache *cache = mg_zone_cache_make(p);
    const char *opts[] = { "algorithm=fixed_window", "zone=Asia/Tokyo" };
    const char *berlin[] = { "algorithm=fixed_window", "zone=Europe/Berlin" };
    const mg_zone *z = NULL, *again = NULL;
    mg_limit_def *def = NULL;
    const char *err;

    assert_null(getenv("TZ"));
    err = mg_zone_get(cache, 0, p, "Europe/Berlin", JAN15, &z);
    assert_non_null(err);
    assert_non_null(strstr(err, "zone 'Europe/Berlin' is not one the server "
                                "configuration uses"));
    assert_null(z);
    assert_null(mg_zone_get(cache, 1, p, "Europe/Berlin", JAN15, &z));
    assert_non_null(z);
    assert_null(mg_zone_get(cache, 0, p, "Europe/Berlin", JAN15, &again));
    assert_ptr_equal(z, again);
    /* Through the limit parser, as .htaccess calls it. */
    err = mg_policy_parse_limit_ex(p, "d", MG_SCOPE_KEY, "5/day", 2, opts,
                                   cache, 0, &def);
    assert_non_null(err);
    assert_non_null(strstr(err, "Asia/Tokyo"));
    assert_null(mg_policy_parse_limit_ex(p, "d", MG_SCOPE_KEY, "5/day", 2,
                                         berlin, cache, 0, &def));
    assert_ptr_equal(def->spec.zone, z);
    /* Offsets need no tz database: fine anywhere. */
    opts[1] = "zone=+09:00";
    assert_null(mg_policy_parse_limit_ex(p, "d", MG_SCOPE_KEY, "5/day", 2,
                                         opts, cache, 0, &def));
    assert_null(getenv("TZ"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_cache_without_loading),
        MG_TEST(test_berlin_offsets),
        MG_TEST(test_unknown_zone),
        MG_TEST(test_day_window_across_dst),
    };

    return MG_RUN(tests);
}
