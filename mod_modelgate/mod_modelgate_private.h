/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_private.h -- shared by the glue files of the module only.
 */
#ifndef MOD_MODELGATE_PRIVATE_H
#define MOD_MODELGATE_PRIVATE_H

#include <httpd.h>
#include <http_config.h>
#include <http_log.h>
#include <util_filter.h>
#include "mod_modelgate.h"
#include "mg_policy.h"
#include "mg_keys.h"
#include "mg_headers.h"
#include "mg_body.h"
#include "mg_health.h"
#include "mg_usage.h"
#include "mg_store.h"
#include "mg_identity.h"

extern module AP_MODULE_DECLARE_DATA modelgate_module;
APLOG_USE_MODULE(modelgate);

/* Log tags owned by the module: MG00001 and up, never httpd's AHnnnnn. */
#define MGLOGNO(n) "MG" #n ": "

#define MG_UNSET (-1)

/** ModelGateBodyLimit's default: JSON bodies up to 1 MiB are read. */
#define MG_BODY_LIMIT_DEFAULT (1024 * 1024)
/** ... and its largest value. */
#define MG_BODY_LIMIT_MAX (64 * 1024 * 1024)

/** Where a directive was written, for messages found after parsing. */
typedef struct mg_where {
    const char *file;
    int line;
} mg_where;

/** An upstream model server, declared at server level. */
typedef struct mg_upstream {
    const char *name;
    const char *url;          /**< scheme://host[:port][/base], no trailing '/' */
    mg_where where;
    mg_health_conf health;    /**< breaker and degraded thresholds */
    apr_uint32_t max_inflight; /**< requests at once; 0: no cap */
    int index;                /**< its place in shared memory (post_config) */
} mg_upstream;

/** One upstream of a model, with its weight. */
typedef struct mg_model_target {
    const char *name;
    apr_uint32_t weight;
    const mg_upstream *up;    /**< resolved in check_config */
} mg_model_target;

/** A model the gateway serves (ModelGateModel), by name or alias. */
typedef struct mg_model {
    const char *name;         /**< the public name; per-model limits count
                                   under it */
    const char *upstream;     /**< the (first) upstream that serves it */
    apr_array_header_t *targets; /**< mg_model_target: weighted, as for a
                                   canary; one for most models */
    apr_uint32_t total_weight;
    apr_uint32_t picks;       /**< this process's requests so far (each
                                   child has its own copy) */
    const char *served_as;    /**< the name that upstream knows it by */
    apr_uint64_t price_in;    /**< nano-units a prompt token costs; 0: free */
    apr_uint64_t price_out;   /**< ... and a completion token */
    mg_where where;
} mg_model;

/** A ModelGateRoute in the main configuration, checked once all is read. */
typedef struct mg_route_ref {
    const char *directive;    /**< ModelGateRoute or ModelGateVersionRoute */
    const char *upstream;
    mg_where where;
} mg_route_ref;

/** What a name a directive gives must be declared as. */
typedef enum {
    MG_NAMES_TIER,            /**< a ModelGateTier */
    MG_NAMES_MODEL,           /**< a ModelGateModel's NAME, not an alias:
                                   limits count a request under its model's
                                   NAME, so an alias would never match */
    MG_NAMES_MODEL_OR_ALIAS   /**< a ModelGateModel's NAME or alias */
} mg_names_kind;

/** A tier or model a directive of the server configuration names, checked
 *  once all of it is read: a limit may come before its tier in the file. */
typedef struct mg_name_ref {
    mg_names_kind kind;
    const char *directive;    /**< as the message names it, e.g.
                                   "ModelGateLimit gold-daily" */
    const char *option;       /**< "tiers=", ...; NULL: an argument */
    const char *name;
    mg_where where;
} mg_name_ref;

typedef struct mg_server_conf {
    mg_policy *policy;
    mg_zone_cache *zones;             /**< named zones the configuration
                                           loaded; .htaccess may use these */
    mg_keyring *keys;
    mg_where keys_where;
    apr_hash_t *upstreams;            /**< name -> mg_upstream* */
    apr_array_header_t *route_refs;   /**< mg_route_ref */
    apr_array_header_t *name_refs;    /**< mg_name_ref */
    apr_hash_t *models;               /**< name and alias -> mg_model* */
    apr_array_header_t *model_list;   /**< mg_model*, once each */
    const mg_store_provider *store;
    mg_store_instance *store_inst;
    mg_failure_policy store_failure; /**< while the store fails (default
                                   closed); tiers may override */
    const mg_store_provider *local;  /**< the shm store standing in for a
                                   failing store (policy local) */
    mg_store_instance *local_inst;
    int enabled_somewhere;            /**< some `ModelGate On` was read */
    mg_where token_limit_at;          /**< the first token limit in the
                                           server configuration (file NULL:
                                           none) */
    int queue_limit;                  /**< requests one child lets wait in
                                           queue actions; MG_UNSET: a
                                           quarter of its threads */
    apr_array_header_t *identity_names; /**< ModelGateIdentity; NULL: key */
    mg_where identity_where;
    const mg_identity_provider **identity; /**< resolved in check_config */
    int identity_n;
    int metrics_off;                  /**< ModelGateMetrics Off: nothing
                                           recorded, no exposition */
} mg_server_conf;

typedef struct mg_dir_conf {
    int enabled;              /**< MG_UNSET, 0 or 1 */
    int trace;                /**< MG_UNSET (on), 0 or 1: W3C trace context
                                   and X-Request-Id (ModelGateTrace); beside
                                   `enabled`, in what was padding: a larger
                                   struct, merged per request, moved the
                                   request pool's use past a block (+500
                                   instructions a request, measured) */
    const char *route;        /**< upstream name or NULL */
    apr_table_t *versions;    /**< X-API-Version value -> upstream name;
                                   NULL: none */
    apr_array_header_t *limits; /**< mg_limit_def*: this location's limits
                                   and its parents' (never fewer: .htaccess
                                   and nested locations only add) */
    apr_int64_t cost;         /**< units a request costs; MG_UNSET: 1 */
    int cost_raises;          /**< set in .htaccess: may only raise it */
    apr_off_t body_limit;     /**< largest JSON body read; MG_UNSET:
                                   MG_BODY_LIMIT_DEFAULT */
    int body_limit_lowers;    /**< set in .htaccess: may only lower it */
    int opaque_bodies;        /**< MG_UNSET, 0 or 1: bodies the gateway
                                   cannot read pass unread (server
                                   configuration only) */
} mg_dir_conf;

/** What token and budget layers reserved for an admitted request, kept
 *  for the settle (allocated only when such a layer applied). */
typedef struct mg_reservation {
    mg_layer layers[MG_LIMIT_MAX_LAYERS]; /**< the admitted decision's
                                   layers, as charged */
    int n;
    mg_now decided_at;        /**< when they were charged (a store's own
                                   clock where it has one) */
    const mg_store_provider *store; /**< the store that decided */
    mg_store_instance *inst;
    apr_uint32_t cost_factor; /**< degraded_cost's K, else 1 */
    apr_uint64_t price_in;    /**< the served model's prices (budgets) */
    apr_uint64_t price_out;
    int added_include_usage;  /**< the gateway asked a stream for usage */
    int dropped_usage_event;  /**< ... and kept that event from the client */
    int usage_read;           /**< `usage` holds what the answer said */
    mg_usage usage;
    int settled;
} mg_reservation;

/** The admitted decision of a request the response cache may answer,
 *  kept so a cached answer can be given back its units and its RateLimit
 *  headers said again (kept only for a JSON body with the cache loaded). */
typedef struct mg_admitted {
    mg_layer layers[MG_LIMIT_MAX_LAYERS];
    mg_decision d;            /**< as decided: nlayers is the count */
    mg_now decided_at;        /**< when (a store's own clock if it has one) */
    const mg_store_provider *store; /**< the store that decided */
    mg_store_instance *inst;
} mg_admitted;

/** What the module knows about one request, in r->request_config. */
typedef struct mg_request {
    int gated;                /**< the gate ran for this request */
    int gate_status;          /**< ... and said this (OK: passed) */
    const mg_upstream *upstream;
    int body_read;            /**< a JSON body was read: `info` holds it */
    mg_body_info info;
    const char *body;         /**< the body mod_proxy will send */
    apr_size_t body_len;
    ap_filter_t *body_filter; /**< MODELGATE_BODY, serving `body` */
    const mg_model *model;    /**< the declared model the body names, then
                                   the one that serves it */
    int probe;                /**< sent as the breaker's half-open probe */
    int entered;              /**< counted in flight at its upstream */
    apr_time_t sent_at;       /**< monotonic: handed to mod_proxy */
    apr_time_t first_byte_at; /**< monotonic: the answer began; 0: not yet */
    int recorded;             /**< its outcome is in the upstream's health */
    apr_uint64_t reserve_prompt;     /**< the token estimate of the body */
    apr_uint64_t reserve_completion; /**< ... and of its answer */
    struct mg_reservation *reservation; /**< what token and budget layers
                                   reserved (mod_modelgate_usage.c); NULL:
                                   none, and nothing to settle */
    int cached;               /**< a cached answer serves it (a listener of
                                   mg_cached_answer said OK): not forwarded */
    int cached_free;          /**< ... and it costs nothing in request
                                   layers either (mg_cached_answer_free) */
    mg_admitted *admitted;    /**< the decision, for a cached answer; NULL:
                                   not kept */
    const char *trace_id;     /**< W3C trace id (mod_modelgate_trace.c);
                                   NULL: none */
    const mg_tier *tier;      /**< the caller's tier, once decided */
    unsigned char outcome;    /**< mg_outcome (mg_metrics.h), once decided */
    unsigned char action;     /**< mg_degrade_action when degraded */
    unsigned json_4xx;        /**< bit i: status 400 + i has a JSON body */
    unsigned json_5xx;        /**< bit i: status 500 + i has a JSON body */
    const mg_key *identity;   /**< who the gate found (authz providers) */
} mg_request;

/* mod_modelgate_config.c */
extern const command_rec mg_cmds[];
/** Where a directive was written. */
mg_where mg_where_of(cmd_parms *cmd);
/** The main server's configuration, from a directive. */
mg_server_conf *mg_server_conf_of(cmd_parms *cmd);
/** A directive names a tier or a model (`option`: in which of its options,
 *  NULL: as an argument).  In .htaccess the server configuration is
 *  complete, so an undeclared name is refused at once (the error returned);
 *  elsewhere the name is kept, with the file and line, for check_config. */
/** A directive read from an .htaccess file (the request's pool for both). */
int mg_in_htaccess(cmd_parms *cmd);

/** Why `ref` names nothing the server declares, or NULL if it does. */
const char *mg_config_unknown_name(apr_pool_t *p, const mg_server_conf *sc,
                                   const mg_name_ref *ref);

const char *mg_config_names(cmd_parms *cmd, mg_names_kind kind,
                            const char *directive, const char *option,
                            const char *name);

/* mod_modelgate_config_layers.c */
/** Can any request meet more than MG_LIMIT_MAX_LAYERS layers?  Logs why
 *  and returns 0 if so. */
int mg_check_layers(server_rec *main_server, const mg_server_conf *sc,
                    apr_pool_t *ptemp);

/* mod_modelgate_config_upstream.c */
const char *mg_cmd_upstream(cmd_parms *cmd, void *dummy, int argc,
                            char *const argv[]);
const char *mg_cmd_model(cmd_parms *cmd, void *dummy, int argc,
                         char *const argv[]);
void *mg_create_server_conf(apr_pool_t *p, server_rec *s);
void *mg_merge_server_conf(apr_pool_t *p, void *base, void *add);
void *mg_create_dir_conf(apr_pool_t *p, char *dir);
void *mg_merge_dir_conf(apr_pool_t *p, void *base, void *add);
int mg_check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                    server_rec *s);
const mg_upstream *mg_upstream_get(const mg_server_conf *sc, const char *name);
/** The model declared as `name` or with it as an alias, or NULL. */
const mg_model *mg_model_get(const mg_server_conf *sc, const char *name);
/** The upstream that serves this request for `m`: by weight among its
 *  targets, in exact proportion over each run of total-weight requests of
 *  a process. */
const mg_upstream *mg_model_pick(const mg_server_conf *sc, const mg_model *m);
/** The upstream a location sends this request to: the route for its
 *  X-API-Version, else ModelGateRoute's; NULL if it routes nowhere. */
const mg_upstream *mg_route_upstream(request_rec *r, const mg_server_conf *sc,
                                     const mg_dir_conf *dc);
/** Does the request name an X-API-Version this location does not know? */
const char *mg_route_unknown_version(request_rec *r, const mg_dir_conf *dc);

/* mod_modelgate_identity.c */
/** Remove every X-Modelgate-* header a client sent. */
void mg_identity_scrub(request_rec *r);
/** Find and remove the credential; NULL when none was sent.  *bearer:
 *  it came from Authorization: Bearer. */
const char *mg_identity_take_credential(request_rec *r, apr_size_t *len,
                                        int *bearer);
/** Tell the upstream and the logs who the caller is. */
void mg_identity_announce(request_rec *r, const mg_key *key);
/** Registers the fixups hook (really last) that puts the gate's identity
 *  headers back when a later module changed them. */
void mg_identity_register_fixups(void);

/* mod_modelgate_headers_out.c */
/** The answer to a gated request is about to be sent: drop from
 *  r->headers_out (the upstream's) every X-Modelgate-* field, and every
 *  field of a rate limit family the gateway sends in r->err_headers_out. */
void mg_headers_out_scrub(request_rec *r);

/* mod_modelgate_identify.c */
/** Ask the identity providers who presented `credential` (NULL: none was
 *  sent): OK with *who set, or the refusal's status, answered. */
int mg_identify(request_rec *r, const mg_server_conf *sc,
                const char *credential, apr_size_t len, int bearer,
                const mg_key **who);
const char *mg_cmd_identity(cmd_parms *cmd, void *dummy, int argc,
                            char *const argv[]);
/** Resolve ModelGateIdentity's providers; 0 (logged) on failure. */
int mg_identity_check_config(server_rec *s, mg_server_conf *sc,
                             apr_pool_t *pconf, apr_pool_t *ptemp);
/** Is the key file among the identity providers? */
int mg_identity_uses_keys(const mg_server_conf *sc);
/** An authz provider's 403 gets its WWW-Authenticate challenge. */
void mg_identity_error_response(request_rec *r);
void mg_identity_register(apr_pool_t *p);

/* mod_modelgate_layers.c */
/** Make the per-limit texts and hashes requests use (at config time). */
void mg_layers_prepare(apr_pool_t *p, mg_limit_def *def);
/** Fill `layers` (MG_LIMIT_MAX_LAYERS) for this request; returns how many,
 *  or -1 if more limits apply than a decision can take. */
int mg_layers_for_request(request_rec *r, const mg_server_conf *sc,
                          const mg_dir_conf *dc, const mg_key *key,
                          const mg_tier *tier, const char *model,
                          const mg_request *req, mg_layer *layers);
/** Answer a request mg_layers_for_request refused (-1): 500 JSON, and
 *  the layers named in the error log once a minute per set of them. */
int mg_layers_too_many(request_rec *r, const mg_server_conf *sc,
                       const mg_dir_conf *dc, const mg_tier *tier,
                       const char *model);

/* mod_modelgate_body.c */
/** Read a JSON body into req (OK), leave a body that is not JSON alone
 *  (DECLINED), or answer 400/413 (the status is returned). */
int mg_body_read(request_rec *r, const mg_server_conf *sc,
                 const mg_dir_conf *dc, mg_request *req);
/** From now on the request's body is these `len` bytes of `buf`. */
void mg_body_replace(request_rec *r, mg_request *req, const char *buf,
                     apr_size_t len);
/** Send `model` in the body instead of the client's. */
int mg_body_set_model_for(request_rec *r, mg_request *req,
                          const char *model);
void mg_body_register(apr_pool_t *p);

/* mod_modelgate_usage.c */
/** Before the decision: the tier's max_tokens ceiling (400, or the body's
 *  cap clamped or added) and the tokens the request reserves. */
int mg_usage_prepare(request_rec *r, const mg_tier *tier, mg_request *req);
/** After admission: keep what token layers reserved, for the settle, and
 *  make the answer's usage readable (identity encoding, include_usage). */
int mg_usage_reserve(request_rec *r, mg_request *req, const mg_layer *layers,
                     int n, mg_now now, const mg_store_provider *store,
                     mg_store_instance *inst, apr_uint32_t factor,
                     const mg_model *model);
/** Read the usage of this request's answer as it passes. */
void mg_usage_watch(request_rec *r, mg_request *req);
/** log_transaction: settle the tokens reserved against those used. */
int mg_usage_settle(request_rec *r);
void mg_usage_register(apr_pool_t *p);

/* mod_modelgate_decide.c */
/** The limit decision and, when a limit refuses, the tier's on_limit
 *  actions; routes an admitted request for a declared model. */
int mg_decide_request(request_rec *r, mg_server_conf *sc,
                      const mg_dir_conf *dc, const mg_key *key,
                      mg_request *req);
/** A cached answer serves the admitted request (fixups): its token and
 *  budget reservation is settled to nothing now, its request layers'
 *  units are given back when its listener said mg_cached_answer_free,
 *  and the RateLimit headers are written again from those numbers. */
void mg_decide_cached(request_rec *r, mg_request *req);
/** Size the queue of on_limit=queue: in this child. */
void mg_decide_child_init(const mg_server_conf *sc);

/* mod_modelgate_upstream.c */
typedef enum {
    MG_UPSTREAM_OK = 0,
    MG_UPSTREAM_OPEN,         /**< its breaker is open */
    MG_UPSTREAM_SATURATED     /**< the tier's share of max_inflight is full */
} mg_upstream_verdict;
/** May a request of `tier` go to `up` now? (`probe`: as the half-open
 *  probe; `retry_after`: when refused, when to ask again) */
mg_upstream_verdict mg_upstream_admit(request_rec *r, const mg_upstream *up,
                                      const mg_tier *tier, int *probe,
                                      apr_interval_time_t *retry_after);
/** Give back a probe place admit() took for a request not sent. */
void mg_upstream_cancel_probe(request_rec *r, const mg_upstream *up);
/** Is `up` degraded (breaker not closed, slow or failing)? */
int mg_upstream_degraded(request_rec *r, const mg_upstream *up);
/** The gate let the request through and nothing answered it yet: its
 *  answer's headers will be scrubbed (mg_headers_out_scrub), and if it
 *  goes to req->upstream it is counted in flight there. */
void mg_upstream_enter(request_rec *r, mg_request *req);
/** httpd answers with an error: if it is mod_proxy's, record it now. */
void mg_upstream_error(request_rec *r);
/** log_transaction: record how the upstream answered, if not yet. */
int mg_upstream_log(request_rec *r);
/** An upstream's health as a metrics scrape shows it. */
typedef struct mg_upstream_snap {
    int state;                /**< mg_breaker_state */
    mg_health_stats stats;    /**< the window's answers, errors, p95 */
    int inflight_counted;     /**< it has a max_inflight: `inflight` holds */
    apr_uint32_t inflight;
} mg_upstream_snap;
/** Read `up`'s health (under its lock); 0 when it has no shared state. */
int mg_upstream_snapshot(server_rec *s, const mg_upstream *up,
                         mg_upstream_snap *out);
int mg_upstream_post_config(apr_pool_t *pconf, server_rec *s,
                            mg_server_conf *sc);
void mg_upstream_child_init(server_rec *s);
void mg_upstream_register(apr_pool_t *p);

/* mod_modelgate_proxy.c */
/** Forward to model `m`'s upstream, renaming the body's model to the name
 *  that upstream knows it by. */
int mg_route_to_model(request_rec *r, const mg_server_conf *sc,
                      mg_request *req, const mg_model *m,
                      const mg_upstream *up);
/** Make sure mod_proxy has a worker (a connection pool) for `url`. */
const char *mg_proxy_define_worker(cmd_parms *cmd, const char *url);
/** Hand the request to mod_proxy, as mod_rewrite's [P] does. */
void mg_proxy_hand_off(request_rec *r, const mg_upstream *up);
int mg_proxy_available(void);

/* mod_modelgate_request.c */
mg_request *mg_request_get(request_rec *r);
/** The state of the first request before `r` in its chain (the one it was
 *  redirected from, the one it is a subrequest of, and so on) for which
 *  `wanted` says yes; NULL if none. */
const mg_request *mg_request_earlier(const request_rec *r,
                                     int (*wanted)(const mg_request *req));
/** What log_transaction reads of a request: the state of the request of
 *  r's chain the gate ran for (an ErrorDocument or an internal redirect
 *  into a gated path is gated itself), or NULL; *last is set to the
 *  chain's last request, whose status is the answer's. */
mg_request *mg_request_gated(request_rec *r, request_rec **last);
/** What became of a gated request, as the metrics count it and a span
 *  tells it (an mg_outcome, mg_metrics.h): its decision, or for one
 *  refused before a decision 401 or invalid, and a hit as cached.
 *  `status`: the answer's. */
int mg_request_outcome(const mg_request *req, int status);
/** Serialise the canned errors for this generation (post_config). */
void mg_respond_prepare(apr_pool_t *pconf);
/** An error response is about to be sent: mod_proxy's own failures get
 *  JSON bodies, and every JSON body its Content-Type. */
void mg_respond_error_response(request_rec *r);
void mg_request_register(apr_pool_t *p);
/** Errors whose text never changes, serialised once. */
enum { CANNED_MISSING_KEY, CANNED_INVALID_KEY, CANNED_NO_UPSTREAM,
       CANNED_STORE_DOWN, CANNED_TOO_MANY_LAYERS, CANNED_PROXY_FIRST };
/** Answer with a canned error; returns its status. */
int mg_respond_canned(request_rec *r, int which);
/** Answer `status` with this JSON error body; returns `status`. */
int mg_respond_json(request_rec *r, int status, const char *json);
/** Answer `status` with an OpenAI-style JSON body; returns `status`. */
int mg_respond_error(request_rec *r, int status, const char *message,
                     const char *type, const char *code);

/** Ask the listeners of mg_cached_answer (mod_modelgate.h) whether a
 *  cached answer serves `r`; 1 (req->cached set) when one does. */
int mg_cached_answer(request_rec *r, mg_request *req, const char *why);
/** Does anything listen to mg_cached_answer (the cache plugin loaded)? */
int mg_cache_listening(void);
/** mg_cache_listening(), as post_config found it (mod_modelgate_request.c):
 *  an admission is then recorded so that a cached answer can give it back. */
extern int mg_cache_loaded;

/* mod_modelgate_metrics.c */
/** The metrics' hooks: shared memory, the per-request record, the
 *  modelgate-metrics handler. */
void mg_metrics_register(apr_pool_t *p);
/* mod_modelgate_metrics_store.c */
struct mg_metrics_out;
/** The counter stores' families of a scrape. */
void mg_metrics_write_store(struct mg_metrics_out *o, request_rec *r,
                            const mg_server_conf *sc);
/** The counter store's lines of the server-status page. */
void mg_metrics_status_store(request_rec *r, const mg_server_conf *sc,
                             int flags);
/** ModelGateMetrics On|Off (main server). */
const char *mg_cmd_metrics(cmd_parms *cmd, void *dummy, int on);

/* mod_modelgate_summary.c */
/** The optional function mg_request_summarize (mod_modelgate.h). */
void mg_summary_register(apr_pool_t *p);

/* mod_modelgate_trace.c */
/** Trace context and request ids where ModelGate is on. */
void mg_trace_register(apr_pool_t *p);

/* mod_modelgate_quota.c */
/** The modelgate-quota handler: a caller's limits, read without charge. */
void mg_quota_register(apr_pool_t *p);

/* mod_modelgate_store_shm.c */
extern const mg_store_provider mg_store_shm_provider;

#endif /* MOD_MODELGATE_PRIVATE_H */
