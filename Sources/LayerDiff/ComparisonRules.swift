import LayerSystem
import OverlayCore

/// One side of a comparison: an entry named `name` in the open directory
/// `directory`, with its `lstat` attributes.
struct EntryReference {
    var directory: Descriptor
    var name: FileName
    var attributes: FileAttributes
}

/// "Is this pair of entries different?" — docker's `statDifferent` plus its
/// `security.capability` check (spec §2.2), and the `--strict` extras (§10.2).
///
/// Compared by default: the full `st_mode` (type and permission bits, so a
/// type change or any chmod is a change), uid, gid, rdev; size and mtime only
/// when the *old* entry is not a directory, mtime with `sameFsTime`; the bytes
/// of `security.capability` (absent and empty are equal). Never compared:
/// other xattrs, symlink targets, nlink, inode, ctime, atime, blocks, content.
///
/// Strict adds: directory mtimes (`sameFsTime`), symlink targets, every xattr
/// except overlay-private ones, and file bytes when the sizes match and both
/// mtimes have zero nanoseconds (where a restored mtime can hide an edit).
struct ComparisonRules {
    var strict: Bool

    /// `sameFsTime`: equal, or the same whole second with at least one side
    /// at zero nanoseconds (layers extracted from tar have whole-second mtimes).
    static func sameFileSystemTime(_ a: TimeSpec, _ b: TimeSpec) -> Bool {
        a == b || (a.seconds == b.seconds && (a.nanoseconds == 0 || b.nanoseconds == 0))
    }

    /// Whether the pair is a change. `newIsMetacopy` marks an overlay upper
    /// file whose data still lives in the lower entry (its bytes are not compared).
    func differs(old: EntryReference, new: EntryReference, newIsMetacopy: Bool = false) throws(DiffError) -> Bool {
        let a = old.attributes, b = new.attributes
        if a.mode != b.mode || a.userID != b.userID || a.groupID != b.groupID || a.specialDevice != b.specialDevice {
            return true
        }
        if !a.isDirectory {
            if a.size != b.size || !Self.sameFileSystemTime(a.modificationTime, b.modificationTime) { return true }
        } else if strict && !Self.sameFileSystemTime(a.modificationTime, b.modificationTime) {
            return true
        }
        if try capability(old) != capability(new) { return true }
        guard strict else { return false }

        if a.kind == .symlink {
            let targets = try reading("cannot read symlink \(new.name)") {
                (try old.directory.readLink(old.name), try new.directory.readLink(new.name))
            }
            if targets.0 != targets.1 { return true }
        }
        if try visibleExtendedAttributes(old) != visibleExtendedAttributes(new) { return true }
        if a.kind == .regular && a.modificationTime.nanoseconds == 0 && b.modificationTime.nanoseconds == 0
            && a.size > 0 && !newIsMetacopy {
            let same = try reading("cannot compare contents of \(new.name)") {
                let x = try old.directory.open(old.name, .readOnly)
                let y = try new.directory.open(new.name, .readOnly)
                return try x.hasSameContents(as: y)
            }
            if !same { return true }
        }
        return false
    }

    /// The `security.capability` bytes, empty when absent.
    private func capability(_ entry: EntryReference) throws(DiffError) -> [UInt8] {
        try reading("cannot read security.capability of \(entry.name)") {
            try entry.directory.extendedAttribute(DiffMarkers.capability, of: entry.name) ?? []
        }
    }

    /// Every xattr except overlay-private ones, sorted by name.
    private func visibleExtendedAttributes(_ entry: EntryReference) throws(DiffError) -> [[UInt8]: [UInt8]] {
        try reading("cannot read xattrs of \(entry.name)") {
            var result: [[UInt8]: [UInt8]] = [:]
            for key in try entry.directory.extendedAttributeNames(of: entry.name) where !DiffMarkers.isPrivateXattr(key) {
                result[key] = try entry.directory.extendedAttribute(String(decoding: key, as: UTF8.self), of: entry.name) ?? []
            }
            return result
        }
    }
}
