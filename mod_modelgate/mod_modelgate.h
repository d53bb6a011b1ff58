/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate.h -- what other modules (the plugins) may use.
 *
 * Plugins register providers (see mg_store.h); they reach the core only
 * through the optional functions declared here and fail in post_config
 * with a clear message when mod_modelgate is not loaded.
 */
#ifndef MOD_MODELGATE_H
#define MOD_MODELGATE_H

#include <httpd.h>
#include <apr_optional.h>
#include <apr_optional_hooks.h>
#include "mg_store.h"

#define MODELGATE_VERSION "0.1.0"

/** The name of the mutex type admins configure with `Mutex`. */
#define MG_STORE_MUTEX_TYPE "modelgate-store"

/* ---- what the core tells plugins about a request ----------------------- */

/**
 * The JSON body the gate read, as it goes to the model server (the model
 * renamed by an alias or a fallback, a tier's token cap applied).
 * Read-only; it lives as long as the request's pool.
 * @return 1 when the gate read a JSON body of this request (then *body and
 *         *len are set), 0 otherwise (no body, not JSON, not gated)
 */
APR_DECLARE_OPTIONAL_FN(int, mg_request_body,
                        (request_rec *r, const char **body, apr_size_t *len));

/* ---- hooks the core runs for whoever listens ---------------------------- */

#define MG_DECLARE(type) type

/**
 * mg_cached_answer: may a cached answer serve this request?  Run by the
 * core for a request the gate passed, at two points:
 *
 *   - in fixups, once the request is routed, with `why` NULL: a listener
 *     that has an answer sets r->handler to its own handler and returns OK;
 *     then the request is not forwarded, is not counted at its upstream
 *     (in flight, health), and its token reservation is given back.  On a
 *     miss it may add output filters (to store the answer) and returns
 *     DECLINED.
 *   - in the decision, when a limit refused a caller whose tier says
 *     on_limit=cache, with `why` "cache": OK only when it answers (the
 *     request is not forwarded either way; nothing was charged); DECLINED
 *     sends the request on to the tier's next action.
 *   - in the decision, when nothing was admitted because the requested
 *     upstream's breaker is open, with `why` "stale": OK answers instead
 *     of the 503 (with an entry still fresh, or one kept past its TTL for
 *     stale-if-error); DECLINED leaves the 503.
 *
 * The first listener to return OK answers; listeners are registered with
 * APR_OPTIONAL_HOOK(modelgate, mg_cached_answer, fn, pre, succ, order), so
 * a plugin may be loaded before or after mod_modelgate.
 */
APR_DECLARE_EXTERNAL_HOOK(modelgate, MG, int, mg_cached_answer,
                          (request_rec *r, const char *why))

#endif /* MOD_MODELGATE_H */
