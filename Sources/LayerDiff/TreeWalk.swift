import LayerSystem
import Glibc

/// The change list between two whole trees (an image rootfs and a container's
/// export, or an overlay's lower view and its merged view): docker's
/// `ChangesDirs` (spec §2.1–§2.3) in moby-canonical order (§2.4).
///
/// Both trees are walked in parallel. Each directory is read with getdents64,
/// names are sorted by bytes and merged; a name present on both sides whose
/// `d_ino` is equal while both parent directories are on the same `st_dev` is
/// the same object and is skipped with its whole subtree (this is what makes a
/// `cp -al` farm or a bind of the same tree cheap; two overlay mounts always
/// differ in `st_dev`, so docker never prunes). Every other name is `lstat`ed
/// (fstatat with AT_SYMLINK_NOFOLLOW relative to its directory descriptor).
/// The roots themselves are never compared or listed.
public final class TreeWalk: ChangeSource {
    public let oldRoot: Descriptor
    public let newRoot: Descriptor
    public let oldPath: String
    public let newPath: String
    private let rules: ComparisonRules
    private let options: DiffOptions

    public init(oldPath: String, newPath: String, options: DiffOptions = DiffOptions()) throws(DiffError) {
        self.oldPath = oldPath
        self.newPath = newPath
        self.options = options
        rules = ComparisonRules(strict: options.strict)
        oldRoot = try UpperWalk.openRoot(oldPath, what: "old tree")
        newRoot = try UpperWalk.openRoot(newPath, what: "new tree")
    }

    public func forEachChange(_ body: (Change) throws -> Void) throws {
        try withoutActuallyEscaping(body) { sink in
            var walker = Walker(emitter: ChangeEmitter(sink), progress: ProgressCounter(options), rules: rules,
                                oldPath: oldPath, newPath: newPath)
            let (oldDevice, newDevice) = try reading("cannot stat the tree roots") {
                (try oldRoot.attributes().device, try newRoot.attributes().device)
            }
            // The walk recurses once per directory level: on a thread with room for the deepest walk allowed.
            try ProcessControl.runOnThread(stackBytes: WalkLimits.stackBytes) {
                try walker.walk(old: oldRoot, oldDevice: oldDevice, new: newRoot, newDevice: newDevice, path: [])
            }
        }
    }

    struct Walker {
        var emitter: ChangeEmitter
        var progress: ProgressCounter
        let rules: ComparisonRules
        let oldPath: String
        let newPath: String
        /// Directory levels entered (bounded by `WalkLimits.maximumDepth`).
        var depth = 0

        func list(_ directory: Descriptor, side: String, path: [UInt8]) throws -> [DirectoryEntry] {
            var entries: [DirectoryEntry] = []
            try reading("cannot read directory \(displayPath(path)) in \(side)") {
                try directory.forEachEntry { entries.append($0) }
            }
            entries.sort { $0.name < $1.name }
            return entries
        }

        /// Walks `new` at `path` against `old` (nil when the path is new or was
        /// not a directory: then every entry is added and nothing is removed).
        mutating func walk(old: Descriptor?, oldDevice: UInt64, new: Descriptor, newDevice: UInt64, path: [UInt8]) throws {
            depth += 1
            defer { depth -= 1 }
            guard depth <= WalkLimits.maximumDepth else { throw WalkLimits.tooDeep(path) }
            let newEntries = try list(new, side: newPath, path: path)
            let oldEntries = try old.map { try list($0, side: oldPath, path: path) } ?? []
            let sameDevice = old != nil && oldDevice == newDevice
            var removed: [DirectoryEntry] = []
            var i = 0, j = 0
            while i < newEntries.count || j < oldEntries.count {
                if j == oldEntries.count || (i < newEntries.count && newEntries[i].name < oldEntries[j].name) {
                    try visit(newEntries[i].name, old: nil, new: new, newDevice: newDevice, path: path)
                    i += 1
                } else if i == newEntries.count || oldEntries[j].name < newEntries[i].name {
                    removed.append(oldEntries[j])
                    j += 1
                } else {
                    if !(sameDevice && newEntries[i].inode == oldEntries[j].inode) {
                        let present = try visit(newEntries[i].name, old: old, oldDevice: oldDevice, new: new,
                                                newDevice: newDevice, path: path)
                        if !present { removed.append(oldEntries[j]) }
                    }
                    i += 1
                    j += 1
                }
            }
            guard let old else { return }
            for entry in removed {
                progress.tick()
                let attributes = try reading("cannot stat \(displayPath(childPath(path, entry.name))) in \(oldPath)") {
                    try old.attributesIfPresent(of: entry.name)
                }
                guard let attributes else { continue }
                try emitter.emit(Change(kind: .deleted, path: childPath(path, entry.name), old: attributes))
            }
        }

        /// One name of the new tree, with its old counterpart's directory if
        /// any; `false` when the name is listed but absent (it vanished, or an
        /// overlay mount listed a whiteout of a non-merged directory, which
        /// lookups then refuse): such a name is treated as not in the tree.
        @discardableResult
        mutating func visit(_ name: FileName, old: Descriptor?, oldDevice: UInt64 = 0, new: Descriptor,
                            newDevice: UInt64, path: [UInt8]) throws -> Bool {
            progress.tick()
            let path = childPath(path, name)
            let found = try reading("cannot stat \(displayPath(path)) in \(newPath)") { try new.attributesIfPresent(of: name) }
            guard let newAttributes = found else { return false }
            let oldFound = try old.flatMap { (o) throws -> FileAttributes? in
                try reading("cannot stat \(displayPath(path)) in \(oldPath)") { try o.attributesIfPresent(of: name) }
            }
            guard let old, let oldAttributes = oldFound else {
                let change = Change(kind: .added, path: path, new: newAttributes)
                try emitter.emit(change)
                if newAttributes.isDirectory {
                    let child = try openDirectory(name, in: new, side: newPath, path: path)
                    emitter.enterRecorded(change)
                    try walk(old: nil, oldDevice: 0, new: child, newDevice: newAttributes.device, path: path)
                    emitter.leave()
                }
                return true
            }
            let changed = try rules.differs(old: EntryReference(directory: old, name: name, attributes: oldAttributes),
                                            new: EntryReference(directory: new, name: name, attributes: newAttributes))
            var change: Change?
            if changed {
                change = Change(kind: .modified, path: path, old: oldAttributes, new: newAttributes)
                try emitter.emit(change!)
            }
            guard newAttributes.isDirectory else { return true }
            let child = try openDirectory(name, in: new, side: newPath, path: path)
            let oldChild = oldAttributes.isDirectory ? try openDirectory(name, in: old, side: oldPath, path: path) : nil
            if let change { emitter.enterRecorded(change) } else {
                emitter.enterPending(path: path, old: oldAttributes, new: newAttributes)
            }
            try walk(old: oldChild, oldDevice: oldAttributes.device, new: child, newDevice: newAttributes.device, path: path)
            emitter.leave()
            return true
        }

        func openDirectory(_ name: FileName, in directory: Descriptor, side: String, path: [UInt8]) throws -> Descriptor {
            try reading("cannot open directory \(displayPath(path)) in \(side)") { try directory.open(name, [.directory]) }
        }
    }
}
