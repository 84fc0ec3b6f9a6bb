// The out-of-line half of CAllocBench: whether the client requests were compiled in (evaluated
// with the same include path as the header, so the answer is the one the inline wrappers were
// built with), and the persona switch for the children.
#include "CAllocBench.h"

#include <errno.h>
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
