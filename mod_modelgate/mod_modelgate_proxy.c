/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mod_modelgate_proxy.c -- forwarding is mod_proxy's job; this file only
 * hands requests over and makes sure each upstream has a worker.
 *
 * A request that mod_proxy sees through a "proxy:" filename, as mod_rewrite's
 * [P] makes, reuses connections only when a worker exists for its URL;
 * otherwise mod_proxy's default worker opens a connection per request.  So
 * ModelGateUpstream defines a worker for its URL, as ProxyPass would.
 *
 * mod_proxy's functions are looked up at run time instead of linked: on
 * Debian, mods-enabled/ loads modules in alphabetical order, so
 * mod_modelgate is loaded before mod_proxy and a link-time dependency would
 * make LoadModule fail with an unresolved symbol instead of a clear message.
 */
#include <dlfcn.h>
#include <apr_strings.h>
#include <http_core.h>
#include <http_request.h>
#include <mod_proxy.h>
#include "mod_modelgate_private.h"

typedef proxy_worker *(*get_worker_fn)(apr_pool_t *, proxy_balancer *,
                                       proxy_server_conf *, const char *);
typedef char *(*define_worker_fn)(apr_pool_t *, proxy_worker **,
                                  proxy_balancer *, proxy_server_conf *,
                                  const char *, int);

typedef char *(*canonenc_fn)(apr_pool_t *, const char *, int, enum enctype,
                             int, int);

/* mod_proxy's path encoder, found when the first worker is defined. */
static canonenc_fn canonenc;

int mg_proxy_available(void)
{
    return ap_find_linked_module("mod_proxy.c") != NULL
           && ap_find_linked_module("mod_proxy_http.c") != NULL;
}

const char *mg_proxy_define_worker(cmd_parms *cmd, const char *url)
{
    module *proxy = ap_find_linked_module("mod_proxy.c");
    proxy_server_conf *pconf;
    get_worker_fn get_worker;
    define_worker_fn define_worker;
    proxy_worker *worker;
    char *err;

    if (!proxy) {
        return "mod_proxy is not loaded: load mod_proxy and mod_proxy_http "
               "before this line (a2enmod proxy_http)";
    }
    canonenc = (canonenc_fn)dlsym(RTLD_DEFAULT, "ap_proxy_canonenc_ex");
    get_worker = (get_worker_fn)dlsym(RTLD_DEFAULT, "ap_proxy_get_worker");
    define_worker = (define_worker_fn)dlsym(RTLD_DEFAULT,
                                            "ap_proxy_define_worker");
    if (!get_worker || !define_worker) {
        return "this mod_proxy does not export ap_proxy_define_worker";
    }
    pconf = ap_get_module_config(cmd->server->module_config, proxy);
    worker = get_worker(cmd->temp_pool, NULL, pconf, url);
    if (worker) {
        /* A ProxyPass or <Proxy> for this URL came first: share it. */
        return NULL;
    }
    err = define_worker(cmd->pool, &worker, NULL, pconf, url, 0);
    if (err) {
        return apr_psprintf(cmd->pool, "mod_proxy refused '%s': %s", url, err);
    }
    return NULL;
}

void mg_proxy_hand_off(request_rec *r, const mg_upstream *up)
{
    /* AllowEncodedSlashes is a server setting (RSRC_CONF), and the one
     * httpd decoded the path by: the per-directory merge does not carry
     * it into a <Location>'s configuration. */
    core_dir_config *d = ap_get_core_module_config(r->server->lookup_defaults);
    const char *path = r->uri;

    if (d->allow_encoded_slashes && !d->decode_encoded_slashes && canonenc) {
        /* AllowEncodedSlashes NoDecode leaves %2F in the decoded path;
         * mod_proxy_http would encode its '%' once more (%252F), so the
         * path is encoded here, keeping %2F, and handed over as encoded,
         * as ProxyPass does with such a path. */
        path = canonenc(r->pool, r->uri, (int)strlen(r->uri), enc_path,
                        PROXY_CANONENC_NOENCODEDSLASHENCODING,
                        PROXYREQ_REVERSE);
        if (!path) {
            path = r->uri;
        }
        else {
            apr_table_setn(r->notes, "proxy-noencode", "1");
        }
    }
    /* Otherwise the decoded path, as mod_rewrite passes it: mod_proxy_http's
     * canon handler encodes it again and appends r->args as the query. */
    {
        /* apr_pstrcat, without its argument list: once per request. */
        apr_size_t ulen = strlen(up->url), plen = strlen(path);
        char *f = apr_palloc(r->pool, 6 + ulen + plen + 1);
        memcpy(f, "proxy:", 6);
        memcpy(f + 6, up->url, ulen);
        memcpy(f + 6 + ulen, path, plen + 1);
        r->filename = f;
    }
    r->handler = "proxy-server";
    r->proxyreq = PROXYREQ_REVERSE;
}

int mg_route_to_model(request_rec *r, const mg_server_conf *sc,
                      mg_request *req, const mg_model *m,
                      const mg_upstream *up)
{
    int rv;

    /* The upstream gets the model under the name it knows it by. */
    if ((!req->info.model || strcmp(req->info.model, m->served_as))
        && (rv = mg_body_set_model_for(r, req, m->served_as)) != OK) {
        return rv;
    }
    req->model = m;
    req->upstream = up;
    apr_table_setn(r->notes, "modelgate-upstream", up->name);
    apr_table_setn(r->notes, "modelgate-model", m->name);
    apr_table_setn(r->err_headers_out, "X-Modelgate-Model", m->name);
    mg_proxy_hand_off(r, up);
    return OK;
}

/* ---- which upstream ---------------------------------------------------- */

const mg_upstream *mg_model_pick(const mg_server_conf *sc, const mg_model *m)
{
    apr_uint32_t n, pos, sum = 0;
    int i;

    if (m->targets->nelts == 1) {
        return APR_ARRAY_IDX(m->targets, 0, mg_model_target).up;
    }
    /* A prime stride spreads each run of total_weight picks over the
     * targets in exact proportion, interleaved rather than in blocks. */
    n = __atomic_fetch_add(&((mg_model *)m)->picks, 1, __ATOMIC_RELAXED);
    pos = (apr_uint32_t)(((apr_uint64_t)n * 7919u) % m->total_weight);
    for (i = 0; i < m->targets->nelts; i++) {
        const mg_model_target *t = &APR_ARRAY_IDX(m->targets, i,
                                                  mg_model_target);
        sum += t->weight;
        if (pos < sum) {
            return t->up;
        }
    }
    return APR_ARRAY_IDX(m->targets, 0, mg_model_target).up;
}

const mg_upstream *mg_route_upstream(request_rec *r, const mg_server_conf *sc,
                                     const mg_dir_conf *dc)
{
    const char *name = dc->route, *v;

    if (dc->versions
        && (v = apr_table_get(r->headers_in, "X-API-Version")) != NULL
        && (v = apr_table_get(dc->versions, v)) != NULL) {
        name = v;
    }
    return name ? mg_upstream_get(sc, name) : NULL;
}

const char *mg_route_unknown_version(request_rec *r, const mg_dir_conf *dc)
{
    const char *v;

    /* Without versions here, no header is looked up. */
    if (!dc->versions) {
        return NULL;
    }
    v = apr_table_get(r->headers_in, "X-API-Version");
    return v && !apr_table_get(dc->versions, v) ? v : NULL;
}
