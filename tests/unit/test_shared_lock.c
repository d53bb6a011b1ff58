/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_shared_lock.c -- the lock of a shared segment (mg_shared_lock.c):
 * held across processes, and taken again when its holder died holding it.
 */
#include "mg_test.h"
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mg_shared_lock.h"

/* A page shared with the children fork() makes, as apr_shm_create's
 * anonymous segment is shared with httpd's children. */
typedef struct {
    pthread_mutex_t lock;
    char pad[MG_SHARED_LOCK_BYTES - sizeof(pthread_mutex_t)];
    volatile int counter;
} segment;

static segment *map_segment(void)
{
    void *p = mmap(NULL, sizeof(segment), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    assert_true(p != MAP_FAILED);
    memset(p, 0, sizeof(segment));
    assert_int_equal(mg_shared_lock_init(&((segment *)p)->lock), APR_SUCCESS);
    return p;
}

static void wait_child(pid_t pid, int expected)
{
    int status;

    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), expected);
}

/* Two processes adding under the lock lose no update. */
static void test_processes_exclude_each_other(void **state)
{
    segment *seg = map_segment();
    int i, recovered = -1;
    pid_t pid;

    (void)state;
    pid = fork();
    assert_true(pid >= 0);
    for (i = 0; i < 20000; i++) {
        if (mg_shared_lock(&seg->lock, &recovered) != APR_SUCCESS
            || recovered) {
            if (pid == 0) {
                _exit(2);
            }
            fail();
        }
        seg->counter = seg->counter + 1;
        mg_shared_unlock(&seg->lock);
    }
    if (pid == 0) {
        _exit(0);
    }
    wait_child(pid, 0);
    assert_int_equal(seg->counter, 40000);
    munmap(seg, sizeof(*seg));
}

/* A holder that dies holding it does not stop the others: the next locker
 * is told, takes it, and later lockers are not told again. */
static void test_a_dead_holder_is_recovered(void **state)
{
    segment *seg = map_segment();
    int recovered = -1;
    pid_t pid;

    (void)state;
    /* A lock that is not robust never comes back: fail, do not hang. */
    alarm(10);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        _exit(mg_shared_lock(&seg->lock, NULL) == APR_SUCCESS ? 0 : 2);
    }
    wait_child(pid, 0);
    assert_int_equal(mg_shared_lock(&seg->lock, &recovered), APR_SUCCESS);
    assert_int_equal(recovered, 1);
    assert_int_equal(mg_shared_unlock(&seg->lock), APR_SUCCESS);
    assert_int_equal(mg_shared_lock(&seg->lock, &recovered), APR_SUCCESS);
    assert_int_equal(recovered, 0);
    assert_int_equal(mg_shared_unlock(&seg->lock), APR_SUCCESS);
    /* and NULL for the caller that has nothing to log */
    assert_int_equal(mg_shared_lock(&seg->lock, NULL), APR_SUCCESS);
    assert_int_equal(mg_shared_unlock(&seg->lock), APR_SUCCESS);
    alarm(0);
    munmap(seg, sizeof(*seg));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_processes_exclude_each_other),
        cmocka_unit_test(test_a_dead_holder_is_recovered),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
