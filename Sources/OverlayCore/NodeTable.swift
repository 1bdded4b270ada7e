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
    struct Child {
        /// `nil` = negative entry (name absent in the merged view).
        var resolution: Resolution?
        /// The live node for this name, if the kernel holds one.
        var node: UInt64?
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
        /// Cached merged listing of this directory.
        var listing: [ListingEntry]?
        /// Removed from the namespace (unlinked or replaced) while the kernel still holds it.
        var detached = false
        /// Negative entries cached in `children` (bounded by `negativeLimit`).
        var negatives = 0
    }

    /// Negative entries cached per directory at most: any user who can stat
    /// random names must not be able to grow the daemon without bound. Past the
    /// limit, absent names are answered without being cached.
    static let negativeLimit = 1024

    /// Caches "absent" for `name` in `parent` unless the directory's quota is used up.
    mutating func cacheAbsent(parent: UInt64, name: FileName) {
        guard let node = nodes[parent], node.negatives < Self.negativeLimit else { return }
        if node.children[name] == nil { nodes[parent]!.negatives += 1 }
        nodes[parent]!.children[name] = Child(resolution: nil, node: nil)
    }

    static let rootID: UInt64 = 1
    var nodes: [UInt64: Node] = [:]
    var nextID: UInt64 = 2

    init(root: Resolution) {
        nodes[Self.rootID] = Node(parent: Self.rootID, name: FileName(bytes: []), resolution: root, lookups: 1)
    }

    /// Creates (or re-references) the node for `name` in `parent`, adding one lookup.
    mutating func reference(parent: UInt64, name: FileName, resolution: Resolution) -> UInt64 {
        if let existing = nodes[parent]?.children[name]?.node, nodes[existing] != nil {
            nodes[existing]!.lookups += 1
            return existing
        }
        let id = nextID
        nextID += 1
        nodes[id] = Node(parent: parent, name: name, resolution: resolution, lookups: 1)
        nodes[parent]?.pins += 1
        nodes[parent]?.children[name] = Child(resolution: resolution, node: id)
        return id
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
            nodes[current] = nil
            removed.append((current, n.resolution.isDirectory ? n.resolution.layers : []))
            nodes[n.parent]?.pins -= 1
            if nodes[n.parent]?.children[n.name]?.node == current {
                nodes[n.parent]?.children[n.name]?.node = nil
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
        if nodes[node.parent]?.children[node.name]?.node == id {
            nodes[node.parent]?.children[node.name] = nil
        }
        nodes[node.parent]?.pins -= 1
        nodes[node.parent]?.listing = nil
        nodes[id]!.parent = parent
        nodes[id]!.name = name
        nodes[parent]?.pins += 1
        nodes[parent]?.children[name] = Child(resolution: node.resolution, node: id)
        nodes[parent]?.listing = nil
    }

    /// Marks the live node at `name` in `parent` (if any) as detached and
    /// forgets the cached resolution of the name.
    mutating func detach(parent: UInt64, name: FileName) {
        if let id = nodes[parent]?.children[name]?.node { nodes[id]?.detached = true }
        nodes[parent]?.children[name] = nil
        nodes[parent]?.listing = nil
    }

    /// Records the resolution of `name` in `parent` (nil = absent), updating the live node.
    mutating func update(parent: UInt64, name: FileName, resolution: Resolution?) {
        let id = nodes[parent]?.children[name]?.node
        nodes[parent]?.children[name] = Child(resolution: resolution, node: resolution == nil ? nil : id)
        nodes[parent]?.listing = nil
        if let id, let resolution { nodes[id]?.resolution = resolution }
        if let id, resolution == nil { nodes[id]?.detached = true }
    }

    /// Every live node below `ancestor` (not including it).
    func descendants(of ancestor: UInt64) -> [UInt64] {
        nodes.keys.filter { id in
            var current = id
            while current != Self.rootID, let n = nodes[current] {
                if n.parent == ancestor { return true }
                current = n.parent
            }
            return false
        }
    }
}
