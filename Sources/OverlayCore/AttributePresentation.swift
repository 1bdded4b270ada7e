import LayerSystem

/// How attributes are shown through the mount and how owners given by the
/// mount's users are stored: fuse-overlayfs's `uidmapping=`, `gidmapping=`,
/// `squash_to_root`, `squash_to_uid=`, `squash_to_gid=` and `static_nlink`,
/// with fuse-overlayfs's meaning, so that containers-storage can hand Strata
/// the options it hands fuse-overlayfs.
///
/// A mapping `A:B:N` says: the N IDs stored on disk from A are shown from B.
/// IDs on disk outside every range are shown as the overflow ID (65534, or
/// /proc/sys/kernel/overflow{u,g}id); IDs given by users (create, chown) are
/// stored through the reverse mapping. Squashing changes only what is shown.
public struct AttributePresentation: Sendable, Equatable {
    public struct Range: Sendable, Equatable {
        public var stored: UInt32
        public var shown: UInt32
        public var count: UInt32
        public init(stored: UInt32, shown: UInt32, count: UInt32) {
            self.stored = stored; self.shown = shown; self.count = count
        }
    }

    public var users: [Range] = []
    public var groups: [Range] = []
    /// Every owner shown as this user / group (`squash_to_uid=`, `squash_to_root`).
    public var squashedUser: UInt32?
    public var squashedGroup: UInt32?
    /// Directories always report one link (`static_nlink`).
    public var staticDirectoryLinks = false
    public var overflowUser: UInt32 = 65534
    public var overflowGroup: UInt32 = 65534

    public init() {}

    /// Whether attributes pass through unchanged.
    public var isIdentity: Bool {
        users.isEmpty && groups.isEmpty && squashedUser == nil && squashedGroup == nil && !staticDirectoryLinks
    }

    /// Whether ownership changes are accepted without being stored (any squash option).
    public var ignoresOwnerChanges: Bool { squashedUser != nil || squashedGroup != nil }

    /// Parses `A:B:N[:A:B:N…]` (fuse-overlayfs's syntax, which skips empty
    /// fields: containers-storage writes `uidmapping=:0:100000:65536`); nil when malformed.
    public static func ranges(_ text: String) -> [Range]? {
        let numbers = text.split(separator: ":").map { UInt32($0) }
        guard !numbers.isEmpty, numbers.count % 3 == 0, numbers.allSatisfy({ $0 != nil }) else { return nil }
        let values = numbers.map { $0! }
        return stride(from: 0, to: values.count, by: 3).map { Range(stored: values[$0], shown: values[$0 + 1], count: values[$0 + 2]) }
    }

    /// The attributes as the mount shows them.
    public func present(_ attributes: FileAttributes) -> FileAttributes {
        guard !isIdentity else { return attributes }
        var a = attributes
        a.userID = squashedUser ?? Self.map(a.userID, users, toShown: true, overflow: overflowUser)
        a.groupID = squashedGroup ?? Self.map(a.groupID, groups, toShown: true, overflow: overflowGroup)
        if staticDirectoryLinks && a.isDirectory { a.linkCount = 1 }
        return a
    }

    /// The user ID stored on disk for `user` as a mount user gave it.
    public func storedUser(_ user: UInt32) -> UInt32 { Self.map(user, users, toShown: false, overflow: overflowUser) }
    /// The group ID stored on disk for `group` as a mount user gave it.
    public func storedGroup(_ group: UInt32) -> UInt32 { Self.map(group, groups, toShown: false, overflow: overflowGroup) }

    static func map(_ id: UInt32, _ ranges: [Range], toShown: Bool, overflow: UInt32) -> UInt32 {
        guard !ranges.isEmpty else { return id }
        for r in ranges {
            let (from, to) = toShown ? (r.stored, r.shown) : (r.shown, r.stored)
            if id >= from && UInt64(id) < UInt64(from) + UInt64(r.count) { return to + (id - from) }
        }
        return overflow
    }
}
