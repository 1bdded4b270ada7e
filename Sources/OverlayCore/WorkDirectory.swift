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

    /// A name not used before in this work directory.
    func temporaryName() -> FileName {
        let n = counter.add(1, ordering: .relaxed).newValue
        return FileName("#strata-\(System.processID)-\(n)")
    }
}

/// Recursive removal relative to directory descriptors, never following a symlink.
enum TreeRemoval {
    /// Removes everything inside `directory`.
    static func removeContents(of directory: Descriptor) throws {
        var entries: [DirectoryEntry] = []
        try directory.forEachEntry { entries.append($0) }
        for entry in entries { try remove(entry.name, in: directory) }
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
}
