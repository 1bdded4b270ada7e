import Glibc

/// A failed system call: the syscall's name and the errno it set.
///
/// The lowest error layer. `OverlayError` and `DiffError` wrap it with context;
/// FUSE replies use `errno` directly.
public struct SystemCallError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The C function that failed, e.g. `"openat"`.
    public let name: String
    /// The errno value the call set.
    public let errno: Int32

    public init(_ name: String, errno: Int32) {
        self.name = name
        self.errno = errno
    }

    /// `strerror(errno)`.
    public var message: String { String(cString: strerror(errno)) }

    public var description: String { "\(name): \(message)" }
}
