// CFuse: libfuse3's low-level API for Swift. No logic lives here.
// FUSE_USE_VERSION must be 312 or later: with 35, fuse_session_loop_mt is a
// function-like macro Swift cannot import (../shared/FIELD-NOTES.md).
// Do not define _GNU_SOURCE here: a clean build then fails around fd_set.
#ifndef STRATA_CFUSE_SHIM_H
#define STRATA_CFUSE_SHIM_H
#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <fuse_opt.h>
#include <stddef.h>

/// FUSE_ARGS_INIT is a macro; this is the same initialiser as a function.
static inline struct fuse_args strata_fuse_args_init(int argc, char **argv) {
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    return args;
}

/// A one-buffer fuse_bufvec that reads `size` bytes at `offset` from `fd`
/// (FUSE_BUFVEC_INIT is a macro). Used for splice-capable read replies.
static inline struct fuse_bufvec strata_fd_bufvec(size_t size, int fd, off_t offset) {
    struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
    bv.buf[0].flags = (enum fuse_buf_flags)(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    bv.buf[0].fd = fd;
    bv.buf[0].pos = offset;
    return bv;
}
#endif
