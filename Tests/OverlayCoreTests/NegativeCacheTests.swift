import LayerSystem
@testable import OverlayCore
import StrataTestSupport
import Testing

@Suite("Negative lookup cache")
struct NegativeCacheTests {
    @Test("absent names are cached up to a per-directory bound, and stay absent past it")
    func bounded() throws {
        let tmp = TemporaryDirectory(prefix: "neg")
        let layer = tmp.makeDirectory("l")
        try Fixture.build([.file("present", "p")], at: layer)
        let fs = try OverlayFileSystem(stack: LayerStack(lowerPaths: [layer]))
        for i in 0..<(NodeTable.negativeLimit + 500) {
            #expect(throws: OverlayError.self) { try fs.lookup(parent: OverlayFileSystem.rootID, name: FileName("missing-\(i)")) }
        }
        let cached = fs.table.withLock { $0.directories[OverlayFileSystem.rootID]?.children.count ?? 0 }
        #expect(cached <= NodeTable.negativeLimit + 1)
        #expect(try fs.lookup(parent: OverlayFileSystem.rootID, name: "present").attributes.kind == .regular)
        #expect(throws: OverlayError.self) { try fs.lookup(parent: OverlayFileSystem.rootID, name: "missing-1500") }
    }
}
