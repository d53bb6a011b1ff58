/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_otlp.c -- OTLP/HTTP (JSON) span export with tail sampling.
 *
 *   ModelGateTraceExport URL [sample=R] [timeout=MS] [queue=N] [batch=N]
 *                            [interval=MS] [service=NAME]
 *                            [header=NAME:VALUE]...
 *
 * One span per request the gate saw, decided once the outcome is known
 * (log_transaction, after the core settled the tokens): a refused,
 * degraded, shed, breaker-refused or failed request (mg_otlp_must_keep)
 * is always kept, the others by the trace id at rate R (mg_otlp_sampled).
 * A kept span is copied into this process's bounded queue (mg_otlp.c);
 * when the queue is full it is dropped and counted, never waited for.  A
 * thread per child takes batches (when `batch` are queued, or every
 * `interval`) and POSTs them to the collector with libcurl, within
 * `timeout`; a batch that fails is dropped and counted (no retry: the
 * queue behind it must not wait).  The request path never waits on the
 * collector: it takes one short mutex to copy the span.
 *
 * A plugin, not the core (DESIGN.md's plugin set): it needs libcurl,
 * which the embedded default must not, and a thread per child.  It reads
 * the request's record through the core's optional function
 * mg_request_summarize and shows its counters in the core's Prometheus
 * exposition through the mg_metrics_scrape hook; without it loaded the
 * core does nothing more per request.
 *
 * Counters (modelgate_otlp_*) live in an anonymous shared segment made
 * from the process pool and kept in ap_retained_data, so they are summed
 * over every child and survive a graceful restart, as the core's do.
 */
#include <errno.h>
#include <unistd.h>
#include <curl/curl.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_shm.h>
#include <apr_thread_proc.h>
#include <httpd.h>
#include <http_config.h>
#include <http_log.h>
#include <http_protocol.h>
#include <http_core.h>
#include <ap_mpm.h>
#include "mod_modelgate.h"
#include "mg_metrics.h"
#include "mg_otlp.h"

module AP_MODULE_DECLARE_DATA modelgate_otlp_module;
APLOG_USE_MODULE(modelgate_otlp);

#define OTLP_RETAINED_KEY "mod_modelgate_otlp:counters"
#define OTLP_MAGIC        APR_UINT64_C(0x6d676f746c707631) /* "mgotlpv1" */

typedef struct otlp_conf {
    const char *url;          /**< NULL: no export */
    double sample;            /**< share of the other requests' spans */
    long timeout_ms;          /**< a batch's POST, connect included */
    apr_uint32_t queue;       /**< spans one child holds at most */
    apr_uint32_t batch;       /**< spans per POST at most */
    apr_interval_time_t interval; /**< a partial batch waits this long */
    const char *service;      /**< service.name */
    apr_array_header_t *headers; /**< "Name: value" for the collector (an
                                   API key): never logged */
} otlp_conf;

/* Counters in shared memory, relaxed atomic additions. */
enum {
    C_KEPT,                   /* kept by the tail rule */
    C_SAMPLED,                /* kept by the rate */
    C_NOT_SAMPLED,            /* left out by the rate */
    C_EXPORTED,
    C_DROP_FULL,              /* the queue was full */
    C_DROP_FAILED,            /* their batch failed */
    C_BATCH_OK,
    C_BATCH_FAILED,
    C_COUNT
};

typedef struct otlp_shared {
    apr_uint64_t magic;
    apr_uint64_t c[C_COUNT];
} otlp_shared;

typedef struct otlp_retained {
    apr_shm_t *shm;
} otlp_retained;

static otlp_shared *shared;
static APR_OPTIONAL_FN_TYPE(mg_request_summarize) *summarize;

/* This child's exporter. */
static mg_otlp_queue *queue;
static apr_thread_t *exporter;
static const otlp_conf *conf_in_use;
static server_rec *main_server;
static char host_name[256];

static void count(int which, apr_uint64_t n)
{
    if (shared) {
        __atomic_fetch_add(&shared->c[which], n, __ATOMIC_RELAXED);
    }
}

static otlp_conf *conf_of(server_rec *s)
{
    return ap_get_module_config(s->module_config, &modelgate_otlp_module);
}

static void *create_server_conf(apr_pool_t *p, server_rec *s)
{
    otlp_conf *c = apr_pcalloc(p, sizeof(*c));

    c->sample = 0.0;
    c->timeout_ms = 1000;
    c->queue = 4096;
    c->batch = 256;
    c->interval = apr_time_from_msec(1000);
    c->service = "mod_modelgate";
    c->headers = apr_array_make(p, 2, sizeof(const char *));
    return c;
}

/* ---- the directive ------------------------------------------------------ */

static const char *parse_uint(const char *v, apr_int64_t lo, apr_int64_t hi,
                              apr_int64_t *out)
{
    char *end;
    apr_int64_t n = apr_strtoi64(v, &end, 10);

    if (!*v || *end || errno == ERANGE || n < lo || n > hi) {
        return "out of range";
    }
    *out = n;
    return NULL;
}

static const char *cmd_export(cmd_parms *cmd, void *dummy, int argc,
                              char *const argv[])
{
    otlp_conf *c = conf_of(cmd->server);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    int i;

    if (err) {
        return err;
    }
    if (argc < 1) {
        return "ModelGateTraceExport: the collector's URL is required "
               "(e.g. http://127.0.0.1:4318/v1/traces)";
    }
    if (strncasecmp(argv[0], "http://", 7)
        && strncasecmp(argv[0], "https://", 8)) {
        return apr_psprintf(cmd->pool, "ModelGateTraceExport: '%s' is not "
                            "an http:// or https:// URL", argv[0]);
    }
    c->url = argv[0];
    for (i = 1; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        const char *key, *v;
        apr_int64_t n;

        if (!eq) {
            return apr_psprintf(cmd->pool, "ModelGateTraceExport: '%s': "
                                "expected NAME=VALUE", argv[i]);
        }
        key = apr_pstrmemdup(cmd->temp_pool, argv[i], eq - argv[i]);
        v = eq + 1;
        errno = 0;
        if (!strcmp(key, "sample")) {
            char *end;
            double d = strtod(v, &end);
            if (!*v || *end || !(d >= 0.0 && d <= 1.0)) {
                return apr_psprintf(cmd->pool, "ModelGateTraceExport: "
                                    "sample=%s: a share from 0 to 1", v);
            }
            c->sample = d;
            continue;
        }
        if (!strcmp(key, "service")) {
            if (!*v) {
                return "ModelGateTraceExport: service= needs a name";
            }
            c->service = v;
            continue;
        }
        if (!strcmp(key, "header")) {
            const char *colon = strchr(v, ':'), *p;
            for (p = v; colon && p < colon; p++) {
                if (!apr_isgraph(*p)) {
                    break;
                }
            }
            if (!colon || colon == v || p != colon || strpbrk(v, "\r\n")) {
                return "ModelGateTraceExport: header= must be NAME:VALUE "
                       "(a header for the collector, e.g. an API key)";
            }
            APR_ARRAY_PUSH(c->headers, const char *) =
                apr_pstrcat(cmd->pool, apr_pstrmemdup(cmd->pool, v,
                                                      colon - v),
                            ": ", colon + 1 + strspn(colon + 1, " "), NULL);
            continue;
        }
        if (!strcmp(key, "timeout")) {
            err = parse_uint(v, 1, 60000, &n);
            c->timeout_ms = (long)n;
        }
        else if (!strcmp(key, "queue")) {
            err = parse_uint(v, 1, 1000000, &n);
            c->queue = (apr_uint32_t)n;
        }
        else if (!strcmp(key, "batch")) {
            err = parse_uint(v, 1, 10000, &n);
            c->batch = (apr_uint32_t)n;
        }
        else if (!strcmp(key, "interval")) {
            err = parse_uint(v, 10, 60000, &n);
            c->interval = apr_time_from_msec(n);
        }
        else {
            return apr_psprintf(cmd->pool, "ModelGateTraceExport: unknown "
                                "option '%s' (sample, timeout, queue, batch, "
                                "interval, service, header)", key);
        }
        if (err) {
            return apr_psprintf(cmd->pool, "ModelGateTraceExport: %s: %s",
                                argv[i], err);
        }
    }
    return NULL;
}

static const command_rec otlp_cmds[] = {
    AP_INIT_TAKE_ARGV("ModelGateTraceExport", cmd_export, NULL, RSRC_CONF,
                      "URL [sample=R] [timeout=MS] [queue=N] [batch=N] "
                      "[interval=MS] [service=NAME] [header=NAME:VALUE]: "
                      "export every request's "
                      "span over OTLP/HTTP (JSON), refused, degraded and "
                      "failed ones always, the others at rate R"),
    { NULL }
};

/* ---- start-up ----------------------------------------------------------- */

static int otlp_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                             apr_pool_t *ptemp, server_rec *s)
{
    summarize = APR_RETRIEVE_OPTIONAL_FN(mg_request_summarize);
    if (conf_of(s)->url && !summarize) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, "MGO00001: "
                     "ModelGateTraceExport needs mod_modelgate: load it "
                     "(LoadModule modelgate_module) as well");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

static int otlp_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                            apr_pool_t *ptemp, server_rec *s)
{
    otlp_retained *kept;
    static int curl_ready;
    apr_status_t rv;

    shared = NULL;
    if (!conf_of(s)->url
        || ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    /* once per process, before any thread: it is not thread-safe */
    if (!curl_ready && curl_global_init(CURL_GLOBAL_DEFAULT) == 0) {
        curl_ready = 1;
    }
    kept = ap_retained_data_get(OTLP_RETAINED_KEY);
    if (!kept) {
        kept = ap_retained_data_create(OTLP_RETAINED_KEY, sizeof(*kept));
    }
    if (!kept->shm) {
        rv = apr_shm_create(&kept->shm, sizeof(otlp_shared), NULL,
                            s->process->pool);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, "MGO00002: cannot "
                         "create the span exporter's shared counters");
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        memset(apr_shm_baseaddr_get(kept->shm), 0, sizeof(otlp_shared));
    }
    shared = apr_shm_baseaddr_get(kept->shm);
    shared->magic = OTLP_MAGIC;
    return OK;
}

/* ---- the exporter thread ------------------------------------------------ */

typedef struct sink {
    apr_size_t len;
} sink;

/* The collector's answer is not read: only its status counts. */
static size_t discard(char *data, size_t size, size_t n, void *baton)
{
    ((sink *)baton)->len += size * n;
    return size * n;
}

static int post_batch(CURL *h, struct curl_slist *headers, const char *body)
{
    sink s = { 0 };
    long code = 0;
    CURLcode rc;

    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    rc = curl_easy_perform(h);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    }
    if (rc == CURLE_OK && code >= 200 && code < 300) {
        return 0;
    }
    return rc != CURLE_OK ? -(int)rc : (int)code;
}

static void *APR_THREAD_FUNC export_loop(apr_thread_t *t, void *data)
{
    const otlp_conf *c = conf_in_use;
    mg_otlp_resource res;
    mg_otlp_span *batch = malloc(sizeof(*batch) * c->batch);
    struct curl_slist *headers = NULL;
    CURL *h = curl_easy_init();
    int failing = 0;

    if (!batch || !h) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, main_server, "MGO00003: "
                     "the span exporter cannot start (out of memory); "
                     "spans are dropped");
        free(batch);
        if (h) {
            curl_easy_cleanup(h);
        }
        return NULL;
    }
    res.service_name = c->service;
    res.host_name = host_name[0] ? host_name : NULL;
    res.version = MODELGATE_VERSION;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    {
        int i;
        for (i = 0; i < c->headers->nelts; i++) {
            headers = curl_slist_append(headers, APR_ARRAY_IDX(c->headers, i,
                                                               const char *));
        }
    }
    curl_easy_setopt(h, CURLOPT_URL, c->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);      /* threads */
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "mod_modelgate-otlp/"
                     MODELGATE_VERSION);
    for (;;) {
        int stopping = __atomic_load_n(&queue->stopping, __ATOMIC_ACQUIRE);
        apr_uint32_t n = mg_otlp_queue_take(queue, batch, c->batch,
                                            stopping ? 0 : c->interval);
        char *body;
        int rc;

        if (n == 0) {
            if (stopping) {
                break;
            }
            continue;
        }
        body = mg_otlp_encode(&res, batch, n);
        rc = body ? post_batch(h, headers, body) : -1;
        free(body);
        if (rc == 0) {
            count(C_EXPORTED, n);
            count(C_BATCH_OK, 1);
            if (failing) {
                ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, main_server,
                             "MGO00005: spans reach %s again", c->url);
                failing = 0;
            }
            continue;
        }
        count(C_DROP_FAILED, n);
        count(C_BATCH_FAILED, 1);
        if (!failing) {
            /* Once per outage and child: the counters say the rest. */
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, main_server,
                         "MGO00004: span export to %s failed (%s %d); "
                         "spans are dropped until it answers", c->url,
                         rc < 0 ? "curl error" : "HTTP status",
                         rc < 0 ? -rc : rc);
            failing = 1;
        }
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
    free(batch);
    return NULL;
}

static apr_status_t exporter_stop(void *data)
{
    apr_status_t rv;

    if (queue) {
        /* What is queued goes out first (bounded by `timeout`). */
        mg_otlp_queue_stop(queue);
        if (exporter) {
            apr_thread_join(&rv, exporter);
        }
    }
    queue = NULL;
    exporter = NULL;
    return APR_SUCCESS;
}

static void otlp_child_init(apr_pool_t *pchild, server_rec *s)
{
    const otlp_conf *c = conf_of(s);
    apr_status_t rv;

    queue = NULL;
    if (!c->url || !summarize) {
        return;
    }
    conf_in_use = c;
    main_server = s;
    if (gethostname(host_name, sizeof(host_name) - 1) != 0) {
        host_name[0] = '\0';
    }
    if ((rv = mg_otlp_queue_create(&queue, c->queue, c->batch, pchild))
        != APR_SUCCESS
        || (rv = apr_thread_create(&exporter, NULL, export_loop, NULL,
                                   pchild)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s, "MGO00003: the span "
                     "exporter cannot start; spans are dropped");
        queue = NULL;
        return;
    }
    apr_pool_cleanup_register(pchild, NULL, exporter_stop,
                              apr_pool_cleanup_null);
}

/* ---- per request -------------------------------------------------------- */

static int otlp_log(request_rec *r)
{
    mg_request_summary sum;
    mg_otlp_span span;
    int allowed, keep;

    if (!queue || !summarize(r, &sum) || !sum.trace_id) {
        return DECLINED;
    }
    allowed = sum.decision && (!strcmp(sum.decision, "allowed")
                               || !strcmp(sum.decision, "cached"));
    keep = mg_otlp_must_keep(allowed, sum.status);
    if (!keep && !mg_otlp_sampled(sum.trace_id, conf_in_use->sample)) {
        count(C_NOT_SAMPLED, 1);
        return DECLINED;
    }
    mg_otlp_copy(span.trace_id, sizeof(span.trace_id), sum.trace_id);
    mg_otlp_copy(span.span_id, sizeof(span.span_id), sum.span_id);
    mg_otlp_copy(span.parent_id, sizeof(span.parent_id), sum.parent_id);
    mg_otlp_copy(span.request_id, sizeof(span.request_id), sum.request_id);
    mg_otlp_copy(span.method, sizeof(span.method), sum.method);
    mg_otlp_copy(span.decision, sizeof(span.decision), sum.decision);
    mg_otlp_copy(span.action, sizeof(span.action), sum.action);
    mg_otlp_copy(span.limit, sizeof(span.limit), sum.limit);
    mg_otlp_copy(span.route, sizeof(span.route), sum.route);
    mg_otlp_copy(span.model, sizeof(span.model), sum.model);
    mg_otlp_copy(span.tier, sizeof(span.tier), sum.tier);
    mg_otlp_copy(span.tenant, sizeof(span.tenant), sum.tenant);
    span.start = sum.start;
    span.end = sum.end;
    span.status = sum.status;
    span.upstream_status = sum.upstream_status;
    span.prompt_tokens = sum.prompt_tokens;
    span.completion_tokens = sum.completion_tokens;
    span.spend = sum.spend;
    span.kept = keep;
    count(keep ? C_KEPT : C_SAMPLED, 1);
    if (!mg_otlp_queue_push(queue, &span)) {
        count(C_DROP_FULL, 1);
    }
    return DECLINED;
}

/* ---- the scrape --------------------------------------------------------- */

static void otlp_scrape(request_rec *r, struct mg_metrics_out *o)
{
    static const struct { const char *label; int c; } decided[] = {
        { "kept", C_KEPT }, { "sampled", C_SAMPLED },
        { "not_sampled", C_NOT_SAMPLED }
    };
    static const struct { const char *label; int c; } dropped[] = {
        { "queue_full", C_DROP_FULL }, { "export_failed", C_DROP_FAILED }
    };
    apr_uint64_t v[C_COUNT];
    int i;

    if (!shared) {
        return;
    }
    for (i = 0; i < C_COUNT; i++) {
        v[i] = __atomic_load_n(&shared->c[i], __ATOMIC_RELAXED);
    }
    mg_metrics_family(o, "modelgate_otlp_spans_total", "counter",
                      "Requests' spans by the sampling decision: kept "
                      "(refused, degraded or failed), sampled at the rate, "
                      "or not sampled.");
    for (i = 0; i < 3; i++) {
        const char *labels[3] = { "sampling", decided[i].label, NULL };
        mg_metrics_sample_u64(o, "modelgate_otlp_spans_total", labels,
                              v[decided[i].c]);
    }
    mg_metrics_family(o, "modelgate_otlp_spans_exported_total", "counter",
                      "Spans the collector accepted.");
    mg_metrics_sample_u64(o, "modelgate_otlp_spans_exported_total", NULL,
                          v[C_EXPORTED]);
    mg_metrics_family(o, "modelgate_otlp_spans_dropped_total", "counter",
                      "Spans lost: the queue was full, or their batch "
                      "failed.");
    for (i = 0; i < 2; i++) {
        const char *labels[3] = { "reason", dropped[i].label, NULL };
        mg_metrics_sample_u64(o, "modelgate_otlp_spans_dropped_total", labels,
                              v[dropped[i].c]);
    }
    mg_metrics_family(o, "modelgate_otlp_export_requests_total", "counter",
                      "Batches sent to the collector, by result.");
    {
        const char *ok[3] = { "result", "ok", NULL };
        const char *bad[3] = { "result", "error", NULL };
        mg_metrics_sample_u64(o, "modelgate_otlp_export_requests_total", ok,
                              v[C_BATCH_OK]);
        mg_metrics_sample_u64(o, "modelgate_otlp_export_requests_total", bad,
                              v[C_BATCH_FAILED]);
    }
}

static void otlp_register_hooks(apr_pool_t *p)
{
    ap_hook_check_config(otlp_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(otlp_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(otlp_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    /* After the core's own (the tokens settled, the metrics counted). */
    ap_hook_log_transaction(otlp_log, NULL, NULL, APR_HOOK_LAST);
    APR_OPTIONAL_HOOK(modelgate, mg_metrics_scrape, otlp_scrape, NULL, NULL,
                      APR_HOOK_MIDDLE);
}

module AP_MODULE_DECLARE_DATA modelgate_otlp_module = {
    STANDARD20_MODULE_STUFF,
    NULL,
    NULL,
    create_server_conf,
    NULL,
    otlp_cmds,
    otlp_register_hooks,
    AP_MODULE_FLAG_NONE
};
