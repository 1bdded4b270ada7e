import Foundation
import Glibc
import LayerDiff
import LayerSystem
import StrataTestSupport
import Testing

/// SplitMix64: a small deterministic generator, so a failing seed replays exactly.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Property: for random lowers (with kernel whiteouts and opaque directories)
/// and random operations performed through a kernel overlayfs mount, the upper
/// walk (`--lower … --upper …`) gives exactly the two-tree walk of the lower
/// view against the merged view, with docker rules and with --strict.
@Suite("upper walk == two-tree walk (property)", kernelOverlay)
struct EngineAgreementTests {
    static let names = ["a", "b", "c", "d", "e"]

    static func randomTree(_ g: inout SeededGenerator, depth: Int, top: Bool) -> [Fixture] {
        var entries: [Fixture] = []
        for name in names.shuffled(using: &g).prefix(Int.random(in: 1...4, using: &g)) {
            let roll = Int.random(in: 0..<100, using: &g)
            switch roll {
            case 0..<40: entries.append(.file(name, String(repeating: "x", count: Int.random(in: 0...6, using: &g)),
                                              mode: [0o644, 0o600, 0o755].randomElement(using: &g)!))
            case 40..<75 where depth > 0:
                var children = randomTree(&g, depth: depth - 1, top: top)
                if top && Int.random(in: 0..<5, using: &g) == 0 { children.append(.opaque) }
                entries.append(.dir(name, children))
            case 75..<85: entries.append(.symlink(name, to: String(repeating: "t", count: Int.random(in: 1...4, using: &g))))
            case 85..<90: entries.append(.fifo(name))
            case 90..<100 where top: entries.append(.whiteout(name))
            default: entries.append(.file(name, "y"))
            }
        }
        return entries
    }

    /// Every path below `root` (relative, no leading slash) with whether it is a directory.
    static func entries(_ root: String) throws -> [(path: String, isDirectory: Bool)] {
        var out: [(String, Bool)] = []
        func walk(_ d: Descriptor, _ prefix: String) throws {
            var names: [FileName] = []
            try d.forEachEntry { names.append($0.name) }
            for name in names.sorted() {
                let p = prefix.isEmpty ? name.description : prefix + "/" + name.description
                // Kernel overlayfs lists whiteouts of a non-merged lower directory; lookups refuse them.
                guard let a = try d.attributesIfPresent(of: name) else { continue }
                let isDirectory = a.isDirectory
                out.append((p, isDirectory))
                if isDirectory { try walk(try d.open(name, [.directory]), p) }
            }
        }
        try walk(try System.open(root, [.directory]), "")
        return out
    }

    static func mutate(_ root: String, operations: Int, _ g: inout SeededGenerator) throws {
        for _ in 0..<operations {
            let all = try entries(root)
            let directories = [""] + all.filter(\.isDirectory).map(\.path)
            let target = all.randomElement(using: &g).map { root + "/" + $0.path }
            let parent = directories.randomElement(using: &g)!
            let fresh = root + (parent.isEmpty ? "" : "/" + parent) + "/" + (names + ["n", "m"]).randomElement(using: &g)!
            let now = timespec(tv_sec: Int(Date().timeIntervalSince1970) + 5, tv_nsec: Int.random(in: 0..<999_999_999, using: &g))
            let image = timespec(tv_sec: Int(DiffScenario.imageTime), tv_nsec: 0)
            // Never open a FIFO for writing: with no reader it blocks forever.
            let targetIsFIFO = target.flatMap { try? System.attributes($0, followSymlinks: false) }?.kind == .fifo
            let freshIsFIFO = (try? System.attributes(fresh, followSymlinks: false))?.kind == .fifo
            switch Int.random(in: 0..<15, using: &g) {
            case 0: if !freshIsFIFO { _ = try? "new\(Int.random(in: 0..<3, using: &g))".write(toFile: fresh, atomically: false, encoding: .utf8) }
            case 1: if let t = target, !targetIsFIFO, let h = FileHandle(forWritingAtPath: t) { h.seekToEndOfFile(); h.write(Data("z".utf8)); try? h.close() }
            case 2: if let t = target { _ = chmod(t, [0o600, 0o644, 0o755, 0o700].randomElement(using: &g)!) }
            case 3: if let t = target { _ = lchown(t, [0, 1000].randomElement(using: &g)!, 0) }
            case 4: if let t = target { var ts = [now, now]; _ = utimensat(AT_FDCWD, t, &ts, AT_SYMLINK_NOFOLLOW) }
            case 5:
                // Same-size rewrite with the image mtime restored: only --strict sees it.
                if let t = target, let a = try? System.attributes(t, followSymlinks: false), a.kind == .regular {
                    _ = try? String(repeating: "q", count: Int(a.size)).write(toFile: t, atomically: false, encoding: .utf8)
                    var ts = [image, image]
                    _ = utimensat(AT_FDCWD, t, &ts, AT_SYMLINK_NOFOLLOW)
                }
            case 6: if let t = target { try? FileManager.default.removeItem(atPath: t) }
            case 7: _ = mkdir(fresh, 0o755)
            case 8: try? FileManager.default.createDirectory(atPath: fresh + "/x/y", withIntermediateDirectories: true)
            case 9: _ = symlink(["t", "tt", "other"].randomElement(using: &g)!, fresh)
            case 10: if let t = target { _ = rename(t, fresh) }
            case 11: if let t = target { _ = link(t, fresh) }
            case 12: if let t = target { try? System.open(t, [.path, .noFollow]).setExtendedAttribute("user.k", Array("v".utf8)) }
            case 13: _ = mkfifo(fresh, 0o644)
            default:
                if let t = target {
                    try? FileManager.default.removeItem(atPath: t)
                    if Bool.random(using: &g) { _ = mkdir(t, 0o755) } else { _ = try? "r".write(toFile: t, atomically: false, encoding: .utf8) }
                }
            }
        }
    }

    @Test(arguments: 1...24)
    func enginesAgree(seed: Int) throws {
        var g = SeededGenerator(seed: UInt64(seed))
        let layers = [Self.randomTree(&g, depth: 3, top: true), Self.randomTree(&g, depth: 3, top: false)]
        let s = try DiffScenario(layers: layers)
        try s.withMounts {
            do { try Self.mutate(s.merged, operations: 60, &g) } catch {
                let dump = try ["l0", "l1", "u"].map { try TreeDump.lines(of: s.directory.sub($0)).joined(separator: "\n") }
                Issue.record("mutate: \(error)\n\(dump.joined(separator: "\n---\n"))")
                throw error
            }
            for strict in [false, true] {
                let options = DiffOptions(strict: strict)
                let upper = try UpperWalk(lowerPaths: s.lowers, upperPath: s.upper, options: options).changes()
                let trees: [Change]
                do { trees = try TreeWalk(oldPath: s.lowerView, newPath: s.merged, options: options).changes() } catch {
                    Issue.record("tree walk: \(error)\n\(try TreeDump.lines(of: s.directory.path, options: .init()).joined(separator: "\n"))")
                    throw error
                }
                let verbose = ChangeRenderer(format: .text, verbose: true)
                let u = upper.map { String(decoding: verbose.render($0), as: UTF8.self) }
                let t = trees.map { String(decoding: verbose.render($0), as: UTF8.self) }
                #expect(u == t, "seed \(seed), strict \(strict):\nupper walk:\n\(u.joined())two-tree:\n\(t.joined())")
            }
            // The command line agrees too, and the seed produced something to compare.
            let cliUpper = try StrataBinary.run(["diff", "--lower", s.lowerList, "--upper", s.upper])
            let cliTrees = try StrataBinary.run(["diff", s.lowerView, s.merged])
            if FileManager.default.isExecutableFile(atPath: StrataBinary.path) {
                #expect(cliUpper.status == 0 && cliUpper.stdout == cliTrees.stdout, "seed \(seed): \(cliUpper.stderr)\(cliTrees.stderr)")
                #expect(!cliUpper.stdout.isEmpty, "seed \(seed) made no change")
            }
        }
    }
}
