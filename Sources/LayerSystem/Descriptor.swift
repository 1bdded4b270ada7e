import Glibc

/// An open file descriptor with exactly one owner: this object. It closes the
/// descriptor in `deinit`, so sharing the object shares the descriptor safely
/// and dropping the last reference releases it. EBADF on close is a bug
/// (double ownership), so it traps in debug builds.
public final class Descriptor: Sendable, CustomStringConvertible {
    /// The raw descriptor number; valid for this object's lifetime only.
    public let rawValue: Int32

    /// Takes ownership of `rawValue`.
    public init(owning rawValue: Int32) {
        precondition(rawValue >= 0, "invalid descriptor")
        self.rawValue = rawValue
        SyscallCounter.shared.openDescriptors.add(1, ordering: .relaxed)
    }

    deinit {
        SyscallCounter.shared.openDescriptors.subtract(1, ordering: .relaxed)
        // close(2) must not be retried on EINTR on Linux: the descriptor is freed either way.
        let rc = Glibc.close(rawValue)
        assert(rc == 0 || errno != EBADF, "closed a descriptor twice: \(rawValue)")
    }

    public var description: String { "fd \(rawValue)" }
}
