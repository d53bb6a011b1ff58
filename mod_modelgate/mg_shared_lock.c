/**
 * @file mg_shared_lock.c
 * @brief A robust process-shared mutex without priority inheritance (see
 *        mg_shared_lock.h for why not httpd's `Mutex`).
 */
#include "mg_shared_lock.h"

#include <errno.h>

typedef char fits_its_line[sizeof(pthread_mutex_t) <= MG_SHARED_LOCK_BYTES
                           ? 1 : -1];

apr_status_t mg_shared_lock_init(pthread_mutex_t *lock)
{
    pthread_mutexattr_t attr;
    int rc;

    if ((rc = pthread_mutexattr_init(&attr)) == 0) {
        if ((rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED)) == 0
            && (rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST)) == 0) {
            rc = pthread_mutex_init(lock, &attr);
        }
        pthread_mutexattr_destroy(&attr);
    }
    return rc ? APR_FROM_OS_ERROR(rc) : APR_SUCCESS;
}

apr_status_t mg_shared_lock(pthread_mutex_t *lock, int *recovered)
{
    int rc = pthread_mutex_lock(lock);

    if (recovered) {
        *recovered = 0;
    }
    if (rc == EOWNERDEAD) {
        pthread_mutex_consistent(lock);
        if (recovered) {
            *recovered = 1;
        }
        return APR_SUCCESS;
    }
    return rc ? APR_FROM_OS_ERROR(rc) : APR_SUCCESS;
}

apr_status_t mg_shared_unlock(pthread_mutex_t *lock)
{
    int rc = pthread_mutex_unlock(lock);

    return rc ? APR_FROM_OS_ERROR(rc) : APR_SUCCESS;
}
