import Synchronization

/// Process-wide counters for benchmarks and leak checks: syscalls made through
/// LayerSystem and descriptors currently owned by `Descriptor` objects.
/// Relaxed atomics: the figures are statistics, not synchronisation.
public final class SyscallCounter: Sendable {
    public static let shared = SyscallCounter()

    /// System calls issued through LayerSystem wrappers.
    public let syscalls = Atomic<Int>(0)
    /// Live `Descriptor` objects.
    public let openDescriptors = Atomic<Int>(0)

    /// Number of syscalls so far.
    public var syscallCount: Int { syscalls.load(ordering: .relaxed) }
    /// Number of descriptors owned right now.
    public var descriptorCount: Int { openDescriptors.load(ordering: .relaxed) }

    @inline(__always) func count() { syscalls.add(1, ordering: .relaxed) }
}
