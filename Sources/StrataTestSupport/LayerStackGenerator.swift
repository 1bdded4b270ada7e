import Foundation
import LayerSystem
import OverlayCore

/// A small deterministic PRNG (SplitMix64) so generated stacks are reproducible from a seed.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Generates seeded layer stacks with overlapping names, whiteouts, opaque
/// directories, symlinks, hardlinks, fifos, xattrs, long names and deep paths,
/// and writes them in overlay format (char 0/0, `trusted.overlay.opaque`) or
/// OCI format (`.wh.NAME`, `.wh..wh..opq`). Both formats describe the same
/// merged view, so kernel overlayfs over the overlay form is the oracle for
/// Strata over either form.
public struct LayerStackGenerator {
    public enum Format: Sendable { case overlay, oci }

    indirect enum Node {
        case dir(mode: UInt32, opaque: Bool, children: [(String, Node)])
        case file(String, mode: UInt32, xattr: String?)
        case symlink(String)
        case fifo
        case whiteout
        case hardlink(to: String)   // name of a sibling file in the same directory
    }

    public let seed: UInt64
    public let layerCount: Int
    var layers: [[(String, Node)]] = []   // bottom first

    /// Names drawn from a small pool so layers collide often.
    static let names = ["a", "b", "c", "d", "etc", "usr", "sp ace", "ünï", "x.conf", String(repeating: "L", count: 255)]

    public init(seed: UInt64, layers: Int, maxDepth: Int = 4, deepChain: Int = 0) {
        self.seed = seed
        self.layerCount = layers
        var random = SeededRandom(seed: seed)
        for index in 0..<layers {
            var top = Self.directoryContents(depth: 0, maxDepth: maxDepth, isBottom: index == 0, random: &random)
            if deepChain > 0 && index == layers / 2 {
                var chain: Node = .file("deep", mode: 0o644, xattr: nil)
                for level in (0..<deepChain).reversed() {
                    chain = .dir(mode: 0o755, opaque: false, children: [("d\(level % 10)", chain)])
                }
                if case .dir(_, _, let children) = chain { top.removeAll { $0.0 == "d0" }; top += children }
            }
            self.layers.append(top)
        }
    }

    static func directoryContents(depth: Int, maxDepth: Int, isBottom: Bool, random: inout SeededRandom) -> [(String, Node)] {
        let count = Int.random(in: 1...(depth == 0 ? 7 : 5), using: &random)
        var chosen = Array(names.shuffled(using: &random).prefix(count))
        var result: [(String, Node)] = []
        var files: [String] = []
        for name in chosen {
            let roll = Int.random(in: 0..<100, using: &random)
            let longName = name.utf8.count > 200
            let node: Node
            switch roll {
            case 0..<30 where depth < maxDepth:
                let opaque = !isBottom && Int.random(in: 0..<100, using: &random) < 15
                let mode: UInt32 = [0o755, 0o700, 0o775][Int.random(in: 0..<3, using: &random)]
                node = .dir(mode: mode, opaque: opaque,
                            children: directoryContents(depth: depth + 1, maxDepth: maxDepth, isBottom: isBottom, random: &random))
            case 30..<40 where !isBottom && !longName:
                node = .whiteout
            case 40..<48:
                node = .symlink(["../a", "/etc/passwd", "b", "dangling/none", "."][Int.random(in: 0..<5, using: &random)])
            case 48..<52:
                node = .fifo
            default:
                let size = [0, 1, 100, 5000, 70000][Int.random(in: 0..<5, using: &random)]
                let content = String(repeating: "\(name)-\(random.next() % 1000)\n", count: max(1, size / 8))
                let mode: UInt32 = [0o644, 0o600, 0o755, 0o4755, 0o444][Int.random(in: 0..<5, using: &random)]
                let xattr = Int.random(in: 0..<100, using: &random) < 20 ? "v\(random.next() % 100)" : nil
                node = .file(size == 0 ? "" : content, mode: mode, xattr: xattr)
                files.append(name)
            }
            result.append((name, node))
        }
        // A hardlink to a sibling file under a fresh name.
        if let target = files.first, Int.random(in: 0..<100, using: &random) < 30 {
            result.append(("hl-\(random.next() % 100)", .hardlink(to: target)))
        }
        chosen.removeAll()
        return result
    }

    /// Writes layer `i` (0 = bottom) of the stack into `root`.
    public func write(layer i: Int, format: Format, at root: String) throws {
        let directory = try System.open(root, [.directory])
        try write(layers[i], format: format, into: directory)
    }

    /// Writes every layer under `base/0`, `base/1`, … and returns the paths top-first (lowerdir order).
    public func writeStack(format: Format, under base: String) throws -> [String] {
        var paths: [String] = []
        for i in 0..<layerCount {
            let p = "\(base)/\(i)"
            try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
            try write(layer: i, format: format, at: p)
            paths.append(p)
        }
        return paths.reversed()
    }

    static let fixedTime = TimeSpec(seconds: 1_700_000_000, nanoseconds: 123_456_789)

    func write(_ entries: [(String, Node)], format: Format, into directory: Descriptor) throws {
        for (nameString, node) in entries {
            let name = FileName(nameString)
            switch node {
            case .dir(let mode, let opaque, let children):
                try directory.makeDirectory(name, mode: 0o755)
                let child = try directory.open(name, [.directory])
                try write(children, format: format, into: child)
                if opaque {
                    switch format {
                    case .overlay: try child.setExtendedAttribute(OverlayMarkers.trustedOpaque, OverlayMarkers.opaqueValue)
                    case .oci:
                        _ = try child.open(OverlayMarkers.opaqueMarkerName, [.writeOnly, .create], mode: 0o644)
                    }
                }
                try child.setMode(mode)
            case .file(let content, let mode, let xattr):
                let f = try directory.open(name, [.writeOnly, .create, .truncate], mode: 0o644)
                if !content.isEmpty { _ = try Array(content.utf8).withUnsafeBytes { try f.write($0, at: 0) } }
                if let xattr { try f.setExtendedAttribute("user.test", Array(xattr.utf8)) }
                try f.setMode(mode)
            case .symlink(let target):
                try directory.makeSymlink(name, target: Array(target.utf8))
            case .fifo:
                try directory.makeNode(name, mode: 0o010644, device: 0)
            case .whiteout:
                switch format {
                case .overlay: try directory.makeNode(name, mode: 0o020000, device: 0)
                case .oci: _ = try directory.open(OverlayMarkers.ociWhiteoutName(for: name), [.writeOnly, .create], mode: 0o644)
                }
            case .hardlink(let target):
                try directory.link(FileName(target), to: directory, as: name)
            }
        }
        // Fixed times, children before their directory, so both formats and every run agree.
        var names: [FileName] = []
        try directory.forEachEntry { names.append($0.name) }
        for name in names {
            try directory.setTimes(of: name, access: Self.fixedTime, modification: Self.fixedTime)
        }
        try directory.setTimes(access: Self.fixedTime, modification: Self.fixedTime)
    }
}
