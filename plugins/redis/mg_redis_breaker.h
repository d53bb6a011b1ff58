/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_redis_breaker.h -- the redis store's circuit breaker as a pure state
 * machine (APR only: no httpd, no hiredis), so the unit tests drive it
 * with a fake clock.  The store keeps one per child, behind its mutex.
 *
 *   CLOSED     every command goes to Redis.  A failure opens the breaker
 *              for MG_REDIS_BACKOFF_FIRST.
 *   OPEN       every command fails fast until open_until; then the first
 *              one to ask becomes the probe and the breaker is HALF_OPEN.
 *   HALF_OPEN  exactly one probe is in flight; every other command fails
 *              fast.  The probe's success closes the breaker; its failure
 *              opens it again for twice as long, at most
 *              MG_REDIS_BACKOFF_MAX.
 *
 * Only a failed probe lengthens the open time.  Commands that were in
 * flight when Redis stalled all report failures; the first one opens the
 * breaker and the others change nothing, so a 200 ms stall costs one
 * back-off, not one doubling per request.  A success from any command
 * closes the breaker: Redis answered.
 *
 * Opening (and a failed probe) bumps `generation`.  The store stamps every
 * pooled connection with the generation it was made in and drops any of
 * an older one instead of using or keeping it, so after Redis restarts the
 * next probe meets a fresh connection, not one of the idle pool's dead
 * ones.
 *
 * MG_REDIS_BACKOFF_MAX bounds how long a child keeps failing fast after
 * Redis accepts connections again: one probe interval, at most 1 s.  A
 * probe costs one connection attempt (refused at once when Redis is down,
 * at most connect_timeout when the host is unreachable), once a second per
 * child.
 */
#ifndef MG_REDIS_BREAKER_H
#define MG_REDIS_BREAKER_H

#include <apr.h>
#include <apr_time.h>

#define MG_REDIS_BACKOFF_FIRST (250 * 1000)
#define MG_REDIS_BACKOFF_MAX   (1000 * 1000)

typedef enum {
    MG_REDIS_BREAKER_CLOSED = 0,
    MG_REDIS_BREAKER_OPEN,
    MG_REDIS_BREAKER_HALF_OPEN
} mg_redis_breaker_state;

/** What mg_redis_breaker_allow answers. */
typedef enum {
    MG_REDIS_REFUSE = 0,          /**< fail fast: open, or a probe is out */
    MG_REDIS_PASS,                /**< closed: go to Redis */
    MG_REDIS_PROBE                /**< go to Redis as the one probe; report
                                       with probe = 1 */
} mg_redis_verdict;

/** What a report changed (the caller logs it, and drops its idle
 *  connections on OPENED and REOPENED). */
typedef enum {
    MG_REDIS_NO_CHANGE = 0,
    MG_REDIS_OPENED,              /**< closed -> open: an outage begins */
    MG_REDIS_REOPENED,            /**< the probe failed: open, longer */
    MG_REDIS_CLOSED               /**< Redis answered: the outage is over */
} mg_redis_event;

typedef struct mg_redis_breaker {
    mg_redis_breaker_state state;
    apr_time_t open_until;        /**< OPEN: when the next probe may go */
    apr_interval_time_t backoff;  /**< the current open period; 0 closed */
    apr_uint64_t generation;      /**< bumped when connections must go */
    apr_uint64_t opened;          /**< outages begun (closed -> open) */
    apr_uint64_t probes_failed;
} mg_redis_breaker;

/** A closed breaker of generation 0. */
void mg_redis_breaker_init(mg_redis_breaker *b);

/** May a command go to Redis at `now` (any one monotonic clock)?  A
 *  MG_REDIS_PROBE answer must be followed by exactly one report with
 *  probe = 1. */
mg_redis_verdict mg_redis_breaker_allow(mg_redis_breaker *b, apr_time_t now);

/** How a command that was let through went.
 *  @param ok    Redis answered as expected
 *  @param probe it went as the probe (mg_redis_breaker_allow said so) */
mg_redis_event mg_redis_breaker_report(mg_redis_breaker *b, apr_time_t now,
                                       int ok, int probe);

#endif /* MG_REDIS_BREAKER_H */
