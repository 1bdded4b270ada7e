import Glibc
import CStrataSys

// Data and metadata copying for copy-up. Same conventions as SystemCalls.swift.

extension Descriptor {
    /// How `copyData(from:)` moved the bytes.
    public enum CopyMethod: String, Sendable { case clone, copyFileRange, readWrite }

    /// Copies all data of `source` into this (empty, writable) file: a reflink
    /// (FICLONE) where the filesystem shares extents, else `copy_file_range`
    /// per data extent (holes found with SEEK_DATA/SEEK_HOLE stay holes), else
    /// read/write. Ends with the exact size. Wraps `ioctl(FICLONE)`,
    /// `copy_file_range(2)`, `lseek(2)`, `pread`/`pwrite`, `ftruncate(2)`.
    @discardableResult
    public func copyData(from source: Descriptor, size: Int64) throws -> CopyMethod {
        SyscallCounter.shared.count()
        if size > 0 && strata_ficlone(rawValue, source.rawValue) == 0 { return .clone }
        var method = CopyMethod.copyFileRange
        var offset: Int64 = 0
        while offset < size {
            SyscallCounter.shared.count()
            var dataStart = strata_lseek_data(source.rawValue, offset)
            if dataStart < 0 {
                if errno == ENXIO { break }         // only a hole remains
                dataStart = offset                  // SEEK_DATA unsupported: treat all as data
            }
            var dataEnd = strata_lseek_hole(source.rawValue, dataStart)
            if dataEnd < 0 { dataEnd = size }
            dataEnd = min(dataEnd, size)
            var position = dataStart
            while position < dataEnd {
                if method == .copyFileRange {
                    var inOffset = position, outOffset = position
                    let n = strata_copy_file_range(source.rawValue, &inOffset, rawValue, &outOffset, Int(dataEnd - position))
                    SyscallCounter.shared.count()
                    if n > 0 { position += Int64(n); continue }
                    if n == 0 { break }
                    if errno == EINTR { continue }
                    if errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP {
                        method = .readWrite
                        continue
                    }
                    throw SystemCallError("copy_file_range", errno: errno)
                }
                position += try copyChunk(from: source, at: position, limit: dataEnd - position)
            }
            offset = max(dataEnd, offset + 1)
        }
        try truncate(to: size)
        return method
    }

    private func copyChunk(from source: Descriptor, at offset: Int64, limit: Int64) throws -> Int64 {
        let count = Int(min(limit, 1 << 20))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
        defer { buffer.deallocate() }
        let n = try source.read(into: buffer, at: offset)
        if n == 0 { return limit }   // source shrank: stop
        var written = 0
        while written < n {
            written += try write(UnsafeRawBufferPointer(rebasing: buffer[written..<n]), at: offset + Int64(written))
        }
        return Int64(n)
    }

    /// Copies every xattr of `source` to this file except overlay-private ones
    /// (`trusted.overlay.*`, `user.overlay.*`), with libattr's `attr_copy_fd`.
    /// Both must be real (not O_PATH) descriptors.
    public func copyExtendedAttributes(from source: Descriptor) throws {
        _ = try retrying("attr_copy_fd") { strata_copy_xattrs(source.rawValue, rawValue) }
    }

    /// Allocates or punches space. Wraps `fallocate(2)`.
    public func allocate(mode: Int32, offset: Int64, length: Int64) throws {
        _ = try retrying("fallocate") { strata_fallocate(rawValue, mode, offset, length) }
    }

    /// Owner of `name` in this directory without following a symlink. Wraps `fchownat(2)`.
    public func setOwner(of name: FileName, user: UInt32, group: UInt32) throws {
        _ = try withName(name) { (p) throws in
            try retrying("fchownat") { Glibc.fchownat(rawValue, p, user, group, AT_SYMLINK_NOFOLLOW) }
        }
    }

    /// Changes the mode of `name` in this directory without following a
    /// symlink there. Wraps `fchmodat2(2)` with AT_SYMLINK_NOFOLLOW; throws
    /// ENOSYS before Linux 6.6 (callers then go through an O_PATH descriptor).
    public func setMode(of name: FileName, _ mode: UInt32) throws {
        _ = try withName(name) { (p) throws in
            try retrying("fchmodat2") { strata_fchmodat_nofollow(rawValue, p, mode & 0o7777) }
        }
    }

    /// Creates and opens a new file `name` (O_EXCL). Wraps `openat(2)`.
    public func createFile(_ name: FileName, flags: OpenFlags, mode: UInt32) throws -> Descriptor {
        try open(name, flags.union([.create, .exclusive]), mode: mode)
    }
}
