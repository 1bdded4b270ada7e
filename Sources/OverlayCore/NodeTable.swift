import LayerSystem

/// The daemon's view of every name the kernel currently knows, plus the
/// per-directory caches of resolved names and listings.
///
/// Plain value state: it lives inside `OverlayFileSystem`'s mutex and is only
/// touched under that lock (see the lock contract there).
///
/// Cache contract (read-only lowers): lower layers must not change while
/// mounted (the overlayfs rule), so a resolved name, a negative result and a
/// merged listing stay true for as long as their directory node lives. The
/// write path updates them in place for every change it makes through the
/// daemon. Entries are dropped with their directory node (after `forget`).
struct NodeTable {
    /// A cached name of a directory. A name with a live node keeps no copy of
    /// the resolution (the node's is the one truth, and the copy would cost
    /// ~150 bytes per name); when the node is forgotten, its resolution moves here.
    enum Child {
        /// Negative entry: the name is absent in the merged view.
        case absent
        /// Resolved, and no node is live for it.
        indirect case resolved(Resolution)
        /// The live node for this name.
        case live(UInt64)

        var node: UInt64? {
            if case .live(let id) = self { return id }
            return nil
        }
    }

    /// What is cached for `name` in `parent`: nil if nothing, `.some(nil)` if absent.
    func cachedResolution(parent: UInt64, name: FileName) -> Resolution?? {
        switch nodes[parent]?.children[name] {
        case nil: return nil
        case .absent: return .some(nil)
        case .resolved(let resolution): return resolution
        case .live(let id): return nodes[id].map { .some($0.resolution) } ?? nil
        }
    }

    /// The live node named `name` in `parent`, if any.
    func liveNode(parent: UInt64, name: FileName) -> UInt64? {
        nodes[parent]?.children[name]?.node
    }

    struct Node {
        /// Where the node lives now (rename moves it).
        var parent: UInt64
        var name: FileName
        var resolution: Resolution
        /// The kernel's lookup count (FUSE `nlookup`).
        var lookups: UInt64
        /// Live children whose `parent` is this node: a node stays while pinned.
        var pins: Int = 0
        /// Resolved names in this directory (positive and negative).
        var children: [FileName: Child] = [:]
        /// Cached merged listing of this directory (set and dropped through
        /// `setListing` / `dropListing`, which keep `cachedEntries` true).
        fileprivate(set) var listing: [ListingEntry]?
        /// Index of the lower layers this directory merges (see `LowerDirectoryIndex`).
        fileprivate(set) var lowerIndex: LowerDirectoryIndex?
        /// Lookups that had to probe the layers one by one (no index yet).
        var probes = 0
        /// `useClock` at the last lookup of this node (for `OverlayFileSystem.reclaimCandidates`).
        var lastUse: UInt64 = 0
        /// Removed from the namespace (unlinked or replaced) while the kernel still holds it.
        var detached = false
        /// Negative entries cached in `children` (bounded by `negativeLimit`).
        var negatives = 0
        /// For an upper non-directory with several names (hard links): its
        /// upper inode number, under which `sharedNodes` finds this node.
        var sharedKey: UInt64?
        /// `O_PATH` descriptor of a shared node's object. The object is reached
        /// through it (any of its names may be renamed or unlinked meanwhile),
        /// and it keeps the inode alive, so its number cannot be reused while
        /// `sharedNodes` maps it here.
        var handle: Descriptor?
    }

    /// What callers outside the lock may keep of a node: everything but the
    /// per-directory name cache. (A kept `Node` would share `children` with the
    /// table, and the next insertion under the lock would copy the whole
    /// dictionary; a `Record` keeps no reference to it.)
    struct Record {
        var parent: UInt64
        var name: FileName
        var resolution: Resolution
        var listing: [ListingEntry]?
        var lowerIndex: LowerDirectoryIndex?
        var detached: Bool
        var handle: Descriptor?
    }

    func record(_ id: UInt64) -> Record? {
        guard let n = nodes[id] else { return nil }
        return Record(parent: n.parent, name: n.name, resolution: n.resolution, listing: n.listing,
                      lowerIndex: n.lowerIndex, detached: n.detached, handle: n.handle)
    }

    // MARK: Directory caches (listings and lower indexes)

    /// Entries held by all cached listings and lower indexes together.
    private(set) var cachedEntries = 0
    /// Bound on `cachedEntries` (`OverlayOptions.cachedEntryLimit`). Past it,
    /// listings and indexes are still built and used, but not kept: memory
    /// stays bounded, at the price of re-reading directories.
    var cachedEntryLimit = Int.max

    /// Keeps `listing` for directory `id` if the budget allows; returns the listing now cached (or `listing`).
    mutating func setListing(_ id: UInt64, _ listing: [ListingEntry]) -> [ListingEntry] {
        guard nodes[id] != nil else { return listing }
        if let existing = nodes[id]!.listing { return existing }
        guard cachedEntries + listing.count <= cachedEntryLimit else { return listing }
        nodes[id]!.listing = listing
        cachedEntries += listing.count
        return listing
    }

    /// Forgets the cached listing of `id` (its directory changed).
    mutating func dropListing(_ id: UInt64) {
        guard let count = nodes[id]?.listing?.count else { return }
        nodes[id]!.listing = nil
        cachedEntries -= count
    }

    /// Keeps `index` for directory `id` if it still merges exactly `index.layers`
    /// below its upper directory (`hasUpper`: layer 0 is the upper) and the budget allows.
    mutating func setLowerIndex(_ id: UInt64, _ index: LowerDirectoryIndex, hasUpper: Bool) {
        nodes[id]?.probes = 0
        guard let node = nodes[id], node.lowerIndex == nil,
              (hasUpper ? node.resolution.layers.filter { $0 != 0 } : node.resolution.layers) == index.layers,
              cachedEntries + index.count <= cachedEntryLimit else { return }
        nodes[id]!.lowerIndex = index
        cachedEntries += index.count
    }

    /// Drops both caches of `id`.
    mutating func dropCaches(_ id: UInt64) {
        dropListing(id)
        if let count = nodes[id]?.lowerIndex?.count {
            nodes[id]!.lowerIndex = nil
            cachedEntries -= count
        }
    }

    /// Upper inode number → the one node every name of that (hard-linked)
    /// object maps to. The kernel then holds one inode for all the names, so
    /// its page cache and attributes stay coherent across them, as on kernel
    /// overlayfs. Lower objects are never shared: copying one name up breaks
    /// the link (the overlayfs rule without an index).
    var sharedNodes: [UInt64: UInt64] = [:]

    /// Negative entries cached per directory at most: any user who can stat
    /// random names must not be able to grow the daemon without bound. Past the
    /// limit, absent names are answered without being cached.
    static let negativeLimit = 1024

    /// Caches "absent" for `name` in `parent` unless the directory's quota is used up.
    mutating func cacheAbsent(parent: UInt64, name: FileName) {
        // Read in place (binding the Node would make the insertion copy `children`).
        guard let negatives = nodes[parent]?.negatives, negatives < Self.negativeLimit else { return }
        if nodes[parent]!.children[name] == nil { nodes[parent]!.negatives += 1 }
        nodes[parent]!.children[name] = .absent
    }

    static let rootID: UInt64 = 1
    var nodes: [UInt64: Node] = [:]
    var nextID: UInt64 = 2
    /// Counts lookups; stamped into `Node.lastUse`.
    var useClock: UInt64 = 0

    init(root: Resolution) {
        nodes[Self.rootID] = Node(parent: Self.rootID, name: FileName(bytes: []), resolution: root, lookups: 1)
    }

    /// Creates (or re-references) the node for `name` in `parent`, adding one
    /// lookup. A name of an upper object that already has a shared node gets
    /// that node; a new node for an upper non-directory with several links is
    /// registered as shared (the caller then attaches its `handle`).
    mutating func reference(parent: UInt64, name: FileName, resolution: Resolution) -> UInt64 {
        useClock += 1
        if let existing = liveNode(parent: parent, name: name), nodes[existing] != nil {
            nodes[existing]!.lookups += 1
            nodes[existing]!.lastUse = useClock
            return existing
        }
        let sharable = !resolution.isDirectory && resolution.topLayer == 0
        if sharable, let shared = sharedNodes[resolution.objectInode], nodes[shared] != nil {
            nodes[shared]!.lookups += 1
            nodes[shared]!.lastUse = useClock
            nodes[parent]?.children[name] = .live(shared)
            return shared
        }
        let id = nextID
        nextID += 1
        // The index's copy of the name, if it has one: one buffer for both (the
        // kernel's copy would be a second allocation per node).
        let name = nodes[parent]?.lowerIndex?.entry(named: name)?.name ?? name
        nodes[id] = Node(parent: parent, name: name, resolution: resolution, lookups: 1, lastUse: useClock)
        nodes[parent]?.pins += 1
        nodes[parent]?.children[name] = .live(id)
        if sharable && resolution.attributes.linkCount > 1 { share(id) }
        return id
    }

    /// Registers upper non-directory `id` as the node of all its names.
    mutating func share(_ id: UInt64) {
        guard let node = nodes[id], node.sharedKey == nil else { return }
        nodes[id]!.sharedKey = node.resolution.objectInode
        sharedNodes[node.resolution.objectInode] = id
    }

    /// Takes `id` out of `sharedNodes` (its handle could not be attached).
    mutating func unshare(_ id: UInt64) {
        guard let key = nodes[id]?.sharedKey else { return }
        if sharedNodes[key] == id { sharedNodes[key] = nil }
        nodes[id]!.sharedKey = nil
        nodes[id]!.handle = nil
    }

    /// Whether `id` is shared and still waits for its handle.
    func needsHandle(_ id: UInt64) -> Bool {
        guard let node = nodes[id] else { return false }
        return node.sharedKey != nil && node.handle == nil
    }

    /// Drops `count` lookups of `id`; returns the nodes that left the table
    /// (the node and ancestors it was the last pin of) with their layers.
    mutating func forget(_ id: UInt64, count: UInt64) -> [(UInt64, [Int])] {
        guard id != Self.rootID, var node = nodes[id] else { return [] }
        node.lookups -= min(count, node.lookups)
        nodes[id] = node
        var removed: [(UInt64, [Int])] = []
        var current = id
        while current != Self.rootID, let n = nodes[current], n.lookups == 0, n.pins == 0 {
            dropCaches(current)
            nodes[current] = nil
            if let key = n.sharedKey, sharedNodes[key] == current { sharedNodes[key] = nil }
            removed.append((current, n.resolution.isDirectory ? n.resolution.layers : []))
            nodes[n.parent]?.pins -= 1
            if liveNode(parent: n.parent, name: n.name) == current {
                nodes[n.parent]?.children[n.name] = .resolved(n.resolution)
            }
            current = n.parent
        }
        return removed
    }
}

extension NodeTable {
    /// Moves node `id` to `name` in `parent` (after a rename on disk).
    mutating func move(_ id: UInt64, to parent: UInt64, name: FileName) {
        guard let node = nodes[id] else { return }
        if liveNode(parent: node.parent, name: node.name) == id {
            nodes[node.parent]?.children[node.name] = nil
        }
        nodes[node.parent]?.pins -= 1
        dropListing(node.parent)
        nodes[id]!.parent = parent
        nodes[id]!.name = name
        nodes[parent]?.pins += 1
        nodes[parent]?.children[name] = .live(id)
        dropListing(parent)
    }

    /// Marks the live node at `name` in `parent` (if any) as detached and
    /// forgets the cached resolution of the name.
    mutating func detach(parent: UInt64, name: FileName) {
        // A shared node may live on under its other names; it is reached through its handle.
        if let id = liveNode(parent: parent, name: name), nodes[id]?.handle == nil { nodes[id]?.detached = true }
        nodes[parent]?.children[name] = nil
        dropListing(parent)
    }

    /// Records the resolution of `name` in `parent` (nil = absent), updating the live node.
    mutating func update(parent: UInt64, name: FileName, resolution: Resolution?) {
        let id = liveNode(parent: parent, name: name)
        if let resolution {
            nodes[parent]?.children[name] = id.map { .live($0) } ?? .resolved(resolution)
        } else {
            nodes[parent]?.children[name] = .absent
        }
        dropListing(parent)
        if let id, let resolution { nodes[id]?.resolution = resolution }
        if let id, resolution == nil, nodes[id]?.handle == nil { nodes[id]?.detached = true }
    }

    /// Records that directory `id` no longer merges lower layers (it was copied
    /// up whole and marked opaque): its own resolution, its parent's cached
    /// entry for it, and the cached entries of its subdirectories (each of
    /// which was copied up whole before it) now name the upper layer only.
    /// Without this a later lookup would reach into lower directories at the
    /// old path after a rename.
    mutating func makeUpperOnly(_ id: UInt64) {
        guard let node = nodes[id] else { return }
        nodes[id]!.resolution.layers = [0]
        dropCaches(id)
        // (Its parent's entry for it is `.live`: the node's resolution is the entry's.)
        for (name, child) in node.children {
            guard case .resolved(var resolution) = child, resolution.isDirectory else { continue }
            resolution.layers = [0]
            nodes[id]!.children[name] = .resolved(resolution)
        }
    }
}
