import LayerSystem
import Synchronization
import Glibc

/// Tunables of the core.
public struct OverlayOptions: Sendable {
    /// Directory descriptors kept open at most (the hard open-file limit here is 20000).
    public var directoryDescriptorLimit: Int = 8192
    /// How deletions of lower names are recorded in the upper layer.
    public var whiteoutFormat: WhiteoutFormat = .characterDevice
    /// Copied-up data is `fdatasync`ed before it is named (kernel overlayfs's
    /// default); `false` for `-o fsync=0` / `volatile`.
    public var synchronousCopyUp = true
    /// Names kept in directory caches (merged listings and lower-layer indexes)
    /// at most, over all directories; about 200 bytes each. Past it, directories
    /// are still read and answered correctly, just not remembered
    /// (`-o dir_cache_entries=`).
    public var cachedEntryLimit = 2_000_000
    /// New objects whose name holds no whiteout are created directly in the
    /// upper directory by a thread that has taken the caller's filesystem IDs
    /// (kernel overlayfs's way: owner, group and setgid inheritance right from
    /// the first instant, one create instead of create + chown + rename from
    /// the work directory). Needs threads that keep their capabilities across
    /// the switch (`System.keepCapabilitiesOnIdentitySwitch`, which `strata
    /// mount` calls); where the switch fails the work directory is used.
    public var createsAsCaller = false
    public init() {}
}

/// On-disk encoding of whiteouts written to the upper layer.
public enum WhiteoutFormat: String, Sendable {
    /// Character device 0/0 (kernel overlayfs). Falls back to `.oci` where mknod is not permitted.
    case characterDevice = "kernel"
    /// `.wh.NAME` files (OCI layer format).
    case oci
}

/// The overlay, FUSE-free: per-name resolution through the stack, the node
/// table, merged listings, and object access. The FUSE adapter and library
/// users call this; it never imports CFuse.
///
/// Nodes are identified by 64-bit IDs (FUSE node IDs); `rootID` is the root.
/// Every successful `lookup` adds one reference that `forget` drops.
///
/// Locks and their order: `table` guards the node table and its name and
/// listing caches; `descriptors` (a leaf lock) guards the directory
/// descriptor cache. They are never held together, and no syscall is made
/// while `table` is held: lookups resolve outside the lock and re-check
/// before inserting, so concurrent lookups of one name agree on one node.
public final class OverlayFileSystem: Sendable {
    public static let rootID: UInt64 = NodeTable.rootID

    public let stack: LayerStack
    public let options: OverlayOptions
    let table: Locked<NodeTable>
    let descriptors: DirectoryDescriptorCache
    /// Read descriptors of lower files for reads that come without an open
    /// handle (`readableFile`); keyed by (node, -1), dropped with the node.
    let readableFiles = DirectoryDescriptorCache(capacity: 512)
    /// Where copy-ups are built; `nil` without an upper layer.
    let work: WorkDirectory?
    /// Serialises every change to the upper layer's namespace (create, remove,
    /// rename, copy-up). Lock order: `namespace` → `table` → leaf locks; the
    /// namespace lock is held across syscalls, `table` never is.
    let namespace = ExclusiveLock()
    /// Formats chosen at the first write (falling back where the kernel refuses).
    let formats: Locked<(whiteout: WhiteoutFormat, opaqueKey: String)>

    public init(stack: LayerStack, options: OverlayOptions = OverlayOptions()) throws(OverlayError) {
        self.stack = stack
        self.options = options
        var table = NodeTable(root: try NameResolver.root(of: stack))
        table.cachedEntryLimit = options.cachedEntryLimit
        self.table = Locked(table)
        self.descriptors = DirectoryDescriptorCache(capacity: options.directoryDescriptorLimit)
        if let upper = stack.upper {
            guard let work = stack.work else {
                throw OverlayError(.badLayer, errno: EINVAL, "an upper layer needs a work directory")
            }
            self.work = try WorkDirectory(work: work, upper: upper)
        } else {
            self.work = nil
        }
        self.formats = Locked((options.whiteoutFormat,
                              System.isInitialNamespaceRoot ? OverlayMarkers.trustedOpaque : OverlayMarkers.userOpaque))
    }

    /// Whether the overlay has a writable upper layer.
    public var isWritable: Bool { stack.upper != nil }

    // MARK: Lookup

    /// Resolves `name` in directory `parent` and adds a reference to its node.
    /// Throws ENOENT for absent names (cached as negative entries), ENOTDIR if
    /// `parent` is not a directory.
    ///
    /// `from`: a layer known to be the topmost holding `name` (a listing
    /// entry's `layer`); the search then skips the layers above it.
    public func lookup(parent: UInt64, name: FileName, from topmost: Int? = nil) throws(OverlayError) -> (node: UInt64, attributes: FileAttributes) {
        try Self.checkLength(name)
        guard name.isValidComponent, !OverlayMarkers.isOCIMarker(name) else { throw .notFound() }
        enum Cached { case hit(UInt64, FileAttributes, inUpper: Bool, needsHandle: Bool), negative, miss }
        let cached: Cached = try table.withLock { (t) throws(OverlayError) -> Cached in
            guard let resolution = t.nodes[parent]?.resolution else { throw OverlayError(.notFound, errno: ESTALE, "stale node \(parent)") }
            guard resolution.isDirectory else { throw OverlayError(.notADirectory, errno: ENOTDIR, "not a directory") }
            if let cached = t.referenceCached(parent: parent, name: name) {
                guard let (id, found) = cached else { return .negative }
                return .hit(id, found.attributes, inUpper: found.topLayer == 0, needsHandle: t.needsHandle(id))
            }
            return .miss
        }
        switch cached {
        case .hit(let id, let attributes, let inUpper, let needsHandle):
            if needsHandle { attachHandle(id, reachedAs: name, in: parent) }
            // Upper objects change through the daemon: their cached attributes are
            // only a starting point, so they are stat'ed fresh (one fstatat).
            if isWritable && inUpper {
                do throws(OverlayError) { return (id, try self.attributes(of: id)) } catch {
                    forget(id, count: 1)
                    throw error
                }
            }
            return (id, attributes)
        case .negative: throw .notFound()
        case .miss:
            let resolved = try resolveName(name, in: parent, from: topmost)
            let outcome: (UInt64, FileAttributes)? = table.withLock { t in
                guard t.nodes[parent] != nil else { return nil }
                if let cached = t.referenceCached(parent: parent, name: name) {
                    // Another thread resolved it first: use its result.
                    guard let (id, resolution) = cached else { return nil }
                    return (id, resolution.attributes)
                }
                guard let (resolution, _) = resolved else {
                    t.cacheAbsent(parent: parent, name: name)
                    return nil
                }
                let id = t.reference(parent: parent, name: name, resolution: resolution)
                var attributes = resolution.attributes
                attributes.inode = t.nodes[id]!.resolution.attributes.inode   // a shared node keeps its number
                return (id, attributes)
            }
            guard let (id, attributes) = outcome else { throw .notFound() }
            if let (_, opened) = resolved {
                for d in opened { descriptors.insert(d.descriptor, node: id, layer: d.layer) }
            }
            attachHandle(id, reachedAs: name, in: parent)
            return (id, attributes)
        }
    }

    /// Resolves `name` in directory `parent` through the stack (no caching of
    /// the result; the caller records it). Answered from the parent's lower
    /// index when it has one, and probing layer by layer otherwise, starting
    /// at `topmost` when the caller knows the topmost layer holding the name.
    func resolveName(_ name: FileName, in parent: UInt64, from topmost: Int? = nil) throws(OverlayError) -> (Resolution, [LayerDirectory])? {
        let n = try record(parent)
        if let index = try lowerIndex(parent, record: n, whenProbed: true) {
            let hasUpper = isWritable && n.resolution.layers.first == 0
            let upper = hasUpper ? LayerDirectory(layer: 0, descriptor: try directory(node: parent, layer: 0)) : nil
            return try NameResolver.resolve(name, upper: upper, lowers: index, stack: stack) { (layer) throws(OverlayError) in
                try directory(node: parent, layer: layer)
            }
        }
        var layers = n.resolution.layers
        if let topmost, let start = layers.firstIndex(of: topmost) { layers.removeFirst(start) }
        let parents = try layers.map { (layer) throws(OverlayError) in
            LayerDirectory(layer: layer, descriptor: try directory(node: parent, layer: layer))
        }
        return try NameResolver.resolve(name, in: parents, stack: stack)
    }

    /// The lower layers a directory with `resolution` merges (every layer of a read-only mount).
    func lowerLayers(of resolution: Resolution) -> [Int] {
        isWritable ? resolution.layers.filter { $0 != 0 } : resolution.layers
    }

    /// The index of directory `node`'s lower layers (`nil` if it merges none):
    /// the cached one if it still covers them; else a new one, read now. With
    /// `whenProbed`, a new one is read only once lookups probing layer by layer
    /// have cost about what one read of the directory costs (`probeThreshold`),
    /// so a single stat in a huge directory never reads all of it.
    func lowerIndex(_ node: UInt64, record n: NodeTable.Record, whenProbed: Bool) throws(OverlayError) -> LowerDirectoryIndex? {
        let lowers = lowerLayers(of: n.resolution)
        guard !lowers.isEmpty else { return nil }
        if let index = n.lowerIndex, index.layers == lowers { return index }
        if whenProbed {
            let threshold = Self.probeThreshold(directorySize: n.resolution.attributes.size)
            let due = table.withLock { t in
                guard t.nodes[node] != nil, t.cachedEntries < t.cachedEntryLimit else { return false }
                t.directories[node, default: NodeTable.DirectoryState()].probes += 1
                return t.directories[node]!.probes >= threshold
            }
            guard due else { return nil }
        }
        let directories = try lowers.map { (layer) throws(OverlayError) in
            LayerDirectory(layer: layer, descriptor: try directory(node: node, layer: layer))
        }
        let index = try LowerDirectoryIndex.build(directories, stack: stack)
        let hasUpper = isWritable
        table.withLock { $0.setLowerIndex(node, index, hasUpper: hasUpper) }
        return index
    }

    /// Probing lookups after which a directory's lowers are indexed: a probe
    /// costs two syscalls per layer, a read about one per 400 entries plus a
    /// per-entry cost in memory; a directory's size (ext4: ~2 KiB per 50–100
    /// names) stands in for its entry count. Small directories are indexed at
    /// the second probe.
    static func probeThreshold(directorySize: Int64) -> Int {
        max(2, Int(min(max(directorySize, 0) / 2048, 1 << 20)))
    }

    /// Gives shared node `id` (see `NodeTable.sharedNodes`) its `O_PATH`
    /// handle, opened by the name it was just reached by; a no-op for other
    /// nodes. If that name no longer holds the object, the node stops being
    /// shared rather than pointing at a stranger.
    func attachHandle(_ id: UInt64, reachedAs name: FileName, in parent: UInt64) {
        guard let key = table.withLock({ $0.needsHandle(id) ? $0.upperObjects[id]?.sharedKey : nil }) else { return }
        var handle: Descriptor?
        do {
            let upper = try directory(node: parent, layer: 0)
            let d = try upper.open(name, [.path])
            if try d.attributes().inode == key { handle = d }
        } catch {}
        table.withLock { t in
            guard t.needsHandle(id) else { return }
            if let handle { t.attach(handle, to: id) } else { t.unshare(id) }
        }
    }

    /// ENAMETOOLONG for a component over NAME_MAX (the kernel passes up to 1024 bytes).
    static func checkLength(_ name: FileName) throws(OverlayError) {
        if name.bytes.count > 255 { throw OverlayError(.invalidArgument, errno: ENAMETOOLONG, "name longer than 255 bytes") }
    }

    /// Drops `count` references to `node`; frees it (and its caches) at zero.
    public func forget(_ node: UInt64, count: UInt64) {
        let removed = table.withLock { $0.forget(node, count: count) }
        for (id, layers) in removed {
            descriptors.remove(node: id, layers: layers)
            if layers.isEmpty { readableFiles.remove(node: id, layers: [-1]) }
        }
    }

    /// Number of live nodes (the root included).
    public var nodeCount: Int { table.withLock { $0.nodes.count } }

    /// When more than `limit` nodes live: the names of the least recently
    /// looked-up nodes without live children, enough to bring the count to 90%
    /// of `limit`, for the FUSE layer to ask the kernel to drop (its FORGETs then
    /// free the nodes; names in use stay). Empty at or under the limit.
    /// The table lock is held only to copy (use, id) pairs and to read names.
    public func reclaimCandidates(limit: Int) -> [(parent: UInt64, name: FileName)] {
        let aged: [(UInt32, UInt64)]? = table.withLock { t in
            guard t.nodes.count > limit else { return nil }
            let now = UInt32(truncatingIfNeeded: t.useClock)
            return t.nodes.compactMap { id, node in
                id == Self.rootID || node.pins > 0 || node.detached ? nil : (now &- node.lastUse, id)
            }
        }
        guard let aged else { return [] }
        let excess = nodeCount - limit * 9 / 10
        let oldest = aged.sorted { $0.0 > $1.0 }.prefix(max(0, excess)).map(\.1)
        return table.withLock { t in
            oldest.compactMap { id in t.nodes[id].map { (parent: $0.parent, name: $0.name.fileName) } }
        }
    }

    /// Resolves a relative path (components) from the root, taking one
    /// reference per component the caller must `forget`; for library users and tests.
    public func resolve(path components: [FileName]) throws(OverlayError) -> (node: UInt64, attributes: FileAttributes) {
        var current = (node: Self.rootID, attributes: try attributes(of: Self.rootID))
        for name in components { current = try lookup(parent: current.node, name: name) }
        return current
    }

    // MARK: Attributes and objects

    /// The attributes the mount shows for `node`. Lower objects are answered
    /// from the cache (lowers do not change); upper objects are stat'ed fresh
    /// (or through `handle` when the kernel names an open file), keeping the
    /// inode number the node was first shown with.
    public func attributes(of node: UInt64, handle: Descriptor? = nil) throws(OverlayError) -> FileAttributes {
        let n = try record(node)
        guard isWritable, n.resolution.topLayer == 0 || handle != nil else { return n.resolution.attributes }
        var fresh: FileAttributes
        if let handle = handle ?? n.handle {
            fresh = try system("cannot stat") { try handle.attributes() }
        } else if node == Self.rootID {
            fresh = try system("cannot stat the upper root") { try stack.layers[0].root.attributes() }
        } else if n.detached {
            return n.resolution.attributes
        } else {
            let parent = try directory(node: n.parent, layer: 0)
            fresh = try system("cannot stat \(n.name)") { try parent.attributes(of: n.name) }
        }
        fresh.inode = n.resolution.attributes.inode
        if fresh.isDirectory && n.resolution.layers.count > 1 { fresh.linkCount = 1 }
        return fresh
    }

    /// The resolution behind `node`.
    public func resolution(of node: UInt64) throws(OverlayError) -> Resolution {
        try record(node).resolution
    }

    /// A snapshot of `node` without its name cache (see `NodeTable.Record`).
    func record(_ node: UInt64) throws(OverlayError) -> NodeTable.Record {
        guard let n = table.withLock({ $0.record(node) }) else {
            throw OverlayError(.notFound, errno: ESTALE, "stale node \(node)")
        }
        return n
    }

    /// A readable descriptor of `node`'s directory in `layer`: from the cache,
    /// or reopened by name from the parent's descriptor in that layer
    /// (O_DIRECTORY | O_NOFOLLOW: a symlink put in its place is never followed).
    public func directory(node: UInt64, layer: Int) throws(OverlayError) -> Descriptor {
        if node == Self.rootID { return stack.layers[layer].root }
        if let d = descriptors.descriptor(node: node, layer: layer) { return d }
        let n = try record(node)
        let parentDirectory = try directory(node: n.parent, layer: layer)
        let d = try system("cannot open directory \(n.name) in layer \(stack.layers[layer].path)") {
            try parentDirectory.open(n.name, [.directory])
        }
        descriptors.insert(d, node: node, layer: layer)
        return d
    }

    /// The layer directory holding `node`'s winning object, and its name there.
    public func location(of node: UInt64) throws(OverlayError) -> (parent: Descriptor, name: FileName, layer: Int) {
        let n = try record(node)
        guard node != Self.rootID else { throw OverlayError(.invalidArgument, errno: EINVAL, "the root has no parent") }
        let layer = n.resolution.topLayer
        return (try directory(node: n.parent, layer: layer), n.name, layer)
    }

    /// A descriptor for the winning object itself: the directory for a
    /// directory, else an `O_PATH` descriptor (never following a symlink).
    public func objectDescriptor(_ node: UInt64) throws(OverlayError) -> Descriptor {
        let n = try record(node)
        if let handle = n.handle { return handle }
        if n.resolution.isDirectory { return try directory(node: node, layer: n.resolution.topLayer) }
        let (parent, name, _) = try location(of: node)
        return try system("cannot open \(name)") { try parent.open(name, [.path]) }
    }

    /// Opens the winning file. Reading never copies up. Opening for writing
    /// copies the file up first (without data when `O_TRUNC` is given) and
    /// opens the upper copy. Without an upper layer any write access is EROFS.
    public func openFile(_ node: UInt64, flags: Int32) throws(OverlayError) -> Descriptor {
        let access = flags & OpenFlags.accessModeMask
        let wantsWrite = access != 0 || flags & OpenFlags.truncate.rawValue != 0
        if wantsWrite && !isWritable { throw .readOnly() }
        let n = try record(node)
        if n.resolution.isDirectory { throw OverlayError(.isADirectory, errno: EISDIR, "is a directory") }
        if wantsWrite {
            try copyUp(node, withData: flags & OpenFlags.truncate.rawValue == 0)
        }
        let passed = OpenFlags(rawValue: flags & (OpenFlags.accessModeMask | O_NONBLOCK | O_TRUNC | O_SYNC | O_DSYNC))
        let file: Descriptor
        if let handle = try record(node).handle {
            file = try system("cannot open \(n.name)") { try handle.reopen(passed) }
        } else {
            let (parent, name, _) = try location(of: node)
            // The kernel sends OPEN for regular files only: anything else is a layer
            // changed behind the mount, refused rather than blocked on (a fifo).
            file = try system("cannot open \(name)") { try parent.openRegularFile(name, passed) }
        }
        table.withLock { $0.openFiles[node, default: 0] += 1 }
        return file
    }

    /// Reports that a descriptor from `openFile` or `create` for `node` was
    /// closed (FUSE RELEASE). When the last one of an object whose name is
    /// gone closes, the daemon lets go of the object too, so its space is
    /// freed at once, as on kernel overlayfs, not at the kernel's later FORGET.
    /// (A library caller that never reports its closes keeps such objects
    /// until `forget`.)
    public func fileReleased(_ node: UInt64) {
        table.withLock { t in
            guard let count = t.openFiles[node] else { return }
            if count > 1 {
                t.openFiles[node] = count - 1
                return
            }
            t.openFiles[node] = nil
            t.dropHandleOfUnlinked(node)
        }
    }

    /// A read-only descriptor of file `node` on a mount without an upper layer,
    /// kept (bounded LRU) for reads that arrive without an open handle (the
    /// FUSE layer stops the kernel from sending OPEN there: lower files never
    /// change). Refused on writable mounts, where files change and copy up.
    public func readableFile(_ node: UInt64) throws(OverlayError) -> Descriptor {
        guard !isWritable else { throw OverlayError(.invalidArgument, errno: EBADF, "no open handle") }
        if let d = readableFiles.descriptor(node: node, layer: -1) { return d }
        let d = try openFile(node, flags: O_RDONLY)
        readableFiles.insert(d, node: node, layer: -1)
        return d
    }

    /// Target of a symlink node.
    public func readLink(_ node: UInt64) throws(OverlayError) -> [UInt8] {
        let n = try record(node)
        guard n.resolution.kind == .symlink else { throw OverlayError(.invalidArgument, errno: EINVAL, "not a symlink") }
        if let handle = n.handle { return try system("cannot read link \(n.name)") { try handle.readLink(FileName(bytes: [])) } }
        let (parent, name, _) = try location(of: node)
        return try system("cannot read link \(name)") { try parent.readLink(name) }
    }

    /// The merged listing of directory `node` (see `MergedDirectory`): kept
    /// for a directory with an upper part (until it changes), rebuilt from the
    /// kept lower index for one without.
    public func listing(of node: UInt64) throws(OverlayError) -> [ListingEntry] {
        let n = try record(node)
        guard n.resolution.isDirectory else { throw OverlayError(.notADirectory, errno: ENOTDIR, "not a directory") }
        if let listing = n.listing { return listing }
        let index = try lowerIndex(node, record: n, whenProbed: false)
        let hasUpper = isWritable && n.resolution.layers.first == 0
        guard let stamp = table.withLock({ $0.listingStamp(node) }) else {
            throw OverlayError(.notFound, errno: ESTALE, "stale node \(node)")
        }
        let upper = hasUpper ? LayerDirectory(layer: 0, descriptor: try directory(node: node, layer: 0)) : nil
        let listing = try MergedDirectory.listing(upper: upper, lowers: index, stack: stack)
        // A directory without an upper part lists its index, which is kept: the
        // listing is rebuilt from it without a syscall, so it is not kept twice.
        guard upper != nil else { return listing }
        return table.withLock { $0.setListing(node, listing, stamp: stamp) }
    }

    /// The parent node of `node` (the root is its own parent).
    public func parent(of node: UInt64) throws(OverlayError) -> UInt64 { try record(node).parent }

    // MARK: Extended attributes

    /// Value of a visible xattr; overlay-private names are ENODATA.
    public func extendedAttribute(_ node: UInt64, name: String) throws(OverlayError) -> [UInt8] {
        if OverlayMarkers.isPrivateXattr(Array(name.utf8)) { throw OverlayError(.noData, errno: ENODATA, "no such attribute") }
        let d = try objectDescriptor(node)
        guard let value = try system("cannot read attribute \(name)", { try d.extendedAttribute(name) }) else {
            throw OverlayError(.noData, errno: ENODATA, "no such attribute")
        }
        return value
    }

    /// Names of the visible xattrs (overlay-private ones removed).
    public func extendedAttributeNames(_ node: UInt64) throws(OverlayError) -> [[UInt8]] {
        let d = try objectDescriptor(node)
        return try system("cannot list attributes") { try d.extendedAttributeNames() }
            .filter { !OverlayMarkers.isPrivateXattr($0) }
    }

    /// Statistics of the top layer's filesystem (the upper when there is one).
    public func fileSystemStatistics() throws(OverlayError) -> FileSystemStatistics {
        try system("cannot stat filesystem") { try stack.layers[0].root.fileSystemStatistics() }
    }
}
