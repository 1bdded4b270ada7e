import LayerSystem

/// What the lower layers of one merged directory hold, gathered in one pass
/// per layer: one `getdents64` scan each, plus a stat only for character
/// devices (to tell whiteouts from devices). Whiteouts and `.wh.` markers are
/// folded in during the same pass, so answering "which layer holds NAME, and
/// which lower directories merge with it" afterwards costs no syscall at all,
/// however deep the stack.
///
/// Immutable, and valid for as long as the directory merges exactly `layers`:
/// lower layers never change while mounted (the overlayfs rule), and the
/// write path changes the upper layer only. A directory that stops merging
/// lowers (copied up whole, replaced) gets a new resolution, and callers
/// compare `layers` before trusting an index (`OverlayFileSystem.lowerIndex`).
///
/// Ordering contract: `entries` holds each visible name once, at the place
/// where the topmost layer holding it returned it, layers read topmost first:
/// the order `MergedDirectory` lists the lower part of a directory in.
///
/// Not indexed: whether a lower *subdirectory* is opaque. That fact lives in
/// the subdirectory itself (an xattr, or a `.wh..wh..opq` inside it) and is
/// checked when the subdirectory is looked up.
///
/// Memory: an index holds one entry per visible lower name, for every cached
/// directory, so its stored form is compact: 24 bytes per name, the name's
/// bytes in one buffer for the whole directory (which the nodes of these names
/// share, see `NodeName`), and one 4-byte hash slot at load 3/8–3/4; merge
/// chains are stored only for directories that merge more than one layer.
public final class LowerDirectoryIndex: Sendable {
    /// What the index says about one name (built on demand from the stored form).
    public struct Entry: Sendable {
        public let name: FileName
        /// Type of the topmost object with this name.
        public let kind: FileKind
        /// Its inode number in its own layer (not the exposed one).
        public let inode: UInt64
        /// The topmost lower layer holding the name.
        public let layer: Int
        /// For a directory: the layers whose same-named directories may merge into
        /// it, topmost first, starting with `layer`. The chain ends where a layer
        /// holds a whiteout or a non-directory of the name, or a `.wh.NAME` marker
        /// beside its directory. Empty for anything but a directory.
        public let directoryLayers: [Int]
    }

    /// The stored form of an entry (24 bytes).
    struct StoredEntry: Sendable {
        var inode: UInt64
        /// Where the name starts in `names`.
        var nameOffset: UInt32
        /// Index into `chains` for a directory merging several layers, else `noChain`.
        var chain: UInt32
        var layer: UInt16
        var nameLength: UInt16
        var kind: FileKind
    }
    static let noChain = UInt32.max

    /// The lower layers covered, topmost first.
    public let layers: [Int]
    private let stored: [StoredEntry]
    /// Every name's bytes, one after the other.
    private let names: [UInt8]
    /// Merge chains of directories that merge more than one layer.
    private let chains: [[Int]]
    /// Position + 1 of each entry, by the hash of its name.
    private let positions: ProbingTable<UInt32>

    private init(layers: [Int], stored: [StoredEntry], names: [UInt8], chains: [[Int]], positions: ProbingTable<UInt32>) {
        self.layers = layers
        self.stored = stored
        self.names = names
        self.chains = chains
        self.positions = positions
    }

    /// An index of no layers.
    static let empty = LowerDirectoryIndex(layers: [], stored: [], names: [], chains: [], positions: ProbingTable())

    /// The visible lower object named `name`, if any.
    public func entry(named name: FileName) -> Entry? {
        position(of: name).map { entry(at: $0, name: name) }
    }

    /// Number of visible names.
    public var count: Int { stored.count }

    /// The entry at `position` (0..<count), in the ordering contract's order.
    public func entry(at position: Int) -> Entry {
        entry(at: position, name: name(at: position))
    }

    private func entry(at position: Int, name: FileName) -> Entry {
        let e = stored[position]
        let directoryLayers = e.kind != .directory ? [] : e.chain == Self.noChain ? [Int(e.layer)] : chains[Int(e.chain)]
        return Entry(name: name, kind: e.kind, inode: e.inode, layer: Int(e.layer), directoryLayers: directoryLayers)
    }

    /// The bytes of the name at `position` (a slice of the shared buffer).
    func nameBytes(at position: Int) -> ArraySlice<UInt8> {
        let e = stored[position]
        return names[Int(e.nameOffset)..<Int(e.nameOffset) + Int(e.nameLength)]
    }

    /// The name at `position`, as a `FileName` of its own.
    func name(at position: Int) -> FileName { FileName(bytes: Array(nameBytes(at: position))) }

    /// Where `name` is, if the index holds it.
    func position(of name: FileName) -> Int? {
        positions.first(hash: NodeName.hash(name.bytes[...])) { nameBytes(at: Int($0) - 1).elementsEqual(name.bytes) }
            .map { Int($0) - 1 }
    }

    /// Reads `directories` (the lower directories of one merged directory,
    /// topmost first) once each and indexes them.
    public static func build(_ directories: [LayerDirectory], stack: LayerStack) throws(OverlayError) -> LowerDirectoryIndex {
        var stored: [StoredEntry] = []
        var names: [UInt8] = []
        var chains: [[Int]] = []
        var positions: [FileName: Int] = [:]
        var chainOpen: Set<FileName> = []   // directories a layer below may still merge into
        var hidden: Set<FileName> = []      // whited out above every layer holding them
        for directory in directories {
            let layer = directory.layer
            let contents = try LayerContents.read(directory, stack: stack)
            for object in contents.objects {
                if let position = positions[object.name] {
                    // Shown from a layer above: a directory there may merge this one.
                    guard chainOpen.contains(object.name) else { continue }
                    if object.kind == .directory {
                        if stored[position].chain == noChain {
                            stored[position].chain = UInt32(chains.count)
                            chains.append([Int(stored[position].layer)])
                        }
                        chains[Int(stored[position].chain)].append(layer)
                    } else {
                        chainOpen.remove(object.name)
                    }
                    continue
                }
                if hidden.contains(object.name) { continue }
                positions[object.name] = stored.count
                stored.append(StoredEntry(inode: object.inode, nameOffset: UInt32(names.count), chain: noChain,
                                          layer: UInt16(layer), nameLength: UInt16(object.name.bytes.count), kind: object.kind))
                names.append(contentsOf: object.name.bytes)
                if object.kind == .directory { chainOpen.insert(object.name) }
            }
            // A whiteout ends a chain (also a `.wh.NAME` beside directory NAME in
            // this layer: it hides the layers below) and hides the name below.
            for name in contents.whiteouts {
                if positions[name] == nil { hidden.insert(name) } else { chainOpen.remove(name) }
            }
        }
        // The dictionary served the build; the index keeps the compact table,
        // and exact-size copies of the arrays (`map` allocates exactly `count`;
        // appending left up to half of each unused).
        var table = ProbingTable<UInt32>(capacity: stored.count)
        let hashes = stored.map { NodeName.hash(names[Int($0.nameOffset)..<Int($0.nameOffset) + Int($0.nameLength)]) }
        for position in stored.indices {
            table.insert(UInt32(position + 1), hash: hashes[position]) { hashes[Int($0) - 1] }
        }
        return LowerDirectoryIndex(layers: directories.map(\.layer), stored: stored.map { $0 }, names: names.map { $0 },
                                   chains: chains, positions: table)
    }
}

extension LowerDirectoryIndex: RandomAccessCollection {
    public var startIndex: Int { 0 }
    public var endIndex: Int { stored.count }
    public subscript(position: Int) -> Entry { entry(at: position) }
}
