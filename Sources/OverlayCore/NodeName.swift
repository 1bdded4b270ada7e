import LayerSystem

/// A node's name, stored once: either its own `FileName`, or a position in the
/// lower index of the directory it was looked up in. The index keeps every
/// name of the directory in one byte buffer, which then serves the index and
/// the node alike (a `FileName` of its own would be a heap block of 64 bytes
/// for a 16-byte name, per node).
///
/// Memory contract: an indexed name keeps its index alive. When a directory
/// drops its index from the cache, `NodeTable.dropCaches` gives the nodes
/// still naming it names of their own, so a dropped index never outlives the
/// cache budget (`OverlayOptions.cachedEntryLimit`) through its nodes.
struct NodeName: Sendable {
    private enum Storage: Sendable {
        case owned(FileName)
        case indexed(LowerDirectoryIndex, UInt32)
    }
    private let storage: Storage

    init(_ name: FileName) { storage = .owned(name) }
    init(index: LowerDirectoryIndex, position: Int) { storage = .indexed(index, UInt32(position)) }

    /// The name as a `FileName` (a copy, for an indexed name).
    var fileName: FileName {
        switch storage {
        case .owned(let name): name
        case .indexed(let index, let position): index.name(at: Int(position))
        }
    }

    /// Whether the name lives in `index`'s buffer.
    func isStored(in index: LowerDirectoryIndex) -> Bool {
        if case .indexed(let owner, _) = storage { return owner === index }
        return false
    }

    /// The name's bytes (a slice of the index's buffer for an indexed name: no copy).
    var bytes: ArraySlice<UInt8> {
        switch storage {
        case .owned(let name): name.bytes[...]
        case .indexed(let index, let position): index.nameBytes(at: Int(position))
        }
    }

    /// Whether this is `name`.
    func matches(_ name: FileName) -> Bool { bytes.elementsEqual(name.bytes) }

    /// The hash of a name's bytes, optionally with its directory: the one hash
    /// function for names held as `FileName`, in an index buffer or in a node.
    static func hash(_ bytes: ArraySlice<UInt8>, parent: UInt64? = nil) -> Int {
        var hasher = Hasher()
        if let parent { hasher.combine(parent) }
        hasher.combine(bytes.count)
        // Eight bytes per combine (a byte per combine costs several times more).
        var word: UInt64 = 0
        var shift: UInt64 = 0
        for byte in bytes {
            word |= UInt64(byte) << shift
            shift += 8
            if shift == 64 {
                hasher.combine(word)
                word = 0
                shift = 0
            }
        }
        if shift > 0 { hasher.combine(word) }
        return hasher.finalize()
    }
}
