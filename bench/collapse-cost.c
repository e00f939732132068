// What making a tmpfs extent one huge page costs the thread that does it, by how the extent's
// pages came to be: CPU time (CLOCK_THREAD_CPUTIME_ID) per 2 MiB extent, median of the rounds,
// the ways alternated round by round in one process so they meet the same load.
//   falloc+collapse   the store's case: the file allocated whole (posix_fallocate, 4 KiB pages on
//                     a tmpfs without huge pages), then MADV_COLLAPSE + MADV_POPULATE_WRITE, as
//                     the prefault thread does (addon/prefault.cc): each small page zeroed, then
//                     copied into the new huge page
//   falloc+small      DAXSTORE_NO_COLLAPSE=1: the same extent populated in 4 KiB pages
//   punch+collapse    the extent's small pages punched out (FALLOC_FL_PUNCH_HOLE), its first page
//                     touched (a collapse of a hole only is refused), MADV_COLLAPSE, then
//                     posix_fallocate again (a no-op over the huge page: the space stays held)
//   hole+collapse     a sparse file's extent: first page touched, MADV_COLLAPSE
//
//   cc -O2 -o /tmp/collapse-cost bench/collapse-cost.c && /tmp/collapse-cost [extents 32] [rounds 7] [dir /dev/shm]
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

enum { kWays = 4 };
static const char* kNames[kWays] = {"falloc+collapse", "falloc+small", "punch+collapse", "hole+collapse"};
static const size_t kHuge = (size_t)2 << 20;

static double ThreadCpuMs(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int Cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

// One way over `extents` extents of a fresh file; CPU ms per extent, or -1 when a call failed.
static double Run(int way, const char* dir, size_t extents, int* failures) {
  char path[4096];
  snprintf(path, sizeof path, "%s/collapse-cost-%d", dir, (int)getpid());
  const size_t bytes = extents * kHuge;
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return perror("open"), -1;
  unlink(path);
  if (ftruncate(fd, (off_t)bytes) != 0) return perror("ftruncate"), close(fd), -1;
  if (way != 3 && posix_fallocate(fd, 0, (off_t)bytes) != 0) return perror("posix_fallocate"), close(fd), -1;
  // File offsets and addresses congruent modulo 2 MiB (a huge page needs both aligned).
  char* reserve = mmap(NULL, bytes + kHuge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserve == MAP_FAILED) return perror("mmap"), close(fd), -1;
  char* at = (char*)(((unsigned long)reserve + kHuge - 1) & ~(kHuge - 1));
  char* m = mmap(at, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
  if (m == MAP_FAILED) return perror("mmap file"), munmap(reserve, bytes + kHuge), close(fd), -1;
  const double t0 = ThreadCpuMs();
  for (size_t i = 0; i < extents; i++) {
    char* e = m + i * kHuge;
    const off_t off = (off_t)(i * kHuge);
    if (way == 2 && fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, (off_t)kHuge) != 0) ++*failures;
    if (way >= 2 && madvise(e, 4096, MADV_POPULATE_WRITE) != 0) ++*failures;
    if (way != 1 && madvise(e, kHuge, MADV_COLLAPSE) != 0) ++*failures;
    if (madvise(e, kHuge, MADV_POPULATE_WRITE) != 0) ++*failures;
    if (way == 2 && posix_fallocate(fd, off, (off_t)kHuge) != 0) ++*failures;
  }
  const double ms = (ThreadCpuMs() - t0) / (double)extents;
  munmap(reserve, bytes + kHuge);
  close(fd);
  return ms;
}

int main(int argc, char** argv) {
  const size_t extents = argc > 1 ? (size_t)atoi(argv[1]) : 32;
  const int rounds = argc > 2 ? atoi(argv[2]) : 7;
  const char* dir = argc > 3 ? argv[3] : "/dev/shm";
  if (extents == 0 || rounds <= 0 || rounds > 64) return fprintf(stderr, "collapse-cost: [extents] [rounds 1-64] [dir]\n"), 2;
  double ms[kWays][64];
  int failures[kWays] = {0};
  for (int r = 0; r < rounds; r++)
    for (int k = 0; k < kWays; k++) {
      const int way = (r % 2 == 0) ? k : kWays - 1 - k;  // alternate the order round by round
      ms[way][r] = Run(way, dir, extents, &failures[way]);
      if (ms[way][r] < 0) return 1;
    }
  double load[3] = {0, 0, 0};
  FILE* f = fopen("/proc/loadavg", "r");
  if (f != NULL) {
    if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
    fclose(f);
  }
  printf("thread CPU ms per 2 MiB extent in %s, median of %d rounds of %zu extents (load %.2f %.2f %.2f after)\n", dir, rounds,
         extents, load[0], load[1], load[2]);
  for (int k = 0; k < kWays; k++) {
    qsort(ms[k], (size_t)rounds, sizeof ms[k][0], Cmp);
    printf("  %-16s %7.3f  (range %.3f-%.3f, %d calls refused)\n", kNames[k], ms[k][rounds / 2], ms[k][0], ms[k][rounds - 1],
           failures[k]);
  }
  return 0;
}
