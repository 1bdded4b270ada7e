/// A hash set of nonzero integers that stand for entries kept elsewhere (an
/// array position, a node ID): open addressing with linear probing over a
/// power-of-two number of slots, so an entry costs one integer slot instead
/// of a dictionary's key, value and bucket (the caches it serves hold one
/// entry per name, hundreds of thousands of them).
///
/// Contract: the caller owns the entries and supplies, for every call, the
/// hash of the entry looked for (`hash`) and of any stored value (`rehash`);
/// a stored value's hash must not change while it is stored (remove it
/// first, change it, insert it again). Load stays at or under 3/4.
struct ProbingTable<Value: FixedWidthInteger & UnsignedInteger & Sendable>: Sendable {
    private var slots: [Value]
    /// Values stored.
    private(set) var count = 0

    /// A table that holds `capacity` values without growing.
    init(capacity: Int = 0) {
        var size = 8
        while size * 3 / 4 < capacity { size *= 2 }
        slots = Array(repeating: 0, count: size)
    }

    private var mask: Int { slots.count - 1 }

    /// The stored value with `hash` that `matches`, if any.
    func first(hash: Int, where matches: (Value) -> Bool) -> Value? {
        var i = hash & mask
        while slots[i] != 0 {
            if matches(slots[i]) { return slots[i] }
            i = (i + 1) & mask
        }
        return nil
    }

    /// Stores `value` (nonzero, not already stored) under `hash`.
    mutating func insert(_ value: Value, hash: Int, rehash: (Value) -> Int) {
        precondition(value != 0, "ProbingTable stores nonzero values")
        if (count + 1) * 4 > slots.count * 3 { grow(rehash: rehash) }
        var i = hash & mask
        while slots[i] != 0 { i = (i + 1) & mask }
        slots[i] = value
        count += 1
    }

    /// Removes `value`, stored under `hash`; a no-op if it is not stored.
    /// Later entries of the probe run shift back (no tombstones).
    mutating func remove(_ value: Value, hash: Int, rehash: (Value) -> Int) {
        var i = hash & mask
        while slots[i] != value {
            if slots[i] == 0 { return }
            i = (i + 1) & mask
        }
        slots[i] = 0
        count -= 1
        var j = i
        while true {
            j = (j + 1) & mask
            guard slots[j] != 0 else { return }
            let home = rehash(slots[j]) & mask
            // Moves back unless its home lies cyclically in (i, j].
            let stays = i <= j ? (i < home && home <= j) : (i < home || home <= j)
            if !stays {
                slots[i] = slots[j]
                slots[j] = 0
                i = j
            }
        }
    }

    private mutating func grow(rehash: (Value) -> Int) {
        let old = slots
        slots = Array(repeating: 0, count: old.count * 2)
        for value in old where value != 0 {
            var i = rehash(value) & mask
            while slots[i] != 0 { i = (i + 1) & mask }
            slots[i] = value
        }
    }
}
