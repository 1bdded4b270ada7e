import Glibc
import CStrataSys

/// Flags for `open`; every descriptor LayerSystem opens is close-on-exec.
public struct OpenFlags: OptionSet, Sendable, Hashable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    public static let readOnly = OpenFlags([])
    public static let writeOnly = OpenFlags(rawValue: O_WRONLY)
    public static let readWrite = OpenFlags(rawValue: O_RDWR)
    public static let create = OpenFlags(rawValue: O_CREAT)
    public static let exclusive = OpenFlags(rawValue: O_EXCL)
    public static let truncate = OpenFlags(rawValue: O_TRUNC)
    public static let append = OpenFlags(rawValue: O_APPEND)
    public static let directory = OpenFlags(rawValue: O_DIRECTORY)
    /// Fail with ELOOP (or open the link itself with `.path`) instead of following a final symlink.
    public static let noFollow = OpenFlags(rawValue: O_NOFOLLOW)
    /// `O_PATH`: a handle for `*at` calls and fstat; no data access.
    public static let path = OpenFlags(rawValue: strata_O_PATH)
    public static let nonBlocking = OpenFlags(rawValue: O_NONBLOCK)
    public static let noAccessTime = OpenFlags(rawValue: strata_O_NOATIME)
    public static let sync = OpenFlags(rawValue: O_SYNC)
    public static let dataSync = OpenFlags(rawValue: O_DSYNC)
    public static let closeOnExec = OpenFlags(rawValue: O_CLOEXEC)
    /// The access-mode bits of a raw flag word (`O_ACCMODE`).
    public static let accessModeMask: Int32 = O_ACCMODE
}

/// Path resolution restrictions for `openat2` (`RESOLVE_*`).
public struct ResolveFlags: OptionSet, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    /// Every component must stay beneath the starting directory.
    public static let beneath = ResolveFlags(rawValue: strata_RESOLVE_BENEATH)
    /// No symlink is followed in any component.
    public static let noSymlinks = ResolveFlags(rawValue: strata_RESOLVE_NO_SYMLINKS)
    public static let noMagicLinks = ResolveFlags(rawValue: strata_RESOLVE_NO_MAGICLINKS)
    public static let noCrossDevice = ResolveFlags(rawValue: strata_RESOLVE_NO_XDEV)
    /// What the daemon uses for multi-component paths inside a layer.
    public static let insideLayer: ResolveFlags = [.beneath, .noSymlinks, .noMagicLinks]
}
