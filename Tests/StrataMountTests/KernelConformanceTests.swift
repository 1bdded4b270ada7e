import Foundation
import LayerSystem
import StrataTestSupport
import Testing

/// Strata against kernel overlayfs (the oracle) on seeded generated stacks:
/// the canonical dumps of both merged trees must be identical.
@Suite("Merged view equals kernel overlayfs", .serialized,
       .enabled(if: TestEnvironment.hasFuse, "skipped: /dev/fuse is absent on this machine"),
       .enabled(if: TestEnvironment.hasKernelOverlay, "skipped: kernel overlayfs cannot be mounted here (needs root)"))
struct KernelConformanceTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var seed: UInt64
        var layers: Int
        var deepChain = 0
        var testDescription: String { "seed \(seed), \(layers) layer(s)\(deepChain > 0 ? ", depth \(deepChain)" : "")" }
    }

    static let cases: [Case] = [
        Case(seed: 1, layers: 1), Case(seed: 2, layers: 1),
        Case(seed: 3, layers: 4), Case(seed: 4, layers: 4), Case(seed: 5, layers: 4, deepChain: 60),
        Case(seed: 6, layers: 64),
    ]

    @Test("overlay-format and OCI-format stacks", arguments: cases)
    func mergedViewMatchesKernel(_ c: Case) throws {
        let tmp = TemporaryDirectory(prefix: "kc")
        let generator = LayerStackGenerator(seed: c.seed, layers: c.layers, deepChain: c.deepChain)
        let overlayLowers = try generator.writeStack(format: .overlay, under: tmp.sub("o"))
        let ociLowers = try generator.writeStack(format: .oci, under: tmp.sub("w"))
        let kernelMount = tmp.makeDirectory("k"), strataMount = tmp.makeDirectory("s"), ociMount = tmp.makeDirectory("t")

        let expected = try Mounts.withKernelOverlay(lowers: overlayLowers, at: kernelMount) {
            try [rootLine(kernelMount, nlink: c.layers > 1)] + TreeDump.lines(of: kernelMount)
        }
        #expect(expected.count > 1)
        let lower = overlayLowers.joined(separator: ":")
        let actual = try Mounts.withStrata(["--lower", lower], at: strataMount) {
            try [rootLine(strataMount, nlink: c.layers > 1)] + TreeDump.lines(of: strataMount)
        }
        expectSame(actual, expected, "overlay format")

        // OCI markers: same view; directory sizes differ (extra marker files), so they are left out.
        var noSizes = TreeDump.Options()
        noSizes.directorySizes = false
        let expectedNoSizes = try Mounts.withKernelOverlay(lowers: overlayLowers, at: kernelMount) {
            try TreeDump.lines(of: kernelMount, options: noSizes)
        }
        let actualOCI = try Mounts.withStrata(["-o", "lowerdir=" + ociLowers.joined(separator: ":") + ","], at: ociMount) {
            try TreeDump.lines(of: ociMount, options: noSizes)
        }
        expectSame(actualOCI, expectedNoSizes, "OCI format")
    }

    /// The root's attributes. With one layer the kernel needs an extra empty
    /// lower, which makes its root a merge directory (nlink 1): nlink is then not comparable.
    func rootLine(_ path: String, nlink: Bool) throws -> String {
        let a = try System.attributes(path)
        return "/ \(String(a.permissions, radix: 8)) \(a.userID):\(a.groupID) mtime=\(a.modificationTime.seconds)"
            + (nlink ? " nlink=\(a.linkCount)" : "")
    }
}

/// Records a readable difference between two dumps: the first lines that differ.
func expectSame(_ actual: [String], _ expected: [String], _ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
    guard actual != expected else { return }
    let missing = expected.filter { !Set(actual).contains($0) }.prefix(10)
    let extra = actual.filter { !Set(expected).contains($0) }.prefix(10)
    Issue.record("""
        \(label): dumps differ (\(actual.count) lines vs \(expected.count) expected)
        only in kernel overlayfs:
        \(missing.joined(separator: "\n"))
        only in strata:
        \(extra.joined(separator: "\n"))
        """, sourceLocation: sourceLocation)
}
