#define _GNU_SOURCE
#include "CStrataSys.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <linux/securebits.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <attr/libattr.h>
#include <attr/error_context.h>

const int strata_O_PATH = O_PATH;
const int strata_O_TMPFILE = O_TMPFILE;
const int strata_O_NOATIME = O_NOATIME;
const int strata_AT_EMPTY_PATH = AT_EMPTY_PATH;
const unsigned strata_RENAME_NOREPLACE = RENAME_NOREPLACE;
const unsigned strata_RENAME_EXCHANGE = RENAME_EXCHANGE;
const unsigned strata_RENAME_WHITEOUT = RENAME_WHITEOUT;
const uint64_t strata_RESOLVE_BENEATH = RESOLVE_BENEATH;
const uint64_t strata_RESOLVE_NO_SYMLINKS = RESOLVE_NO_SYMLINKS;
const uint64_t strata_RESOLVE_NO_MAGICLINKS = RESOLVE_NO_MAGICLINKS;
const uint64_t strata_RESOLVE_NO_XDEV = RESOLVE_NO_XDEV;
const int strata_FICLONE = FICLONE;

int strata_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = flags;
    how.mode = mode;
    how.resolve = resolve;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

int strata_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned flags) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}

ssize_t strata_copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len) {
    return copy_file_range(fd_in, (off_t *)off_in, fd_out, (off_t *)off_out, len, 0);
}

int strata_ficlone(int dest_fd, int src_fd) { return ioctl(dest_fd, FICLONE, src_fd); }

int64_t strata_lseek_data(int fd, int64_t offset) { return lseek(fd, offset, SEEK_DATA); }
int64_t strata_lseek_hole(int fd, int64_t offset) { return lseek(fd, offset, SEEK_HOLE); }

int strata_fallocate(int fd, int mode, int64_t offset, int64_t len) { return fallocate(fd, mode, offset, len); }

int strata_syncfs(int fd) { return syncfs(fd); }

static int strata_xattr_filter(const char *name, struct error_context *ctx) {
    (void)ctx;
    if (strncmp(name, "trusted.overlay.", 16) == 0) return 0;
    if (strncmp(name, "user.overlay.", 13) == 0) return 0;
    /* security.* and system.* (ACLs) are copied, as the kernel's copy-up does. */
    return 1;
}

int strata_copy_xattrs(int src_fd, int dst_fd) {
    return attr_copy_fd(NULL, src_fd, NULL, dst_fd, strata_xattr_filter, NULL);
}

pid_t strata_spawn_session(const char *path, char *const argv[], char *const envp[], int keep_fd) {
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t actions;
    pid_t pid = -1;
    int rc = posix_spawnattr_init(&attr);
    if (rc != 0) { errno = rc; return -1; }
    /* A fresh signal state: no blocked signals, default dispositions (a caller that
       blocks or ignores SIGCHLD would otherwise leave a child shell's `wait` asleep). */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    /* The child gets stdin/stdout/stderr and, as descriptor 3, keep_fd; nothing
       else (a stray inherited descriptor can keep a caller waiting forever). */
    int first_closed = 3;
    if (keep_fd >= 0) {
        posix_spawn_file_actions_adddup2(&actions, keep_fd, 3);
        first_closed = 4;
    }
    posix_spawn_file_actions_addclosefrom_np(&actions, first_closed);
    rc = posix_spawn(&pid, path, &actions, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) { errno = rc; return -1; }
    return pid;
}

long strata_getdents64(int fd, void *buf, unsigned long count) {
    return syscall(SYS_getdents64, fd, buf, count);
}

int strata_gettid(void) { return (int)gettid(); }

static void strata_termination_set(sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR1);
}

int strata_block_termination_signals(void) {
    sigset_t set;
    strata_termination_set(&set);
    return pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int strata_wait_termination_signal(void) {
    sigset_t set;
    int signo = 0;
    strata_termination_set(&set);
    while (sigwait(&set, &signo) != 0) {}
    return signo;
}

int strata_signal_thread(unsigned long thread, int signo) { return pthread_kill((pthread_t)thread, signo); }

int strata_keep_capabilities_on_fsuid_change(void) {
    int bits = prctl(PR_GET_SECUREBITS);
    if (bits < 0) return -1;
    if (bits & SECBIT_NO_SETUID_FIXUP) return 0;
    return prctl(PR_SET_SECUREBITS, bits | SECBIT_NO_SETUID_FIXUP) == 0 ? 0 : -1;
}

int strata_set_fs_identity(uint32_t uid, uint32_t gid) {
    // setfsuid/setfsgid return the previous ID and fail silently: an invalid ID
    // (-1) reads the current one back.
    setfsgid(gid);
    if ((uint32_t)setfsgid((gid_t)-1) != gid) return -1;
    setfsuid(uid);
    if ((uint32_t)setfsuid((uid_t)-1) != uid) {
        setfsgid(getegid());
        return -1;
    }
    return 0;
}

int strata_fchmodat_nofollow(int dirfd, const char *path, unsigned mode) {
#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif
    return (int)syscall(SYS_fchmodat2, dirfd, path, mode, AT_SYMLINK_NOFOLLOW);
}
