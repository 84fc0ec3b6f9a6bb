/*
 * CSlab: the few things Swift cannot say well, kept tiny and in one place.
 *
 *  1. <stdatomic.h> wrappers. Every function names its memory order, so a reader of the Swift
 *     code sees the ordering at the call site. They are `static inline`: in release builds they
 *     inline into the Swift loop (a `lock cmpxchg`, not a call). Pointers are plain (`uint64_t *`)
 *     and cast to `_Atomic` inside, because an `_Atomic T *` parameter imports as OpaquePointer.
 *  2. Restartable sequences (rseq). glibc >= 2.35 registers an rseq area for every thread; we
 *     never register our own. The per-CPU magazine pop/push are rseq critical sections whose
 *     only commit is one store of the CPU's state word: a preemption, migration or signal
 *     before that store restarts the sequence, so a CPU's state is only ever changed by code
 *     running on that CPU (or by a drainer that has fenced that CPU with membarrier).
 *  3. Thread-locals (`_Thread_local`), which Swift does not have.
 *  4. kmalloc's and kfree's fast paths, over a table in a C global: Swift guards each use of a
 *     global it initialises at run time with a once-check (a call), and these run on every call.
 *  5. A misuse report's call trace (backtrace(3), symbols from each image's symbol table), and the
 *     sanitizers' hooks (ThreadSanitizer's edges, AddressSanitizer's poisoning), which only the C
 *     target knows are built in.
 *
 * Routines here are subtle: read the protocol in Sources/Slab/CPUSlot.swift before changing them.
 * All symbols are prefixed `cslab_`.
 */
#ifndef CSLAB_H
#define CSLAB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The rseq sections below are x86_64 assembly. Elsewhere, or when a build passes CSLAB_PORTABLE
 * (`swift build -Xcc -DCSLAB_PORTABLE`, which CI uses to test this branch on x86_64), they are
 * compiled as functions that always answer "take the slow path", and every cache runs its per-CPU
 * layer in the fallback mode (slots owned by CAS; Sources/Slab/CPUSlot.swift). */
#if defined(__x86_64__) && !defined(CSLAB_PORTABLE)
#define CSLAB_HAVE_RSEQ 1
#else
#define CSLAB_HAVE_RSEQ 0
#endif
/* The same, as a function for Swift (an imported constant would make the other branch dead code
 * that the compiler warns about). */
static inline bool cslab_have_rseq_sections(void) { return CSLAB_HAVE_RSEQ; }

/* The pops, pushes and their helpers are inlined even where the caller marks them cold: the
 * typed free (FastPath.free) marks its rseq branch likely, and without this the
 * fallback mode's slot push became an out-of-line call (80 -> 111 instructions a pair under
 * callgrind). */
#define CSLAB_ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---------------------------------------------------------------------------------------------
 * 1. Atomics on 64-bit words.
 * ------------------------------------------------------------------------------------------- */

static inline uint64_t cslab_load_relaxed(const uint64_t *p) {
    return atomic_load_explicit((_Atomic uint64_t *)p, memory_order_relaxed);
}
static inline uint64_t cslab_load_acquire(const uint64_t *p) {
    return atomic_load_explicit((_Atomic uint64_t *)p, memory_order_acquire);
}
static inline void cslab_store_relaxed(uint64_t *p, uint64_t v) {
    atomic_store_explicit((_Atomic uint64_t *)p, v, memory_order_relaxed);
}
static inline void cslab_store_release(uint64_t *p, uint64_t v) {
    atomic_store_explicit((_Atomic uint64_t *)p, v, memory_order_release);
}
static inline uint64_t cslab_fetch_add_relaxed(uint64_t *p, uint64_t v) {
    return atomic_fetch_add_explicit((_Atomic uint64_t *)p, v, memory_order_relaxed);
}
static inline uint64_t cslab_fetch_sub_relaxed(uint64_t *p, uint64_t v) {
    return atomic_fetch_sub_explicit((_Atomic uint64_t *)p, v, memory_order_relaxed);
}
static inline uint64_t cslab_exchange_acq_rel(uint64_t *p, uint64_t v) {
    return atomic_exchange_explicit((_Atomic uint64_t *)p, v, memory_order_acq_rel);
}
/* Strong CAS. On failure *expected receives the current value. */
static inline bool cslab_cas_acq_rel(uint64_t *p, uint64_t *expected, uint64_t desired) {
    return atomic_compare_exchange_strong_explicit((_Atomic uint64_t *)p, expected, desired,
                                                   memory_order_acq_rel, memory_order_acquire);
}
static inline bool cslab_cas_acquire(uint64_t *p, uint64_t *expected, uint64_t desired) {
    return atomic_compare_exchange_strong_explicit((_Atomic uint64_t *)p, expected, desired,
                                                   memory_order_acquire, memory_order_relaxed);
}

/* A relaxed increment that is *not* atomic: a plain load and store, for counters with a single
 * writer (one CPU's statistics, updated by the thread that owns that CPU's state). */
static inline void cslab_bump_single_writer(uint64_t *p, uint64_t v) {
    cslab_store_relaxed(p, cslab_load_relaxed(p) + v);
}

/* Spin-wait hint. */
static inline void cslab_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("pause" ::: "memory");
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

/* ---------------------------------------------------------------------------------------------
 * 2. rseq per-CPU primitives.
 *
 * Per-CPU slot layout (stride 128 bytes: two cache lines, so the adjacent-line prefetcher does not
 * couple neighbouring CPUs). Only the first line is touched on the fast path.
 *    +0   state   the CPU's magazines, one word (Sources/Slab/CPUSlot.swift):
 *                 bits  0..7   n: rounds in the loaded magazine
 *                 bits  8..31  the loaded magazine's top: its handle (offset / 4 into the
 *                              magazine region) + n, so round[n - 1] is at 4 * top + 60
 *                 bits 32..39  rounds in the previous magazine
 *                 bits 40..63  previous magazine handle
 *                 A pop subtracts CSLAB_STATE_STEP (n - 1 and top - 1 at once), a push adds it:
 *                 n stays within 0...capacity <= 255 and top below 2^24 (a magazine lies inside
 *                 the region), so neither field carries into the next. The sections find the
 *                 round with two instructions (32-bit move, shift) and test n as the low byte.
 *    +8   owner   0 when the slot is free; non-zero while a drainer or a fallback-mode thread owns
 *                 it. rseq sections only read it and take the slow path when it is set.
 *    +16  allocHits   fallback mode only: allocations served from the slot's magazines
 *    +24  freeHits    frees onto the loaded magazine (rseq: counted inside the section,
 *                     before the commit; fallback: by the slot's owner)
 *    +32  busy    fallback mode, a thread's own slot only: 1 while its owner runs an inline pop or
 *                 push on it (section 3)
 *    +40  capacity    the cache's rounds per magazine (M <= 255), written once when the slot is
 *                 made: the push compares n with its low byte here, in the line it reads anyway,
 *                 so that no register of the caller's loop holds it
 * Magazine layout: a 64-byte header, then the rounds: round[i] at +64 + 4*i. A round is 32 bits:
 * the object's offset from its cache's range base (the round base) divided by 8, which every
 * object start is a multiple of, in a range of at most 32 GiB; a range's first arena is never
 * carved (PageSource.swift), so no object lies at offset 0 and round 0 names no object. Half the bytes of a pointer: the magazines that hold a
 * million freed 24-byte objects take 4 MiB instead of 8.
 * The assembly below addresses these fields with the constants defined here; the static
 * assertions tie the constants to the C structs, and Swift reads the same constants.
 * ------------------------------------------------------------------------------------------- */

#define CSLAB_CPU_STRIDE 128
#define CSLAB_CPU_STRIDE_SHIFT 7
#define CSLAB_SLOT_OWNER 8
#define CSLAB_SLOT_FREE_HITS 24
#define CSLAB_SLOT_BUSY 32
#define CSLAB_SLOT_CAPACITY 40

#define CSLAB_ROUNDS_BITS 8                /* each magazine's count: capacity <= 255 */
#define CSLAB_HANDLE_BITS 24               /* a magazine handle: a 64 MiB region in 4-byte units */
#define CSLAB_HANDLE_UNIT 4                /* bytes per handle step: one round */
#define CSLAB_ROUND_SHIFT 3                /* a round is (object - round base) >> 3 */
#define CSLAB_ROUND_RANGE_BITS 35          /* so a cache's range may span 2^35 bytes (32 GiB) */
#define CSLAB_STATE_TOP_SHIFT 8
#define CSLAB_STATE_PREVIOUS_ROUNDS_SHIFT 32
#define CSLAB_STATE_PREVIOUS_SHIFT 40
#define CSLAB_STATE_STEP 0x101             /* one round: n + 1 and top + 1 */

#define CSLAB_MAGAZINE_HEADER 64
#define CSLAB_MAGAZINE_LAST_ROUND 60       /* round[n - 1] is 4 * n + 60 bytes into its magazine */

typedef struct cslab_cpu_slot {
    uint64_t state;
    uint64_t owner;
    uint64_t alloc_hits;
    uint64_t free_hits;
    uint64_t busy;
    uint64_t capacity;
    uint64_t pad[10];
} cslab_cpu_slot;

_Static_assert(sizeof(cslab_cpu_slot) == CSLAB_CPU_STRIDE && (1 << CSLAB_CPU_STRIDE_SHIFT) == CSLAB_CPU_STRIDE,
               "a slot is one stride");
_Static_assert(offsetof(cslab_cpu_slot, owner) == CSLAB_SLOT_OWNER, "the sections test the owner here");
_Static_assert(offsetof(cslab_cpu_slot, free_hits) == CSLAB_SLOT_FREE_HITS, "the push counts frees here");
_Static_assert(offsetof(cslab_cpu_slot, busy) == CSLAB_SLOT_BUSY, "Swift reads the busy flag here");
_Static_assert(offsetof(cslab_cpu_slot, capacity) == CSLAB_SLOT_CAPACITY, "the push compares n with M here");
_Static_assert(CSLAB_ROUNDS_BITS == 8, "the sections test the loaded count as a byte register (8 bits)");
_Static_assert(CSLAB_STATE_TOP_SHIFT == CSLAB_ROUNDS_BITS
               && CSLAB_STATE_TOP_SHIFT + CSLAB_HANDLE_BITS == 32
               && CSLAB_STATE_PREVIOUS_ROUNDS_SHIFT == 32
               && CSLAB_STATE_PREVIOUS_SHIFT == CSLAB_STATE_PREVIOUS_ROUNDS_SHIFT + CSLAB_ROUNDS_BITS
               && CSLAB_STATE_PREVIOUS_SHIFT + CSLAB_HANDLE_BITS == 64,
               "the four fields fill the state word exactly; n and top fill its low 32 bits");
_Static_assert(CSLAB_STATE_STEP == (1 | (1 << CSLAB_STATE_TOP_SHIFT)), "a step is one round in n and in top");
_Static_assert(CSLAB_MAGAZINE_LAST_ROUND == CSLAB_MAGAZINE_HEADER - CSLAB_HANDLE_UNIT,
               "round[n - 1] = header + 4 * (n - 1)");
_Static_assert(CSLAB_ROUND_RANGE_BITS == 32 + CSLAB_ROUND_SHIFT && CSLAB_ROUND_SHIFT == 3,
               "a round's 32 bits span the range; the pop's leaq scales a round by 8");

/* A round from an object and back (the round base is the cache's range base, FastPath.rangeBase). */
CSLAB_ALWAYS_INLINE uint32_t cslab_round_of(const void *obj, uint64_t base) {
    return (uint32_t)(((uint64_t)(uintptr_t)obj - base) >> CSLAB_ROUND_SHIFT);
}
CSLAB_ALWAYS_INLINE void *cslab_object_of(uint32_t round, uint64_t base) {
    void *obj = (void *)(uintptr_t)(base + ((uint64_t)round << CSLAB_ROUND_SHIFT));
    /* Never NULL: the base is a range's non-zero start and a round adds less than 32 GiB. Saying
     * so lets a caller's `if let` on a pop's result fold away. */
    if (obj == NULL) __builtin_unreachable();
    return obj;
}

/* glibc's rseq area must hold the fields of the original rseq ABI that the sections use:
 * cpu_id_start (+0), cpu_id (+4), rseq_cs (+8) and flags (+16), 20 bytes. glibc publishes the
 * registered size in __rseq_size (0 when it registered nothing). */
#define CSLAB_RSEQ_MIN_SIZE 20
#define CSLAB_RSEQ_SIG 0x53053053

/* Offset of glibc's rseq area from the thread pointer, and its size (0: not registered). */
int64_t cslab_rseq_offset(void);
uint32_t cslab_rseq_size(void);

#if CSLAB_HAVE_RSEQ
static inline uint64_t cslab_thread_pointer(void) {
    uint64_t tp;
    __asm__("movq %%fs:0, %0" : "=r"(tp));
    return tp;
}
#endif

/* Writes CPU 0 into this thread's (unregistered) rseq area, so that the rseq sections run as if
 * on CPU 0. Only for counting instructions under valgrind, which has no rseq: see
 * SLAB_CPU_LAYER=rseq-simulated in Sources/Slab/CPUSlot.swift. */
void cslab_rseq_simulate_cpu0(int64_t rseq_off);

/* The current CPU as the kernel last wrote it into this thread's rseq area. Only meaningful when
 * rseq is registered; otherwise reads 0xFFFFFFFF (uninitialised) or 0xFFFFFFFE (failed). */
static inline uint32_t cslab_rseq_cpu_id(int64_t rseq_off) {
#if CSLAB_HAVE_RSEQ
    volatile uint32_t *cpu = (volatile uint32_t *)(cslab_thread_pointer() + (uint64_t)rseq_off + 4);
    return *cpu;
#else
    (void)rseq_off;
    return 0xFFFFFFFFu;
#endif
}

#if CSLAB_HAVE_RSEQ

/*
 * The pieces every sequence shares (the pattern of the kernel's selftests, rseq-x86.h):
 *   BEGIN   emits the sequence's descriptor (label 3: version, flags, start = label 1,
 *           length up to label 2, abort handler = label 4) into the __rseq_cs section, and
 *           points this thread's rseq area at it (rseq->rseq_cs, at offset 8) before label 1.
 *   END     marks the end of the sequence (label 2, just after the commit store) and emits the
 *           abort handler out of line: the 4-byte signature the kernel checks right before the
 *           handler's address, then a jump to the C label `abort` (each caller retries).
 *   LOAD_SLOT  rax = this CPU's slot (cpu_id read inside the sequence, so a migration restarts
 *           it), slow path if someone owns the slot, rcx = state (cl = loaded rounds).
 * Operands every user provides: [rseq] (glibc's __rseq_offset), and for LOAD_SLOT [cpus].
 */
#define CSLAB_STR_(x) #x
#define CSLAB_STR(x) CSLAB_STR_(x)
#define CSLAB_RSEQ_BEGIN                                                                         \
    ".pushsection __rseq_cs, \"aw\"\n\t"                                                          \
    ".balign 32\n\t"                                                                              \
    "3:\n\t"                                                                                      \
    ".long 0x0, 0x0\n\t"                                                                          \
    ".quad 1f, (2f - 1f), 4f\n\t"                                                                 \
    ".popsection\n\t"                                                                             \
    "leaq 3b(%%rip), %%rax\n\t"                                                                   \
    "movq %%rax, %%fs:8(%[rseq])\n\t"                                                             \
    "1:\n\t"
#define CSLAB_RSEQ_END                                                                           \
    "2:\n\t"                                                                                      \
    ".pushsection __rseq_failure, \"ax\"\n\t"                                                     \
    ".byte 0x0f, 0xb9, 0x3d\n\t"                                                                  \
    ".long " CSLAB_STR(CSLAB_RSEQ_SIG) "\n\t"                                                     \
    "4:\n\t"                                                                                      \
    "jmp %l[abort]\n\t"                                                                           \
    ".popsection\n\t"
#define CSLAB_RSEQ_LOAD_SLOT                                                                     \
    "movl %%fs:4(%[rseq]), %%eax\n\t"                                                             \
    "shlq $" CSLAB_STR(CSLAB_CPU_STRIDE_SHIFT) ", %%rax\n\t"                                      \
    "addq %[cpus], %%rax\n\t"                                                                     \
    "cmpq $0, " CSLAB_STR(CSLAB_SLOT_OWNER) "(%%rax)\n\t"                                         \
    "jne %l[slow]\n\t"                                                                            \
    "movq (%%rax), %%rcx\n\t"

/*
 * Pop one round from this CPU's loaded magazine. Returns NULL when the loaded magazine is empty or
 * the slot is owned (the caller then takes the slow path). Restarted by the kernel on preemption,
 * migration or signal delivery before the commit (the single store of the decremented state).
 */
CSLAB_ALWAYS_INLINE void *cslab_rseq_magazine_pop(int64_t rseq_off, void *cpus, void *magazines, uint64_t base) {
    void *obj;
retry:
    /* The round comes out in a register (asm goto with an output, valid on the fall-through
     * path only), not through memory: a store and reload would add a store-forwarding delay.
     * No "memory" clobber: the sequence only reads and writes this CPU's slot and magazine,
     * which no code of this thread touches between asm statements (asm goto is volatile, so it
     * is never reordered with the push or the ladders' CAS, which do clobber memory). Leaving
     * it out lets the caller keep the cache's fields in registers across the pop.
     * Fast-path allocations are not counted here (see SlabInfo.swift: they are derived from
     * the free count and the live objects, which saves a read-modify-write per allocation). */
    __asm__ goto(
        CSLAB_RSEQ_BEGIN
        CSLAB_RSEQ_LOAD_SLOT
        "testb %%cl, %%cl\n\t"               /* n == 0: empty */
        "jz %l[slow]\n\t"
        "movl %%ecx, %k[obj]\n\t"             /* the low 32 bits: top << 8 | n */
        "shrl $" CSLAB_STR(CSLAB_STATE_TOP_SHIFT) ", %k[obj]\n\t"  /* top = handle + n */
        "movl " CSLAB_STR(CSLAB_MAGAZINE_LAST_ROUND) "(%[mags],%[obj],4), %k[obj]\n\t"  /* round[n - 1] */
        "leaq (%[base],%[obj],8), %[obj]\n\t"  /* the object: base + (round << 3) */
        "subq $" CSLAB_STR(CSLAB_STATE_STEP) ", %%rcx\n\t"
        "movq %%rcx, (%%rax)\n\t"
        CSLAB_RSEQ_END
        : [obj] "=&r"(obj)
        : [rseq] "r"(rseq_off), [cpus] "r"(cpus), [mags] "r"(magazines), [base] "r"(base)
        : "rax", "rcx", "cc"
        : abort, slow);
    /* base + (round << 3) is never NULL (cslab_object_of): without this the caller tests the
     * object it just got for NULL, two instructions a pop. */
    if (obj == NULL) __builtin_unreachable();
    return obj;
abort:
    goto retry;
slow:
    return NULL;
}

/* The push's double-free check: the round against round[n - 1], the top round (r8 = top). A build
 * with -Xcc -DCSLAB_WITHOUT_DOUBLE_FREE_CHECK leaves it out: never a real build, only the other
 * side of the A/B that measures what the check costs (README, "Misuse detection"). */
#ifdef CSLAB_WITHOUT_DOUBLE_FREE_CHECK
#define CSLAB_PUSH_DOUBLE_FREE_CHECK
#else
#define CSLAB_PUSH_DOUBLE_FREE_CHECK                                                             \
    "cmpl %k[round], " CSLAB_STR(CSLAB_MAGAZINE_LAST_ROUND) "(%[mags],%%r8,4)\n\t"              \
    "je %l[slow]\n\t"                     /* obj is round[n - 1]: freed twice (the slow path says) */
#endif

/*
 * Push one round onto this CPU's loaded magazine. Returns false when it is full (the slot's
 * `capacity` rounds), the slot is owned, or `obj` is already the top round (round[n - 1], in the cache line
 * the push writes anyway: a free of an object just freed on this CPU, which the slow path confirms
 * and reports as a double free; with n = 0 the word compared is the header's zero `top_guard`).
 * The round is written before the commit: if the sequence is restarted, the slot beyond the count
 * it wrote is simply not part of the magazine.
 */
CSLAB_ALWAYS_INLINE bool cslab_rseq_magazine_push_round(int64_t rseq_off, void *cpus, void *magazines,
                                                         uint32_t round) {
retry:
    __asm__ goto(
        CSLAB_RSEQ_BEGIN
        CSLAB_RSEQ_LOAD_SLOT
        "cmpb " CSLAB_STR(CSLAB_SLOT_CAPACITY) "(%%rax), %%cl\n\t"  /* n >= M (<= 255, a byte): full */
        "jae %l[slow]\n\t"
        "movl %%ecx, %%r8d\n\t"               /* the low 32 bits: top << 8 | n */
        "shrl $" CSLAB_STR(CSLAB_STATE_TOP_SHIFT) ", %%r8d\n\t"  /* top: round[n] is at 4 * top + 64 */
        CSLAB_PUSH_DOUBLE_FREE_CHECK
        "movl %k[round], " CSLAB_STR(CSLAB_MAGAZINE_HEADER) "(%[mags],%%r8,4)\n\t"
        "incq " CSLAB_STR(CSLAB_SLOT_FREE_HITS) "(%%rax)\n\t"
        "addq $" CSLAB_STR(CSLAB_STATE_STEP) ", %%rcx\n\t"
        "movq %%rcx, (%%rax)\n\t"
        CSLAB_RSEQ_END
        :
        : [rseq] "r"(rseq_off), [cpus] "r"(cpus), [mags] "r"(magazines), [round] "r"(round)
        : "rax", "rcx", "r8", "memory", "cc"
        : abort, slow);
    return true;
abort:
    goto retry;
slow:
    return false;
}

/* The push of an object: its round from the cache's round base (the typed fast path, FastPath). */
CSLAB_ALWAYS_INLINE bool cslab_rseq_magazine_push(int64_t rseq_off, void *cpus, void *magazines,
                                                   void *obj, uint64_t base) {
    return cslab_rseq_magazine_push_round(rseq_off, cpus, magazines, cslab_round_of(obj, base));
}

/*
 * Compare-and-store on one CPU's state word, valid only while running on that CPU: succeeds if
 * the thread is on `cpu`, the slot is not owned and the state still equals `expected`; then it
 * stores `desired` (the commit). Fails otherwise (the caller re-reads and retries its ladder).
 * This is how the slow path swaps magazines or installs one from the depot with a single store.
 */
static inline bool cslab_rseq_cpu_cas(int64_t rseq_off, void *cpus, uint32_t cpu,
                                      uint64_t expected, uint64_t desired) {
    uint64_t *slot = (uint64_t *)((char *)cpus + ((uint64_t)cpu << CSLAB_CPU_STRIDE_SHIFT));
retry:
    __asm__ goto(
        CSLAB_RSEQ_BEGIN
        "cmpl %%fs:4(%[rseq]), %[cpu]\n\t"
        "jne %l[fail]\n\t"
        "cmpq $0, " CSLAB_STR(CSLAB_SLOT_OWNER) "(%[slot])\n\t"
        "jne %l[fail]\n\t"
        "cmpq %[exp], (%[slot])\n\t"
        "jne %l[fail]\n\t"
        "movq %[des], (%[slot])\n\t"
        CSLAB_RSEQ_END
        :
        : [rseq] "r"(rseq_off), [slot] "r"(slot), [cpu] "r"(cpu), [exp] "r"(expected),
          [des] "r"(desired)
        : "rax", "memory", "cc"
        : abort, fail);
    return true;
abort:
    goto retry;
fail:
    return false;
}

#else /* !CSLAB_HAVE_RSEQ: no sections; every caller takes its slow path (never called in
       * practice: a cache whose platform has no rseq runs the fallback mode). */
CSLAB_ALWAYS_INLINE void *cslab_rseq_magazine_pop(int64_t rseq_off, void *cpus, void *magazines, uint64_t base) {
    (void)rseq_off; (void)cpus; (void)magazines; (void)base;
    return NULL;
}
CSLAB_ALWAYS_INLINE bool cslab_rseq_magazine_push_round(int64_t rseq_off, void *cpus, void *magazines,
                                                         uint32_t round) {
    (void)rseq_off; (void)cpus; (void)magazines; (void)round;
    return false;
}
CSLAB_ALWAYS_INLINE bool cslab_rseq_magazine_push(int64_t rseq_off, void *cpus, void *magazines,
                                                   void *obj, uint64_t base) {
    (void)rseq_off; (void)cpus; (void)magazines; (void)obj; (void)base;
    return false;
}
static inline bool cslab_rseq_cpu_cas(int64_t rseq_off, void *cpus, uint32_t cpu,
                                      uint64_t expected, uint64_t desired) {
    (void)rseq_off; (void)cpus; (void)cpu; (void)expected; (void)desired;
    return false;
}
#endif /* CSLAB_HAVE_RSEQ */

/* Happens-before edges ThreadSanitizer cannot infer from rseq commits and membarrier fences
 * (no-ops unless the package is built with --sanitize=thread). */
void cslab_tsan_release(void *addr);
void cslab_tsan_acquire(void *addr);

/* AddressSanitizer's shadow for cached objects (no-ops, and `active` false, unless the package is
 * built with --sanitize=address; only the C target knows, so Swift asks `cslab_asan_active`). */
bool cslab_asan_active(void);
void cslab_asan_poison(const void *p, size_t n);
void cslab_asan_unpoison(const void *p, size_t n);

/* The free-list link in a free object (Slab.swift), read and written past AddressSanitizer:
 * with ASan a free object is poisoned, and the link is the allocator's own word in it. */
__attribute__((no_sanitize("address")))
static inline void *cslab_load_link(const void *p) { return *(void *const *)p; }
__attribute__((no_sanitize("address")))
static inline void cslab_store_link(void *p, void *link) { *(void **)p = link; }

/* ---------------------------------------------------------------------------------------------
 * membarrier: restart every rseq critical section in flight on one CPU (or all CPUs).
 * ------------------------------------------------------------------------------------------- */

/* Registers this process for MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ. Returns 0 or -errno. */
int cslab_membarrier_register_rseq(void);
/* Fence one CPU (cpu >= 0) or every CPU (cpu < 0). Returns 0 or -errno. */
int cslab_membarrier_rseq_fence(int cpu);

/* ---------------------------------------------------------------------------------------------
 * Fixed layouts shared by C and Swift (C guarantees the field order; Swift structs do not).
 * ------------------------------------------------------------------------------------------- */

/* The slab header, one per slab in the cache's slab table beside its range, not in the slab
 * (Sources/Slab/Slab.swift). */
typedef struct cslab_slab {
    uint64_t magic;             /* CSLAB_SLAB_MAGIC while the slab belongs to a cache */
    void *cache;                /* the owning slab layer (identity, for wrong-cache checks) */
    void *free_list;            /* embedded free list: objects freed since the slab was last empty */
    uint32_t in_use;            /* objects handed out of this slab */
    uint32_t capacity;          /* objects per slab */
    struct cslab_slab *next;    /* partial / full / empty list links */
    struct cslab_slab *prev;
    char *objects;              /* first object (the slab's start + its colour offset) */
    uint32_t list;              /* which list the slab is on */
    uint32_t bump;              /* objects at index >= bump are free and on no list (never handed
                                   out since the slab was carved or last became empty) */
} cslab_slab;

#define CSLAB_SLAB_MAGIC 0x51AB51AB0B1EC75ULL

/* The page map (Sources/Slab/PageSource.swift, section 4): one word per page of a range, the
 * first object of the slab covering the page (the header's `objects`), or 0. The free checks
 * (kfree's fast path below, and Swift's FastPath.checkOwnership) read it at (p - base) >> 12. */
#define CSLAB_PAGE_SHIFT 12
_Static_assert(sizeof(cslab_slab) == 64, "a slab header is one cache line of the slab table");

/* The magazine header: rounds follow at +64. */
typedef struct cslab_magazine {
    uint64_t next;              /* depot list link: handle of the next magazine (0 = none) */
    uint64_t rounds;            /* rounds held while the magazine sits in the depot */
    uint64_t reserved[5];
    uint64_t top_guard;         /* never written (0, as mapped): its upper half is "round[-1]", which
                                   the push compares its round with when the magazine is empty, and
                                   no object's round equals (round 0 names no object) */
} cslab_magazine;

_Static_assert(sizeof(cslab_magazine) == CSLAB_MAGAZINE_HEADER, "rounds start right after the header");
_Static_assert(offsetof(cslab_magazine, top_guard) + 8 == CSLAB_MAGAZINE_HEADER
               && CSLAB_MAGAZINE_LAST_ROUND == CSLAB_MAGAZINE_HEADER - 4,
               "an empty magazine's top round (round[-1]) lies in the guard word");

/* ---------------------------------------------------------------------------------------------
 * 3. Thread-locals and small OS helpers.
 * ------------------------------------------------------------------------------------------- */

/* The fallback mode's slots (Sources/Slab/CPUSlot.swift, section 2, "fallback mode"). The slot
 * array of every fallback-mode cache has the same geometry: `own` slots, each given to one thread
 * of the process at a time (a lane), then `shared` slots that the threads without a lane take by
 * CAS for one operation. `cslab_tls_slot` says which slot is this thread's in every cache: 0 for
 * none yet (the ladder assigns one), else the slot's byte offset in the array with tag
 * CSLAB_SLOT_TAG_OWN (the thread's own, for as long as it lives) or CSLAB_SLOT_TAG_SHARED (its
 * usual shared slot). */
#define CSLAB_SLOT_TAG_OWN 1
#define CSLAB_SLOT_TAG_SHARED 2
extern _Thread_local uint64_t cslab_tls_slot;
static inline uint64_t cslab_tls_get_slot(void) { return cslab_tls_slot; }
static inline void cslab_tls_set_slot(uint64_t v) { cslab_tls_slot = v; }
/* What a fallback-mode thread writes into a slot's owner word while its slow path holds the slot
 * for one operation: the address of its cslab_tls_slot, distinct for every living thread, never
 * 0...3 (the other owner values), and still this thread's in a child it forks, whose fork handler
 * frees the slots of the threads that did not survive the fork and keeps this one's
 * (Sources/Slab/Subtle/Fork.swift, section 3). */
static inline uint64_t cslab_thread_owner_mark(void) { return (uint64_t)(uintptr_t)&cslab_tls_slot; }
/* The slab layer whose constructor or destructor the calling thread is running (NULL when none;
 * the outer one's is restored when a nested one ends): destroy() of that cache from inside it is
 * refused with a report (Sources/Slab/SlabCache.swift). */
extern _Thread_local const void *cslab_tls_callback_owner;
static inline const void *cslab_tls_get_callback_owner(void) { return cslab_tls_callback_owner; }
static inline void cslab_tls_set_callback_owner(const void *owner) { cslab_tls_callback_owner = owner; }

/* Lanes: the own slots' numbers, handed to threads. Set up once per process (with the count, at
 * most CSLAB_MAX_LANES; 0 when membarrier's private expedited command is unavailable, and every
 * thread then shares). A claim takes the lowest free lane and registers a thread-exit destructor
 * that frees it (and zeroes the thread's cslab_tls_slot); -1 when all are taken. The lane's slot
 * in every cache keeps its magazines across owners: the next thread to claim it finds them. In a
 * forked child every lane but the forking thread's is free. */
#define CSLAB_MAX_LANES 1024
int cslab_lanes_set_up(uint32_t count);
int32_t cslab_lane_claim(void);
uint32_t cslab_lanes_claimed(void);
/* Whether a living thread holds `lane` (a drainer waits on a busy flag only then: in a forked
 * child the flag of a thread that was mid-operation at the fork stays set, with no holder). */
bool cslab_lane_held(uint32_t lane);
/* membarrier(PRIVATE_EXPEDITED): a full memory barrier on every CPU running a thread of this
 * process, before it returns (registered by cslab_lanes_set_up). 0, or -errno. */
int cslab_membarrier_fence(void);

/* The inline fast paths on the thread's own slot. The owner announces an operation by storing
 * busy = 1, then reads `owner` (acquire) and proceeds only if it is 0; it ends the operation with
 * busy = 0 (release). Only a compiler barrier separates the store from the load: a drainer that
 * stopped the slot (owner 0 -> stopped, CAS) issues cslab_membarrier_fence() before it reads
 * busy, which puts a full barrier on this thread's CPU between the two, so either the drainer
 * sees busy = 1 (and waits for the release that ends the operation) or this thread sees the slot
 * stopped (and touches nothing). No atomic read-modify-write on the fast path: taking a slot by
 * CAS and giving it back cost 12-13 ns an operation on the 2-vCPU machines measured (README). The slow
 * paths take the slot by CAS (owner 0 -> 1) instead, as shared slots are taken, so a call they
 * make (a constructor that allocates, say) finds the slot held and cannot nest an inline
 * operation inside theirs. Not async-signal-safe (CPUSlot.swift, section 2). NULL when the
 * thread has no own slot (0 or a shared slot: the ladder serves it) or the slot is held. */
CSLAB_ALWAYS_INLINE cslab_cpu_slot *cslab_slot_enter(void *cpus) {
    uint64_t v = cslab_tls_slot;
    if (!(v & CSLAB_SLOT_TAG_OWN)) return NULL;
    cslab_cpu_slot *slot = (cslab_cpu_slot *)((char *)cpus + (v & ~(uint64_t)(CSLAB_CPU_STRIDE - 1)));
    cslab_store_relaxed(&slot->busy, 1);
    atomic_signal_fence(memory_order_seq_cst);
    if (__builtin_expect(cslab_load_acquire(&slot->owner) != 0, 0)) {
        cslab_store_release(&slot->busy, 0);
        return NULL;
    }
    return slot;
}
CSLAB_ALWAYS_INLINE void cslab_slot_leave(cslab_cpu_slot *slot) { cslab_store_release(&slot->busy, 0); }

CSLAB_ALWAYS_INLINE void *cslab_slot_magazine_pop(void *cpus, void *magazines, uint64_t base) {
    cslab_cpu_slot *slot = cslab_slot_enter(cpus);
    if (slot == NULL) return NULL;
    uint64_t state = cslab_load_relaxed(&slot->state);
    void *obj = NULL;
    if ((uint8_t)state != 0) {
        uint64_t top = (uint32_t)state >> CSLAB_STATE_TOP_SHIFT;
        obj = cslab_object_of(*(uint32_t *)((char *)magazines + 4 * top + CSLAB_MAGAZINE_LAST_ROUND), base);
        cslab_store_relaxed(&slot->state, state - CSLAB_STATE_STEP);
        cslab_bump_single_writer(&slot->alloc_hits, 1);
    }
    cslab_slot_leave(slot);
    return obj;
}

/* Declines (false) a full magazine, and an object that is the top round already (a double free:
 * the slow path confirms and reports it, as for the rseq push). */
CSLAB_ALWAYS_INLINE bool cslab_slot_magazine_push_round(void *cpus, void *magazines, uint32_t round) {
    cslab_cpu_slot *slot = cslab_slot_enter(cpus);
    if (slot == NULL) return false;
    uint64_t state = cslab_load_relaxed(&slot->state);
    uint32_t *top = (uint32_t *)((char *)magazines + 4 * ((uint32_t)state >> CSLAB_STATE_TOP_SHIFT)
                                 + CSLAB_MAGAZINE_LAST_ROUND);   /* round[n - 1]; top[1] is round[n] */
    bool done = (state & 0xff) < slot->capacity;      /* n < M */
#ifndef CSLAB_WITHOUT_DOUBLE_FREE_CHECK
    done = done && *top != round;
#endif
    if (done) {
        top[1] = round;
        cslab_store_relaxed(&slot->state, state + CSLAB_STATE_STEP);
        cslab_bump_single_writer(&slot->free_hits, 1);
    }
    cslab_slot_leave(slot);
    return done;
}
CSLAB_ALWAYS_INLINE bool cslab_slot_magazine_push(void *cpus, void *magazines, void *obj, uint64_t base) {
    return cslab_slot_magazine_push_round(cpus, magazines, cslab_round_of(obj, base));
}

/* Number of CPUs the kernel may ever report (possible CPUs), at least 1. */
int32_t cslab_possible_cpus(void);

/* Debug letter U and debug reports (Sources/Slab/SlabDebug.swift); slow, debug caches only.
 * cslab_track_capture: fills `track` with the calling thread's return addresses, by its frame
 * pointers, skipping `skip` (skip 0: the first is where the caller of cslab_track_capture will
 * return to; unused slots 0), the thread's kernel id, its CPU (-1 if unknown) and
 * CLOCK_MONOTONIC_COARSE in nanoseconds. cslab_gettid:
 * the kernel's id of the calling thread. cslab_describe_address: the file of the image holding
 * `address` and its load address, and the exported symbol containing it with its start (symbol
 * NULL when none contains it: a Swift executable exports few); returns 0 when no image holds it. */
#define CSLAB_TRACK_FRAMES 16
typedef struct cslab_track {
    uintptr_t frames[CSLAB_TRACK_FRAMES];
    int32_t thread;
    int32_t cpu;
    uint64_t time;
} cslab_track;
void cslab_track_capture(cslab_track *track, int32_t skip);
int32_t cslab_gettid(void);
/* mremap(2), which Swift cannot call (it is variadic), for krealloc of an OS mapping
 * (Sources/Slab/KmallocLarge.swift): the mapping at `old` of `old_size` bytes resized to
 * `new_size` where it stands (shrinking always can; growing needs the address space after it
 * free), or moved to `target`, over whatever was mapped there. Each returns the mapping's new
 * address, or MAP_FAILED with errno set and the old mapping untouched. */
void *cslab_mremap_in_place(void *old, size_t old_size, size_t new_size);
void *cslab_mremap_to(void *old, size_t old_size, size_t new_size, void *target);
int32_t cslab_describe_address(const void *address, const char **image, const void **image_base,
                               const char **symbol, const void **symbol_start);

/* Deliberate slowdowns that prove the regression gate catches what it claims to catch. Each is
 * compiled into the free fast path only when the build passes its flag on the command line
 * (`swift build -c release -Xswiftc -DSLAB_INJECT_INSTRUCTIONS`, likewise SLAB_INJECT_DELAY);
 * no normal build has them (FastPath.swift).
 *   instructions: seven `nop`s, 7 more instructions on the rseq pair (79 per pair: about 10%)
 *   and almost no time.
 *   delay: two dependent `imul $1` on the object pointer (identities, 3 cycles of latency
 *   each), two instructions: measured +17% on steady-random and +5% on batch-fifo-1000, where the
 *   freed pointer's chain decides the time, and nothing on the pair, whose loop-carried chain
 *   runs through the CPU's state word instead (one `lfence` there cost +300%: too blunt). */
static inline void cslab_inject_instructions(void) {
    __asm__ __volatile__("nop\n\tnop\n\tnop\n\tnop\n\tnop\n\tnop\n\tnop");
}
#if defined(__x86_64__)
static inline void *cslab_inject_delay(void *p) {
    __asm__ __volatile__("imulq $1, %0, %0\n\timulq $1, %0, %0" : "+r"(p));
    return p;
}
#endif

/* ---------------------------------------------------------------------------------------------
 * 4. kmalloc's fast paths (Sources/Slab/Kmalloc.swift), over a table in a C global.
 *
 * kmalloc: the size's class from `class_offset`, then the class's rseq pop (or, in the fallback
 * mode, the pop on the thread's own slot: cslab_slot_magazine_pop). kfree: the class from
 * the address, (p - range_base) >> slot_shift, the free-pointer test of FastPath.checkOwnership
 * (the slab's first object from the page map, the offset below objects_bytes and a multiple of the stride),
 * then the class's rseq push (or slot push). Either returns "not done" (NULL, false) for the slow path to
 * handle: kmalloc not set up, a size above 8 KiB or of 0, an empty or full magazine, a held
 * slot, a pointer outside the classes, one that fails the test, or one that is already the top
 * round of its magazine (the push's double-free check): the slow path reports the last two.
 *
 * Written once, under kmalloc's set-up lock (cslab_kmalloc_set_* in shim.c): the classes,
 * `class_offset`, `rseq_offset`, `range_base` and the two modes' class counts, then `slot_shift` and
 * the two modes' size limits with release stores. The fast paths load those with acquire (a plain
 * load on x86) and read the rest only when they are set. Zero, the static initial state, sends
 * every call to the slow path: a limit of 0 admits no size, and a `slot_shift` of 0 with a
 * `range_base` of 0 puts every pointer (>= 16) outside the classes.
 *
 * The mode is in the limits, not in a flag of its own: in rseq mode `rseq_limit` is 8192 and
 * `rseq_classes` 13, and the fallback mode's pair (`slot_limit`, `slot_classes`, for the pops and
 * pushes on the thread's own slot: FastPath.usesSlots) is 0; in the fallback mode the other way
 * round. The test that admits a size or a pointer then also chooses the mode, so the rseq paths
 * pay no branch for it (with both fast paths always inlined: 91 -> 85 instructions a pair under
 * callgrind). A mode
 * with neither (no CPU layer, or the fallback mode under AddressSanitizer) leaves the table
 * unpublished and every call takes the slow path.
 * ------------------------------------------------------------------------------------------- */

#define CSLAB_KMALLOC_CLASSES 13
#define CSLAB_KMALLOC_MAX_CACHE_SIZE 8192

/* What a class's fast paths read: a copy of its cache's FastPath fields. One cache line each. */
typedef struct __attribute__((aligned(64))) cslab_kmalloc_class {
    void *cpus;
    void *magazines;
    uint64_t round_base;        /* the class cache's range base: rounds are offsets from it */
    uint64_t objects_bytes;
    uint64_t stride_reciprocal;
} cslab_kmalloc_class;

typedef struct cslab_kmalloc_table {
    /* First, so that a class's fields are at the table's address plus its offset alone. */
    cslab_kmalloc_class classes[CSLAB_KMALLOC_CLASSES];
    uint64_t rseq_limit;     /* sizes 1...rseq_limit take the rseq pop: 8192 in rseq mode, else 0 */
    uint64_t slot_shift;     /* kmalloc's range: slot i is [range_base + (i << shift), + (1 << shift)) */
    uint64_t slot_offset_mask; /* (1 << slot_shift) - 1: a pointer's offset in its slot, which is its
                                  round << 3 (each class's round base is its slot's start) */
    uint64_t range_base;
    int64_t rseq_offset;
    uint64_t rseq_classes;     /* slots 0..<rseq_classes take the rseq push: 13 in rseq mode, else 0 */
    const uint64_t *page_map;  /* the page map of the whole range: word (p - range_base) >> 12 */
    uint64_t slot_limit;       /* the fallback mode's own slots (section 3): 8192 and 13 there, */
    uint64_t slot_classes;     /* else 0 */
    /* The size class of every size from 1 to 8192, as the byte offset of its entry in `classes`:
     * class_offset[(size - 1) >> 3] (sizes that round up to the same multiple of 8 share a class,
     * since the smallest class is 8 bytes). An offset, not an index: no scaling on the way. */
    uint16_t class_offset[CSLAB_KMALLOC_MAX_CACHE_SIZE / 8];
} cslab_kmalloc_table;

extern cslab_kmalloc_table cslab_kmalloc;

/* Set-up (shim.c), under kmalloc's lock: the classes and class_offset first, then the publication. */
void cslab_kmalloc_set_class(uint32_t index, void *cpus, void *magazines, uint64_t round_base,
                             uint64_t objects_bytes, uint64_t stride_reciprocal);
void cslab_kmalloc_set_class_of(uint32_t index, uint8_t size_class);
void cslab_kmalloc_publish(int64_t rseq_offset, uint64_t uses_slots, uint64_t range_base, uint64_t slot_shift,
                           const uint64_t *page_map);
/* What was published, for tests: the largest size a fast path takes (0: the fast paths are
 * closed) and whether they are the fallback mode's slot pops and pushes (1) or rseq's (0). */
uint64_t cslab_kmalloc_fast_limit(void);
uint64_t cslab_kmalloc_uses_slots(void);

/* The class of a size 1...8192. */
CSLAB_ALWAYS_INLINE const cslab_kmalloc_class *cslab_kmalloc_class_of(const cslab_kmalloc_table *t, uint64_t size) {
    return (const cslab_kmalloc_class *)((const char *)t->classes + t->class_offset[(size - 1) >> 3]);
}

/* kmalloc's fast path: an object of the class for `size`, or NULL (see above). */
CSLAB_ALWAYS_INLINE void *cslab_kmalloc_fast(uint64_t size) {
    const cslab_kmalloc_table *t = &cslab_kmalloc;
    if (size - 1 < cslab_load_acquire(&t->rseq_limit)) {
        const cslab_kmalloc_class *c = cslab_kmalloc_class_of(t, size);
        return cslab_rseq_magazine_pop(t->rseq_offset, c->cpus, c->magazines, c->round_base);
    }
    if (size - 1 < cslab_load_acquire(&t->slot_limit)) {
        const cslab_kmalloc_class *c = cslab_kmalloc_class_of(t, size);
        return cslab_slot_magazine_pop(c->cpus, c->magazines, c->round_base);
    }
    return NULL;
}

/* kfree's free-pointer test for a pointer in class `slot` (< 13): true when it is the start of an
 * object of a live slab, with its round in `*round`. */
CSLAB_ALWAYS_INLINE bool cslab_kmalloc_owns(const cslab_kmalloc_table *t, uint64_t slot, uint64_t address,
                                      uint64_t in_range, uint32_t *round) {
    const cslab_kmalloc_class *c = &t->classes[slot];
    /* The slab's first object from the page map (0 where no live slab is), as
     * FastPath.checkOwnership reads it. */
    uint64_t objects = t->page_map[in_range >> CSLAB_PAGE_SHIFT];
    uint64_t offset = address - objects;
    /* A multiple of the stride exactly when offset * c mod 2^64 < c (ExactDivider in Slab.swift:
     * <= c - 1, written so that it needs no register for c - 1). */
    if (offset >= c->objects_bytes || offset * c->stride_reciprocal >= c->stride_reciprocal) return false;
    /* The round from the offset in the slot, not from the class's round base: a load that depends
     * on the class would stand between the object and the store of its round. */
    *round = (uint32_t)((in_range & t->slot_offset_mask) >> CSLAB_ROUND_SHIFT);
    return true;
}

/* kfree's fast path: true when `p` was an object of a class and went into its magazine. */
CSLAB_ALWAYS_INLINE bool cslab_kfree_fast(void *p) {
    const cslab_kmalloc_table *t = &cslab_kmalloc;
    uint64_t shift = cslab_load_acquire(&t->slot_shift);
    uint64_t address = (uint64_t)(uintptr_t)p;
    uint64_t in_range = address - cslab_load_relaxed(&t->range_base);
    uint64_t slot = in_range >> shift;
    uint32_t round;
    /* Relaxed atomic loads (plain on x86): a kfree before set-up may read them while the set-up
     * writes them; it then read a slot_shift of 0, and no pointer's slot is below 13. */
    if (slot < cslab_load_relaxed(&t->rseq_classes)) {
        if (!cslab_kmalloc_owns(t, slot, address, in_range, &round)) return false;
        const cslab_kmalloc_class *c = &t->classes[slot];
        return cslab_rseq_magazine_push_round(t->rseq_offset, c->cpus, c->magazines, round);
    }
    if (slot < cslab_load_relaxed(&t->slot_classes)) {
        if (!cslab_kmalloc_owns(t, slot, address, in_range, &round)) return false;
        const cslab_kmalloc_class *c = &t->classes[slot];
        return cslab_slot_magazine_push_round(c->cpus, c->magazines, round);
    }
    return false;
}

/* kfree of a pointer whose kmalloc size the caller knows (C23's free_sized, jemalloc's sdallocx):
 * the class comes from the size, so the push's addresses do not wait for the pointer; the pointer
 * must lie in that class's slot and pass the same free-pointer test. Declines (false) anything
 * else, which the slow path then frees as kfree would. */
CSLAB_ALWAYS_INLINE const cslab_kmalloc_class *cslab_kmalloc_sized_owner(const cslab_kmalloc_table *t, uint64_t size,
                                                                         uint64_t address, uint32_t *round) {
    uint64_t offset = t->class_offset[(size - 1) >> 3];
    uint64_t in_range = address - t->range_base;
    uint64_t slot = offset / sizeof(cslab_kmalloc_class);
    if ((in_range >> t->slot_shift) != slot || !cslab_kmalloc_owns(t, slot, address, in_range, round)) return NULL;
    return (const cslab_kmalloc_class *)((const char *)t->classes + offset);
}

CSLAB_ALWAYS_INLINE bool cslab_kfree_sized_fast(void *p, uint64_t size) {
    const cslab_kmalloc_table *t = &cslab_kmalloc;
    uint64_t address = (uint64_t)(uintptr_t)p;
    uint32_t round;
    const cslab_kmalloc_class *c;
    if (size - 1 < cslab_load_acquire(&t->rseq_limit)) {
        if ((c = cslab_kmalloc_sized_owner(t, size, address, &round)) == NULL) return false;
        return cslab_rseq_magazine_push_round(t->rseq_offset, c->cpus, c->magazines, round);
    }
    if (size - 1 < cslab_load_acquire(&t->slot_limit)) {
        if ((c = cslab_kmalloc_sized_owner(t, size, address, &round)) == NULL) return false;
        return cslab_slot_magazine_push_round(c->cpus, c->magazines, round);
    }
    return false;
}

/* ---------------------------------------------------------------------------------------------
 * 5. A misuse report's call trace (Sources/Slab/SlabReport.swift; shim.c says how).
 * ------------------------------------------------------------------------------------------- */

/* The return addresses of the calling thread's frames, innermost first (backtrace(3)). */
int cslab_backtrace(void **frames, int capacity);
/* The function containing `pc` as its image's symbol table names it (mangled, for Swift), the
 * offset of `pc` into it, and the image's path (NULL when unknown). False when no symbol holds it. */
bool cslab_symbolize(const void *pc, const char **name, uint64_t *offset, const char **image_path);
/* The Swift runtime's demangler (libswiftCore, which every Swift program loads): a malloc'd
 * string, or NULL when `mangled` is not a Swift name. */
char *swift_demangle(const char *mangled, size_t length, char *output, size_t *output_size, uint32_t flags);

/* Asks for the `lines` cache lines from `p` on (a hint: never faults, costs one instruction a
 * line). The slab layer prefetches a slab before it walks the slab's free list (SlabLayer.swift). */
static inline void cslab_prefetch_lines(const void *p, uint64_t lines) {
    for (uint64_t i = 0; i < lines; i++) __builtin_prefetch((const char *)p + 64 * i, 1, 3);
}

/* An optimisation barrier for benchmarks: the compiler must assume `p` is read and escapes. */
static inline void cslab_black_hole(const void *p) { __asm__ __volatile__("" : : "r"(p) : "memory"); }

#endif /* CSLAB_H */
