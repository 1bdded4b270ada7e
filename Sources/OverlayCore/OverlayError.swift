import LayerSystem
import Glibc

/// An error of the overlay core: what went wrong, the errno a FUSE reply
/// carries, a one-line message, and the underlying syscall failure if any.
public struct OverlayError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case notFound, notADirectory, isADirectory, readOnly, permissionDenied, invalidArgument,
             notEmpty, exists, crossDevice, unsupported, noData, system, badLayer
    }

    public let code: Code
    /// errno for the FUSE reply.
    public let errno: Int32
    public let message: String
    public let cause: SystemCallError?
    public let file: String
    public let line: Int

    public init(_ code: Code, errno: Int32, _ message: String, cause: SystemCallError? = nil,
                file: String = #fileID, line: Int = #line) {
        self.code = code; self.errno = errno; self.message = message; self.cause = cause
        self.file = file; self.line = line
    }

    /// Wraps a syscall failure, keeping its errno.
    public init(_ cause: SystemCallError, _ message: String, file: String = #fileID, line: Int = #line) {
        self.init(Self.code(for: cause.errno), errno: cause.errno, message, cause: cause, file: file, line: line)
    }

    public var description: String {
        if let cause { return "\(message): \(cause)" }
        return message
    }

    /// The mapping from errno to `Code`, in one place.
    public static func code(for errno: Int32) -> Code {
        switch errno {
        case ENOENT: .notFound
        case ENOTDIR: .notADirectory
        case EISDIR: .isADirectory
        case EROFS: .readOnly
        case EACCES, EPERM: .permissionDenied
        case EINVAL: .invalidArgument
        case ENOTEMPTY: .notEmpty
        case EEXIST: .exists
        case EXDEV: .crossDevice
        case ENOTSUP, ENOSYS: .unsupported
        case ENODATA: .noData
        default: .system
        }
    }

    static func notFound(_ what: String = "no such entry") -> OverlayError { .init(.notFound, errno: ENOENT, what) }
    static func readOnly() -> OverlayError { .init(.readOnly, errno: EROFS, "the mount has no upper layer") }
}

/// Runs `body`, turning a `SystemCallError` into an `OverlayError` with `message`.
@inline(__always)
func system<T>(_ message: @autoclosure () -> String, _ body: () throws -> T) throws(OverlayError) -> T {
    do { return try body() } catch let error as SystemCallError {
        throw OverlayError(error, message())
    } catch let error as OverlayError {
        throw error
    } catch {
        throw OverlayError(.system, errno: EIO, "\(message()): \(error)")
    }
}
