// The out-of-line half of CSlab: symbols that touch glibc's rseq registration, membarrier and
// thread-locals, the storage of kmalloc's table, the call trace of a misuse report (the frames and
// their symbols), and the debug caches' stack records, thread ids and address descriptions.
// Nothing here is on an allocation fast path.
#define _GNU_SOURCE
#include "CSlab.h"

#include <pthread.h>
#include <link.h>
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/rseq.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sched.h>
#include <time.h>

_Thread_local uint64_t cslab_tls_slot = 0;
_Thread_local const void *cslab_tls_callback_owner = NULL;

/* Lanes (CSlab.h, section 3): bit i of cslab_lane_bits set while a thread holds lane i. */
static uint32_t cslab_lane_count = 0;
static uint64_t cslab_lane_bits[CSLAB_MAX_LANES / 64];
static pthread_key_t cslab_lane_key;

/* At thread exit (after the thread's last use of any cache, unless a later destructor allocates
 * again: the ladder then claims a lane anew and this runs once more). Release: the next claimer
 * of the lane sees every store the thread made to its slots. */
static void cslab_lane_release(void *value) {
    uint32_t lane = (uint32_t)(uintptr_t)value - 1;
    cslab_tls_slot = 0;
    atomic_fetch_and_explicit((_Atomic uint64_t *)&cslab_lane_bits[lane / 64], ~(UINT64_C(1) << (lane % 64)),
                              memory_order_release);
}

/* In a forked child only the forking thread lives: every other holder's lane is free again. */
static void cslab_lanes_after_fork(void) {
    for (uint32_t w = 0; w < CSLAB_MAX_LANES / 64; w++) cslab_lane_bits[w] = 0;
    if (cslab_tls_slot & CSLAB_SLOT_TAG_OWN) {
        uint32_t lane = (uint32_t)(cslab_tls_slot >> CSLAB_CPU_STRIDE_SHIFT);
        cslab_lane_bits[lane / 64] = UINT64_C(1) << (lane % 64);
    }
}

int cslab_lanes_set_up(uint32_t count) {
    if (count > CSLAB_MAX_LANES) count = CSLAB_MAX_LANES;
    long r = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (r < 0) return -errno;
    if (!(r & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) return -ENOSYS;
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0) return -errno;
    int e = pthread_key_create(&cslab_lane_key, cslab_lane_release);
    if (e != 0) return -e;
    e = pthread_atfork(NULL, NULL, cslab_lanes_after_fork);
    if (e != 0) return -e;
    cslab_lane_count = count;
    return 0;
}

int32_t cslab_lane_claim(void) {
    for (uint32_t w = 0; w * 64 < cslab_lane_count; w++) {
        _Atomic uint64_t *word = (_Atomic uint64_t *)&cslab_lane_bits[w];
        uint64_t bits = atomic_load_explicit(word, memory_order_relaxed);
        uint32_t in_word = cslab_lane_count - w * 64 < 64 ? cslab_lane_count - w * 64 : 64;
        uint64_t usable = in_word == 64 ? ~UINT64_C(0) : (UINT64_C(1) << in_word) - 1;
        while ((bits & usable) != usable) {
            uint32_t bit = (uint32_t)__builtin_ctzll(~bits & usable);
            /* Acquire: this thread sees every store the lane's previous holder made to its slots. */
            if (atomic_compare_exchange_weak_explicit(word, &bits, bits | UINT64_C(1) << bit,
                                                      memory_order_acquire, memory_order_relaxed)) {
                uint32_t lane = w * 64 + bit;
                if (pthread_setspecific(cslab_lane_key, (void *)(uintptr_t)(lane + 1)) != 0) {
                    atomic_fetch_and_explicit(word, ~(UINT64_C(1) << bit), memory_order_release);
                    return -1;
                }
                return (int32_t)lane;
            }
        }
    }
    return -1;
}

bool cslab_lane_held(uint32_t lane) {
    if (lane >= cslab_lane_count) return false;
    return (atomic_load_explicit((_Atomic uint64_t *)&cslab_lane_bits[lane / 64], memory_order_acquire)
            >> (lane % 64)) & 1;
}

uint32_t cslab_lanes_claimed(void) {
    uint32_t n = 0;
    for (uint32_t w = 0; w * 64 < cslab_lane_count; w++)
        n += (uint32_t)__builtin_popcountll(atomic_load_explicit((_Atomic uint64_t *)&cslab_lane_bits[w],
                                                                 memory_order_relaxed));
    return n;
}

int cslab_membarrier_fence(void) {
    return syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0 ? 0 : -errno;
}

/* Zero until kmalloc's set-up publishes it (CSlab.h, section 4). */
cslab_kmalloc_table cslab_kmalloc = {0};

void cslab_kmalloc_set_class(uint32_t index, void *cpus, void *magazines, uint64_t round_base,
                             uint64_t objects_bytes, uint64_t stride_reciprocal) {
    cslab_kmalloc_class *c = &cslab_kmalloc.classes[index];
    c->cpus = cpus;
    c->magazines = magazines;
    c->round_base = round_base;
    c->objects_bytes = objects_bytes;
    c->stride_reciprocal = stride_reciprocal;
}

void cslab_kmalloc_set_class_of(uint32_t index, uint8_t size_class) {
    cslab_kmalloc.class_offset[index] = (uint16_t)(size_class * sizeof(cslab_kmalloc_class));
}

void cslab_kmalloc_publish(int64_t rseq_offset, uint64_t uses_slots, uint64_t range_base, uint64_t slot_shift,
                           const uint64_t *page_map) {
    cslab_kmalloc.rseq_offset = rseq_offset;
    cslab_kmalloc.page_map = page_map;
    cslab_store_relaxed(&cslab_kmalloc.range_base, range_base);
    cslab_kmalloc.slot_offset_mask = (UINT64_C(1) << slot_shift) - 1;
    /* The mode is in which pair of limits opens (CSlab.h, section 4). */
    cslab_store_relaxed(&cslab_kmalloc.rseq_classes, uses_slots ? 0 : CSLAB_KMALLOC_CLASSES);
    cslab_store_relaxed(&cslab_kmalloc.slot_classes, uses_slots ? CSLAB_KMALLOC_CLASSES : 0);
    /* Release: a fast path that sees any of these stores sees everything written before it. */
    cslab_store_release(&cslab_kmalloc.slot_shift, slot_shift);
    cslab_store_release(uses_slots ? &cslab_kmalloc.slot_limit : &cslab_kmalloc.rseq_limit, CSLAB_KMALLOC_MAX_CACHE_SIZE);
}

uint64_t cslab_kmalloc_fast_limit(void) {
    uint64_t rseq = cslab_load_acquire(&cslab_kmalloc.rseq_limit), slots = cslab_load_acquire(&cslab_kmalloc.slot_limit);
    return rseq > slots ? rseq : slots;
}
uint64_t cslab_kmalloc_uses_slots(void) { return cslab_load_acquire(&cslab_kmalloc.slot_limit) != 0 ? 1 : 0; }

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

/* AddressSanitizer: built with it (swift build --sanitize=address), the allocator marks the
 * objects it caches as poisoned (SlabCache.swift, section 9); without it these are never called. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CSLAB_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(CSLAB_ASAN)
#define CSLAB_ASAN 1
#endif
#ifdef CSLAB_ASAN
#include <sanitizer/asan_interface.h>
bool cslab_asan_active(void) { return true; }
void cslab_asan_poison(const void *p, size_t n) { ASAN_POISON_MEMORY_REGION(p, n); }
void cslab_asan_unpoison(const void *p, size_t n) { ASAN_UNPOISON_MEMORY_REGION(p, n); }
#else
bool cslab_asan_active(void) { return false; }
void cslab_asan_poison(const void *p, size_t n) { (void)p; (void)n; }
void cslab_asan_unpoison(const void *p, size_t n) { (void)p; (void)n; }
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

/* ---------------------------------------------------------------------------------------------
 * The call trace of a misuse report (Sources/Slab/SlabReport.swift).
 *
 * backtrace(3) gives the return addresses. dladdr(3) names only exported symbols, and an
 * executable exports almost none (a Swift test binary: three), so the name comes from the
 * image's own symbol table (.symtab), read from its file: the function symbol whose range holds
 * the address. Each image's file is mapped once and stays mapped (the process is about to stop).
 * ------------------------------------------------------------------------------------------- */

int cslab_backtrace(void **frames, int capacity) { return backtrace(frames, capacity); }

typedef struct {
    char path[512];
    const unsigned char *map;   /* NULL: unreadable, or not a 64-bit ELF file */
    size_t size;
} cslab_image;

static cslab_image cslab_images[16];
static int cslab_image_count = 0;

/* The mapped file of the image named `path` ("" or a bare name means the main program). */
static const cslab_image *cslab_image_for(const char *path) {
    if (path == NULL || path[0] == '\0' || strchr(path, '/') == NULL) path = "/proc/self/exe";
    for (int i = 0; i < cslab_image_count; i++)
        if (strcmp(cslab_images[i].path, path) == 0) return &cslab_images[i];
    if (cslab_image_count == (int)(sizeof cslab_images / sizeof cslab_images[0])) return NULL;
    cslab_image *image = &cslab_images[cslab_image_count++];
    snprintf(image->path, sizeof image->path, "%s", path);
    image->map = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return image;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_size >= (off_t)sizeof(Elf64_Ehdr)) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) {
            const Elf64_Ehdr *eh = m;
            if (memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 && eh->e_ident[EI_CLASS] == ELFCLASS64) {
                image->map = m;
                image->size = (size_t)st.st_size;
            } else {
                munmap(m, (size_t)st.st_size);
            }
        }
    }
    close(fd);
    return image;
}

/* The function symbol of `image`'s .symtab whose range holds `rel` (an address relative to the
 * image's load base for a shared object or PIE, absolute for a fixed-address executable). */
static bool cslab_symtab_lookup(const cslab_image *image, uint64_t rel, const char **name, uint64_t *start) {
    const unsigned char *m = image->map;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)m;
    if (eh->e_shoff == 0 || eh->e_shentsize != sizeof(Elf64_Shdr)
        || eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr) > image->size) return false;
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(m + eh->e_shoff);
    for (int pass = 0; pass < 2; pass++) {   /* .symtab first; .dynsym if the file was stripped */
        uint32_t type = pass == 0 ? SHT_SYMTAB : SHT_DYNSYM;
        for (unsigned i = 0; i < eh->e_shnum; i++) {
            if (sh[i].sh_type != type || sh[i].sh_link >= eh->e_shnum) continue;
            const Elf64_Shdr *strs = &sh[sh[i].sh_link];
            if (sh[i].sh_offset + sh[i].sh_size > image->size || strs->sh_offset + strs->sh_size > image->size) continue;
            const Elf64_Sym *syms = (const Elf64_Sym *)(m + sh[i].sh_offset);
            size_t n = sh[i].sh_size / sizeof(Elf64_Sym);
            for (size_t k = 0; k < n; k++) {
                const Elf64_Sym *y = &syms[k];
                if (ELF64_ST_TYPE(y->st_info) != STT_FUNC || y->st_shndx == SHN_UNDEF) continue;
                if (rel < y->st_value || rel - y->st_value >= (y->st_size ? y->st_size : 1)) continue;
                if (y->st_name >= strs->sh_size) continue;
                *name = (const char *)(m + strs->sh_offset + y->st_name);
                *start = y->st_value;
                return true;
            }
        }
    }
    return false;
}

bool cslab_symbolize(const void *pc, const char **name, uint64_t *offset, const char **image_path) {
    Dl_info info;
    *name = NULL;
    *offset = 0;
    *image_path = NULL;
    if (dladdr(pc, &info) == 0) return false;
    *image_path = info.dli_fname;
    const cslab_image *image = cslab_image_for(info.dli_fname);
    if (image != NULL && image->map != NULL) {
        const Elf64_Ehdr *eh = (const Elf64_Ehdr *)image->map;
        uint64_t base = eh->e_type == ET_DYN ? (uint64_t)(uintptr_t)info.dli_fbase : 0;
        uint64_t start;
        if (cslab_symtab_lookup(image, (uint64_t)(uintptr_t)pc - base, name, &start)) {
            *offset = (uint64_t)(uintptr_t)pc - base - start;
            return true;
        }
    }
    if (info.dli_sname != NULL && info.dli_saddr != NULL) {
        *name = info.dli_sname;
        *offset = (uint64_t)((uintptr_t)pc - (uintptr_t)info.dli_saddr);
        return true;
    }
    return false;
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

void *cslab_mremap_in_place(void *old, size_t old_size, size_t new_size) {
    return mremap(old, old_size, new_size, 0);
}

void *cslab_mremap_to(void *old, size_t old_size, size_t new_size, void *target) {
    return mremap(old, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, target);
}

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
