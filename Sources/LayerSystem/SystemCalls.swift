import Glibc
import CStrataSys

// The one file of LayerSystem that names libc functions. Every wrapper counts
// itself in SyscallCounter, retries EINTR, and throws SystemCallError.
//
// Race safety: every call that takes a name works relative to a directory
// descriptor and never follows a symlink in the final component (O_NOFOLLOW /
// AT_SYMLINK_NOFOLLOW); callers pass single components, so no intermediate
// symlink is crossed either. Multi-component paths go through `openat2` with
// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS.

@inline(__always)
func retrying<T: BinaryInteger>(_ name: String, _ body: () -> T) throws -> T {
    while true {
        SyscallCounter.shared.count()
        let rc = body()
        if rc >= 0 { return rc }
        let e = errno
        if e != EINTR { throw SystemCallError(name, errno: e) }
    }
}

@inline(__always)
func withName<R>(_ name: FileName, _ body: (UnsafePointer<CChar>) throws -> R) throws -> R {
    guard !name.bytes.contains(0) else { throw SystemCallError("name", errno: EINVAL) }
    var buffer = name.bytes
    buffer.append(0)
    // SAFETY: buffer is NUL-terminated and lives for the duration of body.
    return try buffer.withUnsafeBufferPointer { (raw) throws -> R in
        try raw.withMemoryRebound(to: CChar.self) { (p) throws -> R in try body(p.baseAddress!) }
    }
}

extension Descriptor {
    /// Opens `name` relative to this directory; never follows a final symlink
    /// (O_NOFOLLOW is always added), so a symlink yields ELOOP, or the link
    /// itself with `.path`. Wraps `openat(2)`.
    public func open(_ name: FileName, _ flags: OpenFlags, mode: UInt32 = 0) throws -> Descriptor {
        let all = flags.union([.noFollow, .closeOnExec]).rawValue
        let fd = try withName(name) { (p) throws in
            try retrying("openat") { Glibc.openat(rawValue, p, all, mode_t(mode)) }
        }
        return Descriptor(owning: fd)
    }

    /// Opens a multi-component relative `path` beneath this directory with no
    /// symlink followed anywhere (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so the
    /// result cannot escape the layer. Wraps `openat2(2)`.
    public func openBeneath(_ path: String, _ flags: OpenFlags, resolve: ResolveFlags = .insideLayer) throws -> Descriptor {
        let all = UInt64(UInt32(bitPattern: flags.union(.closeOnExec).rawValue))
        let fd = try retrying("openat2") { strata_openat2(rawValue, path, all, 0, resolve.rawValue) }
        return Descriptor(owning: fd)
    }

    /// A fresh readable descriptor for this same directory (so that directory
    /// positions are never shared). Wraps `openat(fd, ".")`.
    public func reopenDirectory() throws -> Descriptor {
        let fd = try retrying("openat") { Glibc.openat(rawValue, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        return Descriptor(owning: fd)
    }

    /// Reopens this descriptor (possibly `O_PATH`) with new flags through
    /// `/proc/self/fd`, which names this exact inode and follows no symlink.
    public func reopen(_ flags: OpenFlags) throws -> Descriptor {
        let all = flags.subtracting(.noFollow).union(.closeOnExec).rawValue
        let fd = try retrying("open") { Glibc.open(procPath, all) }
        return Descriptor(owning: fd)
    }

    var procPath: String { "/proc/self/fd/\(rawValue)" }

    /// Attributes of `name` in this directory, not following a symlink.
    /// Wraps `fstatat(2)` with AT_SYMLINK_NOFOLLOW.
    public func attributes(of name: FileName) throws -> FileAttributes {
        var st = stat()
        _ = try withName(name) { (p) throws in
            try retrying("fstatat") { Glibc.fstatat(rawValue, p, &st, AT_SYMLINK_NOFOLLOW) }
        }
        return FileAttributes(st)
    }

    /// Attributes of `name`, or `nil` when it does not exist (ENOENT).
    public func attributesIfPresent(of name: FileName) throws -> FileAttributes? {
        do { return try attributes(of: name) } catch let error as SystemCallError where error.errno == ENOENT { return nil }
    }

    /// Attributes of the open file. Wraps `fstat(2)`.
    public func attributes() throws -> FileAttributes {
        var st = stat()
        _ = try retrying("fstat") { Glibc.fstat(rawValue, &st) }
        return FileAttributes(st)
    }

    /// Target of the symlink `name` (or of this O_PATH symlink with an empty
    /// name). Wraps `readlinkat(2)`.
    public func readLink(_ name: FileName) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = try withName(name) { (p) throws in
            try buffer.withUnsafeMutableBytes { (b) throws in
                try retrying("readlinkat") { Glibc.readlinkat(rawValue, p, b.baseAddress!.assumingMemoryBound(to: CChar.self), b.count) }
            }
        }
        return Array(buffer.prefix(n))
    }

    /// Reads up to `count` bytes at `offset`. Wraps `pread(2)`.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int {
        try retrying("pread") { Glibc.pread(rawValue, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    /// Reads the whole file from offset 0 (for small files: tests, markers).
    public func readAll(limit: Int = 1 << 30) throws -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var offset: Int64 = 0
        while result.count < limit {
            let n = try chunk.withUnsafeMutableBytes { (b) throws in try read(into: b, at: offset) }
            if n == 0 { break }
            result.append(contentsOf: chunk.prefix(n))
            offset += Int64(n)
        }
        return result
    }

    /// Writes all of `bytes` at `offset`. Wraps `pwrite(2)`.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws -> Int {
        try retrying("pwrite") { Glibc.pwrite(rawValue, bytes.baseAddress, bytes.count, off_t(offset)) }
    }

    /// Filesystem statistics of the filesystem holding this file. Wraps `fstatvfs(3)`.
    public func fileSystemStatistics() throws -> FileSystemStatistics {
        var s = statvfs()
        _ = try retrying("fstatvfs") { Glibc.fstatvfs(rawValue, &s) }
        return FileSystemStatistics(
            blockSize: UInt64(s.f_bsize), fragmentSize: UInt64(s.f_frsize), blocks: UInt64(s.f_blocks),
            blocksFree: UInt64(s.f_bfree), blocksAvailable: UInt64(s.f_bavail), files: UInt64(s.f_files),
            filesFree: UInt64(s.f_ffree), filesAvailable: UInt64(s.f_favail), fileSystemID: UInt64(s.f_fsid),
            flags: UInt64(s.f_flag), maximumNameLength: UInt64(s.f_namemax))
    }

    // MARK: Extended attributes

    /// Value of xattr `name`, or `nil` when absent (ENODATA). Works on O_PATH
    /// descriptors too, through `/proc/self/fd` (which names this inode and
    /// follows no symlink). Wraps `getxattr(2)`.
    public func extendedAttribute(_ name: String) throws -> [UInt8]? {
        let path = procPath
        var size = 256
        while true {
            var buffer = [UInt8](repeating: 0, count: size)
            do {
                let n = try buffer.withUnsafeMutableBytes { (b) throws in
                    try retrying("getxattr") { CStrataSys.getxattr(path, name, b.baseAddress, b.count) }
                }
                return Array(buffer.prefix(n))
            } catch let error as SystemCallError where error.errno == ENODATA {
                return nil
            } catch let error as SystemCallError where error.errno == ERANGE {
                let needed = try retrying("getxattr") { CStrataSys.getxattr(path, name, nil, 0) }
                size = max(needed, size * 2)
            }
        }
    }

    /// Names of all xattrs on this inode, as raw bytes. Wraps `listxattr(2)`
    /// (through `/proc/self/fd`, so O_PATH descriptors work too).
    public func extendedAttributeNames() throws -> [[UInt8]] {
        let path = procPath
        return try Self.attributeNames { CStrataSys.listxattr(path, $0, $1) }
    }

    /// The same for a descriptor opened for reading (not O_PATH): one
    /// `flistxattr(2)`, no path lookup.
    public func openFileExtendedAttributeNames() throws -> [[UInt8]] {
        try Self.attributeNames { CStrataSys.flistxattr(rawValue, $0, $1) }
    }

    private static func attributeNames(_ list: (UnsafeMutablePointer<CChar>?, Int) -> Int) throws -> [[UInt8]] {
        var size = 1024
        while true {
            var buffer = [UInt8](repeating: 0, count: size)
            do {
                let n = try buffer.withUnsafeMutableBytes { (b) throws in
                    try retrying("listxattr") { list(b.baseAddress?.assumingMemoryBound(to: CChar.self), b.count) }
                }
                return buffer.prefix(n).split(separator: 0, omittingEmptySubsequences: true).map(Array.init)
            } catch let error as SystemCallError where error.errno == ERANGE {
                let needed = try retrying("listxattr") { list(nil, 0) }
                size = max(needed, size * 2)
            } catch let error as SystemCallError where error.errno == ENOTSUP {
                return []
            }
        }
    }

    /// Sets xattr `name`. Wraps `setxattr(2)` through `/proc/self/fd`.
    public func setExtendedAttribute(_ name: String, _ value: [UInt8], flags: Int32 = 0) throws {
        let path = procPath
        _ = try value.withUnsafeBytes { (b) throws in
            try retrying("setxattr") { CStrataSys.setxattr(path, name, b.baseAddress, b.count, flags) }
        }
    }

    /// Removes xattr `name`. Wraps `removexattr(2)` through `/proc/self/fd`.
    public func removeExtendedAttribute(_ name: String) throws {
        let path = procPath
        _ = try retrying("removexattr") { CStrataSys.removexattr(path, name) }
    }

    // MARK: Directories

    /// Whether this directory has no entries besides `.` and `..`.
    public func isEmptyDirectory() throws -> Bool {
        var empty = true
        try forEachEntry { _ in empty = false }
        return empty
    }

    /// Calls `body` for each entry of this directory except `.` and `..`, in
    /// the order the filesystem returns them. Reads through a fresh descriptor
    /// so concurrent listings never share a position. Wraps `getdents64(2)`.
    public func forEachEntry(_ body: (DirectoryEntry) throws -> Void) throws {
        let dir = try reopenDirectory()
        let capacity = 64 * 1024
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let n = try retrying("getdents64") { strata_getdents64(dir.rawValue, buffer, UInt(capacity)) }
            if n == 0 { return }
            var offset = 0
            while offset < n {
                // SAFETY: the kernel wrote n bytes of linux_dirent64 records into buffer.
                let record = buffer + offset
                let ino = record.loadUnaligned(as: UInt64.self)
                let reclen = Int(record.loadUnaligned(fromByteOffset: 16, as: UInt16.self))
                let type = record.load(fromByteOffset: 18, as: UInt8.self)
                let nameStart = record.advanced(by: 19).assumingMemoryBound(to: UInt8.self)
                let nameLength = strlen(UnsafeRawPointer(nameStart).assumingMemoryBound(to: CChar.self))
                offset += reclen
                if nameLength == 1 && nameStart[0] == 0x2E { continue }
                if nameLength == 2 && nameStart[0] == 0x2E && nameStart[1] == 0x2E { continue }
                let name = FileName(bytes: Array(UnsafeBufferPointer(start: nameStart, count: nameLength)))
                try body(DirectoryEntry(name: name, inode: ino, kind: FileKind(directoryEntryType: type)))
            }
        }
    }

    // MARK: Changing files (used by the write path and test fixtures)

    /// Creates directory `name`. Wraps `mkdirat(2)`.
    public func makeDirectory(_ name: FileName, mode: UInt32) throws {
        _ = try withName(name) { (p) throws in try retrying("mkdirat") { Glibc.mkdirat(rawValue, p, mode_t(mode)) } }
    }

    /// Creates a special file. Wraps `mknodat(2)`.
    public func makeNode(_ name: FileName, mode: UInt32, device: UInt64) throws {
        _ = try withName(name) { (p) throws in
            try retrying("mknodat") { Glibc.mknodat(rawValue, p, mode_t(mode), dev_t(device)) }
        }
    }

    /// Creates symlink `name` pointing at `target`. Wraps `symlinkat(2)`.
    public func makeSymlink(_ name: FileName, target: [UInt8]) throws {
        _ = try withName(FileName(bytes: target)) { (t) throws in
            try withName(name) { (p) throws in try retrying("symlinkat") { Glibc.symlinkat(t, rawValue, p) } }
        }
    }

    /// Hard-links `name` in this directory as `newName` in `directory`. Wraps `linkat(2)` (no follow).
    public func link(_ name: FileName, to directory: Descriptor, as newName: FileName) throws {
        _ = try withName(name) { (a) throws in
            try withName(newName) { (b) throws in
                try retrying("linkat") { Glibc.linkat(rawValue, a, directory.rawValue, b, 0) }
            }
        }
    }

    /// Opens `name` as a regular file without ever blocking on what is really
    /// there: a fifo or device swapped in behind the caller's back is refused
    /// with EIO instead of hanging the opening thread. The descriptor keeps
    /// O_NONBLOCK, which reads, writes, truncation and syncs of a regular file
    /// ignore (clearing it cost two `fcntl` per open). Two syscalls.
    public func openRegularFile(_ name: FileName, _ flags: OpenFlags) throws -> Descriptor {
        let file = try open(name, flags.union(.nonBlocking))
        guard try file.attributes().kind == .regular else { throw SystemCallError("open", errno: EIO) }
        return file
    }

    /// Gives this (possibly `O_PATH`) descriptor's object the new name
    /// `newName` in `directory`. Wraps `linkat(2)` on `/proc/self/fd/N` with
    /// AT_SYMLINK_FOLLOW (no CAP_DAC_READ_SEARCH needed); ENOENT once the
    /// object has no name left.
    public func linkObject(to directory: Descriptor, as newName: FileName) throws {
        _ = try withName(newName) { (b) throws in
            try retrying("linkat") { Glibc.linkat(AT_FDCWD, procPath, directory.rawValue, b, AT_SYMLINK_FOLLOW) }
        }
    }

    /// Removes `name` (a directory with `directory: true`). Wraps `unlinkat(2)`.
    public func remove(_ name: FileName, directory: Bool = false) throws {
        _ = try withName(name) { (p) throws in
            try retrying("unlinkat") { Glibc.unlinkat(rawValue, p, directory ? AT_REMOVEDIR : 0) }
        }
    }

    /// Renames `name` here to `newName` in `directory`. Wraps `renameat2(2)`.
    public func rename(_ name: FileName, to directory: Descriptor, as newName: FileName, flags: RenameFlags = []) throws {
        _ = try withName(name) { (a) throws in
            try withName(newName) { (b) throws in
                try retrying("renameat2") { strata_renameat2(rawValue, a, directory.rawValue, b, flags.rawValue) }
            }
        }
    }

    /// Changes permission bits. Wraps `fchmod(2)` (through /proc for O_PATH descriptors).
    public func setMode(_ mode: UInt32) throws {
        _ = try retrying("fchmodat") { Glibc.fchmodat(AT_FDCWD, procPath, mode_t(mode & 0o7777), 0) }
    }

    /// Changes owner (`UInt32.max` keeps a field). Wraps `fchownat(2)` with AT_EMPTY_PATH.
    public func setOwner(user: UInt32, group: UInt32) throws {
        _ = try retrying("fchownat") { Glibc.fchownat(rawValue, "", user, group, strata_AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) }
    }

    /// Sets access and modification times (`nil` = UTIME_OMIT). Wraps `utimensat(2)` with AT_EMPTY_PATH.
    public func setTimes(access: TimeSpec?, modification: TimeSpec?) throws {
        let omit = Glibc.timespec(tv_sec: 0, tv_nsec: Int((1 << 30) - 2))
        var times = [access?.timespec ?? omit, modification?.timespec ?? omit]
        _ = try retrying("utimensat") { Glibc.utimensat(rawValue, "", &times, strata_AT_EMPTY_PATH) }
    }

    /// Sets times of `name` in this directory without following a symlink
    /// (`nil` = UTIME_OMIT). Wraps `utimensat(2)` with AT_SYMLINK_NOFOLLOW.
    public func setTimes(of name: FileName, access: TimeSpec?, modification: TimeSpec?) throws {
        let omit = Glibc.timespec(tv_sec: 0, tv_nsec: Int((1 << 30) - 2))
        var times = [access?.timespec ?? omit, modification?.timespec ?? omit]
        _ = try withName(name) { (p) throws in
            try retrying("utimensat") { Glibc.utimensat(rawValue, p, &times, AT_SYMLINK_NOFOLLOW) }
        }
    }

    /// Sets the size. Wraps `ftruncate(2)`.
    public func truncate(to size: Int64) throws {
        _ = try retrying("ftruncate") { Glibc.ftruncate(rawValue, off_t(size)) }
    }

    /// Flushes data (and metadata unless `dataOnly`). Wraps `fsync(2)` / `fdatasync(2)`.
    public func synchronize(dataOnly: Bool = false) throws {
        _ = try retrying(dataOnly ? "fdatasync" : "fsync") { dataOnly ? Glibc.fdatasync(rawValue) : Glibc.fsync(rawValue) }
    }
}

/// `renameat2` flags.
public struct RenameFlags: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let noReplace = RenameFlags(rawValue: strata_RENAME_NOREPLACE)
    public static let exchange = RenameFlags(rawValue: strata_RENAME_EXCHANGE)
    public static let whiteout = RenameFlags(rawValue: strata_RENAME_WHITEOUT)
}

/// One directory entry as `getdents64` reports it.
public struct DirectoryEntry: Sendable, Hashable {
    public var name: FileName
    /// `d_ino`.
    public var inode: UInt64
    /// `d_type`; `nil` when the filesystem reports DT_UNKNOWN.
    public var kind: FileKind?
}

/// Calls on absolute paths, for the command line only (validation, mountpoints).
/// The daemon never uses these on layer contents.
public enum System {
    /// Sets the process's file mode creation mask. Wraps `umask(2)`.
    public static func setFileCreationMask(_ mask: UInt32) { _ = Glibc.umask(mode_t(mask)) }

    /// Lets threads created from now on keep their capabilities while their
    /// filesystem IDs are switched (`withFileSystemIdentity`); false if not
    /// permitted (no CAP_SETPCAP). Wraps `prctl(PR_SET_SECUREBITS)`.
    public static func keepCapabilitiesOnIdentitySwitch() -> Bool {
        strata_keep_capabilities_on_fsuid_change() == 0
    }

    /// Runs `body` with the calling thread's filesystem user and group IDs set
    /// to `user` and `group` (so objects it creates get that owner, and the
    /// kernel applies setgid-directory inheritance itself), restoring the
    /// daemon's own IDs afterwards. Returns nil without running `body` if the
    /// switch is not permitted. Per thread: other threads are unaffected.
    /// Wraps `setfsuid(2)`/`setfsgid(2)`.
    public static func withFileSystemIdentity<T>(user: UInt32, group: UInt32, _ body: () throws -> T) throws -> T? {
        guard strata_set_fs_identity(user, group) == 0 else { return nil }
        defer { _ = strata_set_fs_identity(UInt32(geteuid()), UInt32(getegid())) }
        return try body()
    }

    /// Opens an absolute or relative path, following symlinks (user-given
    /// layer paths may be symlinks; only the contents of a layer are never followed).
    public static func open(_ path: String, _ flags: OpenFlags) throws -> Descriptor {
        let fd = try retrying("open") { Glibc.open(path, flags.union(.closeOnExec).rawValue) }
        return Descriptor(owning: fd)
    }

    /// `stat(2)` of a path (following symlinks).
    public static func attributes(_ path: String, followSymlinks: Bool = true) throws -> FileAttributes {
        var st = stat()
        if followSymlinks {
            _ = try retrying("stat") { Glibc.fstatat(AT_FDCWD, path, &st, 0) }
        } else {
            _ = try retrying("lstat") { Glibc.lstat(path, &st) }
        }
        return FileAttributes(st)
    }

    /// `realpath(3)`.
    public static func canonicalPath(_ path: String) throws -> String {
        guard let p = Glibc.realpath(path, nil) else { throw SystemCallError("realpath", errno: errno) }
        defer { free(p) }
        return String(cString: p)
    }

    /// `umount2(2)`; `lazy` adds MNT_DETACH.
    public static func unmount(_ path: String, lazy: Bool = false) throws {
        _ = try retrying("umount2") { Glibc.umount2(path, lazy ? Int32(MNT_DETACH) : 0) }
    }

    /// Effective user ID.
    public static var effectiveUserID: UInt32 { Glibc.geteuid() }

    /// Whether this process is root of the initial user namespace (real root), not
    /// uid 0 inside a user namespace (rootless podman runs its mount program so):
    /// only real root may write trusted xattrs, /run, or make device nodes usable.
    public static var isInitialNamespaceRoot: Bool {
        guard Glibc.geteuid() == 0 else { return false }
        let fd = Glibc.open("/proc/self/uid_map", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return true }
        defer { Glibc.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return true }
        let fields = String(decoding: buffer.prefix(n), as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
        return fields.count == 3 && fields[0] == "0" && fields[1] == "0" && fields[2] == "4294967295"
    }
    /// Process ID.
    public static var processID: Int32 { Glibc.getpid() }

    /// `access(2)` with R_OK|W_OK on a path.
    public static func canReadWrite(_ path: String) -> Bool { Glibc.access(path, R_OK | W_OK) == 0 }

    /// Current time of the real-time clock.
    public static func now() -> TimeSpec {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return TimeSpec(ts)
    }

    /// Monotonic clock in nanoseconds.
    public static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
