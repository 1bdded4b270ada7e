import OverlayCore

/// How the FUSE session is set up: kernel cache timeouts, threads, and the
/// mount options handed to the kernel. Defaults are documented in the README.
public struct FuseMountOptions: Sendable {
    /// Seconds the kernel may cache a name → inode mapping (`entry_timeout`).
    ///
    /// Long by default: lower layers are read-only while mounted and every
    /// change to the merged view passes through the kernel, which updates its
    /// own caches as it goes, so a cached entry cannot go stale. (A 1 s timeout,
    /// fuse-overlayfs's default, made a warm `find -ls` of 30k files re-look-up
    /// every entry: 8x kernel overlayfs instead of ~1x.)
    public var entryTimeout: Double = 3600
    /// Seconds the kernel may cache attributes (`attr_timeout`); same reasoning.
    public var attributeTimeout: Double = 3600
    /// Seconds the kernel may cache "name does not exist" (negative dentries).
    public var negativeTimeout: Double = 3600
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
    /// Owner mapping, squashing and `static_nlink` applied at the FUSE boundary.
    public var presentation = AttributePresentation()
    /// `fsync=0` / `volatile`: fsync requests return at once (copy-ups are not synced either).
    public var synchronous = true
    public init() {}
}
