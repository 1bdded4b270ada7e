/// How the FUSE session is set up: kernel cache timeouts, threads, and the
/// mount options handed to the kernel. Defaults are documented in the README.
public struct FuseMountOptions: Sendable {
    /// Seconds the kernel may cache a name → inode mapping (`entry_timeout`).
    public var entryTimeout: Double = 1
    /// Seconds the kernel may cache attributes (`attr_timeout`).
    public var attributeTimeout: Double = 1
    /// Seconds the kernel may cache "name does not exist" (negative dentries).
    public var negativeTimeout: Double = 1
    /// Worker threads of the multithreaded loop at most.
    public var maxThreads: Int = 8
    /// Let other users access the mount (`allow_other`; implies kernel permission checks).
    public var allowOther = false
    /// Kernel-side permission checks from the mode bits (`default_permissions`).
    public var defaultPermissions = true
    /// Mount read-only (no upper layer): the kernel then answers EROFS itself.
    public var readOnly = true
    /// Further options passed through to the kernel mount (e.g. `nosuid`, `noatime`).
    public var kernelOptions: [String] = []
    /// Log each failed request to stderr (foreground debugging).
    public var debugLog = false
    public init() {}
}
