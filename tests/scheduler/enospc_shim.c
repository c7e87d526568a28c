/* enospc_shim.c: an LD_PRELOAD library for the scheduler's disk-full test.
 * While the file named by $MAILFARM_ENOSPC_FLAG exists, write(2), writev(2)
 * and pwrite(2) on files whose path contains "/spool/" fail with ENOSPC (after
 * writing half of the data, like a disk filling up mid-write). Sockets and
 * every other file are untouched. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static int disk_full(int fd) {
  const char* flag = getenv("MAILFARM_ENOSPC_FLAG");
  struct stat st;
  if (flag == NULL || stat(flag, &st) != 0) return 0;
  char link[64], path[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  if (n <= 0) return 0;
  path[n] = '\0';
  return strstr(path, "/spool/") != NULL;
}

ssize_t write(int fd, const void* buf, size_t count) {
  static ssize_t (*real)(int, const void*, size_t) = NULL;
  if (real == NULL) real = (ssize_t(*)(int, const void*, size_t))dlsym(RTLD_NEXT, "write");
  if (disk_full(fd)) {
    if (count > 1) real(fd, buf, count / 2);
    errno = ENOSPC;
    return -1;
  }
  return real(fd, buf, count);
}

ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
  static ssize_t (*real)(int, const void*, size_t, off_t) = NULL;
  if (real == NULL) real = (ssize_t(*)(int, const void*, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
  if (disk_full(fd)) {
    errno = ENOSPC;
    return -1;
  }
  return real(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec* iov, int iovcnt) {
  static ssize_t (*real)(int, const struct iovec*, int) = NULL;
  if (real == NULL) real = (ssize_t(*)(int, const struct iovec*, int))dlsym(RTLD_NEXT, "writev");
  if (disk_full(fd)) {
    errno = ENOSPC;
    return -1;
  }
  return real(fd, iov, iovcnt);
}
