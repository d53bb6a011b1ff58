/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_metrics_store.c -- the counter store's part of a scrape
 * and of the server-status page: what the stores' info() reports
 * (mg_store.h), the primary store's and the local stand-in's, read at the
 * scrape where the figures live, never copied per request.
 */
#include <apr_strings.h>
#include <http_protocol.h>
#include <mod_status.h>
#include "mod_modelgate_private.h"
#include "mg_metrics.h"


/* A store over the network (the redis plugin's): its round trips, its
 * breakers and the local-sync lag.  Only the primary store can be one. */
static void write_remote_store(mg_metrics_out *o, request_rec *r,
                               const mg_store_provider *pr,
                               const mg_store_info *in)
{
    static const char *const states[3] = { "closed", "open", "half_open" };
    static const struct { const char *name, *help; apr_size_t off; }
    counters[] = {
        { "modelgate_store_round_trips_total", "Operations sent to the "
          "store's server (decisions, settles, peeks, sync exchanges).",
          APR_OFFSETOF(mg_store_info, round_trips) },
        { "modelgate_store_errors_total", "Of those, failed (no "
          "connection, timeout, error or malformed answer).",
          APR_OFFSETOF(mg_store_info, errors) },
        { "modelgate_store_fast_failures_total", "Operations failed at "
          "once by an open breaker.",
          APR_OFFSETOF(mg_store_info, fast_failures) },
        { "modelgate_store_breaker_opened_total", "Outages begun (a "
          "process's breaker opened).",
          APR_OFFSETOF(mg_store_info, breaker_opened) },
    };
    const char *labels[7] = { "store", pr ? pr->name : "", "role",
                              "primary", NULL, NULL, NULL };
    int f;

    if (!pr || !in->remote) {
        return;
    }
    for (f = 0; f < (int)(sizeof(counters) / sizeof(counters[0])); f++) {
        mg_metrics_family(o, counters[f].name, "counter", counters[f].help);
        mg_metrics_sample_u64(o, counters[f].name, labels,
                              *(const apr_uint64_t *)((const char *)in
                                                      + counters[f].off));
    }
    mg_metrics_family(o, "modelgate_store_breaker_processes", "gauge",
                      "Live processes whose breaker to the store's server "
                      "is in this state.");
    labels[4] = "state";
    for (f = 0; f < 3; f++) {
        labels[5] = states[f];
        mg_metrics_sample_u64(o, "modelgate_store_breaker_processes", labels,
                              in->breaker_processes[f]);
    }
    labels[4] = NULL;
    mg_metrics_family(o, "modelgate_store_sync_lag_seconds", "gauge",
                      "Time since this gateway was last in step with the "
                      "shared store (local-sync; 0 in exact mode).");
    mg_metrics_sample(o, "modelgate_store_sync_lag_seconds", labels,
                      apr_psprintf(r->pool, "%.6f", (double)in->sync_lag
                                                    / APR_USEC_PER_SEC));
}

void mg_metrics_write_store(mg_metrics_out *o, request_rec *r,
                            const mg_server_conf *sc)
{
    struct { const char *role; const mg_store_provider *pr;
             mg_store_instance *inst; } stores[2] = {
        { "primary", sc->store, sc->store_inst },
        { "local", sc->local, sc->local_inst }
    };
    static const struct { const char *name, *type, *help; apr_size_t off; }
    fields[] = {
        { "modelgate_store_capacity", "gauge",
          "Entries the store can hold: counters and sliding-log counters "
          "together, as its tables are sized (0: unbounded).",
          APR_OFFSETOF(mg_store_info, capacity) },
        { "modelgate_store_bytes", "gauge", "Memory the store reserved.",
          APR_OFFSETOF(mg_store_info, bytes) },
        { "modelgate_store_decisions_total", "counter",
          "Decisions the store made.",
          APR_OFFSETOF(mg_store_info, decisions) },
        { "modelgate_store_inserted_total", "counter",
          "Counters the store created.",
          APR_OFFSETOF(mg_store_info, inserted) },
        { "modelgate_store_evicted_expired_total", "counter",
          "Counters forgotten when their state was fresh.",
          APR_OFFSETOF(mg_store_info, evicted_expired) },
        { "modelgate_store_evicted_live_total", "counter",
          "Counters forgotten while partly used.",
          APR_OFFSETOF(mg_store_info, evicted_live) },
        { "modelgate_store_evicted_exhausted_total", "counter",
          "Counters forgotten while refusing (the table is too small).",
          APR_OFFSETOF(mg_store_info, evicted_exhausted) },
        { "modelgate_store_sync_exchanges_total", "counter",
          "Local-sync exchanges with the shared store.",
          APR_OFFSETOF(mg_store_info, sync_exchanges) },
        { "modelgate_store_sync_failures_total", "counter",
          "Local-sync exchanges that failed.",
          APR_OFFSETOF(mg_store_info, sync_failures) },
        { "modelgate_store_sync_units_pushed_total", "counter",
          "Units this gateway pushed in local-sync exchanges (units it "
          "took back after a refund are not subtracted).",
          APR_OFFSETOF(mg_store_info, sync_units_pushed) },
        { "modelgate_store_sync_units_owed_total", "counter",
          "Other gateways' units charged here.",
          APR_OFFSETOF(mg_store_info, sync_units_owed) },
        { "modelgate_store_sync_listed_counters", "gauge",
          "Counters listed for the next local-sync exchange.",
          APR_OFFSETOF(mg_store_info, sync_listed) },
    };
    mg_store_info info[2];
    int k, f;

    for (k = 0; k < 2; k++) {
        memset(&info[k], 0, sizeof(info[k]));
        if (stores[k].pr && stores[k].pr->info) {
            stores[k].pr->info(stores[k].inst, &info[k]);
        }
    }
    for (f = 0; f < (int)(sizeof(fields) / sizeof(fields[0])); f++) {
        mg_metrics_family(o, fields[f].name, fields[f].type, fields[f].help);
        for (k = 0; k < 2; k++) {
            const char *labels[5] = { "store", NULL, "role", stores[k].role,
                                      NULL };
            if (!stores[k].pr) {
                continue;
            }
            labels[1] = stores[k].pr->name;
            mg_metrics_sample_u64(o, fields[f].name, labels,
                                  *(const apr_uint64_t *)(
                                      (const char *)&info[k] + fields[f].off));
        }
    }
    write_remote_store(o, r, stores[0].pr, &info[0]);
    /* In use: what was inserted and not evicted since the segment was
     * made (a table kept across restarts keeps counting). */
    mg_metrics_family(o, "modelgate_store_counters", "gauge",
                      "Counters the store holds now.");
    for (k = 0; k < 2; k++) {
        const char *labels[5] = { "store", NULL, "role", stores[k].role,
                                  NULL };
        apr_uint64_t gone = info[k].evicted_expired + info[k].evicted_live
                            + info[k].evicted_exhausted;
        if (!stores[k].pr) {
            continue;
        }
        labels[1] = stores[k].pr->name;
        mg_metrics_sample_u64(o, "modelgate_store_counters", labels,
                              info[k].inserted > gone
                                  ? info[k].inserted - gone : 0);
    }
}

/* The server-status page: the primary store's headline figures (and the
 * local stand-in's decisions, which count only while the primary fails). */
void mg_metrics_status_store(request_rec *r, const mg_server_conf *sc,
                             int flags)
{
    mg_store_info in, local;

    if (!sc->store || !sc->store->info) {
        return;
    }
    memset(&in, 0, sizeof(in));
    memset(&local, 0, sizeof(local));
    sc->store->info(sc->store_inst, &in);
    if (sc->local && sc->local->info) {
        sc->local->info(sc->local_inst, &local);
    }
    if (flags & AP_STATUS_SHORT) {
        ap_rprintf(r, "ModelGateStore: %s\n", sc->store->name);
        ap_rprintf(r, "ModelGateStoreDecisions: %" APR_UINT64_T_FMT "\n",
                   in.decisions);
        if (sc->local) {
            ap_rprintf(r, "ModelGateStoreLocalDecisions: %" APR_UINT64_T_FMT
                       "\n", local.decisions);
        }
        if (in.remote) {
            ap_rprintf(r, "ModelGateStoreRoundTrips: %" APR_UINT64_T_FMT "\n"
                       "ModelGateStoreErrors: %" APR_UINT64_T_FMT "\n"
                       "ModelGateStoreFastFailures: %" APR_UINT64_T_FMT "\n"
                       "ModelGateStoreBreakersOpen: %u\n"
                       "ModelGateStoreSyncLagSeconds: %.3f\n",
                       in.round_trips, in.errors, in.fast_failures,
                       in.breaker_processes[1] + in.breaker_processes[2],
                       (double)in.sync_lag / APR_USEC_PER_SEC);
        }
        return;
    }
    ap_rprintf(r, "<p>Counter store <b>%s</b>: %" APR_UINT64_T_FMT
               " decisions", ap_escape_html(r->pool, sc->store->name),
               in.decisions);
    if (sc->local) {
        ap_rprintf(r, " (local stand-in: %" APR_UINT64_T_FMT ")",
                   local.decisions);
    }
    if (in.remote) {
        ap_rprintf(r, "; %" APR_UINT64_T_FMT " round trips, %"
                   APR_UINT64_T_FMT " errors, %" APR_UINT64_T_FMT
                   " failed fast; breakers open in %u of %u processes; "
                   "local-sync lag %.3f s",
                   in.round_trips, in.errors, in.fast_failures,
                   in.breaker_processes[1] + in.breaker_processes[2],
                   in.breaker_processes[0] + in.breaker_processes[1]
                   + in.breaker_processes[2],
                   (double)in.sync_lag / APR_USEC_PER_SEC);
    }
    ap_rputs("</p>\n", r);
}
