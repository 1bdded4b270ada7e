import LayerSystem
@testable import OverlayCore
import StrataTestSupport
import Testing

/// The compact stores behind the node table and the lower index: each must
/// behave exactly like the plain collection it replaces.
@Suite("Compact node and index storage")
struct CompactStorageTests {
    /// A small deterministic generator (the same sequence on every run).
    struct Generator {
        var state: UInt64
        mutating func next(_ bound: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(bound))
        }
    }

    @Test("probing table: random inserts, finds and removals agree with a set, with colliding hashes",
          arguments: [1, 7, 1 << 20])
    func probingTable(hashRange: Int) {
        // Few distinct hashes force long probe runs, wrapping around, and back-shifts on removal.
        let hash = { (value: UInt32) in Int(value) % hashRange &* 2654435761 }
        var table = ProbingTable<UInt32>()
        var model: Set<UInt32> = []
        var random = Generator(state: UInt64(hashRange))
        for _ in 0..<20_000 {
            let value = UInt32(random.next(3000) + 1)
            if random.next(3) == 0 {
                table.remove(value, hash: hash(value), rehash: hash)
                model.remove(value)
            } else if !model.contains(value) {
                table.insert(value, hash: hash(value), rehash: hash)
                model.insert(value)
            }
            let probe = UInt32(random.next(3000) + 1)
            #expect((table.first(hash: hash(probe)) { $0 == probe } != nil) == model.contains(probe))
        }
        #expect(table.count == model.count)
        for value in model { #expect(table.first(hash: hash(value)) { $0 == value } == value) }
    }

    @Test("node store: IDs of freed slots go stale, reused slots get new IDs, the root is ID 1")
    func nodeStore() throws {
        let tmp = TemporaryDirectory(prefix: "store")
        let stack = try LayerStack(lowerPaths: [tmp.makeDirectory("l")])
        let resolution = try NameResolver.root(of: stack)
        func node(_ name: String) -> NodeTable.Node {
            NodeTable.Node(parent: 1, name: NodeName(FileName(name)), resolution: resolution, lookups: 1)
        }
        var store = NodeStore()
        #expect(store.insert(node("root")) == 1)
        var ids: [UInt64: String] = [:]
        for i in 0..<10_000 { ids[store.insert(node("n\(i)"))] = "n\(i)" }
        #expect(store.count == 10_001)
        let freed = ids.keys.sorted().filter { $0 % 3 == 0 }
        for id in freed { store[id] = nil; ids[id] = nil }
        #expect(store.count == 10_001 - freed.count)
        for id in freed { #expect(store[id] == nil) }
        for i in 0..<freed.count {
            let id = store.insert(node("again\(i)"))
            #expect(!freed.contains(id))   // a reused slot never brings an old ID back
            ids[id] = "again\(i)"
        }
        for (id, name) in ids { #expect(store[id]?.name.fileName == FileName(name)) }
        // A stale ID (or one never given) reads nothing and changes nothing.
        let count = store.count
        for stale in [freed[0], 0, UInt64.max] {
            store[stale]?.lookups = 9
            store[stale] = nil
            #expect(store[stale] == nil)
        }
        #expect(store.count == count)
        for (id, name) in ids { #expect(store[id]?.name.fileName == FileName(name) && store[id]?.lookups == 1) }
        store[ids.keys.first!]!.lookups = 5
        #expect(store[ids.keys.first!]?.lookups == 5)
        let listed = store.compactMap { id, node in id == 1 ? nil : (id, node.name.fileName) }
        #expect(Dictionary(uniqueKeysWithValues: listed) == ids.mapValues { FileName($0) })
    }

    @Test("packed attributes give back every value stat returned, devices and nanoseconds included")
    func packedAttributes() throws {
        let tmp = TemporaryDirectory(prefix: "packed")
        let file = tmp.path + "/f"
        try Fixture.build([.file("f", "content")], at: tmp.path)
        for path in ["/dev/null", "/dev/zero", "/", tmp.path, file, "/proc/self"] {
            let a = try System.attributes(path, followSymlinks: false)
            #expect(PackedAttributes(a).attributes == a, "\(path)")
        }
        var a = FileAttributes(mode: 0o020644, specialDevice: FileAttributes.makeDevice(major: 4095, minor: 0xf_ffff))
        a.modificationTime = TimeSpec(seconds: -1, nanoseconds: 999_999_999)
        a.linkCount = UInt64(UInt32.max)
        #expect(PackedAttributes(a).attributes == a)
    }

    @Test("nodes named from a directory's index keep their names, and the index goes, when the cache drops it")
    func indexedNames() throws {
        let tmp = TemporaryDirectory(prefix: "names")
        let upper = tmp.makeDirectory("l0"), lower = tmp.makeDirectory("l1")
        try Fixture.build([.dir("d", [.file("alpha", "a"), .file("beta", "b")])], at: upper)
        try Fixture.build([.dir("d", [.file("gamma", "c"), .file("alpha", "hidden")])], at: lower)
        let fs = try OverlayFileSystem(stack: LayerStack(lowerPaths: [upper, lower]))
        let (d, _) = try fs.lookup(parent: OverlayFileSystem.rootID, name: "d")
        _ = try fs.listing(of: d)
        let names: [FileName] = ["alpha", "beta", "gamma"]
        let ids = try names.map { try fs.lookup(parent: d, name: $0).node }
        weak let index = fs.table.withLock { $0.directories[d]?.lowerIndex }
        #expect(index != nil)
        #expect(fs.table.withLock { t in ids.allSatisfy { t.nodes[$0]!.name.isStored(in: index!) } })
        fs.table.withLock { $0.dropCaches(d) }
        #expect(index == nil)   // no node keeps the dropped index alive
        for (id, name) in zip(ids, names) {
            #expect(fs.table.withLock { $0.nodes[id]?.name.fileName } == name)
            #expect(fs.table.withLock { $0.liveNode(parent: d, name: name) } == id)
            #expect(try fs.lookup(parent: d, name: name).node == id)
        }
        #expect(throws: OverlayError.self) { try fs.lookup(parent: d, name: "delta") }
    }
}
