import Glibc
import CStrataSys

// Calls the diff engine (LayerDiff) needs beyond `Descriptor`'s basics: xattrs
// of a *name* in a directory without opening it first (one syscall instead of
// three), and a byte comparison of two open files. Same conventions as
// SystemCalls.swift: EINTR retried, SystemCallError thrown, every call counted.
//
// Race safety: the path handed to the kernel is `/proc/self/fd/DIRFD/NAME`.
// `/proc/self/fd/DIRFD` names exactly the directory this descriptor holds (no
// path lookup above it), `NAME` is a single component (no `/`), and the `l*`
// forms never follow a symlink in that final component. So the call reaches the
// same object `fstatat(DIRFD, NAME, AT_SYMLINK_NOFOLLOW)` does.

extension Descriptor {
    /// `/proc/self/fd/N/NAME` as NUL-terminated bytes; rejects names with `/` or NUL.
    private func procChildPath(_ name: FileName) throws -> [CChar] {
        guard name.isValidComponent else { throw SystemCallError("name", errno: EINVAL) }
        var path = Array("/proc/self/fd/\(rawValue)/".utf8)
        path.append(contentsOf: name.bytes)
        path.append(0)
        return path.map { CChar(bitPattern: $0) }
    }

    /// Value of xattr `key` on the entry `name` of this directory, not following
    /// a symlink; `nil` when absent (ENODATA) or when the filesystem or the
    /// object type does not support xattrs (ENOTSUP, EPERM on symlinks for
    /// `user.*`). Wraps `lgetxattr(2)` on `/proc/self/fd/N/NAME`.
    public func extendedAttribute(_ key: String, of name: FileName) throws -> [UInt8]? {
        let path = try procChildPath(name)
        var size = 256
        while true {
            var buffer = [UInt8](repeating: 0, count: size)
            do {
                let n = try buffer.withUnsafeMutableBytes { (b) throws in
                    try retrying("lgetxattr") { CStrataSys.lgetxattr(path, key, b.baseAddress, b.count) }
                }
                return Array(buffer.prefix(n))
            } catch let error as SystemCallError where error.errno == ENODATA || error.errno == ENOTSUP || error.errno == EPERM {
                return nil
            } catch let error as SystemCallError where error.errno == ERANGE {
                let needed = try retrying("lgetxattr") { CStrataSys.lgetxattr(path, key, nil, 0) }
                size = max(needed, size * 2)
            }
        }
    }

    /// Names of all xattrs on the entry `name` of this directory (not following
    /// a symlink), as raw bytes; empty where xattrs are unsupported.
    /// Wraps `llistxattr(2)` on `/proc/self/fd/N/NAME`.
    public func extendedAttributeNames(of name: FileName) throws -> [[UInt8]] {
        let path = try procChildPath(name)
        var size = 1024
        while true {
            var buffer = [UInt8](repeating: 0, count: size)
            do {
                let n = try buffer.withUnsafeMutableBytes { (b) throws in
                    try retrying("llistxattr") { CStrataSys.llistxattr(path, b.baseAddress?.assumingMemoryBound(to: CChar.self), b.count) }
                }
                return buffer.prefix(n).split(separator: 0, omittingEmptySubsequences: true).map(Array.init)
            } catch let error as SystemCallError where error.errno == ERANGE {
                let needed = try retrying("llistxattr") { CStrataSys.llistxattr(path, nil, 0) }
                size = max(needed, size * 2)
            } catch let error as SystemCallError where error.errno == ENOTSUP {
                return []
            }
        }
    }

    /// Whether this open file and `other` hold the same bytes, read from offset
    /// 0 in 128 KiB chunks until the first difference or the end of both.
    /// Wraps `pread(2)`.
    public func hasSameContents(as other: Descriptor) throws -> Bool {
        let chunk = 128 * 1024
        var a = [UInt8](repeating: 0, count: chunk)
        var b = [UInt8](repeating: 0, count: chunk)
        var offset: Int64 = 0
        while true {
            let n = try a.withUnsafeMutableBytes { (p) throws in try readFully(into: p, at: offset) }
            let m = try b.withUnsafeMutableBytes { (p) throws in try other.readFully(into: p, at: offset) }
            if n != m { return false }
            if n == 0 { return true }
            if a.prefix(n) != b.prefix(m) { return false }
            offset += Int64(n)
        }
    }

    /// Reads until `buffer` is full or the end of the file.
    private func readFully(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int {
        var total = 0
        while total < buffer.count {
            let rest = UnsafeMutableRawBufferPointer(rebasing: buffer[total...])
            let n = try read(into: rest, at: offset + Int64(total))
            if n == 0 { break }
            total += n
        }
        return total
    }
}
