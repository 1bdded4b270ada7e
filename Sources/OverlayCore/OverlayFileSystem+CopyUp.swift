import LayerSystem
import Glibc

/// Copy-up: bringing a lower object into the upper layer before its first change.
///
/// Parents first (each with its own metadata), then the object, built in the
/// work directory and renamed into place, so a crash at any instant leaves
/// either the lower view or the complete copy. Data goes by FICLONE, then
/// copy_file_range (holes kept), then read/write. Mode, owner, times and
/// xattrs follow (overlay-private xattrs excluded). The node keeps the inode
/// number it was shown with.
extension OverlayFileSystem {
    /// Ensures `node`'s object is in the upper layer. Directories are copied
    /// without their contents (they keep merging with the lowers).
    public func copyUp(_ node: UInt64, withData: Bool = true) throws(OverlayError) {
        guard isWritable else { throw .readOnly() }
        if try record(node).resolution.topLayer == 0 { return }
        try namespace.withLock { (_) throws(OverlayError) in try copyUpLocked(node, withData: withData) }
    }

    /// The upper directory of directory node `node`, copying it (and its parents) up.
    func upperDirectoryLocked(_ node: UInt64) throws(OverlayError) -> Descriptor {
        try copyUpLocked(node, withData: true)
        return try directory(node: node, layer: 0)
    }

    /// `copyUp` with the namespace lock held.
    ///
    /// The ancestors still in a lower layer are collected first and copied up
    /// top-down in a loop, not by recursion: a lower path thousands of
    /// directories deep (a hostile image) must not exhaust a FUSE worker's
    /// stack (it did at about 1,700 levels in a debug build, killing the daemon).
    func copyUpLocked(_ node: UInt64, withData: Bool) throws(OverlayError) {
        var pending: [UInt64] = []
        var current = node
        while current != Self.rootID {
            let n = try record(current)
            if n.resolution.topLayer == 0 { break }
            pending.append(current)
            current = n.parent
        }
        for id in pending.reversed() {
            try copyUpOneLocked(id, withData: id == node ? withData : true)
        }
    }

    /// Copies up `node` alone; its parent is already in the upper layer.
    private func copyUpOneLocked(_ node: UInt64, withData: Bool) throws(OverlayError) {
        let n = try record(node)
        if n.resolution.topLayer == 0 { return }
        guard let work else { throw .readOnly() }
        let parentUpper = try directory(node: n.parent, layer: 0)
        let layer = n.resolution.topLayer
        let sourceParent = try directory(node: n.parent, layer: layer)
        let name = n.name
        let temporary = work.temporaryName()
        let scratch = work.directory
        let fresh: FileAttributes = try system("cannot copy up \(name)") { () throws -> FileAttributes in
            let source = try sourceParent.attributes(of: name)
            let parentBefore = try parentUpper.attributes()
            do {
                try Self.build(copyOf: source, named: name, in: sourceParent, as: temporary, in: scratch, withData: withData,
                               synchronous: options.synchronousCopyUp)
                try scratch.rename(temporary, to: parentUpper, as: name, flags: .noReplace)
            } catch {
                try? TreeRemoval.remove(temporary, in: scratch)
                throw error
            }
            // A copy-up is not a change of the parent: its times stay (kernel overlayfs does the same).
            try parentUpper.setTimes(access: parentBefore.accessTime, modification: parentBefore.modificationTime)
            return try parentUpper.attributes(of: name)
        }
        var resolution = n.resolution
        resolution.layers = n.resolution.isDirectory ? [0] + n.resolution.layers : [0]
        resolution.attributes = fresh
        resolution.objectInode = fresh.inode
        // The copy keeps the number it was shown with, except for a lower hard link:
        // its names are copied up to separate files, which must not share a number
        // (kernel overlayfs's rule without an index).
        let brokenLink = !n.resolution.isDirectory && n.resolution.attributes.linkCount > 1
        resolution.attributes.inode = brokenLink ? stack.exposedInode(fresh.inode, layer: 0) : n.resolution.attributes.inode
        if fresh.isDirectory && resolution.layers.count > 1 { resolution.attributes.linkCount = 1 }
        table.withLock { t in
            t.nodes[node]?.resolution = resolution
            if case .resolved = t.directories[n.parent]?.children[name] { t.setChild(.resolved(resolution), parent: n.parent, name: name) }
            t.dropListing(n.parent)
        }
    }

    /// Builds a copy of `source` (`name` in `sourceParent`) as `temporary` in
    /// `scratch`: type, data, xattrs, owner, mode, times — in that order, so
    /// chown cannot clear the setuid bit that chmod sets afterwards.
    static func build(copyOf source: FileAttributes, named name: FileName, in sourceParent: Descriptor,
                      as temporary: FileName, in scratch: Descriptor, withData: Bool, synchronous: Bool) throws {
        let object: Descriptor
        switch source.kind {
        case .directory:
            try scratch.makeDirectory(temporary, mode: 0o700)
            object = try scratch.open(temporary, [.directory])
            try copyExtendedAttributes(from: try sourceParent.open(name, [.directory]), to: object)
        case .regular:
            let input = try sourceParent.openRegularFile(name, [])
            object = try scratch.createFile(temporary, flags: .writeOnly, mode: 0o600)
            if withData && source.size > 0 {
                try object.copyData(from: input, size: source.size)
                // Durable before it gets its name, as kernel overlayfs does (sync=on):
                // a power cut cannot leave an empty or torn copy in place of the lower file.
                if synchronous { try object.synchronize(dataOnly: true) }
            }
            try object.copyExtendedAttributes(from: input)
        case .symlink:
            try scratch.makeSymlink(temporary, target: try sourceParent.readLink(name))
            try scratch.setOwner(of: temporary, user: source.userID, group: source.groupID)
            try scratch.setTimes(of: temporary, access: source.accessTime, modification: source.modificationTime)
            return
        default:
            try scratch.makeNode(temporary, mode: source.mode, device: source.specialDevice)
            object = try scratch.open(temporary, [.path])
            try copyExtendedAttributes(from: try sourceParent.open(name, [.path]), to: object)
        }
        try object.setOwner(user: source.userID, group: source.groupID)
        try object.setMode(source.permissions)
        try object.setTimes(access: source.accessTime, modification: source.modificationTime)
    }

    /// Copies visible xattrs one by one (works on O_PATH descriptors too).
    static func copyExtendedAttributes(from source: Descriptor, to target: Descriptor) throws {
        for raw in try source.extendedAttributeNames() where !OverlayMarkers.isPrivateXattr(raw) {
            let key = String(decoding: raw, as: UTF8.self)
            guard let value = try source.extendedAttribute(key) else { continue }
            do { try target.setExtendedAttribute(key, value) } catch let error as SystemCallError
                where error.errno == EPERM || error.errno == ENOTSUP {
                // security.* or trusted.* the daemon may not set: the kernel's copy-up skips these too.
            }
        }
    }
}
