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

    /// What is cached for `name` in `parent`, taking one kernel reference to
    /// the node of a cached object (as `reference` would): nil if nothing is
    /// cached, `.some(nil)` if the name is cached as absent. One search of the
    /// caches serves both the answer and the reference.
    mutating func referenceCached(parent: UInt64, name: FileName) -> (id: UInt64, resolution: Resolution)?? {
        switch child(parent: parent, name: name) {
        case nil: return nil
        case .absent: return .some(nil)
        case .resolved(let resolution): return (reference(parent: parent, name: name, resolution: resolution), resolution)
        case .live(let id):
            guard let node = nodes[id] else { return nil }
            addReference(id)
            return (id, node.resolution)
        }
    }

    /// One more kernel reference to live node `id`.
    mutating func addReference(_ id: UInt64) {
        useClock += 1
        nodes[id]!.lookups += 1
        nodes[id]!.lastUse = UInt32(truncatingIfNeeded: useClock)
    }

    /// The live node named `name` in `parent`, if any.
    func liveNode(parent: UInt64, name: FileName) -> UInt64? {
        child(parent: parent, name: name)?.node
    }

    /// The cached entry for `name` in `parent`: the live node living at that
    /// name (from `liveNames`), else what `children` holds.
    func child(parent: UInt64, name: FileName) -> Child? {
        if let id = liveEntry(parent: parent, name: name) { return .live(id) }
        return directories[parent]?.children[name]
    }

    /// The node whose own `parent` and `name` are `parent` and `name`, if it is in `liveNames`.
    private func liveEntry(parent: UInt64, name: FileName) -> UInt64? {
        let slot = liveNames.first(hash: Self.nameHash(parent, name)) { slot in
            guard let id = nodes.id(inSlot: slot), let node = nodes[id] else { return false }
            return node.parent == parent && node.name.matches(name)
        }
        return slot.flatMap { nodes.id(inSlot: $0) }
    }

    private static func nameHash(_ parent: UInt64, _ name: FileName) -> Int {
        NodeName.hash(name.bytes[...], parent: parent)
    }

    /// The `liveNames` hash of the node in `slot` of `store` (callers pass a
    /// copy of `nodes`: the table is changed while the hashes are read).
    private static func liveNameHash(ofSlot slot: UInt32, in store: NodeStore) -> Int {
        store.id(inSlot: slot).flatMap { store[$0] }.map { NodeName.hash($0.name.bytes, parent: $0.parent) } ?? 0
    }

    /// One name the kernel knows. Only what every node needs lives here (the
    /// node store keeps one of these per name, so every byte counts 200k
    /// times in a 200k-file walk); directory-only state is in `directories`,
    /// handles of upper objects in `upperObjects`.
    struct Node {
        /// Where the node lives now (rename moves it).
        var parent: UInt64
        var name: NodeName
        var resolution: Resolution
        /// `lookups` in the low 63 bits, `detached` in the top bit (one word for both).
        private var lookupsAndDetached: UInt64
        /// The low 32 bits of `useClock` at the last lookup of this node (for
        /// `OverlayFileSystem.reclaimCandidates`, which compares ages modulo 2^32).
        var lastUse: UInt32
        /// Live children whose `parent` is this node: a node stays while pinned.
        var pins: Int32 = 0

        init(parent: UInt64, name: NodeName, resolution: Resolution, lookups: UInt64, lastUse: UInt64 = 0) {
            self.parent = parent
            self.name = name
            self.resolution = resolution
            self.lookupsAndDetached = lookups & Self.lookupMask
            self.lastUse = UInt32(truncatingIfNeeded: lastUse)
        }

        private static let detachedBit: UInt64 = 1 << 63
        private static let lookupMask = ~detachedBit

        /// The kernel's lookup count (FUSE `nlookup`; far below 2^63).
        var lookups: UInt64 {
            get { lookupsAndDetached & Self.lookupMask }
            set { lookupsAndDetached = (lookupsAndDetached & Self.detachedBit) | (newValue & Self.lookupMask) }
        }

        /// Removed from the namespace (unlinked or replaced) while the kernel still holds it.
        var detached: Bool {
            get { lookupsAndDetached & Self.detachedBit != 0 }
            set { lookupsAndDetached = newValue ? lookupsAndDetached | Self.detachedBit : lookupsAndDetached & Self.lookupMask }
        }
    }

    /// What only a directory node has (kept apart: a few directories, many files).
    struct DirectoryState {
        /// Resolved names in this directory (positive and negative).
        var children: [FileName: Child] = [:]
        /// Cached merged listing of this directory (set and dropped through
        /// `setListing` / `dropListing`, which keep `cachedEntries` true).
        fileprivate(set) var listing: [ListingEntry]?
        /// Index of the lower layers this directory merges (see `LowerDirectoryIndex`).
        fileprivate(set) var lowerIndex: LowerDirectoryIndex?
        /// Lookups that had to probe the layers one by one (no index yet).
        var probes = 0
        /// Negative entries cached in `children` (bounded by `negativeLimit`).
        var negatives = 0
        /// Changes to the directory's names (bumped by every `dropListing`).
        fileprivate(set) var changes: UInt64 = 0
    }

    /// What only some upper non-directory nodes have: hard-linked ones, and
    /// ones kept reachable past an unlink (`OverlayFileSystem.keepReachable`).
    struct UpperObject {
        /// For a node with several names: its upper inode number, under which
        /// `sharedNodes` finds the node.
        var sharedKey: UInt64?
        /// `O_PATH` descriptor of the object. The object is reached through it
        /// (any of its names may be renamed or unlinked meanwhile), and it keeps
        /// the inode alive, so its number cannot be reused while `sharedNodes`
        /// maps it here.
        var handle: Descriptor?
    }

    /// Nodes by ID (see `NodeStore` for the ID contract).
    var nodes = NodeStore()
    /// Directory state by node ID; an entry exists once the directory caches
    /// something and leaves with its node.
    var directories: [UInt64: DirectoryState] = [:]
    /// Every live node at its own `parent` and `name`, by the hash of the two:
    /// one 4-byte slot (its `NodeStore` slot) per node instead of a `children` entry (a dictionary
    /// bucket per name in every directory). Contract: a node is in it only
    /// while its `parent` and `name` are the ones it was inserted under, so
    /// `move` takes it out before changing them (`setChild` keeps it true).
    private var liveNames = ProbingTable<UInt32>()
    /// Upper-object state by node ID; leaves with its node.
    var upperObjects: [UInt64: UpperObject] = [:]
    /// Files open through the mount, by node: descriptors handed out by
    /// `OverlayFileSystem.openFile` and `create` minus `fileReleased` calls.
    var openFiles: [UInt64: Int] = [:]

    /// Drops the `O_PATH` handle that `keepReachable` gave node `id` once its
    /// name is gone and its last open file closed: nothing can reach the
    /// object any more, and the handle would keep its blocks allocated until
    /// the kernel's FORGET. Shared nodes (hard links) keep theirs.
    mutating func dropHandleOfUnlinked(_ id: UInt64) {
        guard let node = nodes[id], let object = upperObjects[id], object.sharedKey == nil, object.handle != nil,
              liveNode(parent: node.parent, name: node.name.fileName) != id else { return }
        upperObjects[id] = nil
        nodes[id]!.detached = true
    }

    /// Sets (or with nil, removes) the cached entry for `name` in directory
    /// `parent`, if it lives. A live node at its own name goes to `liveNames`;
    /// any other entry (a further name of a shared node included) to `children`.
    mutating func setChild(_ child: Child?, parent: UInt64, name: FileName) {
        let hash = Self.nameHash(parent, name)
        let store = nodes
        if let live = liveEntry(parent: parent, name: name) {
            if child?.node == live { return }
            liveNames.remove(NodeStore.slot(of: live), hash: hash) { Self.liveNameHash(ofSlot: $0, in: store) }
        }
        if let id = child?.node, let node = nodes[id], node.parent == parent, node.name.matches(name) {
            directories[parent]?.children[name] = nil
            liveNames.insert(NodeStore.slot(of: id), hash: hash) { Self.liveNameHash(ofSlot: $0, in: store) }
            return
        }
        guard let child else {
            directories[parent]?.children[name] = nil
            return
        }
        guard nodes[parent] != nil else { return }
        directories[parent, default: DirectoryState()].children[name] = child
    }

    /// The `O_PATH` handle of node `id`, if it has one.
    func handle(of id: UInt64) -> Descriptor? { upperObjects[id]?.handle }

    /// Gives node `id` its `O_PATH` handle unless it has one.
    mutating func attach(_ handle: Descriptor, to id: UInt64) {
        guard nodes[id] != nil, upperObjects[id]?.handle == nil else { return }
        upperObjects[id, default: UpperObject()].handle = handle
    }

    /// What callers outside the lock may keep of a node: its own fields, its
    /// directory caches and its handle, copied out under the lock. (Never the
    /// name cache: a kept reference to `children` would make the next insertion
    /// under the lock copy the whole dictionary.)
    struct Record {
        var parent: UInt64
        var nodeName: NodeName
        var resolution: Resolution
        var listing: [ListingEntry]?
        var lowerIndex: LowerDirectoryIndex?
        var detached: Bool
        var handle: Descriptor?
        /// The node's name (a copy, for a name kept in an index).
        var name: FileName { nodeName.fileName }
    }

    func record(_ id: UInt64) -> Record? {
        guard let n = nodes[id] else { return nil }
        let directory = directories[id]
        return Record(parent: n.parent, nodeName: n.name, resolution: n.resolution, listing: directory?.listing,
                      lowerIndex: directory?.lowerIndex, detached: n.detached, handle: upperObjects[id]?.handle)
    }

    // MARK: Directory caches (listings and lower indexes)

    /// Entries held by all cached listings and lower indexes together.
    private(set) var cachedEntries = 0
    /// Bound on `cachedEntries` (`OverlayOptions.cachedEntryLimit`). Past it,
    /// listings and indexes are still built and used, but not kept: memory
    /// stays bounded, at the price of re-reading directories.
    var cachedEntryLimit = Int.max

    /// The change count of directory `id`, to pass to `setListing` with a
    /// listing read from now on; nil if the node is gone.
    mutating func listingStamp(_ id: UInt64) -> UInt64? {
        guard nodes[id] != nil else { return nil }
        return directories[id, default: DirectoryState()].changes
    }

    /// Keeps `listing` for directory `id` if the budget allows and the
    /// directory did not change since `stamp` (`listingStamp`, taken before
    /// the listing was read outside the lock: a create or unlink in between
    /// would otherwise be missing from every later listing); returns the
    /// listing now cached (or `listing`).
    mutating func setListing(_ id: UInt64, _ listing: [ListingEntry], stamp: UInt64) -> [ListingEntry] {
        guard nodes[id] != nil, directories[id]?.changes == stamp else { return listing }
        if let existing = directories[id]?.listing { return existing }
        guard cachedEntries + listing.count <= cachedEntryLimit else { return listing }
        directories[id, default: DirectoryState()].listing = listing
        cachedEntries += listing.count
        return listing
    }

    /// Forgets the cached listing of `id` (its directory changed).
    mutating func dropListing(_ id: UInt64) {
        directories[id]?.changes &+= 1
        guard let count = directories[id]?.listing?.count else { return }
        directories[id]!.listing = nil
        cachedEntries -= count
    }

    /// Keeps `index` for directory `id` if it still merges exactly `index.layers`
    /// below its upper directory (`hasUpper`: layer 0 is the upper) and the budget allows.
    mutating func setLowerIndex(_ id: UInt64, _ index: LowerDirectoryIndex, hasUpper: Bool) {
        directories[id]?.probes = 0
        guard let node = nodes[id], directories[id]?.lowerIndex == nil,
              (hasUpper ? node.resolution.layers.filter { $0 != 0 } : node.resolution.layers) == index.layers,
              cachedEntries + index.count <= cachedEntryLimit else { return }
        directories[id, default: DirectoryState()].lowerIndex = index
        cachedEntries += index.count
    }

    /// Drops both caches of `id`. Live children whose names are kept in the
    /// dropped index get names of their own (`NodeName`'s memory contract).
    mutating func dropCaches(_ id: UInt64) {
        dropListing(id)
        guard let index = directories[id]?.lowerIndex else { return }
        directories[id]!.lowerIndex = nil
        cachedEntries -= index.count
        // Only its live children (which pin it; `move` gives a name of its own) can hold its names.
        guard nodes[id]?.pins ?? 0 > 0 else { return }
        for position in index.indices {
            let name = index.name(at: position)
            // (Same bytes, same hash: the node keeps its place in `liveNames`.)
            if let child = liveEntry(parent: id, name: name), nodes[child]?.name.isStored(in: index) == true {
                nodes[child]!.name = NodeName(name)
            }
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
        guard nodes[parent] != nil, directories[parent]?.negatives ?? 0 < Self.negativeLimit else { return }
        if directories[parent]?.children[name] == nil { directories[parent, default: DirectoryState()].negatives += 1 }
        directories[parent, default: DirectoryState()].children[name] = .absent
    }

    static let rootID: UInt64 = 1
    /// Counts lookups; stamped into `Node.lastUse`.
    var useClock: UInt64 = 0

    init(root: Resolution) {
        let id = nodes.insert(Node(parent: Self.rootID, name: NodeName(FileName(bytes: [])), resolution: root, lookups: 1))
        precondition(id == Self.rootID, "the first node stored is the root")
    }

    /// Creates (or re-references) the node for `name` in `parent`, adding one
    /// lookup. A name of an upper object that already has a shared node gets
    /// that node; a new node for an upper non-directory with several links is
    /// registered as shared (the caller then attaches its `handle`).
    mutating func reference(parent: UInt64, name: FileName, resolution: Resolution) -> UInt64 {
        if let existing = liveNode(parent: parent, name: name), nodes[existing] != nil {
            addReference(existing)
            return existing
        }
        let sharable = !resolution.isDirectory && resolution.topLayer == 0
        if sharable, let shared = sharedNodes[resolution.objectInode], nodes[shared] != nil {
            addReference(shared)
            setChild(.live(shared), parent: parent, name: name)
            return shared
        }
        useClock += 1
        // The index's copy of the name, if it has one: one buffer for both.
        var nodeName = NodeName(name)
        if let index = directories[parent]?.lowerIndex, let position = index.position(of: name) {
            nodeName = NodeName(index: index, position: position)
        }
        let id = nodes.insert(Node(parent: parent, name: nodeName, resolution: resolution, lookups: 1, lastUse: useClock))
        nodes[parent]?.pins += 1
        setChild(.live(id), parent: parent, name: name)
        if sharable && resolution.attributes.linkCount > 1 { share(id) }
        return id
    }

    /// Registers upper non-directory `id` as the node of all its names.
    mutating func share(_ id: UInt64) {
        guard let node = nodes[id], upperObjects[id]?.sharedKey == nil else { return }
        upperObjects[id, default: UpperObject()].sharedKey = node.resolution.objectInode
        sharedNodes[node.resolution.objectInode] = id
    }

    /// Takes `id` out of `sharedNodes` (its handle could not be attached).
    mutating func unshare(_ id: UInt64) {
        guard let key = upperObjects[id]?.sharedKey else { return }
        if sharedNodes[key] == id { sharedNodes[key] = nil }
        upperObjects[id] = nil
    }

    /// Whether `id` is shared and still waits for its handle.
    func needsHandle(_ id: UInt64) -> Bool {
        guard nodes[id] != nil, let object = upperObjects[id] else { return false }
        return object.sharedKey != nil && object.handle == nil
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
            // (Before the node leaves the store: `liveNames` finds it there.)
            let name = n.name.fileName
            if liveNode(parent: n.parent, name: name) == current {
                setChild(.resolved(n.resolution), parent: n.parent, name: name)
            }
            nodes[current] = nil
            directories[current] = nil
            openFiles[current] = nil
            if let key = upperObjects.removeValue(forKey: current)?.sharedKey, sharedNodes[key] == current { sharedNodes[key] = nil }
            removed.append((current, n.resolution.isDirectory ? n.resolution.layers : []))
            nodes[n.parent]?.pins -= 1
            current = n.parent
        }
        return removed
    }
}

extension NodeTable {
    /// Moves node `id` to `name` in `parent` (after a rename on disk).
    mutating func move(_ id: UInt64, to parent: UInt64, name: FileName) {
        guard let node = nodes[id] else { return }
        let oldName = node.name.fileName
        if liveNode(parent: node.parent, name: oldName) == id {
            setChild(nil, parent: node.parent, name: oldName)
        }
        nodes[node.parent]?.pins -= 1
        dropListing(node.parent)
        nodes[id]!.parent = parent
        nodes[id]!.name = NodeName(name)
        nodes[parent]?.pins += 1
        setChild(.live(id), parent: parent, name: name)
        dropListing(parent)
    }

    /// Marks the live node at `name` in `parent` (if any) as detached and
    /// forgets the cached resolution of the name.
    mutating func detach(parent: UInt64, name: FileName) {
        // A shared node may live on under its other names; it is reached through its handle.
        if let id = liveNode(parent: parent, name: name), handle(of: id) == nil { nodes[id]?.detached = true }
        setChild(nil, parent: parent, name: name)
        dropListing(parent)
    }

    /// Records the resolution of `name` in `parent` (nil = absent), updating the live node.
    mutating func update(parent: UInt64, name: FileName, resolution: Resolution?) {
        let id = liveNode(parent: parent, name: name)
        if let resolution {
            setChild(id.map { .live($0) } ?? .resolved(resolution), parent: parent, name: name)
        } else {
            setChild(.absent, parent: parent, name: name)
        }
        dropListing(parent)
        if let id, let resolution { nodes[id]?.resolution = resolution }
        if let id, resolution == nil, handle(of: id) == nil { nodes[id]?.detached = true }
    }

    /// Records that directory `id` no longer merges lower layers (it was copied
    /// up whole and marked opaque): its own resolution, its parent's cached
    /// entry for it, and the cached entries of its subdirectories (each of
    /// which was copied up whole before it) now name the upper layer only.
    /// Without this a later lookup would reach into lower directories at the
    /// old path after a rename.
    mutating func makeUpperOnly(_ id: UInt64) {
        guard nodes[id] != nil else { return }
        nodes[id]!.resolution.layers = [0]
        dropCaches(id)
        // (Its parent's entry for it is `.live`: the node's resolution is the entry's.)
        for (name, child) in directories[id]?.children ?? [:] {
            guard case .resolved(var resolution) = child, resolution.isDirectory else { continue }
            resolution.layers = [0]
            directories[id]!.children[name] = .resolved(resolution)
        }
    }
}
