import Foundation
import LayerSystem

/// A kernel-overlayfs scenario for diff tests: lower layers built from
/// fixtures (every mtime set to a whole second in the past, as layers
/// extracted from tar have), an empty upper and work directory, and two
/// mounts while `withMounts` runs: `merged` (lowers + upper) and `lowerView`
/// (the lowers alone, read-only): the old and new trees docker compares.
public final class DiffScenario: @unchecked Sendable {
    public let directory: TemporaryDirectory
    /// Lower layer paths, topmost first.
    public let lowers: [String]
    public let upper: String
    public let work: String
    public let merged: String
    public let lowerView: String
    /// The whole-second mtime given to every lower entry.
    public static let imageTime: Int64 = 1_600_000_000

    /// Builds the lowers (`layers[0]` is the topmost).
    public init(layers: [[Fixture]]) throws {
        directory = TemporaryDirectory(prefix: "sd")
        var lowers: [String] = []
        for (i, fixture) in layers.enumerated() {
            let path = directory.makeDirectory("l\(i)")
            try Fixture.build(fixture, at: path)
            lowers.append(path)
        }
        self.lowers = lowers
        upper = directory.makeDirectory("u")
        work = directory.makeDirectory("w")
        merged = directory.makeDirectory("m")
        lowerView = directory.makeDirectory("v")
        let r = try Shell.run(["find"] + lowers + ["-exec", "touch", "-h", "-d", "@\(Self.imageTime)", "{}", "+"])
        guard r.succeeded else { throw Mounts.MountError(description: "touch failed: \(r.stderr)") }
    }

    /// Mounts `merged` and `lowerView`, runs `body`, unmounts both.
    public func withMounts<T>(_ body: () throws -> T) throws -> T {
        try Mounts.withKernelOverlay(lowers: lowers, upper: upper, work: work, at: merged) {
            try Mounts.withKernelOverlay(lowers: lowers, at: lowerView) { try body() }
        }
    }

    /// Runs a `/bin/sh` script with the merged mount as its working directory;
    /// throws with the script's stderr when it fails.
    public func run(_ script: String) throws {
        let r = try Shell.run(["/bin/sh", "-ec", "cd \"$0\"; \(script)", merged])
        guard r.succeeded else { throw Mounts.MountError(description: "script failed (\(r.status)): \(script): \(r.stderr)") }
    }

    /// `--lower` value for the CLI (colons escaped).
    public var lowerList: String {
        lowers.map { $0.replacingOccurrences(of: ":", with: "\\:") }.joined(separator: ":")
    }
}
