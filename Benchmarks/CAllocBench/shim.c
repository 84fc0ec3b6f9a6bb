// The out-of-line half of CAllocBench: whether the client requests were compiled in (evaluated
// with the same include path as the header, so the answer is the one the inline wrappers were
// built with), the persona switch for the children, and who serves malloc (and other symbols).
#define _GNU_SOURCE
#include "CAllocBench.h"

#include <dlfcn.h>
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
