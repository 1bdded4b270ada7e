import LayerSystem
import Synchronization
import Glibc

/// The scratch area copy-ups and atomic replacements are built in: `WORK/work`
/// (the same subdirectory kernel overlayfs uses, so either can clean up after
/// the other). It must be on the upper layer's filesystem, so that a finished
/// object moves into place with one `rename`.
///
/// At mount, whatever an earlier crash left in `WORK/work` is removed; the
/// upper layer is never touched by that cleanup.
public final class WorkDirectory: Sendable {
    /// `WORK/work`, readable.
    public let directory: Descriptor
    private let counter = Atomic<UInt64>(0)
    private static let subdirectory: FileName = "work"

    init(work: Layer, upper: Layer) throws(OverlayError) {
        guard work.device == upper.device else {
            throw OverlayError(.badLayer, errno: EXDEV, "work directory \(work.path) is not on the upper layer's filesystem")
        }
        let root = work.root
        directory = try system("cannot prepare work directory \(work.path)") { () throws -> Descriptor in
            if let existing = try root.attributesIfPresent(of: Self.subdirectory) {
                if existing.isDirectory {
                    let d = try root.open(Self.subdirectory, [.directory])
                    try TreeRemoval.removeContents(of: d)
                    return d
                }
                try root.remove(Self.subdirectory)
            }
            try root.makeDirectory(Self.subdirectory, mode: 0o700)
            return try root.open(Self.subdirectory, [.directory])
        }
    }

    /// The whiteout device every new whiteout is a hard link of, as kernel
    /// overlayfs (5.8+) does: a link allocates no inode, so deleting a lower
    /// tree costs a link per name instead of a mknod. Used under the
    /// overlay's namespace lock only; removed with the rest of `WORK/work` at
    /// the next mount.
    private static let sharedWhiteoutName: FileName = "#strata-whiteout"
    private let sharedWhiteoutExists = Atomic<Bool>(false)

    /// Makes `name` in `target` a whiteout by linking the shared whiteout
    /// (made on first use, remade when its link count is used up). Throws the
    /// system's error where devices cannot be made or linked (EPERM, …).
    func linkWhiteout(into target: Descriptor, as name: FileName) throws {
        for attempt in 0..<2 {
            if !sharedWhiteoutExists.load(ordering: .acquiring) {
                if try directory.attributesIfPresent(of: Self.sharedWhiteoutName) == nil {
                    try directory.makeNode(Self.sharedWhiteoutName, mode: 0o020000, device: 0)
                }
                sharedWhiteoutExists.store(true, ordering: .releasing)
            }
            do {
                try directory.link(Self.sharedWhiteoutName, to: target, as: name)
                return
            } catch let error as SystemCallError where (error.errno == EMLINK || error.errno == ENOENT) && attempt == 0 {
                try? directory.remove(Self.sharedWhiteoutName)
                sharedWhiteoutExists.store(false, ordering: .releasing)
            }
        }
    }

    /// Takes `name` out of `directory` (in the upper): a non-directory is
    /// unlinked; a directory leaves in one rename into the work directory and
    /// is emptied there, so no instant shows it half-removed.
    func discard(_ name: FileName, in directory: Descriptor, isDirectory: Bool) throws {
        guard isDirectory else { return try directory.remove(name) }
        let temporary = temporaryName()
        try directory.rename(name, to: self.directory, as: temporary)
        try TreeRemoval.remove(temporary, in: self.directory)
    }

    /// A name not used before in this work directory.
    func temporaryName() -> FileName {
        let n = counter.add(1, ordering: .relaxed).newValue
        return FileName("#strata-\(System.processID)-\(n)")
    }
}

/// Recursive removal relative to directory descriptors, never following a symlink.
///
/// The tree is walked with an explicit stack, not by recursion, so a deep tree
/// left in a work directory (by a crash, or planted) cannot exhaust the stack;
/// one descriptor per level is held while its subtree is removed.
enum TreeRemoval {
    /// Removes everything inside `directory`.
    static func removeContents(of directory: Descriptor) throws {
        struct Frame { var directory: Descriptor; var name: FileName?; var entries: [FileName] }
        var frames = [Frame(directory: directory, name: nil, entries: try names(in: directory))]
        while let top = frames.last {
            guard let name = top.entries.last else {
                frames.removeLast()
                if let name = top.name, let parent = frames.last { try parent.directory.remove(name, directory: true) }
                continue
            }
            frames[frames.count - 1].entries.removeLast()
            guard let attributes = try top.directory.attributesIfPresent(of: name) else { continue }
            if attributes.isDirectory {
                let child = try top.directory.open(name, [.directory])
                frames.append(Frame(directory: child, name: name, entries: try names(in: child)))
            } else {
                try top.directory.remove(name)
            }
        }
    }

    /// Removes `name` from `directory`, recursively if it is a directory.
    static func remove(_ name: FileName, in directory: Descriptor) throws {
        guard let attributes = try directory.attributesIfPresent(of: name) else { return }
        if attributes.isDirectory {
            let child = try directory.open(name, [.directory])
            try removeContents(of: child)
            try directory.remove(name, directory: true)
        } else {
            try directory.remove(name)
        }
    }

    private static func names(in directory: Descriptor) throws -> [FileName] {
        var names: [FileName] = []
        try directory.forEachEntry { names.append($0.name) }
        return names
    }
}
