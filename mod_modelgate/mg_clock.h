/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_clock.h -- the clock limit decisions run on.
 *
 * The algorithms never read a clock (unit tests pass a fake one); the
 * glue passes this one.  It is CLOCK_MONOTONIC: the same for every process
 * on the host, and it never steps when NTP or an admin sets the wall clock.
 * With the wall clock, a step back of an hour would freeze every bucket for
 * an hour (time going backwards credits nothing) and a step forward would
 * refill them all at once.  Counters in shared memory live no longer than
 * the host's uptime, so a boot-relative clock is enough.
 */
#ifndef MG_CLOCK_H
#define MG_CLOCK_H

#include <apr_time.h>
#include "mg_limit.h"

/** Microseconds on the host's monotonic clock. */
apr_time_t mg_clock_monotonic(void);

/** Both clocks a decision may need, read now. */
mg_now mg_clock_now(void);

#endif /* MG_CLOCK_H */
