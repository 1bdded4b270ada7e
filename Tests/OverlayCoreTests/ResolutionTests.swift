import Glibc
import LayerSystem
import OverlayCore
import StrataTestSupport
import Testing

/// The in-process core on declarative fixtures: per-name resolution,
/// whiteouts and opaque directories in both formats, merged listings.
@Suite("OverlayCore resolution and merged listing")
struct ResolutionTests {
    /// Builds layers (given top-first) and an overlay over them.
    static func overlay(_ layers: [[Fixture]], in tmp: TemporaryDirectory) throws -> OverlayFileSystem {
        var paths: [String] = []
        for (i, layer) in layers.enumerated() {
            let p = tmp.makeDirectory("l\(i)")
            try Fixture.build(layer, at: p)
            paths.append(p)
        }
        return try OverlayFileSystem(stack: LayerStack(lowerPaths: paths))
    }

    static func path(_ p: String) -> [FileName] { p.split(separator: "/").map { FileName(String($0)) } }

    /// What `path` resolves to: "absent", or the kind and content/target.
    static func describe(_ fs: OverlayFileSystem, _ p: String) throws -> String {
        do {
            let (node, attributes) = try fs.resolve(path: path(p))
            switch attributes.kind {
            case .regular:
                return "file:" + String(decoding: try fs.openFile(node, flags: O_RDONLY).readAll(), as: UTF8.self)
            case .symlink: return "symlink:" + String(decoding: try fs.readLink(node), as: UTF8.self)
            case .directory: return "dir:" + (try fs.listing(of: node)).map(\.name.description).sorted().joined(separator: ",")
            default: return "\(attributes.kind.map { "\($0)" } ?? "?")"
            }
        } catch let error as OverlayError where error.errno == ENOENT {
            return "absent"
        } catch let error as OverlayError where error.errno == ENOTDIR {
            return "notdir"
        }
    }

    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var layers: [[Fixture]]   // top first
        var expectations: [(String, String)]
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "topmost layer wins", layers: [[.file("f", "top")], [.file("f", "bottom"), .file("g", "g")]],
             expectations: [("f", "file:top"), ("g", "file:g"), ("", "dir:f,g")]),
        Case(name: "a file hides a directory below", layers: [[.file("d", "file")], [.dir("d", [.file("x", "x")])]],
             expectations: [("d", "file:file"), ("d/x", "notdir")]),
        Case(name: "a directory hides a file below and merges only with directories",
             layers: [[.dir("d", [.file("a", "1")])], [.file("d", "f")], [.dir("d", [.file("b", "2")])]],
             expectations: [("d", "dir:a"), ("d/b", "absent")]),
        Case(name: "directories merge through several layers",
             layers: [[.dir("d", [.file("a", "1")])], [.dir("d", [.file("b", "2")])], [.dir("d", [.file("c", "3"), .file("a", "old")])]],
             expectations: [("d", "dir:a,b,c"), ("d/a", "file:1"), ("d/c", "file:3")]),
        Case(name: "char 0/0 whiteout deletes a lower name",
             layers: [[.dir("d", [.whiteout("a")])], [.dir("d", [.file("a", "1"), .file("b", "2")])]],
             expectations: [("d", "dir:b"), ("d/a", "absent")]),
        Case(name: "OCI .wh. file deletes a lower name and is itself hidden",
             layers: [[.dir("d", [.ociWhiteout("a")])], [.dir("d", [.file("a", "1"), .file("b", "2")])]],
             expectations: [("d", "dir:b"), ("d/a", "absent"), ("d/.wh.a", "absent")]),
        Case(name: "OCI whiteout does not hide its own layer's entry",
             layers: [[.dir("d", [.ociWhiteout("a"), .file("a", "new")])], [.dir("d", [.file("a", "old")])]],
             expectations: [("d/a", "file:new"), ("d", "dir:a")]),
        Case(name: "OCI whiteout beside a same-layer directory makes it replace the lower one",
             layers: [[.ociWhiteout("d"), .dir("d", [.file("n", "n")])], [.dir("d", [.file("o", "o")])]],
             expectations: [("d", "dir:n"), ("d/o", "absent")]),
        Case(name: "whiteout of a whole lower directory",
             layers: [[.whiteout("d")], [.dir("d", [.file("a", "1")])]],
             expectations: [("d", "absent"), ("d/a", "absent"), ("", "dir:")]),
        Case(name: "trusted.overlay.opaque=y stops the merge",
             layers: [[.dir("d", [.opaque, .file("a", "1")])], [.dir("d", [.file("b", "2")])]],
             expectations: [("d", "dir:a"), ("d/b", "absent")]),
        Case(name: "user.overlay.opaque=y stops the merge",
             layers: [[.dir("d", [.xattr(on: "", name: "user.overlay.opaque", value: "y"), .file("a", "1")])], [.dir("d", [.file("b", "2")])]],
             expectations: [("d", "dir:a"), ("d/b", "absent")]),
        Case(name: "opaque value x is not opaque",
             layers: [[.dir("d", [.xattr(on: "", name: "trusted.overlay.opaque", value: "x"), .file("a", "1")])], [.dir("d", [.file("b", "2")])]],
             expectations: [("d", "dir:a,b")]),
        Case(name: "OCI .wh..wh..opq stops the merge and is hidden",
             layers: [[.dir("d", [.ociOpaque, .file("a", "1")])], [.dir("d", [.file("b", "2")])]],
             expectations: [("d", "dir:a"), ("d/.wh..wh..opq", "absent")]),
        Case(name: "whiteout in a middle layer hides only what is below it",
             layers: [[.dir("d", [.file("a", "top")])], [.dir("d", [.whiteout("a")])], [.dir("d", [.file("a", "bottom")])]],
             expectations: [("d/a", "file:top")]),
        Case(name: "re-created name above a whiteout",
             layers: [[.dir("d", [.dir("a", [.file("n", "n")])])], [.dir("d", [.whiteout("a")])], [.dir("d", [.dir("a", [.file("o", "o")])])]],
             expectations: [("d/a", "dir:n")]),
        Case(name: "symlinks are entries, never followed",
             layers: [[.symlink("s", to: "/etc"), .symlink("t", to: "../../..")], [.file("u", "u")]],
             expectations: [("s", "symlink:/etc"), ("t", "symlink:../../.."), ("s/passwd", "notdir"), ("t/etc", "notdir")]),
        Case(name: "special files", layers: [[.fifo("p"), .device("n", major: 1, minor: 3)], []],
             expectations: [("p", "fifo"), ("n", "chardev")]),
    ]

    @Test(arguments: cases)
    func resolves(_ c: Case) throws {
        let tmp = TemporaryDirectory(prefix: "core")
        let fs = try Self.overlay(c.layers, in: tmp)
        for (path, expected) in c.expectations {
            #expect(try Self.describe(fs, path) == expected, "\(path)")
        }
    }

    @Test("kernel xwhiteouts hide names in lower layers, probed or indexed, but not in the upper")
    func extendedWhiteouts() throws {
        let tmp = TemporaryDirectory(prefix: "xwh")
        // (user.overlay.* works without root; both namespaces are markers to Strata.)
        let key = getuid() == 0 ? "trusted.overlay" : "user.overlay"
        let top = tmp.makeDirectory("top"), bottom = tmp.makeDirectory("bottom"), upper = tmp.makeDirectory("upper")
        try Fixture.build([.dir("xw", [.file("a"), .file("b"), .file("sized", "1"), .file("plain")]),
                           .dir("up", [.file("a")])], at: top)
        try Fixture.build([.dir("xw", [.file("a", "a"), .file("b", "b"), .file("sized", "s"), .file("plain", "p"), .file("c", "c")]),
                           .dir("up", [.file("a", "a")])], at: bottom)
        try Fixture.build([.dir("up", [.file("a")])], at: upper)
        for directory in ["xw", "up"] {
            try System.open(top + "/" + directory, [.directory]).setExtendedAttribute(key + ".opaque", Array("x".utf8))
        }
        try System.open(upper + "/up", [.directory]).setExtendedAttribute(key + ".opaque", Array("x".utf8))
        for file in ["xw/a", "xw/b", "xw/sized", "up/a"] {   // "sized" is not empty: not a whiteout
            try System.open(top + "/" + file, []).setExtendedAttribute(key + ".whiteout", [])
        }
        try System.open(upper + "/up/a", []).setExtendedAttribute(key + ".whiteout", [])

        // Probing (a fresh overlay, no listing first), then the index (after a listing).
        for listFirst in [false, true] {
            let fs = try OverlayFileSystem(stack: LayerStack(lowerPaths: [top, bottom]))
            if listFirst { _ = try fs.listing(of: try fs.resolve(path: Self.path("xw")).node) }
            #expect(try Self.describe(fs, "xw/a") == "absent")
            #expect(try Self.describe(fs, "xw/b") == "absent")
            #expect(try Self.describe(fs, "xw/sized") == "file:1")
            #expect(try Self.describe(fs, "xw/plain") == "file:")
            #expect(try Self.describe(fs, "xw/c") == "file:c")
            let names = try fs.listing(of: try fs.resolve(path: Self.path("xw")).node).map(\.name.description)
            #expect(names.sorted() == ["c", "plain", "sized"])
        }
        // In the upper layer the kernel ignores them: the file shows, empty.
        let writable = try OverlayFileSystem(stack: LayerStack(lowerPaths: [bottom], upperPath: upper,
                                                               workPath: tmp.makeDirectory("work")))
        #expect(try Self.describe(writable, "up/a") == "file:")
    }

    @Test("merged directories report nlink 1; single-layer ones their real count")
    func directoryLinkCounts() throws {
        let tmp = TemporaryDirectory(prefix: "core")
        let fs = try Self.overlay([[.dir("m", [.dir("x", [])]), .dir("single", [.dir("a", []), .dir("b", [])])],
                                   [.dir("m", [.dir("y", [])])]], in: tmp)
        #expect(try fs.resolve(path: Self.path("m")).attributes.linkCount == 1)
        #expect(try fs.resolve(path: Self.path("single")).attributes.linkCount == 4)
        #expect(try fs.attributes(of: OverlayFileSystem.rootID).linkCount == 1)
    }

    @Test("listing entries carry the winning type and the inode stat reports")
    func listingTypesAndInodes() throws {
        let tmp = TemporaryDirectory(prefix: "core")
        let fs = try Self.overlay([[.dir("x", []), .file("y", "y")], [.file("x", "x"), .dir("y", []), .symlink("z", to: "y")]], in: tmp)
        let listing = try fs.listing(of: OverlayFileSystem.rootID)
        #expect(listing.map(\.name) == ["x", "y", "z"] || Set(listing.map(\.name)) == ["x", "y", "z"])
        for entry in listing {
            let (_, attributes) = try fs.lookup(parent: OverlayFileSystem.rootID, name: entry.name)
            #expect(attributes.kind == entry.kind, "\(entry.name)")
            #expect(attributes.inode == entry.inode, "\(entry.name)")
        }
    }

    @Test("lookups under a file fail with ENOTDIR; forgotten nodes leave the table")
    func nodeLifecycle() throws {
        let tmp = TemporaryDirectory(prefix: "core")
        let fs = try Self.overlay([[.dir("d", [.file("f", "1")])], []], in: tmp)
        let (d, _) = try fs.lookup(parent: OverlayFileSystem.rootID, name: "d")
        let (f, _) = try fs.lookup(parent: d, name: "f")
        let (again, _) = try fs.lookup(parent: d, name: "f")
        #expect(again == f)
        #expect(throws: OverlayError.self) { try fs.lookup(parent: f, name: "x") }
        do { _ = try fs.lookup(parent: f, name: "x") } catch { #expect(error.errno == ENOTDIR) }
        #expect(fs.nodeCount == 3)
        fs.forget(f, count: 2)
        #expect(fs.nodeCount == 2)
        fs.forget(d, count: 1)
        #expect(fs.nodeCount == 1)
        // A negative entry is answered from the cache, and still absent.
        let (d2, _) = try fs.lookup(parent: OverlayFileSystem.rootID, name: "d")
        #expect(throws: OverlayError.self) { try fs.lookup(parent: d2, name: "missing") }
        #expect(throws: OverlayError.self) { try fs.lookup(parent: d2, name: "missing") }
    }

    @Test("odd names: 255 bytes, newline, invalid UTF-8")
    func oddNames() throws {
        let tmp = TemporaryDirectory(prefix: "core")
        let top = tmp.makeDirectory("top")
        let d = try System.open(top, [.directory])
        let names = [FileName(String(repeating: "n", count: 255)), FileName("a\nb"), FileName(bytes: [0xff, 0xfe, 0x41])]
        for n in names { _ = try d.open(n, [.writeOnly, .create], mode: 0o644) }
        let fs = try OverlayFileSystem(stack: LayerStack(lowerPaths: [top]))
        #expect(Set(try fs.listing(of: OverlayFileSystem.rootID).map(\.name)) == Set(names))
        for n in names { #expect(try fs.lookup(parent: OverlayFileSystem.rootID, name: n).attributes.kind == .regular) }
        #expect(throws: OverlayError.self) { try fs.lookup(parent: OverlayFileSystem.rootID, name: FileName(String(repeating: "n", count: 256))) }
    }

    @Test("bad layers are reported by name")
    func badLayers() throws {
        let tmp = TemporaryDirectory(prefix: "core")
        #expect { try LayerStack(lowerPaths: [tmp.sub("missing")]) } throws: { ($0 as? OverlayError)?.message == "layer \(tmp.sub("missing")) does not exist" }
        #expect { try LayerStack(lowerPaths: []) } throws: { ($0 as? OverlayError)?.message == "no lower layers given" }
    }
}
