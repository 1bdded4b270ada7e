#!/usr/bin/env python3
"""Runs a crash-point plan (Tests/StrataMountTests/CrashPointTests.swift) against a mount.

    crash-workload.py ROOT PLAN LOG [PAUSE GO]

PLAN holds one JSON object per line (StrataTestSupport's CrashStep). Each step is
logged to LOG before ("B index monotonic-ns") and after ("E index errno monotonic-ns",
0 = done), the log fsynced each time; the same lines go to descriptor 3 when it is
open (the test's pipe: it kills the daemon on a chosen "B" line). The first step
that fails ends the run, so at most one step is ever in flight. Steps run one at a
time, in order; nothing here decides what is expected: the test's model does.
With PAUSE and GO, step PAUSE waits (at most 60 s) until the file GO exists,
after a "P index" line: the test attaches a tracer to the daemon meanwhile.
"""
import ctypes
import errno
import json
import os
import sys
import time

root, plan_path, log_path = sys.argv[1], sys.argv[2], sys.argv[3]
pause, go = (int(sys.argv[4]), sys.argv[5]) if len(sys.argv) > 5 else (None, None)
os.umask(0o022)
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
XATTR = "user.crash"

try:
    os.fstat(3)
    notify = 3
except OSError:
    notify = None
log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)


def note(line):
    data = line.encode()
    os.write(log, data)
    os.fsync(log)
    if notify is not None:
        os.write(notify, data)


def data(token, length):
    """The bytes a step writes: its token repeated to `length` (the model builds the same)."""
    t = token.encode()
    return (t * (length // len(t) + 1))[:length]


def write_all(fd, payload):
    view = memoryview(payload)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def p(rel):
    return root + "/" + rel


def fsync_directory(rel):
    parent = os.path.dirname(p(rel))
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def renameat2(a, b, flags):
    if libc.renameat2(AT_FDCWD, p(a).encode(), AT_FDCWD, p(b).encode(), ctypes.c_uint(flags)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def run(step):
    kind = step["kind"]
    if kind == "put":
        # A new file written under a temporary name, then renamed over the target.
        fd = os.open(p(step["temporary"]), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            write_all(fd, data(step["token"], step["length"]))
            if step.get("sync"):
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(p(step["temporary"]), p(step["path"]))
        if step.get("sync"):
            fsync_directory(step["path"])
    elif kind in ("overwrite", "append"):
        flags = os.O_WRONLY | (os.O_TRUNC if kind == "overwrite" else os.O_APPEND)
        fd = os.open(p(step["path"]), flags)
        try:
            write_all(fd, data(step["token"], step["length"]))
            if step.get("sync"):
                os.fsync(fd)
        finally:
            os.close(fd)
    elif kind == "truncate":
        os.truncate(p(step["path"]), step["size"])
    elif kind == "mkdir":
        os.mkdir(p(step["path"]), step["mode"])
    elif kind == "rmdir":
        os.rmdir(p(step["path"]))
    elif kind == "unlink":
        os.unlink(p(step["path"]))
    elif kind == "rename":
        if step.get("flags", 0):
            renameat2(step["path"], step["target"], step["flags"])
        else:
            os.rename(p(step["path"]), p(step["target"]))
    elif kind == "link":
        os.link(p(step["path"]), p(step["target"]), follow_symlinks=False)
    elif kind == "symlink":
        os.symlink(step["target"], p(step["path"]))
    elif kind == "chmod":
        os.chmod(p(step["path"]), step["mode"])
    elif kind == "setxattr":
        os.setxattr(p(step["path"]), XATTR, step["value"].encode(), follow_symlinks=False)
    elif kind == "removexattr":
        os.removexattr(p(step["path"]), XATTR, follow_symlinks=False)
    else:
        raise OSError(errno.EINVAL, "unknown step " + kind)


with open(plan_path) as plan:
    for line in plan:
        step = json.loads(line)
        i = step["index"]
        if i == pause:
            note(f"P {i} {time.monotonic_ns()}\n")
            deadline = time.monotonic() + 60
            while not os.path.exists(go) and time.monotonic() < deadline:
                time.sleep(0.001)
        note(f"B {i} {time.monotonic_ns()}\n")
        try:
            run(step)
            rc = 0
        except OSError as e:
            rc = e.errno or errno.EIO
        note(f"E {i} {rc} {time.monotonic_ns()}\n")
        if rc:
            break
