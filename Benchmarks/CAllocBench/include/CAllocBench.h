/*
 * CAllocBench: valgrind's client requests for the benchmark suite (`bench instructions`).
 *
 *  1. Why C
 *     A client request is a magic instruction sequence that valgrind recognises and a real CPU
 *     executes as a few no-op rotates: it exists only as macros in <valgrind/valgrind.h> and
 *     <valgrind/callgrind.h>, which Swift cannot import. These `static inline` wrappers inline
 *     into the Swift caller, so switching collection on or off adds a handful of instructions at
 *     the edge of the counted region and none inside it.
 *  2. Without valgrind's headers
 *     The package must build on a machine without valgrind. When the headers are missing the
 *     wrappers do nothing, `callocbench_running_on_valgrind` returns 0 and
 *     `callocbench_client_requests_available` returns 0, which is how `bench instructions` knows
 *     to refuse (install the Debian package `valgrind` and rebuild).
 *  3. The requests used
 *     START_INSTRUMENTATION: the parent runs callgrind with --instr-atstart=no, so process
 *     start-up (the Swift runtime, Foundation, the JSON decoding) runs uninstrumented and fast;
 *     the child starts instrumenting before its warm-up. TOGGLE_COLLECT: with --collect-atstart=no,
 *     events are only counted between two toggles, i.e. inside the one counted repetition.
 *
 *  4. Persona
 *     One other thing Swift's Glibc module does not offer: personality(2), to launch the
 *     counted children without address-space randomisation (see below).
 *  5. Who serves malloc
 *     And dladdr(3), a GNU extension the module leaves out: which shared object defines the
 *     malloc a child calls, so a `preload:` peer's cell can prove the library really serves it,
 *     and which defines an allocator's release entry point (malloc_trim, mallctl, ...), so that a
 *     `preload:` peer is asked with its own call and never with glibc's.
 *  6. The workloads' primitives
 *     The black hole that keeps an object observable in a timed loop, the acquire/release loads
 *     and stores of the SPSC rings' indices, and the spin-wait hint. They are the bench's own
 *     (the allocator's CSlab has its own copies, which the bench does not import): `bench ab`
 *     builds today's bench against an older commit's allocator, so the bench must not depend on
 *     what the allocator's private module happens to offer. `static inline`, so each compiles
 *     to the same instruction (or none) in the Swift loop as a hand-written one would.
 *
 * All symbols are prefixed `callocbench_`. Nothing here belongs to the allocator (that is CSlab).
 */
#ifndef CALLOCBENCH_H
#define CALLOCBENCH_H

#include <stdatomic.h>
#include <stdint.h>

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define CALLOCBENCH_HAVE_VALGRIND 1
#endif
#endif

/* 1 when the bench was built with valgrind's headers (the requests below are real), else 0. */
int callocbench_client_requests_available(void);

/* Address-space randomisation for the programs this process starts (the persona flag
 * ADDR_NO_RANDOMIZE, which exec inherits). The kernel's random placement of valgrind's own stack
 * shifts where valgrind puts the client's mappings, which moved a simulated cache miss or two
 * between runs; the parent switches randomisation off around each child it launches.
 * `..._without_aslr` returns the persona to restore, or -errno when the kernel refuses (some
 * container seccomp profiles do); `..._restore` takes that value and ignores a negative one. */
int callocbench_exec_without_aslr(void);
void callocbench_restore_persona(int previous);

/* The file name (as the dynamic linker recorded it) of the shared object defining the `malloc`
 * this process calls: the first definition in the global search order, where LD_PRELOAD puts its
 * libraries. NULL when it cannot be found. The string belongs to the dynamic linker. */
const char *callocbench_malloc_provider(void);

/* The file name of the shared object that defines `name` first in the global search order (as
 * dlsym(RTLD_DEFAULT) finds it), and the address in `address`. NULL (and *address NULL) when no
 * loaded object defines it. The string belongs to the dynamic linker. */
const char *callocbench_symbol_provider(const char *name, void **address);

/* Binds the calling thread to one CPU: the (index mod n)-th of the n CPUs this process may run on
 * (its affinity mask at the first call, so taskset and cgroup limits are kept). Returns that CPU,
 * or -errno when the mask cannot be read or set (the thread then runs where the scheduler puts it). */
int callocbench_bind_thread_to_cpu(int index);
/* How many CPUs this process may run on (its affinity mask at the first call), or -errno. */
int callocbench_cpu_count(void);

#ifdef CALLOCBENCH_HAVE_VALGRIND

/* Non-zero under any valgrind tool (the number of nested valgrinds), 0 on a real CPU. */
static inline int callocbench_running_on_valgrind(void) { return (int)RUNNING_ON_VALGRIND; }
/* Callgrind: flip the collection state (counting on <-> off) of the calling thread. */
static inline void callocbench_toggle_collect(void) { CALLGRIND_TOGGLE_COLLECT; }
/* Callgrind: start instrumenting (a no-op when instrumentation is already on). */
static inline void callocbench_start_instrumentation(void) { CALLGRIND_START_INSTRUMENTATION; }
/* Callgrind: stop instrumenting (what runs afterwards is neither simulated nor counted). */
static inline void callocbench_stop_instrumentation(void) { CALLGRIND_STOP_INSTRUMENTATION; }

#else

static inline int callocbench_running_on_valgrind(void) { return 0; }
static inline void callocbench_toggle_collect(void) {}
static inline void callocbench_start_instrumentation(void) {}
static inline void callocbench_stop_instrumentation(void) {}

#endif

/* 6. The workloads' primitives. */

/* An optimisation barrier: the compiler must assume `p` is read and escapes, so it cannot delete
 * an allocation it sees freed, or the stores of `touch` into an object it sees unused. */
static inline void callocbench_black_hole(const void *p) { __asm__ __volatile__("" : : "r"(p) : "memory"); }

/* Loads and stores of a plain 64-bit word with the named order (an `_Atomic uint64_t *`
 * parameter would import into Swift as OpaquePointer). On x86-64 each is one `mov`; the order
 * constrains the compiler. */
static inline uint64_t callocbench_load_relaxed(const uint64_t *p) {
    return atomic_load_explicit((_Atomic uint64_t *)p, memory_order_relaxed);
}
static inline uint64_t callocbench_load_acquire(const uint64_t *p) {
    return atomic_load_explicit((_Atomic uint64_t *)p, memory_order_acquire);
}
static inline void callocbench_store_release(uint64_t *p, uint64_t v) {
    atomic_store_explicit((_Atomic uint64_t *)p, v, memory_order_release);
}

/* Spin-wait hint (x86 `pause`): a waiting thread gives its core's resources to the sibling. */
static inline void callocbench_cpu_relax(void) { __asm__ __volatile__("pause" ::: "memory"); }

#endif /* CALLOCBENCH_H */
