// The out-of-line half of CSlab: symbols that touch glibc's rseq registration, membarrier and
// thread-locals, and the storage of kmalloc's table. Nothing here is on an allocation fast path.
#define _GNU_SOURCE
#include "CSlab.h"

#include <linux/membarrier.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdio.h>
#include <errno.h>

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
