import Glibc
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
    /// The kernel's writeback cache (`-o writeback`): writes gather in the page
    /// cache and reach the daemon in large batches, and the kernel keeps
    /// mtime and size itself. Off by default: data reaches the upper layer
    /// only at flush, fsync, or memory pressure (as on any local filesystem,
    /// but a daemon crash then loses unflushed writes, and writes by other
    /// processes directly to the upper are not seen while cached).
    public var writebackCache = false
    /// When the kernel asks for attributes with directory entries (`-o readdirplus=`).
    public var readdirPlus = ReaddirPlus.auto
    /// Each worker thread reads from its own cloned /dev/fuse descriptor (`-o clone_fd`).
    public var cloneDescriptor = false
    /// Nodes the daemon keeps at most (`-o max_nodes=`): over it, the kernel is
    /// asked to drop the least recently used unused names (`NodeReclaimer`).
    /// nil = as many as the kernel keeps inodes for.
    public var maxNodes: Int?
    /// On a read-only mount, answer OPEN and OPENDIR with ENOSYS so that the
    /// kernel stops sending them (FUSE_CAP_NO_OPEN(DIR)_SUPPORT): opening a
    /// file or a directory then costs no round trip, and reads and listings
    /// come without a handle. Lower layers never change, so nothing needs a
    /// per-open snapshot. `-o no_open=0` keeps the round trips. No effect on
    /// writable mounts.
    public var openless = true
    /// Largest WRITE request in bytes (`-o max_write=`); nil = libfuse's maximum (1 MiB).
    public var maxWrite: Int?
    public init() {}

    /// READDIRPLUS policy.
    public enum ReaddirPlus: String, Sendable {
        /// The kernel's adaptive choice (libfuse's default): plus for the first
        /// listing of a directory and when lookups follow listings.
        case auto
        /// Always READDIRPLUS: every listed entry is looked up with it.
        case always = "yes"
        /// Never: plain READDIR, lookups one by one.
        case never = "no"
    }

    /// `flags` of an OPEN or CREATE as the daemon should open the layer file:
    /// with the writeback cache the kernel may read pages of a file opened
    /// write-only, and it positions appends itself, so O_WRONLY becomes
    /// O_RDWR and O_APPEND is dropped (what libfuse's passthrough examples do).
    public func layerOpenFlags(_ flags: Int32) -> Int32 {
        guard writebackCache else { return flags }
        var f = flags & ~O_APPEND
        if f & O_ACCMODE == O_WRONLY { f = (f & ~O_ACCMODE) | O_RDWR }
        return f
    }
}
