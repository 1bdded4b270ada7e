/// How a diff compares entries and reports progress.
public struct DiffOptions {
    /// Report what docker misses (spec §10.2): symlink target changes, any
    /// xattr change (overlay-private names excluded), content changes hidden by
    /// a restored mtime (bytes compared when sizes match and both mtimes have
    /// zero nanoseconds) and directory mtime changes. Off = docker-exact (§2.2).
    public var strict: Bool
    /// Called with the number of entries examined so far, every
    /// `progressInterval` entries (for a progress line; never for results).
    public var progress: ((Int) -> Void)?
    public var progressInterval: Int

    public init(strict: Bool = false, progress: ((Int) -> Void)? = nil, progressInterval: Int = 4096) {
        self.strict = strict
        self.progress = progress
        self.progressInterval = progressInterval
    }
}

/// What both engines provide: the change list, streamed in moby-canonical
/// order (spec §2.4, see `ChangeEmitter`).
public protocol ChangeSource {
    /// Calls `body` once per change, in order, as the walk finds them; memory
    /// stays proportional to the depth of the tree and the width of one
    /// directory, never to the number of changes. If this throws, the changes
    /// already delivered are an incomplete list.
    func forEachChange(_ body: (Change) throws -> Void) throws
}

extension ChangeSource {
    /// The whole change list (convenience for tests and small diffs).
    public func changes() throws -> [Change] {
        var all: [Change] = []
        try forEachChange { all.append($0) }
        return all
    }
}
