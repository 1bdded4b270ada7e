// CStrataSys: the Linux syscalls and constants Swift's Glibc module does not
// expose. Thin wrappers only: no policy, no retries (LayerSystem retries EINTR).
#ifndef STRATA_CSTRATASYS_H
#define STRATA_CSTRATASYS_H
#include <stdint.h>
#include <sys/types.h>
#include <sys/xattr.h>

/// O_PATH / AT_EMPTY_PATH / O_NOFOLLOW-family constants that Glibc hides behind _GNU_SOURCE.
extern const int strata_O_PATH;
extern const int strata_O_TMPFILE;
extern const int strata_O_NOATIME;
extern const int strata_AT_EMPTY_PATH;
extern const unsigned strata_RENAME_NOREPLACE;
extern const unsigned strata_RENAME_EXCHANGE;
extern const unsigned strata_RENAME_WHITEOUT;
extern const uint64_t strata_RESOLVE_BENEATH;
extern const uint64_t strata_RESOLVE_NO_SYMLINKS;
extern const uint64_t strata_RESOLVE_NO_MAGICLINKS;
extern const uint64_t strata_RESOLVE_NO_XDEV;
extern const int strata_FICLONE;

/// openat2(2) with flags, mode and resolve; returns the fd or -1 with errno set.
int strata_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);
/// renameat2(2); returns 0 or -1 with errno set.
int strata_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned flags);
/// copy_file_range(2) with explicit offsets.
ssize_t strata_copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len);
/// ioctl(FICLONE).
int strata_ficlone(int dest_fd, int src_fd);
/// lseek with SEEK_DATA / SEEK_HOLE (constants hidden behind _GNU_SOURCE).
int64_t strata_lseek_data(int fd, int64_t offset);
int64_t strata_lseek_hole(int fd, int64_t offset);
/// fallocate(2).
int strata_fallocate(int fd, int mode, int64_t offset, int64_t len);
/// syncfs(2).
int strata_syncfs(int fd);
/// Copies extended attributes from src_fd to dst_fd with libattr's attr_copy_fd,
/// skipping overlay-private names (trusted.overlay.*, user.overlay.*) and any
/// name libattr's policy excludes. Returns 0 or -1 with errno set.
int strata_copy_xattrs(int src_fd, int dst_fd);
/// posix_spawn of `path` with argv/envp in a new session (setsid), stdin from
/// /dev/null, stdout/stderr inherited, `keep_fd` (if >= 0) as descriptor 3 and
/// every other descriptor closed; returns the pid or -1 with errno set.
pid_t strata_spawn_session(const char *path, char *const argv[], char *const envp[], int keep_fd);
/// Blocks SIGINT, SIGTERM, SIGHUP and SIGUSR1 in the calling thread (threads it
/// creates afterwards inherit the mask), so that only a thread calling
/// strata_wait_termination_signal receives them. Returns 0 or an errno.
int strata_block_termination_signals(void);
/// Waits for one of those signals (sigwait); returns its number.
int strata_wait_termination_signal(void);
/// Sends `signo` to thread `thread` (pthread_kill).
int strata_signal_thread(unsigned long thread, int signo);
/// readdir over a descriptor with getdents64: fills `buf`, returns bytes or -1.
long strata_getdents64(int fd, void *buf, unsigned long count);
/// The calling thread's kernel thread ID (gettid).
int strata_gettid(void);

/// fchmodat2(2) with AT_SYMLINK_NOFOLLOW (Linux 6.6+): changes the mode of
/// `path` in `dirfd` without following a symlink there. -1 + ENOSYS on older kernels.
int strata_fchmodat_nofollow(int dirfd, const char *path, unsigned mode);

/// Keeps the capabilities of every thread created from now on when its
/// filesystem user ID changes (SECBIT_NO_SETUID_FIXUP), so a thread that takes
/// a caller's fsuid to create a file with that owner keeps CAP_DAC_OVERRIDE,
/// as kernel overlayfs's creator credentials do. 0 on success, -1 + errno.
int strata_keep_capabilities_on_fsuid_change(void);
/// The calling thread's filesystem user/group IDs become uid/gid (setfsuid(2),
/// setfsgid(2): per thread). Returns 0 if the switch took effect, -1 if not
/// (the IDs are then unchanged).
int strata_set_fs_identity(uint32_t uid, uint32_t gid);
#endif
