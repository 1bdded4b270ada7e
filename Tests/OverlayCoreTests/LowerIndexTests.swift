import Foundation
import Glibc
import LayerSystem
@testable import OverlayCore
import StrataTestSupport
import Testing

/// Lookups answered from a directory's lower index must agree with lookups
/// that probe every layer, name by name, on stacks full of collisions,
/// whiteouts (both formats), opaque directories and files hiding directories.
@Suite("Lower-layer index agrees with layer-by-layer probing")
struct LowerIndexTests {
    /// Every relative path that occurs in any layer (markers included, as names to look up).
    static func allPaths(in layers: [String]) -> [String] {
        var paths: Set<String> = []
        for layer in layers {
            guard let walker = FileManager.default.enumerator(atPath: layer) else { continue }
            while let p = walker.nextObject() as? String { paths.insert(p) }
        }
        for p in Array(paths) where p.hasSuffix("/x") == false { paths.insert(p + "/missing") }
        return paths.sorted()
    }

    /// How `path` resolves: absent, not-a-directory, or the winner's kind, inode, size and merged layers.
    static func describe(_ fs: OverlayFileSystem, _ path: String) -> String {
        var node = OverlayFileSystem.rootID
        var taken: [UInt64] = []
        defer { for id in taken { fs.forget(id, count: 1) } }
        do {
            var attributes = try fs.attributes(of: node)
            for component in path.split(separator: "/") {
                (node, attributes) = try fs.lookup(parent: node, name: FileName(String(component)))
                taken.append(node)
            }
            let layers = try fs.resolution(of: node).layers
            return "\(attributes.kind.map { "\($0)" } ?? "?") ino=\(attributes.inode) size=\(attributes.size) links=\(attributes.linkCount) layers=\(layers)"
        } catch {
            return "errno \(error.errno)"
        }
    }

    /// Compares every path of `layers` (top first) on a probing and an indexed overlay.
    static func compare(_ layers: [String], _ label: String) throws {
        do {
            // Probing only: no index is ever kept.
            var probingOptions = OverlayOptions()
            probingOptions.cachedEntryLimit = 0
            let probing = try OverlayFileSystem(stack: LayerStack(lowerPaths: layers), options: probingOptions)
            let indexed = try OverlayFileSystem(stack: LayerStack(lowerPaths: layers))
            // Index every directory first (a listing reads and keeps the index).
            func indexAll(_ node: UInt64) throws {
                for entry in try indexed.listing(of: node) where entry.kind == .directory {
                    let (child, _) = try indexed.lookup(parent: node, name: entry.name)
                    try indexAll(child)
                }
            }
            try indexAll(OverlayFileSystem.rootID)
            for path in Self.allPaths(in: layers) {
                #expect(Self.describe(indexed, path) == Self.describe(probing, path), "\(label): \(path)")
            }
            // The listings agree too (the indexed one is built from the index).
            #expect(try indexed.listing(of: OverlayFileSystem.rootID).map(\.name) == probing.listing(of: OverlayFileSystem.rootID).map(\.name))
        }
    }

    @Test("random stacks, both formats, 2 to 12 layers",
          arguments: [(UInt64(11), 2), (12, 3), (13, 5), (14, 8), (15, 4), (16, 6), (17, 12), (18, 7)])
    func agreesWithProbing(seed: UInt64, layerCount: Int) throws {
        for format in [LayerStackGenerator.Format.overlay, .oci] {
            let tmp = TemporaryDirectory(prefix: "lowerindex")
            let generator = LayerStackGenerator(seed: seed, layers: layerCount, maxDepth: 3)
            try Self.compare(try generator.writeStack(format: format, under: tmp.path), "\(format) seed \(seed)")
        }
    }

    @Test("where a directory's merge chain ends: whiteouts, markers, files, opaque directories, gaps")
    func chainEnds() throws {
        let tmp = TemporaryDirectory(prefix: "lowerindex-chains")
        let stack: [[Fixture]] = [
            [.dir("wd", [.file("a")]), .dir("oci", [.file("a")]), .dir("same", [.file("a")]), .dir("f", [.file("a")]),
             .whiteout("gone"), .dir("op", [.opaque, .file("a")]), .dir("gap", [.file("a")]), .dir("ocio", [.ociOpaque, .file("a")])],
            [.whiteout("wd"), .ociWhiteout("oci"), .dir("same", [.file("b")]), .ociWhiteout("same"), .file("f", "x"),
             .dir("gone", [.file("b")]), .dir("op", [.file("b")]), .dir("ocio", [.file("b")])],
            [.dir("wd", [.file("c")]), .dir("oci", [.file("c")]), .dir("same", [.file("c")]), .dir("f", [.file("c")]),
             .dir("gap", [.file("c")]), .dir("op", [.file("c")])],
        ]
        var layers: [String] = []
        for (i, fixtures) in stack.enumerated() {
            let p = tmp.makeDirectory("l\(i)")
            try Fixture.build(fixtures, at: p)
            layers.append(p)
        }
        try Self.compare(layers, "chains")
        let fs = try OverlayFileSystem(stack: LayerStack(lowerPaths: layers))
        _ = try fs.listing(of: OverlayFileSystem.rootID)
        for (name, expected) in [("wd", [0]), ("oci", [0]), ("same", [0, 1]), ("f", [0]), ("op", [0]), ("gap", [0, 2]), ("ocio", [0])] {
            let (node, _) = try fs.lookup(parent: OverlayFileSystem.rootID, name: FileName(name))
            #expect(try fs.resolution(of: node).layers == expected, "\(name)")
            fs.forget(node, count: 1)
        }
        #expect(throws: OverlayError.self) { try fs.lookup(parent: OverlayFileSystem.rootID, name: "gone") }
    }

    /// (Syscall counts per lookup are checked by the OverlayLookup benchmarks'
    /// thresholds: the counter is process-wide and tests run in parallel.)
    @Test("a 64-layer directory: names from every layer, absent names, after one listing")
    func depthIndependent() throws {
        let tmp = TemporaryDirectory(prefix: "lowerindex-depth")
        var layers: [String] = []
        for i in 0..<64 {
            let p = tmp.makeDirectory("l\(i)")
            try Fixture.build([.dir("d", [.file("f\(i)", "\(i)")])], at: p)
            layers.append(p)
        }
        let fs = try OverlayFileSystem(stack: LayerStack(lowerPaths: layers))
        let (d, _) = try fs.lookup(parent: OverlayFileSystem.rootID, name: "d")
        _ = try fs.listing(of: d)   // reads the 64 layers once
        #expect(fs.table.withLock { $0.directories[d]?.lowerIndex?.count } == 64)
        #expect(throws: OverlayError.self) { try fs.lookup(parent: d, name: "absent") }
        for i in [0, 31, 63] {
            let (f, attributes) = try fs.lookup(parent: d, name: FileName("f\(i)"))
            #expect(attributes.kind == .regular && attributes.size == Int64("\(i)".utf8.count))
            #expect(try fs.resolution(of: f).layers == [i])
            fs.forget(f, count: 1)
        }
        #expect(try fs.resolution(of: d).layers == Array(0..<64))
        fs.forget(d, count: 1)
    }

    @Test("the cache budget bounds what is kept, never what is answered")
    func budget() throws {
        let tmp = TemporaryDirectory(prefix: "lowerindex-budget")
        let upper = tmp.makeDirectory("l0"), lower = tmp.makeDirectory("l1")
        try Fixture.build((0..<300).map { .file("u\($0)", "") }, at: upper)
        try Fixture.build((0..<300).map { .file("l\($0)", "") }, at: lower)
        var options = OverlayOptions()
        options.cachedEntryLimit = 100
        let fs = try OverlayFileSystem(stack: LayerStack(lowerPaths: [upper, lower]), options: options)
        #expect(try fs.listing(of: OverlayFileSystem.rootID).count == 600)
        #expect(fs.table.withLock { $0.cachedEntries } <= 100)
        for i in stride(from: 0, to: 300, by: 37) {
            let (id, _) = try fs.lookup(parent: OverlayFileSystem.rootID, name: FileName("l\(i)"))
            fs.forget(id, count: 1)
        }
        #expect(throws: OverlayError.self) { try fs.lookup(parent: OverlayFileSystem.rootID, name: "nope") }
    }
}
