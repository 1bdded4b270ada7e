/// The nodes of a `NodeTable`, by FUSE node ID: slots in fixed-size chunks.
///
/// Why not a dictionary: a `[UInt64: Node]` of 200k nodes holds 2^19 buckets
/// (Swift keeps the load under 3/4), so about 2.6 times the nodes' own size,
/// and twice that while it grows. Here a node costs its own stride, and
/// growing allocates one more chunk and copies nothing.
///
/// ID contract: an ID is `generation << 32 | slot`. A freed slot is reused by
/// a later insertion under the next generation, so an ID that the kernel or a
/// cache keyed by node ID still holds after its node left never names the new
/// occupant: it finds nothing. Slot 0 is never used; the first insertion gets
/// slot 1 and generation 0, so ID 1, FUSE's root.
struct NodeStore {
    private static let chunkShift = 12
    private static let chunkMask = (1 << chunkShift) - 1
    private var chunks: [[NodeTable.Node?]] = []
    /// Per slot: the generation of its current (or next) occupant.
    private var generations: [UInt32] = [0]
    private var freeSlots: [Int] = []
    /// Live nodes.
    private(set) var count = 0

    init() {
        var first: [NodeTable.Node?] = [nil]   // slot 0, never used
        first.reserveCapacity(1 << Self.chunkShift)
        chunks = [first]
    }

    /// Stores `node` in a free slot; returns its ID.
    mutating func insert(_ node: NodeTable.Node) -> UInt64 {
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
            chunks[slot >> Self.chunkShift][slot & Self.chunkMask] = node
        } else {
            slot = generations.count
            generations.append(0)
            if slot & Self.chunkMask == 0 {
                var chunk: [NodeTable.Node?] = []
                chunk.reserveCapacity(1 << Self.chunkShift)
                chunks.append(chunk)
            }
            chunks[slot >> Self.chunkShift].append(node)
        }
        count += 1
        return UInt64(generations[slot]) << 32 | UInt64(slot)
    }

    /// The slot `id` names, if its generation is current.
    private func slot(_ id: UInt64) -> Int? {
        let slot = Int(truncatingIfNeeded: id & 0xFFFF_FFFF)
        guard slot > 0, slot < generations.count, generations[slot] == UInt32(truncatingIfNeeded: id >> 32) else { return nil }
        return slot
    }

    /// The node with ID `id`, nil if it left. Mutation happens in place;
    /// setting nil frees the slot. (Setting a value where no node lives is
    /// ignored: nodes enter through `insert` only.)
    subscript(id: UInt64) -> NodeTable.Node? {
        get {
            guard let slot = slot(id) else { return nil }
            return chunks[slot >> Self.chunkShift][slot & Self.chunkMask]
        }
        _modify {
            // An unknown ID yields slot 0, which is always nil (a local
            // stand-in would enlarge the coroutine frame past its inline
            // buffer: one malloc per access, measured).
            let slot = slot(id) ?? 0
            let occupied = slot != 0 && chunks[slot >> Self.chunkShift][slot & Self.chunkMask] != nil
            yield &chunks[slot >> Self.chunkShift][slot & Self.chunkMask]
            if !occupied {
                chunks[slot >> Self.chunkShift][slot & Self.chunkMask] = nil
            } else if chunks[slot >> Self.chunkShift][slot & Self.chunkMask] == nil {
                generations[slot] &+= 1
                freeSlots.append(slot)
                count -= 1
            }
        }
    }

    /// The slot of ID `id` (32 bits: tables of node references store slots).
    static func slot(of id: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: id) }

    /// The ID of the node now in `slot`, if one lives there.
    func id(inSlot slot: UInt32) -> UInt64? {
        let slot = Int(slot)
        guard slot > 0, slot < generations.count, chunks[slot >> Self.chunkShift][slot & Self.chunkMask] != nil else { return nil }
        return UInt64(generations[slot]) << 32 | UInt64(slot)
    }

    /// `transform` applied to every live node with its ID, in slot order.
    func compactMap<T>(_ transform: (UInt64, NodeTable.Node) throws -> T?) rethrows -> [T] {
        var result: [T] = []
        for (index, chunk) in chunks.enumerated() {
            for (offset, node) in chunk.enumerated() {
                guard let node else { continue }
                let slot = index << Self.chunkShift | offset
                if let value = try transform(UInt64(generations[slot]) << 32 | UInt64(slot), node) { result.append(value) }
            }
        }
        return result
    }
}
