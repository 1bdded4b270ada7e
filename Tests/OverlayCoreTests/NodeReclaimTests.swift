import LayerSystem
@testable import OverlayCore
import StrataTestSupport
import Testing

/// What `-o max_nodes` asks the kernel to drop (`OverlayFileSystem.reclaimCandidates`).
@Suite("Node reclaim candidates")
struct NodeReclaimTests {
    @Test("reclaim candidates: over the limit, the least recently used unpinned nodes, down to 90%")
    func reclaimCandidates() throws {
        let tmp = TemporaryDirectory(prefix: "reclaim")
        let layer = tmp.makeDirectory("l")
        try Fixture.build([.dir("d", (0..<300).map { .file("f\($0)") })], at: layer)
        let fs = try OverlayFileSystem(stack: LayerStack(lowerPaths: [layer]))
        let (d, _) = try fs.lookup(parent: OverlayFileSystem.rootID, name: "d")
        for i in 0..<300 { _ = try fs.lookup(parent: d, name: FileName("f\(i)")) }
        #expect(fs.reclaimCandidates(limit: 1000).isEmpty)
        let victims = fs.reclaimCandidates(limit: 200)
        #expect(victims.count == fs.nodeCount - 180)
        // `d` holds live children: never a candidate; the oldest files come first.
        #expect(victims.allSatisfy { $0.parent == d })
        #expect(victims.first?.name == "f0")
        #expect(Set(victims.map(\.name)) == Set((0..<victims.count).map { FileName("f\($0)") }))
    }
}
