// The out-of-line half of CSlab: symbols that touch glibc's rseq registration, membarrier and
// thread-locals, and the storage of kmalloc's table; and the debug caches' stack traces, thread
// ids and address descriptions. Nothing here is on an allocation fast path.
#define _GNU_SOURCE
#include "CSlab.h"

#include <dlfcn.h>
#include <pthread.h>
#include <link.h>
#include <linux/membarrier.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdio.h>
#include <errno.h>
#include <sched.h>
#include <time.h>

_Thread_local uint64_t cslab_tls_slot_hint = 0;

/* Zero until kmalloc's set-up publishes it (CSlab.h, section 4). */
cslab_kmalloc_table cslab_kmalloc = {0};

void cslab_kmalloc_set_class(uint32_t index, void *cpus, void *magazines, uint64_t capacity, uint64_t slab_mask,
                             uint64_t objects_bytes, uint64_t stride_reciprocal) {
    cslab_kmalloc_class *c = &cslab_kmalloc.classes[index];
    c->cpus = cpus;
    c->magazines = magazines;
    c->capacity = capacity;
    c->slab_mask = slab_mask;
    c->objects_bytes = objects_bytes;
    c->stride_reciprocal = stride_reciprocal;
}

void cslab_kmalloc_set_class_of(uint32_t index, uint8_t size_class) { cslab_kmalloc.class_of[index] = size_class; }

void cslab_kmalloc_publish(int64_t rseq_offset, uint64_t range_base, uint64_t slot_shift) {
    cslab_kmalloc.rseq_offset = rseq_offset;
    cslab_store_relaxed(&cslab_kmalloc.range_base, range_base);
    /* Release: a fast path that sees either store sees everything written before it. */
    cslab_store_release(&cslab_kmalloc.slot_shift, slot_shift);
    cslab_store_release(&cslab_kmalloc.fast_limit, CSLAB_KMALLOC_MAX_CACHE_SIZE);
}

/* ThreadSanitizer cannot see the ordering that rseq commits and membarrier fences provide (both
 * are inline assembly or system calls), so a thread that publishes a magazine through a CPU's
 * state word tells TSan with a release on the slot, and a drainer that read the word after its
 * fence tells it with an acquire. Without TSan these are empty functions, on slow paths only. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CSLAB_TSAN 1
#endif
#endif
#ifdef CSLAB_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
void cslab_tsan_release(void *addr) { __tsan_release(addr); }
void cslab_tsan_acquire(void *addr) { __tsan_acquire(addr); }
#else
void cslab_tsan_release(void *addr) { (void)addr; }
void cslab_tsan_acquire(void *addr) { (void)addr; }
#endif

int64_t cslab_rseq_offset(void) { return (int64_t)__rseq_offset; }
uint32_t cslab_rseq_size(void) { return (uint32_t)__rseq_size; }

void cslab_rseq_simulate_cpu0(int64_t rseq_off) {
#if CSLAB_HAVE_RSEQ
    struct rseq *area = (struct rseq *)(cslab_thread_pointer() + (uint64_t)rseq_off);
    area->cpu_id_start = 0;
    area->cpu_id = 0;
#else
    (void)rseq_off;
#endif
}

int cslab_membarrier_register_rseq(void) {
    long r = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (r < 0) return -errno;
    if (!(r & MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)) return -ENOSYS;
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) != 0) return -errno;
    return 0;
}

int cslab_membarrier_rseq_fence(int cpu) {
    long r;
    if (cpu >= 0)
        r = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, MEMBARRIER_CMD_FLAG_CPU, cpu);
    else
        r = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0);
    return r == 0 ? 0 : -errno;
}

int32_t cslab_possible_cpus(void) {
    // /sys/devices/system/cpu/possible reads like "0-1" or "0-3,8-11": the largest id + 1 bounds
    // every cpu_id the kernel can write into an rseq area.
    int best = -1;
    FILE *f = fopen("/sys/devices/system/cpu/possible", "r");
    if (f) {
        int a, b;
        char sep;
        while (fscanf(f, "%d", &a) == 1) {
            b = a;
            if (fscanf(f, "%c", &sep) == 1 && sep == '-') {
                if (fscanf(f, "%d", &b) != 1) break;
                if (fscanf(f, "%c", &sep) != 1) sep = 0;
            }
            if (b > best) best = b;
            if (sep != ',') break;
        }
        fclose(f);
    }
    long conf = sysconf(_SC_NPROCESSORS_CONF);
    if (conf - 1 > best) best = (int)conf - 1;
    return best < 0 ? 1 : best + 1;
}

/* This thread's stack, for the frame-pointer walk below, and its kernel id: found once per thread
 * (a forked child's thread clears them, since its id differs from its parent's). */
static _Thread_local uintptr_t cslab_stack_low, cslab_stack_high;
static _Thread_local int32_t cslab_cached_tid;
static pthread_once_t cslab_atfork_once = PTHREAD_ONCE_INIT;
static void cslab_forget_thread(void) { cslab_cached_tid = 0; }
static void cslab_register_atfork(void) { pthread_atfork(NULL, NULL, cslab_forget_thread); }

/* Walks the frame-pointer chain (Swift keeps frame pointers on x86_64 Linux): each frame's saved
 * rbp at [fp] and return address at [fp + 8]. A frame without a frame pointer (C code built
 * without one) ends the walk when its rbp leaves this thread's stack or stops growing, so the walk
 * never reads outside the stack. glibc's backtrace() unwinds by the tables instead, and is
 * 100-1000 times slower: too slow to run on every allocation and free. */
void cslab_track_capture(cslab_track *track, int32_t skip) {
    if (cslab_stack_high == 0) {
        pthread_attr_t attr;
        void *low = NULL;
        size_t size = 0;
        if (pthread_getattr_np(pthread_self(), &attr) == 0) {
            pthread_attr_getstack(&attr, &low, &size);
            pthread_attr_destroy(&attr);
        }
        cslab_stack_low = (uintptr_t)low;
        cslab_stack_high = (uintptr_t)low + size;
    }
    if (cslab_cached_tid == 0) {
        pthread_once(&cslab_atfork_once, cslab_register_atfork);
        cslab_cached_tid = (int32_t)syscall(SYS_gettid);
    }
    int written = 0;
    uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
    for (int frame = 0; written < CSLAB_TRACK_FRAMES; frame++) {
        if (fp < cslab_stack_low || fp + 16 > cslab_stack_high || (fp & 7) != 0) break;
        uintptr_t next = ((const uintptr_t *)fp)[0];
        uintptr_t ret = ((const uintptr_t *)fp)[1];
        if (ret == 0) break;
        /* Frame 0's return address is in this function's caller. */
        if (frame >= skip) track->frames[written++] = ret;
        if (next <= fp) break;
        fp = next;
    }
    while (written < CSLAB_TRACK_FRAMES) track->frames[written++] = 0;
    track->thread = cslab_cached_tid;
    track->cpu = (int32_t)sched_getcpu();
    /* The coarse clock (the kernel's tick, as Linux's tracks keep jiffies): the precise one costs
     * as much as the whole frame walk on a virtual machine. */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    track->time = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

int32_t cslab_gettid(void) { return (int32_t)syscall(SYS_gettid); }

int32_t cslab_describe_address(const void *address, const char **image, const void **image_base,
                               const char **symbol, const void **symbol_start) {
    Dl_info info;
    const ElfW(Sym) *entry = NULL;
    *image = NULL;
    *image_base = NULL;
    *symbol = NULL;
    *symbol_start = NULL;
    if (!dladdr1(address, &info, (void **)&entry, RTLD_DL_SYMENT)) return 0;
    *image = info.dli_fname;
    *image_base = info.dli_fbase;
    /* dladdr names the nearest exported symbol below the address, which need not contain it. */
    if (info.dli_sname && info.dli_saddr && entry &&
        (const char *)address < (const char *)info.dli_saddr + entry->st_size) {
        *symbol = info.dli_sname;
        *symbol_start = info.dli_saddr;
    }
    return 1;
}
