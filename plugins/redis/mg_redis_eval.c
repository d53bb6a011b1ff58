/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_redis_eval.c -- the Redis store's exact mode: a request's decision over
 * all its layers in one script run, and the settle of its token
 * reservations in another, both on Redis's clock (the scripts are in
 * mg_redis_script.h; connections, the breaker and the provider are in
 * mod_modelgate_redis.c).
 */
#include "mg_redis.h"
#include <stdlib.h>
#include <apr_strings.h>
#include <http_log.h>
#include "mg_clock.h"

APLOG_USE_MODULE(modelgate_redis);

#define MGRLOGNO(n) "MGR" #n ": "
/* What the scripts take and answer per layer (mg_redis_script.h). */
#define ARGS_PER_LAYER  11
#define REPLY_PER_LAYER 5
#define SETTLE_ARGS_PER_LAYER 10


/* Is `reply` the decide script's answer for `n` layers?  Every element is
 * read as an integer, so each must be one: hiredis leaves `integer` 0 in
 * a reply of another type, which would read as "refused, 0 remaining".
 * Returns NULL, or why not (in `buf`, or the reply's or context's own
 * text, valid until either is freed). */
static const char *decide_reply_error(redisContext *c, redisReply *reply,
                                      int n, char *buf, apr_size_t len)
{
    const char *err = mg_redis_reply_error(c, reply);
    size_t want = 2 + (size_t)REPLY_PER_LAYER * n, i;

    if (err) {
        return err;
    }
    if (reply->type != REDIS_REPLY_ARRAY) {
        apr_snprintf(buf, len, "unexpected reply to the decide script: %s, "
                     "not an array", mg_redis_reply_type(reply->type));
        return buf;
    }
    if (reply->elements != want) {
        apr_snprintf(buf, len, "unexpected reply to the decide script: %"
                     APR_SIZE_T_FMT " elements, not %" APR_SIZE_T_FMT,
                     (apr_size_t)reply->elements, (apr_size_t)want);
        return buf;
    }
    for (i = 0; i < want; i++) {
        if (!reply->element[i]
            || reply->element[i]->type != REDIS_REPLY_INTEGER) {
            apr_snprintf(buf, len, "unexpected reply to the decide script: "
                         "element %" APR_SIZE_T_FMT " is %s, not an integer",
                         (apr_size_t)i, reply->element[i]
                         ? mg_redis_reply_type(reply->element[i]->type)
                         : "missing");
            return buf;
        }
    }
    return NULL;
}

static apr_interval_time_t non_negative(long long v)
{
    return v > 0 ? (apr_interval_time_t)v : 0;
}

/* A counter's key.  One hash tag for all counters: a request's keys must
 * share a slot for one script to touch them on Redis Cluster. */
static void layer_key(const mg_layer *layer, char key[40])
{
    apr_snprintf(key, 40, "{mg}%016" APR_UINT64_T_HEX_FMT
                 "%016" APR_UINT64_T_HEX_FMT, layer->fp.hi, layer->fp.lo);
}

/* Redis cannot know the zone: for a calendar window the gateway names the
 * windows around its own time `wall` (the previous, this one and the
 * next, and where that one ends), the script picks the one Redis's time
 * falls in.  All 0 for windows aligned to their length. */
/* The start of a script's command: EVALSHA and its SHA (filled by
 * mg_redis_run_script), the number of keys, then the counter key of each
 * layer (of layers[use[i]] when `use` is given).  Returns the arguments
 * written. */
static int script_keys(const char **argv, size_t *argvlen, char nkeys[8],
                       char keys[][40], const mg_layer *layers,
                       const int *use, int n)
{
    int argc = 0, i;

    argv[argc] = "EVALSHA"; argvlen[argc++] = 7;
    argv[argc] = ""; argvlen[argc++] = 0;
    apr_snprintf(nkeys, 8, "%d", n);
    argv[argc] = nkeys; argvlen[argc++] = strlen(nkeys);
    for (i = 0; i < n; i++) {
        layer_key(&layers[use ? use[i] : i], keys[i]);
        argv[argc] = keys[i];
        argvlen[argc++] = strlen(keys[i]);
    }
    return argc;
}

static void calendar_args(const mg_limit_spec *spec, apr_time_t wall,
                          apr_int64_t v[4])
{
    apr_time_t start, end, pstart, pend, nstart, nend;

    if (spec->calendar == MG_CAL_NONE) {
        v[0] = v[1] = v[2] = v[3] = 0;
        return;
    }
    mg_limit_window_bounds(spec, wall, &start, &end);
    mg_limit_window_bounds(spec, start - 1, &pstart, &pend);
    mg_limit_window_bounds(spec, end, &nstart, &nend);
    v[0] = pstart;
    v[1] = start;
    v[2] = nstart;
    v[3] = nend;
}

/* Redis failed a script, or answered it wrongly (`why` == err): log it
 * as the decide path always has, and tell the breaker, which logs an
 * outage once. */
static void script_failed(mg_store_instance *inst, server_rec *s,
                          const char *err, const char *why, int probe)
{
    if (err == why) {
        /* Redis answered, but not what the script answers: say so
         * whatever the breaker's state (at most once per probe interval
         * while it lasts). */
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, MGRLOGNO(00006)
                     "redis store: %s:%d: %s; taken as a failure of "
                     "the store", inst->host, inst->port, err);
    }
    else {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, MGRLOGNO(00005)
                     "redis store: %s", err);
    }
    mg_redis_tried(inst, s, 0, probe, err);
}

apr_status_t mg_redis_decide(mg_store_instance *inst, server_rec *s,
                                 const mg_layer *layers, int n, mg_now now,
                                 mg_decision *d)
{
    const char *argv[3 + MG_LIMIT_MAX_LAYERS * (1 + ARGS_PER_LAYER)];
    size_t argvlen[3 + MG_LIMIT_MAX_LAYERS * (1 + ARGS_PER_LAYER)];
    char keys[MG_LIMIT_MAX_LAYERS][40];
    char nums[MG_LIMIT_MAX_LAYERS * ARGS_PER_LAYER][24];
    char nkeys[8];
    char why[160];
    mg_redis_conn *conn = NULL;
    redisReply *reply;
    const char *err = NULL;
    apr_status_t rv;
    int argc = 0, i, j, probe;

    if (inst->local_sync) {
        return inst->local->decide(inst->local_inst, s, layers, n, now, d);
    }
    memset(d, 0, sizeof(*d));
    if (!mg_redis_may_try(inst, &probe)) {
        goto failed_fast;
    }
    argc = script_keys(argv, argvlen, nkeys, keys, layers, NULL, n);
    for (i = 0; i < n; i++) {
        const mg_limit_spec *spec = layers[i].spec;
        apr_int64_t v[ARGS_PER_LAYER];
        memset(v, 0, sizeof(v));
        v[0] = spec->algo;
        v[1] = (apr_int64_t)spec->quota;
        v[2] = spec->window;
        v[3] = (apr_int64_t)spec->burst;
        v[4] = (apr_int64_t)layers[i].cost;
        v[5] = layers[i].shadow;
        v[6] = spec->max_delay;
        calendar_args(spec, now.wall, v + 7);
        for (j = 0; j < ARGS_PER_LAYER; j++) {
            char *num = nums[i * ARGS_PER_LAYER + j];
            apr_snprintf(num, 24, "%" APR_INT64_T_FMT, v[j]);
            argv[argc] = num;
            argvlen[argc++] = strlen(num);
        }
    }

    rv = mg_redis_conn_acquire(inst, &conn);
    if (rv != APR_SUCCESS) {
        mg_redis_tried(inst, s, 0, probe, "cannot connect");
        goto failed_fast;
    }
    reply = mg_redis_run_script(inst, conn->c, &inst->decide_script, argc,
                                argv, argvlen);
    err = decide_reply_error(conn->c, reply, n, why, sizeof(why));
    if (err) {
        /* `err` may live in the reply or the connection: both go after. */
        script_failed(inst, s, err, why, probe);
        if (reply) {
            freeReplyObject(reply);
        }
        mg_redis_conn_release(inst, conn, 0);
        goto failed_fast;
    }
    d->nlayers = n;
    /* The time the script decided at: a settle needs it to know which
     * window counted the request (redis_settle). */
    d->store_time = (apr_time_t)reply->element[1]->integer;
    for (i = 0; i < n; i++) {
        redisReply **e = reply->element + 2 + REPLY_PER_LAYER * i;
        mg_limit_decision *l = &d->layer[i];
        l->allowed = e[0]->integer == 1;
        l->limit = layers[i].spec->quota;
        l->remaining = e[1]->integer > 0 ? (apr_uint64_t)e[1]->integer : 0;
        l->reset = non_negative(e[2]->integer);
        l->retry_after = non_negative(e[3]->integer);
        l->delay = non_negative(e[4]->integer);
        l->expires = 0;
    }
    freeReplyObject(reply);
    mg_redis_conn_release(inst, conn, 1);
    mg_redis_tried(inst, s, 1, probe, NULL);
    mg_limit_combine(layers, d);
    return APR_SUCCESS;

failed_fast:
    /* The gateway applies its failure policy (ModelGateStoreFailure and
     * the tiers' on_store_failure=). */
    return APR_ECONNREFUSED;
}


/*
 * Settle a token reservation: one script for every layer that changes
 * (mg_redis_settle_lua), on Redis's clock.  The window that counted the
 * reservation is the one holding the time the decide script ran at:
 * redis_decide reported it as d->store_time and the gateway hands it back
 * as `then`, so gateways whose clocks disagree with Redis's still refund
 * the right window.  Local-sync decides in shared memory, so it settles
 * there: charges are pushed to the other gateways like admissions.
 *
 * Never retried: a script that timed out may have run, and running it
 * again would settle twice.  A failure is the breaker's (which logs an
 * outage once); the caller logs the request's.
 */
apr_status_t mg_redis_settle(mg_store_instance *inst, server_rec *s,
                                 const mg_layer *layers,
                                 const apr_int64_t *delta, int n,
                                 mg_now then, mg_now now)
{
    const char *argv[3 + MG_LIMIT_MAX_LAYERS * (1 + SETTLE_ARGS_PER_LAYER)];
    size_t argvlen[3 + MG_LIMIT_MAX_LAYERS * (1 + SETTLE_ARGS_PER_LAYER)];
    char keys[MG_LIMIT_MAX_LAYERS][40];
    char nums[MG_LIMIT_MAX_LAYERS * SETTLE_ARGS_PER_LAYER][24];
    char nkeys[8];
    char why[160];
    int use[MG_LIMIT_MAX_LAYERS];
    mg_redis_conn *conn = NULL;
    redisReply *reply;
    const char *err;
    int argc = 0, i, j, m = 0, probe;

    if (inst->local_sync) {
        return n == 0 ? APR_SUCCESS
                      : inst->local->settle(inst->local_inst, s, layers,
                                            delta, n, then, now);
    }
    for (i = 0; i < n && i < MG_LIMIT_MAX_LAYERS; i++) {
        if (delta[i] != 0) {
            use[m++] = i;
        }
    }
    if (m == 0) {
        return APR_SUCCESS;   /* n == 0: yes, this store settles */
    }
    if (!mg_redis_may_try(inst, &probe)) {
        return APR_ECONNREFUSED;
    }
    argc = script_keys(argv, argvlen, nkeys, keys, layers, use, m);
    for (i = 0; i < m; i++) {
        const mg_limit_spec *spec = layers[use[i]].spec;
        apr_int64_t v[SETTLE_ARGS_PER_LAYER];
        memset(v, 0, sizeof(v));
        v[0] = spec->algo;
        v[1] = (apr_int64_t)spec->quota;
        v[2] = spec->window;
        v[3] = (apr_int64_t)spec->burst;
        v[4] = delta[use[i]];
        if (spec->wall_clock) {
            /* `then` is Redis's time when Redis decided (see above). */
            apr_time_t start, end;
            mg_limit_window_bounds(spec, then.wall, &start, &end);
            v[5] = start;
        }
        /* A charge fills the current window, found as deciding finds it. */
        calendar_args(spec, now.wall, v + 6);
        for (j = 0; j < SETTLE_ARGS_PER_LAYER; j++) {
            char *num = nums[i * SETTLE_ARGS_PER_LAYER + j];
            apr_snprintf(num, 24, "%" APR_INT64_T_FMT, v[j]);
            argv[argc] = num;
            argvlen[argc++] = strlen(num);
        }
    }
    if (mg_redis_conn_acquire(inst, &conn) != APR_SUCCESS) {
        mg_redis_tried(inst, s, 0, probe, "cannot connect");
        return APR_ECONNREFUSED;
    }
    reply = mg_redis_run_script(inst, conn->c, &inst->settle_script, argc,
                                argv, argvlen);
    err = mg_redis_reply_error(conn->c, reply);
    if (!err && reply->type != REDIS_REPLY_INTEGER) {
        apr_snprintf(why, sizeof(why), "unexpected reply to the settle "
                     "script: %s, not an integer",
                     mg_redis_reply_type(reply->type));
        err = why;
    }
    if (err) {
        script_failed(inst, s, err, why, probe);
        if (reply) {
            freeReplyObject(reply);
        }
        mg_redis_conn_release(inst, conn, 0);
        return APR_ECONNREFUSED;
    }
    freeReplyObject(reply);
    mg_redis_conn_release(inst, conn, 1);
    mg_redis_tried(inst, s, 1, probe, NULL);
    return APR_SUCCESS;
}
