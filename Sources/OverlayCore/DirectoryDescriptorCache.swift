import LayerSystem
import Synchronization

/// A bounded cache of open directory descriptors, keyed by (node, layer).
/// (`OverlayFileSystem.readableFiles` reuses it for lower-file descriptors
/// of openless mounts, under layer -1.)
///
/// Why bounded: the hard open-file limit here is 20000, and a walk of a large
/// tree touches more directories than that. Filled by lookups (the resolver
/// opens each merged directory anyway) and by `OverlayFileSystem.directory`
/// on a miss (reopened from the parent's descriptor by name, O_NOFOLLOW).
/// Invalidated when a node leaves the node table (`remove(node:)`), and
/// trimmed least-recently-used first when over capacity. An evicted
/// descriptor stays valid for whoever still holds it (it closes with its
/// last reference).
///
/// Lock: `entries` is guarded by its own mutex, a leaf lock: no other lock is
/// taken while it is held, and no syscall is made under it.
final class DirectoryDescriptorCache: Sendable {
    struct Key: Hashable { var node: UInt64; var layer: Int }
    struct Entry { var descriptor: Descriptor; var lastUse: UInt64 }
    struct State {
        var entries: [Key: Entry] = [:]
        var clock: UInt64 = 0
    }

    let capacity: Int
    private let state = Locked(State())

    init(capacity: Int) { self.capacity = max(16, capacity) }

    func descriptor(node: UInt64, layer: Int) -> Descriptor? {
        state.withLock { s in
            guard var entry = s.entries[Key(node: node, layer: layer)] else { return nil }
            s.clock += 1
            entry.lastUse = s.clock
            s.entries[Key(node: node, layer: layer)] = entry
            return entry.descriptor
        }
    }

    func insert(_ descriptor: Descriptor, node: UInt64, layer: Int) {
        // Evicted descriptors are released after the lock is dropped.
        let evicted: [Descriptor] = state.withLock { s in
            s.clock += 1
            s.entries[Key(node: node, layer: layer)] = Entry(descriptor: descriptor, lastUse: s.clock)
            guard s.entries.count > capacity else { return [] }
            // Drop the oldest eighth: amortised O(1) per insert.
            let victims = s.entries.sorted { $0.value.lastUse < $1.value.lastUse }.prefix(max(1, capacity / 8))
            return victims.map { s.entries.removeValue(forKey: $0.key)!.descriptor }
        }
        _ = evicted
    }

    func remove(node: UInt64, layers: [Int]) {
        let removed: [Descriptor] = state.withLock { s in
            layers.compactMap { s.entries.removeValue(forKey: Key(node: node, layer: $0))?.descriptor }
        }
        _ = removed
    }

    var count: Int { state.withLock { $0.entries.count } }
}
