// The out-of-line half of CAllocBench: whether the client requests were compiled in (evaluated
// with the same include path as the header, so the answer is the one the inline wrappers were
// built with), the persona switch for the children, and who serves malloc (and other symbols).
#define _GNU_SOURCE
#include "CAllocBench.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <errno.h>
#include <stddef.h>
#include <sys/personality.h>

int callocbench_client_requests_available(void) {
#ifdef CALLOCBENCH_HAVE_VALGRIND
    return 1;
#else
    return 0;
#endif
}

int callocbench_exec_without_aslr(void) {
    int current = personality(0xffffffff);  /* 0xffffffff: query only */
    if (current == -1) return -errno;
    if (current & ADDR_NO_RANDOMIZE) return current;
    if (personality((unsigned long)current | ADDR_NO_RANDOMIZE) == -1) return -errno;
    return current;
}

void callocbench_restore_persona(int previous) {
    if (previous >= 0) personality((unsigned long)previous);
}

const char *callocbench_malloc_provider(void) {
    void *symbol = dlsym(RTLD_DEFAULT, "malloc");
    Dl_info info;
    if (symbol == NULL || dladdr(symbol, &info) == 0) return NULL;
    return info.dli_fname;
}

const char *callocbench_symbol_provider(const char *name, void **address) {
    void *symbol = dlsym(RTLD_DEFAULT, name);
    Dl_info info;
    *address = symbol;
    if (symbol == NULL || dladdr(symbol, &info) == 0) return NULL;
    return info.dli_fname;
}

/* The CPUs this process may run on, read once (a thread bound since would otherwise narrow
 * them); count < 0 when they cannot be read. */
static cpu_set_t allowed_cpus;
static int allowed_count = -1;
static pthread_once_t allowed_once = PTHREAD_ONCE_INIT;
static void read_allowed_cpus(void) {
    if (sched_getaffinity(0, sizeof allowed_cpus, &allowed_cpus) == 0) allowed_count = CPU_COUNT(&allowed_cpus);
    else allowed_count = -errno;
}

int callocbench_cpu_count(void) {
    pthread_once(&allowed_once, read_allowed_cpus);
    return allowed_count;
}

int callocbench_bind_thread_to_cpu(int index) {
    int count = callocbench_cpu_count();
    if (count <= 0) return count < 0 ? count : -EINVAL;
    int k = index % count, cpu = 0;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (CPU_ISSET(c, &allowed_cpus) && k-- == 0) {
            cpu = c;
            break;
        }
    }
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof one, &one);
    return rc == 0 ? cpu : -rc;
}
