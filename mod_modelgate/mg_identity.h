/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_identity.h -- the identity provider interface.
 *
 * An identity provider turns the credential a request presented into the
 * caller the gateway limits, announces and logs: an mg_key (mg_keys.h),
 * whatever the credential was -- an API key from the key file, a JWT's
 * claims, ...  The core carries the "key" provider (the key file); plugins
 * register others ("jwt") with
 *
 *     ap_register_provider(p, MG_IDENTITY_PROVIDER_GROUP, "jwt",
 *                          MG_IDENTITY_PROVIDER_VERSION, &provider);
 *
 * and `ModelGateIdentity key jwt` (server configuration) says which are
 * asked, in that order; without it only "key" is.  The core takes the
 * credential from the request (X-API-Key, else Authorization: Bearer) and
 * removes both headers before any provider is asked, so no provider needs
 * to, and no upstream ever sees a credential.
 *
 * A provider answers one of three things:
 *   MG_IDENTITY_NOT_MINE  no credential of its kind (the next is asked;
 *                         when none claims it, 401 invalid_api_key);
 *   MG_IDENTITY_OK        the caller is *who;
 *   MG_IDENTITY_REFUSED   its kind, but not acceptable: the request ends
 *                         with the refusal's status, JSON body and
 *                         WWW-Authenticate challenge.
 *
 * MG_IDENTITY_PROVIDER_VERSION changes whenever this struct's layout or
 * the meaning of a member changes; a plugin built against another version
 * is not found, and the configuration says so.
 */
#ifndef MG_IDENTITY_H
#define MG_IDENTITY_H

#include <httpd.h>
#include <http_config.h>
#include "mg_keys.h"
#include "mg_policy.h"

#define MG_IDENTITY_PROVIDER_GROUP   "modelgate_identity"
#define MG_IDENTITY_PROVIDER_VERSION "1"

typedef enum {
    MG_IDENTITY_NOT_MINE = 0,
    MG_IDENTITY_OK,
    MG_IDENTITY_REFUSED
} mg_identity_result;

/** The credential the core took from the request. */
typedef struct mg_identity_credential {
    const char *value;        /**< not NUL-terminated at `len` */
    apr_size_t len;
    int bearer;               /**< from Authorization: Bearer (else
                                   X-API-Key) */
} mg_identity_credential;

/** Why a provider refused a credential of its kind. */
typedef struct mg_identity_refusal {
    int status;               /**< 401, 403 */
    const char *json;         /**< the error body (mg_error.h's shape) */
    const char *challenge;    /**< WWW-Authenticate, or NULL; never names a
                                   secret */
    const char *decision;     /**< the modelgate-decision note; NULL:
                                   "refused" */
} mg_identity_refusal;

typedef struct mg_identity_provider {
    /** Provider name, as in ModelGateIdentity. */
    const char *name;

    /**
     * The whole configuration is read (check_config, before `apache2 -t`
     * says "Syntax OK"): check what needs the policy (declared tiers).
     * `s` is the main server.  NULL: nothing to check.
     * @return NULL, or a message for the error log: the core names the
     *         ModelGateIdentity that asked for the provider, with its file
     *         and line; a message about a directive of the provider's own
     *         names that directive's file and line too
     */
    const char *(*check)(server_rec *s, const mg_policy *policy,
                         apr_pool_t *ptemp);

    /**
     * Who presented `cred`?  Runs in any thread of any child, once per
     * request that reaches it.  On MG_IDENTITY_OK, *who lives at least as
     * long as r->pool and its id, tenant and tier are declared (a tier
     * the policy does not declare is the provider's to refuse); its
     * id_hash, tenant_hash and tier_hash are mg_table_subject_hash() of
     * those strings.  On MG_IDENTITY_REFUSED, *no is filled.
     */
    mg_identity_result (*identify)(request_rec *r,
                                   const mg_identity_credential *cred,
                                   const mg_policy *policy,
                                   const mg_key **who,
                                   mg_identity_refusal *no);
} mg_identity_provider;

#endif /* MG_IDENTITY_H */
