/**
 * @file mg_shared_lock.h
 * @brief The lock of a shared memory segment: a robust, process-shared
 *        pthread mutex without priority inheritance.
 *
 * Why not httpd's `Mutex`: on Linux its default is APR's pthread mutex,
 * made robust *and* priority-inheriting.  glibc runs a PI mutex through
 * FUTEX_LOCK_PI/FUTEX_UNLOCK_PI: every contended acquisition enters the
 * kernel and the unlock hands the lock to the first sleeping waiter, so
 * under load the threads that want a hold of a few hundred instructions
 * queue behind one that waits for a core (a lock convoy: the machine
 * idles while requests wait; bench/README.md, "The store's lock").  A
 * plain robust futex stays in user space when uncontended and lets a
 * running thread take the lock.  Robustness is kept: when a holder dies,
 * the next locker is told (`recovered`) and goes on.
 *
 * Lives in the segment it guards, so every process of a generation that
 * inherits the mapping shares it; nothing to reopen in child_init.
 */
#ifndef MG_SHARED_LOCK_H
#define MG_SHARED_LOCK_H

#include <pthread.h>
#include <apr_errno.h>

/** Bytes a lock takes at the start of a segment: a cache line of its own. */
#define MG_SHARED_LOCK_BYTES 64

/** Make the lock at `lock` (in memory shared by the processes). */
apr_status_t mg_shared_lock_init(pthread_mutex_t *lock);

/**
 * Take the lock.  `*recovered` (may be NULL) becomes 1 when its holder died
 * holding it: the lock is made consistent and taken, and what it guards may
 * hold that holder's half-made update, for the caller to log.
 */
apr_status_t mg_shared_lock(pthread_mutex_t *lock, int *recovered);

/** Release it. */
apr_status_t mg_shared_unlock(pthread_mutex_t *lock);

#endif /* MG_SHARED_LOCK_H */
