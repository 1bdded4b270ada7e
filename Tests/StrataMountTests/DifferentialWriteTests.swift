import Foundation
import Glibc
import LayerSystem
import StrataTestSupport
import Testing

/// The write path against kernel overlayfs: the same seeded random operations
/// on identical lowers, comparing every call's result, then the merged views
/// and the upper directories. `STRATA_FUZZ_SEEDS=N` runs more seeds.
@Suite("Writes equal kernel overlayfs (differential)", .serialized,
       .enabled(if: TestEnvironment.hasFuse, "skipped: /dev/fuse is absent on this machine"),
       .enabled(if: TestEnvironment.hasKernelOverlay, "skipped: kernel overlayfs cannot be mounted here (needs root)"))
struct DifferentialWriteTests {
    /// `STRATA_FUZZ_SEEDS=N`: seeds 100…100+N-1; `STRATA_FUZZ_SEED_LIST=101,107`: exactly those.
    static let seeds: [UInt64] = {
        let environment = ProcessInfo.processInfo.environment
        if let list = environment["STRATA_FUZZ_SEED_LIST"] { return list.split(separator: ",").compactMap { UInt64($0) } }
        let n = Int(environment["STRATA_FUZZ_SEEDS"] ?? "") ?? 4
        return (0..<UInt64(n)).map { 100 + $0 }
    }()
    /// `STRATA_FUZZ_EVERY_STEP=1` compares the merged views after every step for every seed.
    static let alwaysEveryStep = ProcessInfo.processInfo.environment["STRATA_FUZZ_EVERY_STEP"] == "1"

    @Test(arguments: seeds)
    func randomOperations(seed: UInt64) throws {
        let tmp = TemporaryDirectory(prefix: "dw")
        let generator = LayerStackGenerator(seed: seed, layers: 3, maxDepth: 3)
        let lowers = try generator.writeStack(format: .overlay, under: tmp.sub("l"))
        let kernel = tmp.makeDirectory("k"), strata = tmp.makeDirectory("s")
        let ku = tmp.makeDirectory("ku"), kw = tmp.makeDirectory("kw"), su = tmp.makeDirectory("su"), sw = tmp.makeDirectory("sw")
        var random = SeededRandom(seed: seed)
        var log: [String] = []
        try Mounts.withKernelOverlay(lowers: lowers, upper: ku, work: kw, at: kernel) {
            try Mounts.withStrata(["--lower", lowers.joined(separator: ":"), "--upper", su, "--work", sw], at: strata) {
                // Even seeds compare the merged views after every step (pinning a divergence
                // to its operation); odd seeds only at the end (caches stay as the workload left them).
                let everyStep = seed % 2 == 0 || Self.alwaysEveryStep
                var options = TreeDump.Options()
                options.directorySizes = false
                options.mtimes = false
                for step in 0..<150 {
                    let op = Operation.random(in: kernel, using: &random)
                    var k = op.apply(root: kernel)
                    if k == EXDEV, case .rename(let from, let to, let flags) = op {
                        // Kernel overlayfs (no redirect_dir) refuses to rename lower directories;
                        // Strata renames them. Do what mv does on the kernel side, then compare.
                        k = Operation.emulateRename(root: kernel, upper: ku, from, to, exchange: flags.contains(.exchange))
                    }
                    let s = op.apply(root: strata)
                    log.append("\(step): \(op) kernel=\(k) strata=\(s)")
                    if k != s {
                        let recent = log.suffix(8).joined(separator: "\n")
                        Issue.record("seed \(seed) step \(step): \(op): kernel \(describe(k)), strata \(describe(s))\n\(recent)")
                        return
                    }
                    if everyStep {
                        let a = try TreeDump.lines(of: strata, options: options), b = try TreeDump.lines(of: kernel, options: options)
                        if a != b {
                            expectSame(a, b, "seed \(seed) step \(step): merged views after \(op)\n" + log.suffix(8).joined(separator: "\n"))
                            return
                        }
                    }
                }
                if let path = ProcessInfo.processInfo.environment["STRATA_FUZZ_LOG"] {
                    try? (log.joined(separator: "\n") + "\n").write(toFile: path + ".\(seed)", atomically: true, encoding: .utf8)
                }
                expectSame(try TreeDump.lines(of: strata, options: options), try TreeDump.lines(of: kernel, options: options),
                           "seed \(seed): merged views after \(log.count) operations")
            }
        }
        // The uppers hold the same objects (overlay-private xattrs aside), and each
        // implementation reads the other's upper the same way.
        var structure = TreeDump.Options()
        structure.directorySizes = false; structure.mtimes = false; structure.xattrs = false; structure.linkCounts = false
        expectSame(try TreeDump.lines(of: su, options: structure).filter(Self.comparableUpperLine),
                   try TreeDump.lines(of: ku, options: structure).filter(Self.comparableUpperLine), "seed \(seed): upper directories")
        var view = TreeDump.Options()
        view.directorySizes = false; view.mtimes = false
        let kw2 = tmp.makeDirectory("kw2")
        let kernelOverStrata = try Mounts.withKernelOverlay(lowers: lowers, upper: su, work: kw2, at: kernel) {
            try TreeDump.lines(of: kernel, options: view)
        }
        let strataOverKernel = try Mounts.withStrata(["--lower", lowers.joined(separator: ":"), "--upper", ku, "--work", tmp.makeDirectory("sw2")], at: strata) {
            try TreeDump.lines(of: strata, options: view)
        }
        expectSame(strataOverKernel, kernelOverStrata, "seed \(seed): each reading the other's upper")
    }

    /// Whiteouts left under directories that both sides copied up whole differ in
    /// bookkeeping only; every other upper entry must match.
    static func comparableUpperLine(_ line: String) -> Bool { !line.contains(" chardev ") || line.contains("dev=0,0") }

    func describe(_ r: Int32) -> String { r == 0 ? "ok" : "errno \(r) (\(String(cString: strerror(r))))" }
}

/// One filesystem operation on paths relative to a mount root; `apply` returns 0 or errno.
enum Operation: CustomStringConvertible {
    case write(String, String), append(String, String), truncate(String, Int), mkdir(String), rmdir(String), unlink(String)
    case rename(String, String, RenameFlags), symlink(String, String), link(String, String), chmod(String, UInt32)
    case chown(String, UInt32), touch(String, Int64), setxattr(String, String), removexattr(String), mkfifo(String)

    static let names = ["a", "b", "c", "d", "etc", "usr", "x.conf", "n1", "n2", "sp ace"]

    var description: String {
        switch self {
        case .write(let p, _): "write \(p)"
        case .append(let p, _): "append \(p)"
        case .truncate(let p, let n): "truncate \(p) \(n)"
        case .mkdir(let p): "mkdir \(p)"
        case .rmdir(let p): "rmdir \(p)"
        case .unlink(let p): "unlink \(p)"
        case .rename(let a, let b, let f): "rename \(a) \(b) flags=\(f.rawValue)"
        case .symlink(let p, let t): "symlink \(p) -> \(t)"
        case .link(let a, let b): "link \(a) \(b)"
        case .chmod(let p, let m): "chmod \(p) \(String(m, radix: 8))"
        case .chown(let p, let u): "chown \(p) \(u)"
        case .touch(let p, let t): "touch \(p) \(t)"
        case .setxattr(let p, let v): "setxattr \(p) \(v)"
        case .removexattr(let p): "removexattr \(p)"
        case .mkfifo(let p): "mkfifo \(p)"
        }
    }

    /// Existing paths of the (kernel) merged view, to aim most operations at real names.
    static func existing(in root: String) -> [String] {
        var out: [String] = []
        func walk(_ rel: String, depth: Int) {
            guard depth < 4, let dir = opendir(root + (rel.isEmpty ? "" : "/" + rel)) else { return }
            var children: [(String, Bool)] = []
            while let e = readdir(dir) {
                let name = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
                if name == "." || name == ".." || name.utf8.count > 100 { continue }
                children.append((name, e.pointee.d_type == UInt8(DT_DIR)))
            }
            closedir(dir)
            for (name, isDir) in children.sorted(by: { $0.0 < $1.0 }) {
                let p = rel.isEmpty ? name : rel + "/" + name
                // Skip what stat cannot see (kernel lists stray whiteouts of non-merged dirs).
                var st = stat()
                if lstat(root + "/" + p, &st) != 0 { continue }
                out.append(p)
                if isDir { walk(p, depth: depth + 1) }
            }
        }
        walk("", depth: 0)
        return out
    }

    static func random(in root: String, using random: inout SeededRandom) -> Operation {
        let paths = existing(in: root)
        func pick() -> String {
            if !paths.isEmpty && Int.random(in: 0..<100, using: &random) < 75 { return paths.randomElement(using: &random)! }
            let parent = paths.filter { p in var st = stat(); return lstat(root + "/" + p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR }
                .randomElement(using: &random)
            let name = names.randomElement(using: &random)!
            return parent.map { $0 + "/" + name } ?? name
        }
        switch Int.random(in: 0..<100, using: &random) {
        case 0..<12: return .write(pick(), "w\(random.next() % 1000)\n")
        case 12..<20: return .append(pick(), "a\(random.next() % 1000)\n")
        case 20..<24: return .truncate(pick(), [0, 1, 3000][Int.random(in: 0..<3, using: &random)])
        case 24..<34: return .mkdir(pick())
        case 34..<40: return .rmdir(pick())
        case 40..<50: return .unlink(pick())
        case 50..<62:
            let flags: RenameFlags = [[], [], [], .noReplace, .exchange][Int.random(in: 0..<5, using: &random)]
            return .rename(pick(), pick(), flags)
        case 62..<67: return .symlink(pick(), "target\(random.next() % 10)")
        case 67..<72: return .link(pick(), pick())
        case 72..<78: return .chmod(pick(), [0o600, 0o755, 0o4755, 0o640][Int.random(in: 0..<4, using: &random)])
        case 78..<82: return .chown(pick(), [0, 1000, 65534][Int.random(in: 0..<3, using: &random)])
        case 82..<86: return .touch(pick(), 1_600_000_000 + Int64(random.next() % 1000))
        case 86..<92: return .setxattr(pick(), "v\(random.next() % 10)")
        case 92..<96: return .removexattr(pick())
        default: return .mkfifo(pick())
        }
    }

    func apply(root: String) -> Int32 {
        func p(_ rel: String) -> String { root + "/" + rel }
        func check(_ rc: Int32) -> Int32 { rc == 0 ? 0 : errno }
        switch self {
        case .write(let path, let text), .append(let path, let text):
            var flags = O_WRONLY | O_CREAT
            if case .append = self { flags |= O_APPEND } else { flags |= O_TRUNC }
            let fd = open(p(path), flags | O_NOFOLLOW | O_NONBLOCK, 0o644)   // a fifo must not block
            if fd < 0 { return errno }
            defer { close(fd) }
            let n = text.withCString { Glibc.write(fd, $0, strlen($0)) }
            return n < 0 ? errno : 0
        case .truncate(let path, let size):
            var st = stat()
            if lstat(p(path), &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK { return ELOOP }
            return check(Glibc.truncate(p(path), off_t(size)))
        case .mkdir(let path): return check(Glibc.mkdir(p(path), 0o755))
        case .rmdir(let path): return check(Glibc.rmdir(p(path)))
        case .unlink(let path): return check(Glibc.unlink(p(path)))
        case .rename(let a, let b, let flags):
            return Self.errnoOf {
                let (da, na) = try Self.split(p(a)), (db, nb) = try Self.split(p(b))
                try da.rename(na, to: db, as: nb, flags: flags)
            }
        case .symlink(let path, let target): return check(Glibc.symlink(target, p(path)))
        case .link(let a, let b): return check(Glibc.link(p(a), p(b)))
        case .chmod(let path, let mode):
            var st = stat()
            if lstat(p(path), &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK { return 0 }
            return check(Glibc.chmod(p(path), mode_t(mode)))
        case .chown(let path, let uid): return check(Glibc.lchown(p(path), uid, uid))
        case .touch(let path, let seconds):
            var times = [timespec(tv_sec: Int(seconds), tv_nsec: 0), timespec(tv_sec: Int(seconds), tv_nsec: 0)]
            return check(utimensat(AT_FDCWD, p(path), &times, AT_SYMLINK_NOFOLLOW))
        case .setxattr(let path, let value):
            var st = stat()
            if lstat(p(path), &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK { return 0 }
            return Self.errnoOf { try System.open(p(path), [.path, .noFollow]).setExtendedAttribute("user.fuzz", Array(value.utf8)) }
        case .removexattr(let path):
            var st = stat()
            if lstat(p(path), &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK { return 0 }
            return Self.errnoOf { try System.open(p(path), [.path, .noFollow]).removeExtendedAttribute("user.fuzz") }
        case .mkfifo(let path): return check(Glibc.mkfifo(p(path), 0o644))
        }
    }

    /// What `mv` does when rename(2) answers EXDEV, shaped like Strata's
    /// rename of a lower directory: the tree is rebuilt at the new name, objects
    /// already in the upper keep their inode (linked across, as rename moves
    /// them), lower ones are copied (`cp -a` of one file: hard links to lower
    /// files break, as every copy-up breaks them). Rename's own checks come
    /// first (a non-empty directory target is ENOTEMPTY, a non-directory target
    /// ENOTDIR). An exchange goes through a temporary name.
    static func emulateRename(root: String, upper: String, _ a: String, _ b: String, exchange: Bool) -> Int32 {
        if exchange {
            let temporary = ".exchange-\(getpid())"
            for (from, to) in [(a, temporary), (b, a), (temporary, b)] {
                let r = move(root: root, upper: upper, from, to)
                if r != 0 { return r }
            }
            return 0
        }
        var st = stat()
        if lstat(root + "/" + b, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else { return ENOTDIR }
            if Glibc.rmdir(root + "/" + b) != 0 { return errno }
        }
        return move(root: root, upper: upper, a, b)
    }

    private static func move(root: String, upper: String, _ a: String, _ b: String) -> Int32 {
        let from = root + "/" + a, to = root + "/" + b
        var st = stat()
        guard lstat(from, &st) == 0 else { return errno }
        if (st.st_mode & S_IFMT) != S_IFDIR {
            var up = stat()
            let inUpper = lstat(upper + "/" + a, &up) == 0 && (up.st_mode & S_IFMT) != S_IFCHR
            if inUpper {
                guard Glibc.link(from, to) == 0 else { return errno }
            } else {
                guard (try? Shell.run(["cp", "-a", from, to]).succeeded) == true else { return EIO }
            }
            return Glibc.unlink(from) == 0 ? 0 : errno
        }
        guard Glibc.mkdir(to, 0o700) == 0 else { return errno }
        guard let dir = opendir(from) else { return errno }
        var names: [String] = []
        while let e = readdir(dir) {
            let name = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(dir)
        for name in names {
            // Kernel overlayfs lists stray whiteouts of non-merged directories; lookup says ENOENT.
            var child = stat()
            if lstat(from + "/" + name, &child) != 0 && errno == ENOENT { continue }
            let r = move(root: root, upper: upper, a + "/" + name, b + "/" + name)
            if r != 0 { return r }
        }
        if let value = try? System.open(from, [.path, .noFollow]).extendedAttribute("user.fuzz") {
            _ = try? System.open(to, [.path, .noFollow]).setExtendedAttribute("user.fuzz", value)
        }
        _ = lchown(to, st.st_uid, st.st_gid)
        _ = Glibc.chmod(to, st.st_mode & 0o7777)
        return Glibc.rmdir(from) == 0 ? 0 : errno
    }

    static func errnoOf(_ body: () throws -> Void) -> Int32 {
        do { try body(); return 0 } catch let error as SystemCallError { return error.errno } catch { return EIO }
    }

    /// The parent directory (opened) and last component of an absolute path.
    static func split(_ path: String) throws -> (Descriptor, FileName) {
        let slash = path.lastIndex(of: "/")!
        return (try System.open(String(path[..<slash]), [.directory]), FileName(String(path[path.index(after: slash)...])))
    }
}
