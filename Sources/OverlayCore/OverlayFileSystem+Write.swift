import LayerSystem
import Glibc

/// Who asks for a change: new objects are owned by the caller.
public struct Caller: Sendable {
    public var userID: UInt32
    public var groupID: UInt32
    public init(userID: UInt32, groupID: UInt32) { self.userID = userID; self.groupID = groupID }
}

/// What a setattr changes (`nil` = unchanged).
public struct AttributeChanges: Sendable {
    public var mode: UInt32?
    public var userID: UInt32?
    public var groupID: UInt32?
    public var size: Int64?
    /// `.some(nil)` = now.
    public var accessTime: TimeSpec??
    public var modificationTime: TimeSpec??
    public init() {}
}

/// The write path: every change lands in the upper layer in kernel
/// overlayfs's on-disk format; lower layers are never modified.
///
/// Cache contract: each operation updates the node table in the same
/// critical section order (namespace lock held): the parent's cached
/// resolution of the name, the live node's resolution or location, and the
/// parent's listing (dropped, rebuilt on the next opendir).
extension OverlayFileSystem {
    // MARK: Creating

    /// Creates and opens a regular file (`O_CREAT`; the kernel has already
    /// checked that the name is absent).
    public func create(parent: UInt64, name: FileName, mode: UInt32, flags: Int32, caller: Caller) throws(OverlayError) -> (node: UInt64, attributes: FileAttributes, file: Descriptor) {
        var opened: Descriptor?
        let (node, attributes) = try place(parent: parent, name: name, caller: caller, isDirectory: false) { (scratch, temporary) throws in
            let access = flags & OpenFlags.accessModeMask
            let f = try scratch.createFile(temporary, flags: OpenFlags(rawValue: access == 0 ? O_RDWR : access), mode: mode & 0o7777)
            opened = f
            return f
        }
        guard let opened else { throw OverlayError(.system, errno: EIO, "create produced no file") }
        // Reopen with the caller's flags (O_APPEND etc.) on the now-placed inode.
        let passed = OpenFlags(rawValue: flags & (OpenFlags.accessModeMask | O_NONBLOCK | O_SYNC | O_DSYNC))
        let file = try system("cannot open \(name)") { try opened.reopen(passed) }
        table.withLock { $0.openFiles[node, default: 0] += 1 }
        return (node, attributes, file)
    }

    /// Creates a directory; opaque when it replaces a whiteout.
    public func makeDirectory(parent: UInt64, name: FileName, mode: UInt32, caller: Caller) throws(OverlayError) -> (node: UInt64, attributes: FileAttributes) {
        try place(parent: parent, name: name, caller: caller, isDirectory: true) { (scratch, temporary) throws in
            try scratch.makeDirectory(temporary, mode: mode & 0o7777)
            return try scratch.open(temporary, [.directory])
        }
    }

    /// Creates a fifo, socket or device node.
    public func makeNode(parent: UInt64, name: FileName, mode: UInt32, device: UInt64, caller: Caller) throws(OverlayError) -> (node: UInt64, attributes: FileAttributes) {
        if FileKind(mode: mode) == .characterDevice && device == 0 {
            throw OverlayError(.permissionDenied, errno: EPERM, "whiteouts are reserved to the filesystem")
        }
        return try place(parent: parent, name: name, caller: caller, isDirectory: false) { (scratch, temporary) throws in
            try scratch.makeNode(temporary, mode: mode, device: device)
            return try scratch.open(temporary, [.path])
        }
    }

    /// Creates a symlink.
    public func makeSymlink(parent: UInt64, name: FileName, target: [UInt8], caller: Caller) throws(OverlayError) -> (node: UInt64, attributes: FileAttributes) {
        try place(parent: parent, name: name, caller: caller, isDirectory: false) { (directory, name) throws in
            try directory.makeSymlink(name, target: target)
            return nil
        }
    }

    /// Hard-links `node` (copied up first) as `name` in `parent`.
    public func link(_ node: UInt64, parent: UInt64, name: FileName) throws(OverlayError) -> (node: UInt64, attributes: FileAttributes) {
        try checkWritableName(name)
        return try namespace.withLock { (_) throws(OverlayError) in
            try copyUpLocked(node, withData: true)
            // From now on the object has several names: make its node the shared one,
            // so the kernel keeps one inode (one page cache) for all of them.
            let n = try record(node)
            if n.handle == nil {
                table.withLock { $0.share(node) }
                attachHandle(node, reachedAs: n.name, in: n.parent)
            }
            guard let handle = try record(node).handle else { throw .notFound() }   // unlinked meanwhile
            return try placeLocked(parent: parent, name: name, caller: nil, isDirectory: false, keepInode: n.resolution.attributes.inode) { (scratch, temporary) throws in
                try handle.linkObject(to: scratch, as: temporary)
                return nil
            }
        }
    }

    func checkWritableName(_ name: FileName) throws(OverlayError) {
        guard isWritable else { throw .readOnly() }
        try Self.checkLength(name)
        guard name.isValidComponent else { throw OverlayError(.invalidArgument, errno: EINVAL, "invalid name") }
        guard !OverlayMarkers.isOCIMarker(name) else {
            throw OverlayError(.invalidArgument, errno: EINVAL, "names starting with .wh. are reserved for whiteouts")
        }
    }

    func place(parent: UInt64, name: FileName, caller: Caller?, isDirectory: Bool,
               build: (Descriptor, FileName) throws -> Descriptor?) throws(OverlayError) -> (node: UInt64, attributes: FileAttributes) {
        try checkWritableName(name)
        return try namespace.withLock { (_) throws(OverlayError) in
            try placeLocked(parent: parent, name: name, caller: caller, isDirectory: isDirectory, keepInode: nil, build: build)
        }
    }

    /// Places a new object named `name` in `parent`'s upper directory.
    /// Where no whiteout holds the name it is created there directly (`build`
    /// on the upper directory and the final name; as the caller with
    /// `createsAsCaller`, or for a hard link): one atomic create, as on kernel
    /// overlayfs. Otherwise it is built in the work directory (owner and, for
    /// a directory replacing a whiteout, the opaque mark set there), then
    /// renamed into the upper parent: over a whiteout device if there is one,
    /// else with RENAME_NOREPLACE, and an OCI whiteout for the name is removed
    /// afterwards.
    func placeLocked(parent: UInt64, name: FileName, caller: Caller?, isDirectory: Bool, keepInode: UInt64?,
                     build: (Descriptor, FileName) throws -> Descriptor?) throws(OverlayError) -> (node: UInt64, attributes: FileAttributes) {
        guard let work else { throw .readOnly() }
        guard try record(parent).resolution.isDirectory else { throw OverlayError(.notADirectory, errno: ENOTDIR, "not a directory") }
        let parentUpper = try upperDirectoryLocked(parent)
        let scratch = work.directory
        let temporary = work.temporaryName()
        let opaqueKey = formats.withLock { $0.opaqueKey }
        try system("cannot create \(name)") { () throws in
            let existing = try parentUpper.attributesIfPresent(of: name)
            let overWhiteout = existing.map(OverlayMarkers.isWhiteoutDevice) ?? false
            if existing != nil && !overWhiteout { throw SystemCallError("create", errno: EEXIST) }
            let ociMarker = OverlayMarkers.ociWhiteoutName(for: name)
            let overOCIWhiteout = try name.bytes.count <= 251 && parentUpper.attributesIfPresent(of: ociMarker) != nil
            // No whiteout to replace: created in place, atomically, as kernel overlayfs
            // does (O_EXCL / mkdir / mknod / symlink / link fail if the name appeared).
            if !overWhiteout && !overOCIWhiteout {
                if caller == nil {
                    _ = try build(parentUpper, name)
                    return
                }
                if let caller, options.createsAsCaller,
                   try System.withFileSystemIdentity(user: caller.userID, group: caller.groupID, { try build(parentUpper, name) }) != nil {
                    return
                }
            }
            do {
                let object = try build(scratch, temporary)
                if let caller {
                    let parentAttributes = try parentUpper.attributes()
                    let inherits = parentAttributes.mode & 0o2000 != 0
                    let group = inherits ? parentAttributes.groupID : caller.groupID
                    if let object {
                        try object.setOwner(user: caller.userID, group: group)
                    } else {
                        try scratch.setOwner(of: temporary, user: caller.userID, group: group)   // a symlink
                    }
                    // A directory in a setgid directory is setgid too (inode_init_owner's rule;
                    // the work directory it is built in is not setgid).
                    if isDirectory && inherits, let object { try object.setMode(try object.attributes().permissions | 0o2000) }
                }
                if isDirectory && (overWhiteout || overOCIWhiteout), let object {
                    try Self.markOpaque(object, key: opaqueKey)
                }
                if overWhiteout {
                    // Swap with the whiteout (a directory cannot be renamed over a device),
                    // then drop the whiteout from the work directory.
                    try scratch.rename(temporary, to: parentUpper, as: name, flags: .exchange)
                    try scratch.remove(temporary)
                } else {
                    try scratch.rename(temporary, to: parentUpper, as: name, flags: .noReplace)
                }
            } catch {
                try? TreeRemoval.remove(temporary, in: scratch)
                throw error
            }
            if overOCIWhiteout { try parentUpper.remove(ociMarker) }
        }
        // The new object is the whole story of the name: nothing below shows through
        // (the name was absent, so every lower either lacks it or ends at a whiteout),
        // so its resolution is the upper object alone; no walk through the layers.
        var attributes = try system("cannot stat \(name)") { try parentUpper.attributes(of: name) }
        let objectInode = attributes.inode
        attributes.inode = keepInode ?? stack.exposedInode(objectInode, layer: 0)
        let resolution = Resolution(attributes: attributes, layers: [0], objectInode: objectInode)
        let id = table.withLock { t in
            t.setChild(nil, parent: parent, name: name)   // a fresh node (or the shared one of a hard link)
            t.dropListing(parent)
            return t.reference(parent: parent, name: name, resolution: resolution)
        }
        attachHandle(id, reachedAs: name, in: parent)
        return (id, resolution.attributes)
    }

    static func markOpaque(_ directory: Descriptor, key: String) throws {
        do { try directory.setExtendedAttribute(key, OverlayMarkers.opaqueValue) } catch let error as SystemCallError
            where key == OverlayMarkers.trustedOpaque && (error.errno == EPERM || error.errno == ENOTSUP) {
            try directory.setExtendedAttribute(OverlayMarkers.userOpaque, OverlayMarkers.opaqueValue)
        }
    }

    /// Re-resolves `name` in `parent` through the stack and records the result
    /// (keeping the live node's inode number, or `keepInode`).
    @discardableResult
    func refresh(parent: UInt64, name: FileName, keepInode: UInt64? = nil) throws(OverlayError) -> Resolution? {
        var resolved = try resolveName(name, in: parent)
        table.withLock { t in
            if var r = resolved?.0 {
                if let keepInode { r.attributes.inode = keepInode } else if let id = t.liveNode(parent: parent, name: name),
                    let node = t.nodes[id], !node.detached || t.handle(of: id) != nil, node.resolution.kind == r.kind {
                    r.attributes.inode = node.resolution.attributes.inode
                }
                resolved!.0 = r
            }
            t.update(parent: parent, name: name, resolution: resolved?.0)
        }
        if let (_, opened) = resolved, let id = table.withLock({ $0.liveNode(parent: parent, name: name) }) {
            for d in opened { descriptors.insert(d.descriptor, node: id, layer: d.layer) }
        }
        return resolved?.0
    }

    // MARK: Removing

    /// Removes a non-directory.
    public func unlink(parent: UInt64, name: FileName) throws(OverlayError) {
        try remove(parent: parent, name: name, directory: false)
    }

    /// Removes an empty (in the merged view) directory.
    public func removeDirectory(parent: UInt64, name: FileName) throws(OverlayError) {
        try remove(parent: parent, name: name, directory: true)
    }

    func remove(parent: UInt64, name: FileName, directory isDirectory: Bool) throws(OverlayError) {
        guard isWritable else { throw .readOnly() }
        try namespace.withLock { (_) throws(OverlayError) in
            let (child, _) = try lookup(parent: parent, name: name)
            defer { forget(child, count: 1) }
            let resolution = try record(child).resolution
            if isDirectory {
                guard resolution.isDirectory else { throw OverlayError(.notADirectory, errno: ENOTDIR, "not a directory") }
                guard try listing(of: child).isEmpty else { throw OverlayError(.notEmpty, errno: ENOTEMPTY, "directory not empty") }
            } else if resolution.isDirectory {
                throw OverlayError(.isADirectory, errno: EISDIR, "is a directory")
            }
            if !isDirectory { keepReachable(child, resolution, named: name, in: parent) }
            try removeLocked(parent: parent, name: name, upperObject: resolution.topLayer == 0)
        }
    }

    /// Gives upper non-directory `node` an `O_PATH` handle on its object before
    /// its name goes (unlink, or a rename over it). The kernel may hold the
    /// file open: fstat, ftruncate, fallocate, fchmod, fsetxattr and utimes on
    /// that descriptor must keep reaching the object, as they do on kernel
    /// overlayfs (without it they answered ENOENT or a stale size). The handle
    /// goes at the last close of the object's open files (`fileReleased`), or
    /// with the node at the kernel's FORGET; with it the node is no longer
    /// marked detached (`NodeTable.detach`). Taken only while the object is
    /// open through the mount: otherwise nothing can reach it after the name
    /// goes, and the handle would only keep its space allocated. Lower objects
    /// need none: they never change. A no-op where the node already has one
    /// (hard links).
    func keepReachable(_ node: UInt64, _ resolution: Resolution, named name: FileName, in parent: UInt64) {
        guard !resolution.isDirectory, resolution.topLayer == 0, (try? record(node).handle) == nil,
              table.withLock({ $0.openFiles[node] ?? 0 }) > 0,
              let upper = try? directory(node: parent, layer: 0), let handle = try? upper.open(name, [.path]),
              (try? handle.attributes().inode) == resolution.objectInode else { return }
        table.withLock { t in
            t.attach(handle, to: node)
        }
    }

    /// Takes `name` out of the merged view: removes the upper object (if any)
    /// and, when a lower layer still shows the name, leaves a whiteout.
    func removeLocked(parent: UInt64, name: FileName, upperObject: Bool) throws(OverlayError) {
        let parentUpper = try upperDirectoryLocked(parent)
        let needsWhiteout = try lowerHas(name, parent: parent)
        try writeWhiteoutOrRemove(name, in: parentUpper, upperObject: upperObject, whiteout: needsWhiteout)
        table.withLock { t in
            t.detach(parent: parent, name: name)
            t.setChild(.absent, parent: parent, name: name)
        }
    }

    /// Whether a lower layer of `parent`'s merge chain shows `name`.
    func lowerHas(_ name: FileName, parent: UInt64) throws(OverlayError) -> Bool {
        let n = try record(parent)
        if let index = try lowerIndex(parent, record: n, whenProbed: true) { return index.entry(named: name) != nil }
        let lowers = lowerLayers(of: n.resolution)
        guard !lowers.isEmpty else { return false }
        let parents = try lowers.map { (layer) throws(OverlayError) in
            LayerDirectory(layer: layer, descriptor: try directory(node: parent, layer: layer))
        }
        return try NameResolver.resolve(name, in: parents, stack: stack) != nil
    }

    /// Replaces the upper object `name` with a whiteout (built in the work
    /// directory and renamed over it, atomically), writes a whiteout where no
    /// upper object exists, or just removes the upper object.
    func writeWhiteoutOrRemove(_ name: FileName, in parentUpper: Descriptor, upperObject: Bool, whiteout: Bool) throws(OverlayError) {
        guard let work else { throw .readOnly() }
        try system("cannot remove \(name)") { () throws in
            let present = upperObject ? try parentUpper.attributesIfPresent(of: name) : nil
            guard whiteout else {
                if let present { try work.discard(name, in: parentUpper, isDirectory: present.isDirectory) }
                return
            }
            if formats.withLock({ $0.whiteout }) == .characterDevice {
                do {
                    if present == nil {
                        // linkat fails if the name exists: atomic without a rename.
                        try work.linkWhiteout(into: parentUpper, as: name)
                    } else {
                        // Atomic swap: the name is the whiteout at every instant after this call.
                        let temporary = work.temporaryName()
                        try work.linkWhiteout(into: work.directory, as: temporary)
                        try work.directory.rename(temporary, to: parentUpper, as: name, flags: .exchange)
                        try TreeRemoval.remove(temporary, in: work.directory)
                    }
                    return
                } catch let error as SystemCallError where error.errno == EPERM {
                    formats.withLock { $0.whiteout = .oci }   // mknod not permitted: OCI files from now on
                }
            }
            _ = try parentUpper.open(OverlayMarkers.ociWhiteoutName(for: name), [.writeOnly, .create], mode: 0)
            if let present {
                try work.discard(name, in: parentUpper, isDirectory: present.isDirectory)
            }
        }
    }
}

extension OverlayFileSystem {
    // MARK: Rename

    /// Renames with POSIX semantics, `RENAME_NOREPLACE` and `RENAME_EXCHANGE`.
    ///
    /// A directory that merges lower content is first copied up whole (every
    /// descendant, then marked opaque), so renaming lower directories works
    /// (kernel overlayfs without redirect_dir and fuse-overlayfs answer EXDEV).
    /// The old name gets a whiteout when a lower layer still shows it.
    public func rename(parent: UInt64, name: FileName, to newParent: UInt64, as newName: FileName, flags: RenameFlags) throws(OverlayError) {
        try checkWritableName(newName)
        try namespace.withLock { (_) throws(OverlayError) in
            let (source, _) = try lookup(parent: parent, name: name)
            defer { forget(source, count: 1) }
            var target: UInt64?
            do throws(OverlayError) { target = try lookup(parent: newParent, name: newName).node } catch where error.errno == ENOENT { target = nil }
            defer { if let target { forget(target, count: 1) } }
            let sourceResolution = try record(source).resolution
            let exchange = flags.contains(.exchange)
            if flags.contains(.noReplace) && target != nil { throw OverlayError(.exists, errno: EEXIST, "target exists") }
            if exchange && target == nil { throw .notFound() }
            if let target, !exchange {
                if target == source { return }
                let targetResolution = try record(target).resolution
                if sourceResolution.isDirectory {
                    guard targetResolution.isDirectory else { throw OverlayError(.notADirectory, errno: ENOTDIR, "not a directory") }
                    guard try listing(of: target).isEmpty else { throw OverlayError(.notEmpty, errno: ENOTEMPTY, "directory not empty") }
                } else if targetResolution.isDirectory {
                    throw OverlayError(.isADirectory, errno: EISDIR, "is a directory")
                }
                if !sourceResolution.isDirectory && sourceResolution.objectInode == targetResolution.objectInode
                    && sourceResolution.topLayer == targetResolution.topLayer {
                    return   // two names of one file: rename does nothing
                }
            }
            if let target, !exchange { keepReachable(target, try record(target).resolution, named: newName, in: newParent) }
            try bringUpWhole(source)
            if exchange, let target { try bringUpWhole(target) }
            let parentUpper = try upperDirectoryLocked(parent)
            let newParentUpper = try upperDirectoryLocked(newParent)
            let opaqueKey = formats.withLock { $0.opaqueKey }
            let sourceIsDirectory = sourceResolution.isDirectory
            let targetIsDirectory = try target.map { (t) throws(OverlayError) in try record(t).resolution.isDirectory } ?? false
            let oldNameInLower = try lowerHas(name, parent: parent)
            let newNameInLower = try lowerHas(newName, parent: newParent)
            let whiteoutFormat = formats.withLock { $0.whiteout }
            var oldNameWhitedOut = false
            guard let work else { throw .readOnly() }
            try system("cannot rename \(name)") { () throws in
                // Opaque before the rename (kernel overlayfs does the same): a directory
                // arriving at a name a lower layer shows must not merge with it, not even
                // between two syscalls: a crash there showed the lower's deleted entries
                // again. Where the directory is now the mark changes nothing: one that
                // merged lowers is opaque already (bringUpWhole), an upper-only one has
                // no lower directory below it.
                if sourceIsDirectory && newNameInLower { try Self.markOpaque(parentUpper.open(name, [.directory]), key: opaqueKey) }
                if exchange && targetIsDirectory && oldNameInLower {
                    try Self.markOpaque(newParentUpper.open(newName, [.directory]), key: opaqueKey)
                }
                if exchange {
                    try parentUpper.rename(name, to: newParentUpper, as: newName, flags: .exchange)
                    return
                }
                let existing = try newParentUpper.attributesIfPresent(of: newName)
                if let existing, existing.isDirectory, try !newParentUpper.open(newName, [.directory]).isEmptyDirectory() {
                    // The target is empty in the merged view, but its upper copy holds the
                    // whiteouts that make it so: swap in an empty opaque directory with the
                    // same xattrs, owner, mode and times (the view does not change at any
                    // instant, so a crash before the rename leaves it as it was) and clear
                    // the old one in the work dir.
                    let temporary = work.temporaryName()
                    try work.directory.makeDirectory(temporary, mode: 0o700)
                    do {
                        let replacement = try work.directory.open(temporary, [.directory])
                        try Self.copyExtendedAttributes(from: newParentUpper.open(newName, [.directory]), to: replacement)
                        try Self.markOpaque(replacement, key: opaqueKey)
                        try replacement.setOwner(user: existing.userID, group: existing.groupID)
                        try replacement.setMode(existing.permissions)
                        try replacement.setTimes(access: existing.accessTime, modification: existing.modificationTime)
                        try work.directory.rename(temporary, to: newParentUpper, as: newName, flags: .exchange)
                    } catch {
                        try? TreeRemoval.remove(temporary, in: work.directory)
                        throw error
                    }
                    try TreeRemoval.remove(temporary, in: work.directory)
                }
                if sourceIsDirectory, let existing, OverlayMarkers.isWhiteoutDevice(existing) {
                    // rename(2) cannot put a directory over a device: swap them, so the old
                    // name holds the whiteout at once; keep it there when it is needed.
                    try parentUpper.rename(name, to: newParentUpper, as: newName, flags: .exchange)
                    if oldNameInLower && whiteoutFormat == .characterDevice {
                        oldNameWhitedOut = true
                    } else {
                        try parentUpper.remove(name)
                    }
                } else if oldNameInLower && whiteoutFormat == .characterDevice {
                    // RENAME_WHITEOUT leaves the whiteout in the same step (as kernel
                    // overlayfs does): no instant shows the lower object at the old name.
                    do {
                        try parentUpper.rename(name, to: newParentUpper, as: newName, flags: .whiteout)
                        oldNameWhitedOut = true
                    } catch let error as SystemCallError where error.errno == EPERM || error.errno == EINVAL {
                        try parentUpper.rename(name, to: newParentUpper, as: newName)
                    }
                } else {
                    try parentUpper.rename(name, to: newParentUpper, as: newName)
                }
                let ociMarker = OverlayMarkers.ociWhiteoutName(for: newName)
                if newName.bytes.count <= 251, try newParentUpper.attributesIfPresent(of: ociMarker) != nil {
                    try newParentUpper.remove(ociMarker)
                }
            }
            if !exchange && oldNameInLower && !oldNameWhitedOut {
                try writeWhiteoutOrRemove(name, in: parentUpper, upperObject: false, whiteout: true)
            }
            table.withLock { t in
                if exchange, let target {
                    t.move(source, to: newParent, name: newName)
                    t.move(target, to: parent, name: name)
                } else {
                    t.detach(parent: newParent, name: newName)
                    t.move(source, to: newParent, name: newName)
                    t.setChild(nil, parent: parent, name: name)
                }
            }
            let sourceInode = sourceResolution.attributes.inode
            try refresh(parent: newParent, name: newName, keepInode: sourceInode)
            if exchange, let target {
                try refresh(parent: parent, name: name, keepInode: try record(target).resolution.attributes.inode)
            } else {
                try refresh(parent: parent, name: name)
            }
        }
    }

    /// Copies `node` up; a directory merging lower content is copied up with
    /// all its descendants and marked opaque, so it no longer needs its lowers.
    ///
    /// The tree is walked with an explicit stack, not by recursion: a lower
    /// directory thousands of levels deep must not exhaust a FUSE worker's
    /// stack. Each directory is copied up before its children and made
    /// self-contained after them; the lookup reference of a directory is held
    /// until it is finished.
    func bringUpWhole(_ node: UInt64) throws(OverlayError) {
        let resolution = try record(node).resolution
        guard resolution.isDirectory else { return try copyUpLocked(node, withData: true) }
        if resolution.layers == [0] { return }
        try copyUpLocked(node, withData: true)
        struct Frame { var node: UInt64; var entries: [ListingEntry]; var next = 0; var referenced: Bool }
        var frames = [Frame(node: node, entries: try listing(of: node), referenced: false)]
        defer { for frame in frames where frame.referenced { forget(frame.node, count: 1) } }
        while let top = frames.last {
            guard top.next < top.entries.count else {
                try makeSelfContainedLocked(top.node)
                frames.removeLast()
                if top.referenced { forget(top.node, count: 1) }
                continue
            }
            let entry = top.entries[top.next]
            frames[frames.count - 1].next += 1
            let (child, _) = try lookup(parent: top.node, name: entry.name, from: entry.layer)
            let descend: Bool
            do throws(OverlayError) {
                let childResolution = try record(child).resolution
                descend = childResolution.isDirectory && childResolution.layers != [0]
                try copyUpLocked(child, withData: true)
                if descend { frames.append(Frame(node: child, entries: try listing(of: child), referenced: true)) }
            } catch {
                forget(child, count: 1)
                throw error
            }
            if !descend { forget(child, count: 1) }
        }
    }

    /// Marks the copied-up directory `node` opaque and removes the whiteouts it
    /// no longer needs: from now on it shows its upper content only.
    private func makeSelfContainedLocked(_ node: UInt64) throws(OverlayError) {
        let upper = try directory(node: node, layer: 0)
        let opaqueKey = formats.withLock { $0.opaqueKey }
        try system("cannot make the copied-up directory self-contained") { () throws in
            var markers: [FileName] = []
            try upper.forEachEntry { entry in
                if OverlayMarkers.isOCIMarker(entry.name) { markers.append(entry.name); return }
                if entry.kind == .characterDevice || entry.kind == nil,
                   let a = try upper.attributesIfPresent(of: entry.name), OverlayMarkers.isWhiteoutDevice(a) {
                    markers.append(entry.name)
                }
            }
            // Opaque first: from then on the markers mean nothing, so removing them
            // one by one never lets a deleted lower name reappear.
            try Self.markOpaque(upper, key: opaqueKey)
            let before = try upper.attributes()
            for marker in markers { try upper.remove(marker) }
            try upper.setTimes(access: before.accessTime, modification: before.modificationTime)
        }
        table.withLock { t in t.makeUpperOnly(node) }
    }

    // MARK: Attributes

    /// Applies a setattr: copies up first (no data when truncating to 0), then
    /// changes the upper object. `handle` is the open file for ftruncate.
    public func setAttributes(_ node: UInt64, _ changes: AttributeChanges, handle: Descriptor?) throws(OverlayError) -> FileAttributes {
        guard isWritable else { throw .readOnly() }
        try copyUp(node, withData: changes.size != 0)
        let n = try record(node)
        try system("cannot change attributes") { () throws in
            // By name from the parent where possible (no descriptor to open and close);
            // the object itself for the root, a shared node, or a change needing it.
            var opened: Descriptor?
            let parent: Descriptor?
            if node == Self.rootID {
                opened = stack.layers[0].root
                parent = nil
            } else if let handle = n.handle {
                opened = handle
                parent = nil
            } else {
                parent = try directory(node: n.parent, layer: 0)
            }
            func object() throws -> Descriptor {
                if let opened { return opened }
                let d = try parent!.open(n.name, n.resolution.isDirectory ? [.directory] : [.path])
                opened = d
                return d
            }
            if let size = changes.size {
                // truncate(2) by path arrives without an open file. Opened by name, the
                // object is checked to be a regular file without blocking: a fifo put in
                // the upper behind the mount's back hung this worker in open(O_WRONLY).
                let file: Descriptor
                if let handle { file = handle } else if let parent {
                    file = try parent.openRegularFile(n.name, .writeOnly)
                } else {
                    file = try object().reopen(.writeOnly)
                }
                try file.truncate(to: size)
            }
            if changes.userID != nil || changes.groupID != nil {
                let user = changes.userID ?? UInt32.max, group = changes.groupID ?? UInt32.max
                if let parent { try parent.setOwner(of: n.name, user: user, group: group) } else {
                    try object().setOwner(user: user, group: group)
                }
            }
            if let mode = changes.mode, n.resolution.kind != .symlink {
                do {
                    guard let parent else { throw SystemCallError("fchmodat2", errno: ENOSYS) }
                    try parent.setMode(of: n.name, mode)
                } catch let error as SystemCallError where error.errno == ENOSYS {
                    try object().setMode(mode)
                }
            }
            if changes.accessTime != nil || changes.modificationTime != nil {
                let now = System.now()
                let access = changes.accessTime.map { $0 ?? now }
                let modification = changes.modificationTime.map { $0 ?? now }
                if let parent { try parent.setTimes(of: n.name, access: access, modification: modification) } else {
                    try object().setTimes(access: access, modification: modification)
                }
            }
        }
        return try attributes(of: node, handle: handle)
    }

    // MARK: Extended attributes

    /// Sets an xattr on the (copied-up) object; overlay-private names are refused.
    public func setExtendedAttribute(_ node: UInt64, name: String, value: [UInt8], flags: Int32) throws(OverlayError) {
        guard isWritable else { throw .readOnly() }
        if OverlayMarkers.isPrivateXattr(Array(name.utf8)) {
            throw OverlayError(.permissionDenied, errno: EPERM, "overlay-private attribute")
        }
        try copyUp(node)
        let d = try objectDescriptor(node)
        try system("cannot set attribute \(name)") { try d.setExtendedAttribute(name, value, flags: flags) }
    }

    /// Removes an xattr from the (copied-up) object.
    public func removeExtendedAttribute(_ node: UInt64, name: String) throws(OverlayError) {
        guard isWritable else { throw .readOnly() }
        if OverlayMarkers.isPrivateXattr(Array(name.utf8)) {
            throw OverlayError(.permissionDenied, errno: EPERM, "overlay-private attribute")
        }
        _ = try extendedAttribute(node, name: name)   // ENODATA before copying anything up
        try copyUp(node)
        let d = try objectDescriptor(node)
        try system("cannot remove attribute \(name)") { try d.removeExtendedAttribute(name) }
    }
}
