import LayerSystem
import OverlayCore
import Glibc

/// An error of the diff engine: a code, a one-line message naming the path or
/// layer involved, and the underlying syscall or overlay failure if any.
///
/// A diff that throws has produced an incomplete list; callers must present it
/// as a failure, never as the complete answer.
public struct DiffError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        /// A layer or tree root does not exist, is not a directory, or cannot be opened.
        case badInput
        /// An entry inside a layer or tree could not be read.
        case unreadable
        /// The upper directory uses an overlay feature the upper walk cannot
        /// answer exactly (`redirect_dir`): use the two-tree walk.
        case unsupported
        /// A docker/containers-storage layer directory is malformed.
        case badLayerDirectory
        /// A mountpoint is not a (known) Strata or overlay mount.
        case notAMount
    }

    public let code: Code
    public let message: String
    public let cause: SystemCallError?

    public init(_ code: Code, _ message: String, cause: SystemCallError? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public init(_ error: OverlayError) {
        self.init(error.code == .badLayer ? .badInput : .unreadable, error.message, cause: error.cause)
    }

    public var description: String {
        if let cause { return "\(message): \(cause.message)" }
        return message
    }
}

/// Runs `body`, turning a `SystemCallError` into a `DiffError` with `message`.
@inline(__always)
func reading<T>(_ message: @autoclosure () -> String, _ body: () throws -> T) throws(DiffError) -> T {
    do { return try body() } catch let error as SystemCallError {
        throw DiffError(.unreadable, message(), cause: error)
    } catch let error as DiffError {
        throw error
    } catch let error as OverlayError {
        throw DiffError(error)
    } catch {
        throw DiffError(.unreadable, "\(message()): \(error)")
    }
}

/// A path for messages: `/` + components, invalid UTF-8 replaced.
func displayPath(_ path: [UInt8]) -> String {
    path.isEmpty ? "/" : String(decoding: path, as: UTF8.self)
}
