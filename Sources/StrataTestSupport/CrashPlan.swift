import Foundation
import LayerSystem

/// Seeded random workloads for the crash-point tests: the operation mix of the
/// write-path differential tester (put, overwrite, append, truncate, mkdir,
/// rmdir, unlink, rename with all flags, link, symlink, chmod, set/remove
/// xattr) on lower and new names, every step valid on the model (so each one
/// must succeed), plus the heavy steps the tests aim at: an append to each
/// large lower file (the append copies tens of MiB up first) and a rename of
/// each lower directory tree of hundreds of files (copied up whole first).
/// Heavy targets are left alone by the random steps until their heavy step.
public struct CrashPlanGenerator {
    var model: CrashModel
    var random: SeededRandom
    var protected: Set<String>
    var index = 0

    /// Names new entries get; several per directory collide with existing ones.
    static let names = ["n1", "n2", "n3", "new", "sp ace", "ünï", "x.conf", "a", "b", String(repeating: "N", count: 200)]

    public static func plan(from initial: CrashModel, seed: UInt64, steps: Int,
                            largeFiles: [String], trees: [String]) -> [CrashStep] {
        var g = CrashPlanGenerator(model: initial, random: SeededRandom(seed: seed), protected: Set(largeFiles + trees))
        var heavy: [(at: Int, path: String, isTree: Bool)] = []
        for f in largeFiles { heavy.append((Int.random(in: 0..<steps, using: &g.random), f, false)) }
        for t in trees { heavy.append((Int.random(in: 0..<steps, using: &g.random), t, true)) }
        heavy.sort { $0.at < $1.at }
        var plan: [CrashStep] = []
        while g.index < steps {
            var step: CrashStep?
            if let next = heavy.first, next.at <= g.index {
                heavy.removeFirst()
                g.protected.remove(next.path)
                step = next.isTree ? g.renameTree(next.path) : g.append(to: next.path, length: Int.random(in: 1...4096, using: &g.random))
            }
            for _ in 0..<200 where step == nil { step = g.randomStep() }
            guard let step else { break }
            g.model.apply(step)
            plan.append(step)
            g.index += 1
        }
        return plan
    }

    // MARK: Picking names

    /// A random entry reached by walking down from the root (each directory's
    /// entries equally likely), so a directory of 600 files is not 600 times
    /// likelier than a file at the top. May return "" (the root).
    mutating func walk() -> String {
        var directory = ""
        while true {
            let names = (model.children[directory] ?? []).sorted()
            if names.isEmpty || (!directory.isEmpty && Int.random(in: 0..<100, using: &random) < 20) { return directory }
            let path = CrashModel.join(directory, names.randomElement(using: &random)!)
            if model.isDirectory(path) { directory = path } else { return path }
        }
    }

    /// A random entry (see `walk`) that `accept` takes; `accept` sees the
    /// generator as it was before the pick.
    mutating func pick(_ accept: (CrashPlanGenerator, String) -> Bool) -> String? {
        let current = self
        for _ in 0..<60 {
            let p = walk()
            if accept(current, p) { return p }
        }
        return nil
    }

    /// A directory (possibly the root).
    mutating func pickDirectory() -> String {
        let p = walk()
        return model.isDirectory(p) ? p : CrashModel.parent(of: p)
    }

    /// An absent name in some directory (not below `avoiding`).
    mutating func newPath(avoiding: String? = nil) -> String? {
        for _ in 0..<30 {
            let directory = pickDirectory()
            if let avoiding, CrashModel.isWithin(directory, avoiding) { continue }
            let p = CrashModel.join(directory, Self.names.randomElement(using: &random)!)
            if model.entries[p] == nil { return p }
        }
        return nil
    }

    /// Whether removing, replacing or moving `path` would touch a heavy target still to come.
    func touchesProtected(_ path: String) -> Bool {
        path.isEmpty || protected.contains { CrashModel.isWithin($0, path) }
    }

    func isFile(_ p: String) -> Bool { model.object(at: p) != nil }

    mutating func step(_ kind: CrashStep.Kind, _ path: String) -> CrashStep { CrashStep(index: index, kind: kind, path: path) }

    mutating func token() -> String { "<\(index):\(random.next() % 100_000)>" }

    // MARK: Steps

    mutating func append(to path: String, length: Int) -> CrashStep {
        var s = step(.append, path)
        s.token = token()
        s.length = length
        s.sync = Bool.random(using: &random)
        return s
    }

    mutating func renameTree(_ path: String) -> CrashStep? {
        var s = step(.rename, path)
        guard let target = newPath(avoiding: path) else { return nil }
        s.target = CrashModel.join(CrashModel.parent(of: target), "moved-\(index)")
        guard model.entries[s.target!] == nil else { return nil }
        return s
    }

    mutating func randomStep() -> CrashStep? {
        let roll = Int.random(in: 0..<100, using: &random)
        switch roll {
        case 0..<12:   // a new file, written under a temporary name and renamed into place
            let replace = Bool.random(using: &random)
            let target = replace ? pick { g, p in g.isFile(p) && !g.touchesProtected(p) } : newPath()
            guard let target else { return nil }
            var s = step(.put, target)
            s.temporary = CrashModel.join(CrashModel.parent(of: target), ".tmp-\(index)")
            s.token = token()
            s.length = [0, 1, 100, 5000, 70_000, 300_000][Int.random(in: 0..<6, using: &random)]
            s.sync = Int.random(in: 0..<100, using: &random) < 30
            return s
        case 12..<18:
            guard let p = pick({ g, p in g.isFile(p) && !g.touchesProtected(p) }) else { return nil }
            var s = step(.overwrite, p)
            s.token = token()
            s.length = [1, 100, 5000, 200_000][Int.random(in: 0..<4, using: &random)]
            s.sync = Int.random(in: 0..<100, using: &random) < 30
            return s
        case 18..<28:
            guard let p = pick({ g, p in g.isFile(p) && !g.protected.contains(p) }),
                  model.objects[model.object(at: p)!]!.content.count < 48 << 20 else { return nil }
            return append(to: p, length: [1, 100, 5000, 200_000, 2_000_000][Int.random(in: 0..<5, using: &random)])
        case 28..<32:
            guard let p = pick({ g, p in g.isFile(p) && !g.touchesProtected(p) }) else { return nil }
            let count = model.objects[model.object(at: p)!]!.content.count
            var s = step(.truncate, p)
            s.size = [0, count / 2, count + 1000][Int.random(in: 0..<3, using: &random)]
            return s
        case 32..<40:
            guard let p = newPath() else { return nil }
            var s = step(.mkdir, p)
            s.mode = 0o755
            return s
        case 40..<45:
            guard let p = pick({ g, p in g.model.isDirectory(p) && (g.model.children[p]?.isEmpty ?? true) && !g.touchesProtected(p) })
            else { return nil }
            return step(.rmdir, p)
        case 45..<53:
            guard let p = pick({ g, p in !p.isEmpty && !g.model.isDirectory(p) && !g.touchesProtected(p) }) else { return nil }
            return step(.unlink, p)
        case 53..<68:
            return randomRename()
        case 68..<73:
            guard let p = pick({ g, p in g.isFile(p) && !g.protected.contains(p) }), let target = newPath() else { return nil }
            var s = step(.link, p)
            s.target = target
            return s
        case 73..<77:
            guard let p = newPath() else { return nil }
            var s = step(.symlink, p)
            s.target = ["t\(random.next() % 10)", "../x", "/etc/passwd"][Int.random(in: 0..<3, using: &random)]
            return s
        case 77..<85:
            guard let p = pick({ g, p in !p.isEmpty && (g.isFile(p) || g.model.isDirectory(p)) && !g.protected.contains(p) })
            else { return nil }
            var s = step(.chmod, p)
            s.mode = model.isDirectory(p) ? [0o755, 0o700, 0o750][Int.random(in: 0..<3, using: &random)]
                : [0o600, 0o644, 0o755, 0o640][Int.random(in: 0..<4, using: &random)]
            return s
        case 85..<95:
            guard let p = pick({ g, p in !p.isEmpty && (g.isFile(p) || g.model.isDirectory(p)) && !g.protected.contains(p) })
            else { return nil }
            var s = step(.setxattr, p)
            s.value = "v\(index)"
            return s
        default:
            guard let p = pick({ g, p in !p.isEmpty && g.model.xattrs(at: p)[CrashStep.xattrName] != nil }) else { return nil }
            return step(.removexattr, p)
        }
    }

    /// A rename that must succeed: to a new name, over a file (file source) or
    /// an empty directory (directory source), RENAME_NOREPLACE to a new name,
    /// or RENAME_EXCHANGE of two unrelated entries.
    mutating func randomRename() -> CrashStep? {
        guard let source = pick({ g, p in !g.touchesProtected(p) }) else { return nil }
        let isDirectory = model.isDirectory(source)
        var s = step(.rename, source)
        let roll = Int.random(in: 0..<100, using: &random)
        if roll < 20 {
            s.flags = CrashStep.exchange
            s.target = pick { g, t in
                !g.touchesProtected(t) && !CrashModel.isWithin(t, source) && !CrashModel.isWithin(source, t) && !g.model.sameFile(source, t)
            }
        } else if roll < 70 {
            if roll < 40 { s.flags = CrashStep.noReplace }   // else a plain rename to a new name
            s.target = newPath(avoiding: isDirectory ? source : nil)
        } else {
            s.target = pick { g, t in
                guard !g.touchesProtected(t), !CrashModel.isWithin(t, source), !CrashModel.isWithin(source, t) else { return false }
                if isDirectory { return g.model.isDirectory(t) && (g.model.children[t]?.isEmpty ?? true) }
                return !g.model.isDirectory(t) && !g.model.sameFile(source, t)
            }
        }
        return s.target == nil ? nil : s
    }
}

/// The executor's log: which steps finished (in order, each with its errno),
/// which one was in flight when the daemon died, and how long each took.
public struct CrashLog: Sendable {
    /// Steps 0..<completed finished without error.
    public var completed = 0
    /// The step begun but not finished without error (at most one: the executor stops at the first error).
    public var inFlight: Int?
    /// The errno the in-flight step ended with, if it ended.
    public var failure: Int32?
    /// Step → nanoseconds from begin to end.
    public var durations: [Int: UInt64] = [:]
    /// Nanoseconds from the first begin to the last end.
    public var total: UInt64 = 0

    public init(_ text: String) {
        var begins: [Int: UInt64] = [:]
        var first: UInt64?, last: UInt64 = 0
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count >= 3, let i = Int(f[1]), let t = UInt64(f.last!) else { continue }
            if f[0] == "B" {
                begins[i] = t
                if first == nil { first = t }
                inFlight = i
            } else if f[0] == "E", f.count == 4, let rc = Int32(f[2]) {
                durations[i] = t - (begins[i] ?? t)
                last = t
                if rc == 0 { completed = i + 1; inFlight = nil } else { failure = rc }
            }
        }
        total = first.map { last > $0 ? last - $0 : 0 } ?? 0
    }
}

/// How a view read after the kill relates to the model.
public enum CrashOutcome: String, Sendable {
    /// The state before the in-flight step (or after the last completed one).
    case before
    /// The state after the in-flight step.
    case after
    /// A state the in-flight step may legitimately pass through: its
    /// temporary file with part of the data (put), or part of the data written
    /// (overwrite/append: the old content whole, then a prefix of the new).
    case partial
}

public enum CrashJudge {
    /// Compares the view read after the kill with the model before the
    /// in-flight step and after it; returns the outcome, or a description of
    /// what matches neither.
    public static func judge(_ actual: [String: CrashView.Entry], before: CrashModel, step: CrashStep?,
                             after: CrashModel?) -> Result<CrashOutcome, CrashViolation> {
        let b = before.view()
        if actual == b { return .success(.before) }
        let a = after?.view()
        if let a, actual == a { return .success(.after) }
        let differing = Set(actual.keys).union(b.keys).filter { actual[$0] != b[$0] }.sorted()
        if let step, partiallyDone(step, actual: actual, before: before, differing: differing) { return .success(.partial) }
        var lines: [String] = []
        for p in differing.prefix(12) {
            lines.append("  \(p): now \(actual[p]?.description ?? "absent"); before \(b[p]?.description ?? "absent"); after \(a.map { $0[p]?.description ?? "absent" } ?? "-")")
        }
        if let a {
            let fromAfter = Set(actual.keys).union(a.keys).filter { actual[$0] != a[$0] }.sorted()
            let shown = fromAfter.prefix(5).map { $0.count > 80 ? "…" + $0.suffix(79) : $0 }
            lines.append("  (\(differing.count) paths differ from the state before the step, \(fromAfter.count) from the state after: \(shown))")
        }
        return .failure(CrashViolation(description: lines.joined(separator: "\n")))
    }

    static func partiallyDone(_ step: CrashStep, actual: [String: CrashView.Entry], before: CrashModel, differing: [String]) -> Bool {
        switch step.kind {
        case .put:
            guard differing == [step.temporary!], case .file(let mode, let xattrs, let content)? = actual[step.temporary!] else { return false }
            return mode == 0o644 && xattrs.isEmpty && content.isExtension(of: [], byPrefixOf: step.payload)
        case .overwrite, .append:
            guard let o = before.object(at: step.path) else { return false }
            let object = before.objects[o]!
            let names = before.entries.filter { $0.value == .file(object: o) }.map(\.key)
            guard Set(differing).isSubset(of: names) else { return false }
            let base = step.kind == .append ? object.content : []
            var seen: Bytes?
            for name in names {
                guard case .file(let mode, let xattrs, let content)? = actual[name], mode == object.mode, xattrs == object.xattrs,
                      content.isExtension(of: base, byPrefixOf: step.payload) else { return false }
                if let seen, seen != content { return false }   // one file: every name shows the same bytes
                seen = content
            }
            return true
        default:
            return false
        }
    }
}

public struct CrashViolation: Error, CustomStringConvertible {
    public var description: String
}
