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
#include "mg_store.h"

#define MODELGATE_VERSION "0.1.0"

/** The name of the mutex type admins configure with `Mutex`. */
#define MG_STORE_MUTEX_TYPE "modelgate-store"

#endif /* MOD_MODELGATE_H */
