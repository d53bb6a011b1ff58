/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_clock.c -- the monotonic clock (see mg_clock.h).
 */
#include <time.h>
#include "mg_clock.h"

apr_time_t mg_clock_monotonic(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        /* Not on any system httpd runs on; the wall clock is the fallback. */
        return apr_time_now();
    }
    return (apr_time_t)ts.tv_sec * APR_USEC_PER_SEC
           + (apr_time_t)(ts.tv_nsec / 1000);
}

mg_now mg_clock_now(void)
{
    mg_now now;

    now.mono = mg_clock_monotonic();
    now.wall = apr_time_now();
    return now;
}
