/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_upstream.c -- what the gateway learns from the answers it
 * forwards, kept for all processes of the server: each upstream's health
 * (mg_health.c: windowed errors and latency, circuit breaker, degraded)
 * and its requests in flight.
 *
 * Shared memory, made in post_config for each generation (a restart starts
 * with healthy upstreams): a robust process-shared mutex, a table of
 * process slots, and per upstream its mg_health and one in-flight counter
 * per process slot.  A child takes a slot in child_init, a free one or
 * one whose process is gone, and zeroes the counts the old owner left:
 * a process that dies with requests in flight (SIGKILL, a crash) cannot
 * leave an upstream looking busy forever.  A process changes only its own
 * counter, with atomic operations, and only at upstreams with a
 * max_inflight to check; the admission check sums the slots.  The
 * breaker's state is read without the lock while it is closed, and a good
 * answer is counted with atomic additions: the lock is taken only when an
 * answer may move the breaker.
 *
 * Per request: mg_upstream_admit() before the limit decision (breaker,
 * then the tier's share of max_inflight); mg_upstream_enter() once the
 * request is routed (in flight until its pool is cleaned up).  The outcome
 * is recorded as soon as it is known and before the client sees it, so a
 * client's next request already meets the updated breaker: the upstream's
 * answer when its first bytes pass the MODELGATE_OBSERVE output filter
 * (which every gated answer passes: it also drops what only the gateway
 * may say from the answer's headers, mod_modelgate_headers_out.c),
 * mod_proxy's own failure (502/503/504) when httpd prepares its error
 * response (insert_error_filter), anything else in log_transaction.
 *
 * Logs: mod_proxy logs every failed forward itself; this file logs only
 * the breaker's changes (opened, a probe failed, closed), one line each,
 * with the counts behind them -- what bounds mod_proxy's lines on a dead
 * upstream is the breaker opening after breaker_consecutive= failures.
 *
 * Timeouts: mod_proxy_http answers a backend that outlives ProxyTimeout
 * with 502, as it does a broken connection, and tells them apart only by
 * the note "proxy_timedout".  mod_proxy's request_status hook turns that
 * 502 into 504 for routed requests, before httpd builds the error
 * response, so the client gets 504 upstream_timeout.
 */
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <pthread.h>
#include <apr_strings.h>
#include <apr_shm.h>
#include <apr_date.h>
#include <http_protocol.h>
#include <http_request.h>
#include <util_filter.h>
#include <mod_proxy.h>
#include "mod_modelgate_private.h"
#include "mg_clock.h"
#include "mg_shared_lock.h"

#define MG_OBSERVE_FILTER "MODELGATE_OBSERVE"
/* Process slots: more children than this are not counted in flight. */
#define PROC_SLOTS 512
#define LOCK_BYTES MG_SHARED_LOCK_BYTES

typedef struct upstream_shared {
    mg_health health;
    apr_uint32_t inflight[PROC_SLOTS];
} upstream_shared;

/* MG_OBSERVE_FILTER, as registered. */
static ap_filter_rec_t *observe_handle;

/* This generation's segment, as every process of it maps it. */
static pthread_mutex_t *hlock;
static pid_t *proc_pids;
static upstream_shared *shared;
static int nshared;
static int my_slot = -1;

static apr_status_t lock(server_rec *s)
{
    /* A holder that died mid-update leaves health counts off by one
     * answer: nothing to tell. */
    (void)s;
    return mg_shared_lock(hlock, NULL);
}

static void unlock(void)
{
    mg_shared_unlock(hlock);
}

static upstream_shared *shared_of(const mg_upstream *up)
{
    return shared && up->index >= 0 && up->index < nshared
           ? &shared[up->index] : NULL;
}

/* ---- lifecycle ------------------------------------------------------------ */

int mg_upstream_post_config(apr_pool_t *pconf, server_rec *s,
                            mg_server_conf *sc)
{
    apr_hash_index_t *hi;
    apr_shm_t *shm;
    apr_size_t bytes;
    apr_status_t rv;
    char *base;
    int n = 0;

    for (hi = apr_hash_first(pconf, sc->upstreams); hi; hi = apr_hash_next(hi)) {
        mg_upstream *up = apr_hash_this_val(hi);
        up->index = n++;
    }
    shared = NULL;
    nshared = 0;
    if (n == 0) {
        return OK;
    }
    bytes = LOCK_BYTES + PROC_SLOTS * sizeof(pid_t)
            + (apr_size_t)n * sizeof(upstream_shared) + 64;
    if ((rv = apr_shm_create(&shm, bytes, NULL, pconf)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, MGLOGNO(00401)
                     "cannot create %" APR_SIZE_T_FMT " bytes of shared "
                     "memory for upstream health", bytes);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    base = apr_shm_baseaddr_get(shm);
    memset(base, 0, bytes);
    hlock = (pthread_mutex_t *)base;
    if ((rv = mg_shared_lock_init(hlock)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s,
                     MGLOGNO(00402) "cannot make the upstream health lock");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    proc_pids = (pid_t *)(base + LOCK_BYTES);
    shared = (upstream_shared *)(((apr_uintptr_t)(proc_pids + PROC_SLOTS)
                                  + 63) & ~(apr_uintptr_t)63);
    nshared = n;
    return OK;
}

void mg_upstream_child_init(server_rec *s)
{
    pid_t me = getpid();
    int i, u;

    if (!shared || lock(s) != APR_SUCCESS) {
        return;
    }
    for (i = 0; i < PROC_SLOTS; i++) {
        if (proc_pids[i] == 0
            || (kill(proc_pids[i], 0) != 0 && errno == ESRCH)) {
            /* Free, or its process is gone: what it left in flight is
             * not in flight any more. */
            proc_pids[i] = me;
            for (u = 0; u < nshared; u++) {
                __atomic_store_n(&shared[u].inflight[i], 0, __ATOMIC_RELAXED);
            }
            my_slot = i;
            break;
        }
    }
    unlock();
    if (my_slot < 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, MGLOGNO(00403)
                     "more than %d processes: this one's requests are not "
                     "counted in upstreams' max_inflight", PROC_SLOTS);
    }
}

/* ---- admission -------------------------------------------------------------- */

static apr_uint32_t inflight_of(const upstream_shared *us)
{
    apr_uint32_t sum = 0;
    int i;

    for (i = 0; i < PROC_SLOTS; i++) {
        sum += __atomic_load_n(&us->inflight[i], __ATOMIC_RELAXED);
    }
    return sum;
}

mg_upstream_verdict mg_upstream_admit(request_rec *r, const mg_upstream *up,
                                      const mg_tier *tier, int *probe,
                                      apr_interval_time_t *retry_after)
{
    upstream_shared *us = shared_of(up);
    int allowed;

    *probe = 0;
    *retry_after = 0;
    if (!us) {
        return MG_UPSTREAM_OK;
    }
    if (up->max_inflight) {
        /* A tier may fill its share; the rest is kept for the tiers
         * allowed more.  Checked before the breaker so a shed request
         * never takes a probe's place. */
        apr_uint32_t share = tier->share_pct ? tier->share_pct : 100;
        apr_uint64_t cap = ((apr_uint64_t)up->max_inflight * share + 99) / 100;
        if (inflight_of(us) >= cap) {
            *retry_after = APR_USEC_PER_SEC;
            return MG_UPSTREAM_SATURATED;
        }
    }
    if (mg_health_closed(&us->health)) {
        return MG_UPSTREAM_OK;      /* the common case, without the lock */
    }
    if (lock(r->server) != APR_SUCCESS) {
        return MG_UPSTREAM_OK;
    }
    allowed = mg_health_allow(&us->health, &up->health, mg_clock_monotonic(),
                              probe, retry_after);
    unlock();
    return allowed ? MG_UPSTREAM_OK : MG_UPSTREAM_OPEN;
}

void mg_upstream_cancel_probe(request_rec *r, const mg_upstream *up)
{
    upstream_shared *us = shared_of(up);

    if (us && lock(r->server) == APR_SUCCESS) {
        mg_health_cancel_probe(&us->health);
        unlock();
    }
}

int mg_upstream_degraded(request_rec *r, const mg_upstream *up)
{
    upstream_shared *us = shared_of(up);
    int degraded = 0;

    if (us && lock(r->server) == APR_SUCCESS) {
        degraded = mg_health_degraded(&us->health, &up->health,
                                      mg_clock_monotonic());
        unlock();
    }
    return degraded;
}

/* ---- what a metrics scrape reads ------------------------------------------- */

int mg_upstream_snapshot(server_rec *s, const mg_upstream *up,
                         mg_upstream_snap *out)
{
    upstream_shared *us = shared_of(up);

    memset(out, 0, sizeof(*out));
    if (!us || lock(s) != APR_SUCCESS) {
        return 0;
    }
    out->state = (int)us->health.state;
    mg_health_stats_get(&us->health, &up->health, mg_clock_monotonic(),
                        &out->stats);
    unlock();
    /* Counted only at upstreams with a max_inflight (see enter). */
    out->inflight_counted = up->max_inflight != 0;
    out->inflight = inflight_of(us);
    return 1;
}

/* ---- a request in flight ------------------------------------------------------ */

static apr_status_t leave(void *data)
{
    upstream_shared *us = data;

    __atomic_sub_fetch(&us->inflight[my_slot], 1, __ATOMIC_RELAXED);
    return APR_SUCCESS;
}

static void record(request_rec *r, mg_request *req);

/* The first bytes of the answer to a gated request, before httpd's header
 * filter: the upstream's health learns of it, and the answer's headers
 * lose what only the gateway may say (mod_modelgate_headers_out.c).
 * httpd's own error responses never pass here: ap_send_error_response
 * drops the request's filters, this one among them. */
static apr_status_t observe_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    mg_request *req = f->ctx;

    if (req->entered) {
        /* The upstream's first bytes: its latency, for the histogram.
         * Recorded before the scrub: the breaker reads the upstream's
         * Retry-After. */
        req->first_byte_at = mg_clock_monotonic();
        record(f->r, req);
    }
    mg_headers_out_scrub(f->r);
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

void mg_upstream_enter(request_rec *r, mg_request *req)
{
    upstream_shared *us;

    if (req->entered) {
        return;
    }
    /* By handle: by name, httpd copies and lowers the name and searches
     * its filter registry on every call.  Every gated answer, whoever
     * makes it (a ProxyPass of the admin's too): the scrub needs it. */
    ap_add_output_filter_handle(observe_handle, req, r, r->connection);
    if (!req->upstream || !(us = shared_of(req->upstream))) {
        return;
    }
    req->entered = 1;
    req->sent_at = mg_clock_monotonic();
    if (my_slot >= 0 && req->upstream->max_inflight) {
        /* Counted only where a cap reads it: the counters are shared
         * between processes, and every change moves a cache line. */
        __atomic_add_fetch(&us->inflight[my_slot], 1, __ATOMIC_RELAXED);
        apr_pool_cleanup_register(r->pool, us, leave,
                                  apr_pool_cleanup_null);
    }
}

/* Seconds or an HTTP date, from now; 0 if absent or unreadable. */
static apr_interval_time_t retry_after_of(request_rec *r)
{
    const char *v = apr_table_get(r->headers_out, "Retry-After");
    apr_time_t when;
    char *end;
    apr_int64_t secs;

    if (!v) {
        return 0;
    }
    secs = apr_strtoi64(v, &end, 10);
    if (end != v && !*end) {
        return secs > 0 ? secs * APR_USEC_PER_SEC : 0;
    }
    when = apr_date_parse_http(v);
    return when > r->request_time ? when - apr_time_now() : 0;
}

/* What the breaker looked like when it changed, for its log line. */
typedef struct transition {
    mg_health_event event;
    apr_uint32_t run, refused;
    apr_interval_time_t open_for;
    mg_health_stats st;
} transition;

/* One line per change of the breaker, never one per failed answer: on a
 * dead upstream mod_proxy already logs each of those. */
static void log_transition(request_rec *r, const mg_upstream *up,
                           const transition *t)
{
    const apr_int64_t ms = (apr_int64_t)(t->open_for / 1000);

    switch (t->event) {
    case MG_HEALTH_OPENED_RUN:
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MGLOGNO(00404)
                      "upstream '%s': breaker open for %" APR_INT64_T_FMT
                      " ms after %u failures in a row (the last: %d); %u of "
                      "%u answers in the window failed", up->name, ms,
                      t->run, r->status, t->st.errors, t->st.requests);
        break;
    case MG_HEALTH_OPENED_SHARE:
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MGLOGNO(00404)
                      "upstream '%s': breaker open for %" APR_INT64_T_FMT
                      " ms: %u of %u answers in the window failed (the "
                      "last: %d)", up->name, ms, t->st.errors,
                      t->st.requests, r->status);
        break;
    case MG_HEALTH_OPENED_PAUSE:
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MGLOGNO(00404)
                      "upstream '%s': breaker open for %" APR_INT64_T_FMT
                      " ms: it answered %d with Retry-After", up->name, ms,
                      r->status);
        break;
    case MG_HEALTH_REOPENED:
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, MGLOGNO(00405)
                      "upstream '%s': the probe got %d; breaker open again "
                      "for %" APR_INT64_T_FMT " ms (%u requests refused so "
                      "far)", up->name, r->status, ms, t->refused);
        break;
    case MG_HEALTH_CLOSED:
        ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r, MGLOGNO(00406)
                      "upstream '%s': the probe got %d; breaker closed "
                      "(%u requests refused while it was not)", up->name,
                      r->status, t->refused);
        break;
    default:
        break;
    }
}

static void record(request_rec *r, mg_request *req)
{
    upstream_shared *us;
    apr_time_t now;
    apr_interval_time_t pause = 0, latency;
    transition t;
    int failed;

    if (req->recorded || !req->entered || !(us = shared_of(req->upstream))) {
        return;
    }
    req->recorded = 1;
    if (r->connection->aborted && r->status < 500) {
        /* The client left; the upstream did nothing wrong. */
        if (req->probe && lock(r->server) == APR_SUCCESS) {
            mg_health_cancel_probe(&us->health);
            unlock();
        }
        return;
    }
    now = mg_clock_monotonic();
    failed = r->status >= 500;
    if (r->status == HTTP_TOO_MANY_REQUESTS
        || r->status == HTTP_SERVICE_UNAVAILABLE) {
        pause = retry_after_of(r);
    }
    latency = (req->first_byte_at ? req->first_byte_at : now) - req->sent_at;
    if (!mg_health_needs_lock(&us->health, failed, pause, req->probe)) {
        /* A good answer while closed: counted without the lock. */
        mg_health_count(&us->health, &req->upstream->health, now, 0,
                        latency);
    }
    else if (lock(r->server) == APR_SUCCESS) {
        t.event = mg_health_record(&us->health, &req->upstream->health, now,
                                   failed, latency, pause, req->probe);
        if (t.event != MG_HEALTH_UNCHANGED) {
            t.run = us->health.run;
            t.refused = us->health.refused;
            t.open_for = us->health.open_until - now;
            mg_health_stats_get(&us->health, &req->upstream->health, now,
                                &t.st);
        }
        unlock();
        if (t.event != MG_HEALTH_UNCHANGED) {
            log_transition(r, req->upstream, &t);
        }
    }
}

void mg_upstream_error(request_rec *r)
{
    mg_request *req = ap_get_module_config(r->request_config,
                                           &modelgate_module);
    if (req) {
        record(r, req);
    }
}

int mg_upstream_log(request_rec *r)
{
    mg_upstream_error(r);
    return DECLINED;
}

/* mod_proxy's request_status hook, run once mod_proxy has given up and
 * before httpd answers with *status.  mod_proxy_http says 502 both for a
 * backend that broke the connection and for one that outlived
 * ProxyTimeout, noting "proxy_timedout" for the latter: that one is a
 * timeout to the client (504 upstream_timeout) and to the breaker alike.
 * Only requests this module routed: a ProxyPass of the admin's keeps
 * mod_proxy's answer. */
static int proxy_request_status(int *status, request_rec *r)
{
    mg_request *req;

    if (*status != HTTP_BAD_GATEWAY
        || !apr_table_get(r->notes, "proxy_timedout")) {
        return DECLINED;
    }
    req = ap_get_module_config(r->request_config, &modelgate_module);
    if (!req || !req->upstream) {
        return DECLINED;
    }
    *status = HTTP_GATEWAY_TIME_OUT;
    /* ap_proxyerror wrote "502 Proxy Error" there. */
    r->status_line = NULL;
    return OK;
}

void mg_upstream_register(apr_pool_t *p)
{
    observe_handle = ap_register_output_filter(MG_OBSERVE_FILTER,
                                               observe_filter, NULL,
                                               AP_FTYPE_CONTENT_SET);
    /* An optional hook: registered by name, so mod_proxy may be loaded
     * after this module (Debian loads in alphabetical order). */
    APR_OPTIONAL_HOOK(proxy, request_status, proxy_request_status, NULL,
                      NULL, APR_HOOK_MIDDLE);
}
