/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_cache_body_tree.h -- the cache's former, jansson-based canonical
 * writer, the oracle of test_cache_canon.c (mg_cache_body_tree.c).
 */
#ifndef MG_CACHE_BODY_TREE_H
#define MG_CACHE_BODY_TREE_H

#include <jansson.h>
#include "mg_cache_key.h"

/**
 * What mg_cache_body_read did with a jansson tree: the body parsed with
 * JSON_REJECT_DUPLICATES, then written from the tree.  Same arguments and
 * results as mg_cache_body_read.
 */
mg_cache_body_status mg_test_cache_body_tree(apr_pool_t *p,
                                             const char *buf, apr_size_t len,
                                             const char *const *ignore,
                                             mg_cache_body *out);

/**
 * The same from a parsed tree, which is only read (the core's was shared).
 * @param len_hint the first buffer's size, or 0
 */
mg_cache_body_status mg_test_cache_body_of(apr_pool_t *p, json_t *root,
                                           apr_size_t len_hint,
                                           const char *const *ignore,
                                           mg_cache_body *out);

#endif /* MG_CACHE_BODY_TREE_H */
