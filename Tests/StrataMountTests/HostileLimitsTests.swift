import Foundation
import Glibc
import LayerSystem
import StrataTestSupport
import Testing

/// Layers at the limits: 255-byte names, paths past PATH_MAX (a tree of
/// 255-byte directory names 17 deep, walked with `openat`), a lower tree 3,000
/// directories deep (copy-up of its leaf and rename of its top: both recursed
/// once per level and overflowed a worker's stack, killing the daemon), and a
/// lower directory of 100,000 entries (1,000,000 with `STRATA_HOSTILE_LONG=1`).
/// Results equal kernel overlayfs's, ENAMETOOLONG included; never a trap.
@Suite("Hostile layers: long names, PATH_MAX, deep trees, huge directories", .serialized,
       .enabled(if: TestEnvironment.hasFuse, "skipped: /dev/fuse is absent on this machine"),
       .enabled(if: TestEnvironment.isRoot, "skipped: needs root (kernel overlayfs as the oracle)"))
struct HostileLimitsTests {
    /// Python helpers for the operation scripts: `t(label, f)` prints `label: ok [value]`
    /// or `label: ERRNO`; `descend(k)` opens the first `k` directories of `names`.
    static let pythonPrelude = #"""
        import os, errno, sys, subprocess
        def t(label, f):
            try:
                r = f()
                print(f"{label}: ok" + ("" if r is None else f" {r}"))
            except OSError as e:
                print(f"{label}: {errno.errorcode.get(e.errno, e.errno)}")
        def descend(k, top=".", names=None):
            fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
            for n in names[:k]:
                nfd = os.open(n, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = nfd
            return fd
        def read(fd, name):
            f = os.open(name, os.O_RDONLY, dir_fd=fd)
            try: return os.read(f, 200).decode().strip().replace("\n", " ")
            finally: os.close(f)
        def append(fd, name, data):
            f = os.open(name, os.O_WRONLY | os.O_APPEND, dir_fd=fd)
            os.write(f, data)
            os.close(f)
            return read(fd, name)

        """#

    /// Runs `script` (after `pythonPrelude`) with `directory` as its working directory, bounded.
    static func python(in directory: String, _ script: String, arguments: [String] = [], timeout: Int = 120) throws -> WriteLimitsTranscript {
        let r = try Shell.run(["timeout", "-s", "KILL", "\(timeout)", "sh", "-c", "cd \"$0\" && shift && exec python3 -c \"$@\"",
                               directory, "-", pythonPrelude + script] + arguments, timeout: Double(timeout + 30))
        #expect(r.status != 137, "the script timed out (a hang)")
        #expect(r.stderr.isEmpty, "script errors: \(r.stderr)")
        return WriteLimitsTranscript(lines: r.stdout)
    }

    // MARK: 255-byte names and PATH_MAX

    static let longNames = #"names = [f"{i:03d}" + "L" * 252 for i in range(17)]; leaf = "f" * 255"# + "\n"

    static let buildLongTree = "import os, sys\n" + longNames + #"""
        root = sys.argv[1]
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        for i, n in enumerate(names):
            os.mkdir(n, dir_fd=fd)
            nfd = os.open(n, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
            if i == 8:
                f = os.open("mid", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd); os.write(f, b"middle\n"); os.close(f)
        f = os.open(leaf, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd); os.write(f, b"deepest\n"); os.close(f)
        open(os.path.join(root, "n" * 255), "w").write("n255\n")
        os.mkdir(os.path.join(root, "d" * 255))
        open(os.path.join(root, "d" * 255, "e" * 255), "w").write("e255\n")
        open(os.path.join(root, "gone" + "g" * 251), "w").write("g\n")
        open(os.path.join(root, "short"), "w").write("s\n")
        """#

    static let longOperations = longNames + #"""
        t("path length of the deepest file", lambda: len("/".join(names + [leaf])))
        t("stat by absolute path", lambda: os.stat(os.path.abspath("/".join(names + [leaf]))).st_size)
        t("stat by relative path", lambda: os.stat("/".join(names + [leaf])).st_size)
        t("stat relative to depth 9", lambda: os.stat("/".join(names[9:] + [leaf]), dir_fd=descend(9, names=names)).st_size)
        t("read the deepest file by openat steps", lambda: read(descend(17, names=names), leaf))
        t("read the file at depth 9", lambda: read(descend(9, names=names), "mid"))
        t("append to the deepest file (copy-up of 17 dirs)", lambda: append(descend(17, names=names), leaf, b"more\n"))
        t("create a 255-byte name at the bottom", lambda: os.close(os.open("c" * 255, os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=descend(17, names=names))))
        t("create a 256-byte name", lambda: os.close(os.open("c" * 256, os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=descend(17, names=names))))
        t("lookup of a 256-byte name", lambda: os.lstat("n" * 256))
        t("mkdir a 255-byte name at the bottom", lambda: os.mkdir("m" * 255, dir_fd=descend(17, names=names)))
        t("rename a 255-byte lower file to another 255-byte name", lambda: os.rename("n" * 255, "r" * 255))
        t("rename it into the bottom", lambda: os.rename("r" * 255, "x" * 255, dst_dir_fd=descend(17, names=names)))
        t("unlink a 255-byte lower file (whiteout)", lambda: os.unlink("gone" + "g" * 251))
        t("unlink a 255-byte file in a 255-byte dir", lambda: os.unlink("d" * 255 + "/" + "e" * 255))
        t("rmdir the 255-byte dir", lambda: os.rmdir("d" * 255))
        t("symlink with a 4095-byte target", lambda: (os.symlink("t" * 4095, "longlink"), len(os.readlink("longlink")))[1])
        t("symlink with a 4096-byte target", lambda: os.symlink("t" * 4096, "longerlink"))
        t("find, entries", lambda: subprocess.run(["find", "."], capture_output=True).stdout.count(b"\n"))
        t("find, errors", lambda: subprocess.run(["find", "."], capture_output=True).stderr.count(b"\n"))
        t("listing at the bottom", lambda: sorted(n[:3] + str(len(n)) for n in os.listdir(descend(17, names=names))))
        t("getcwd at the bottom", lambda: (os.fchdir(descend(17, names=names)), len(os.getcwd()))[1])
        """#

    @Test("255-byte names and paths past PATH_MAX: the same results as kernel overlayfs, ENAMETOOLONG included")
    func longNamesAndPathMax() throws {
        let tmp = TemporaryDirectory(prefix: "hlong")
        let canary = try Canary(at: tmp.sub("outside"))
        let l1 = tmp.makeDirectory("l1"), l2 = tmp.makeDirectory("l2")
        try Hostile.build(#"python3 -c "$1" "$0""#, l2, Self.buildLongTree)
        var views: [WriteLimitsImplementation: [String]] = [:], uppers: [WriteLimitsImplementation: [String]] = [:]
        var strataUpper = ""
        let transcripts = try Hostile.onEach(lowers: [l1, l2], in: tmp) { side in
            let transcript = try Self.python(in: side.root, Self.longOperations)
            views[side.implementation] = try TreeDump.lines(of: side.root, options: Hostile.viewOptions)
            uppers[side.implementation] = try TreeDump.lines(of: side.upper, options: Hostile.upperOptions)
            if side.implementation == .strata {
                strataUpper = side.upper
                #expect(Hostile.answers(side.root), "the Strata mount stopped answering")
            }
            return transcript
        }
        Hostile.expectSameOutcomes(transcripts, "255-byte names and PATH_MAX")
        let strata = try #require(transcripts[.strata])
        for (label, expected) in [("stat by absolute path", "ENAMETOOLONG"), ("create a 256-byte name", "ENAMETOOLONG"),
                                  ("read the deepest file by openat steps", "ok deepest"),
                                  ("append to the deepest file (copy-up of 17 dirs)", "ok deepest more")] {
            #expect(strata.steps.first { $0.label == label }?.result == expected, "strata: \(label)")
        }
        if let k = views[.kernel], let s = views[.strata] { expectSame(s, k, "merged views") }
        if let k = uppers[.kernel], let s = uppers[.strata] { expectSame(s, k, "uppers") }

        // strata diff of that upper (paths past PATH_MAX in its output) equals the two-tree walk over kernel mounts.
        if TestEnvironment.hasKernelOverlay {
            let lowerView = tmp.makeDirectory("rv-lower"), mergedView = tmp.makeDirectory("rv-merged")
            let walk = try StrataBinary.run(["diff", "--lower", "\(l1):\(l2)", "--upper", strataUpper])
            let trees = try Mounts.withKernelOverlay(lowers: [l1, l2], at: lowerView) {
                try Mounts.withKernelOverlay(lowers: [strataUpper, l1, l2], at: mergedView) {
                    try StrataBinary.run(["diff", lowerView, mergedView])
                }
            }
            #expect(walk.status == 0 && trees.status == 0, "diff failed: \(walk.stderr) \(trees.stderr)")
            #expect(walk.stdout == trees.stdout, "upper walk and two-tree walk disagree on long paths")
            #expect(walk.stdout.split(separator: "\n").contains { $0.utf8.count > 4096 }, "expected change lines past PATH_MAX")
        }

        // With OCI whiteouts a 255-byte name cannot be deleted (`.wh.` + 255 bytes is too long):
        // ENAMETOOLONG, and the name stays, whole.
        let mount = tmp.makeDirectory("oci-m"), upper = tmp.makeDirectory("oci-u"), work = tmp.makeDirectory("oci-w")
        try Mounts.withStrata(["-o", "whiteout=oci", "--lower", "\(l1):\(l2)", "--upper", upper, "--work", work], at: mount) {
            let t = try Self.python(in: mount, #"""
                t("unlink a 255-byte lower name with OCI whiteouts", lambda: os.unlink("gone" + "g" * 251))
                t("still there", lambda: open("gone" + "g" * 251).read().strip())
                t("unlink a short lower name with OCI whiteouts", lambda: os.unlink("short"))
                t("unlink a 255-byte file in a 255-byte lower dir", lambda: os.unlink("d" * 255 + "/" + "e" * 255))
                """#)
            #expect(t.steps.map(\.result) == ["ENAMETOOLONG", "ok g", "ok", "ENAMETOOLONG"], "\(t.steps)")
        }
        canary.expectUnchanged("long names")
    }

    // MARK: A tree 3,000 directories deep

    static let depth = 3000

    @Test("a lower tree 3,000 directories deep: walk, copy-up of its leaf, rename, diff")
    func deepLowerTree() throws {
        let tmp = TemporaryDirectory(prefix: "hdeep")
        let canary = try Canary(at: tmp.sub("outside"))
        let l1 = tmp.makeDirectory("l1"), l2 = tmp.makeDirectory("l2")
        try Hostile.build(#"""
            python3 -c 'import os, sys
            fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
            os.mkdir("deep", dir_fd=fd); fd = os.open("deep", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            for i in range(int(sys.argv[2])):
                os.mkdir("d", dir_fd=fd)
                nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd); os.close(fd); fd = nfd
            f = os.open("leaf", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd); os.write(f, b"leaf\n"); os.close(f)' "$0" "$1"
            """#, l2, "\(Self.depth)")
        let operations = "names = [\"deep\"] + [\"d\"] * \(Self.depth)\n" + #"""
            t("read the leaf", lambda: read(descend(len(names), names=names), "leaf"))
            t("append to the leaf (copies every ancestor up)", lambda: append(descend(len(names), names=names), "leaf", b"more\n"))
            t("stat the leaf from depth 2000", lambda: os.stat("/".join(names[2000:] + ["leaf"]), dir_fd=descend(2000, names=names)).st_size)
            t("find, entries", lambda: subprocess.run(["find", "."], capture_output=True).stdout.count(b"\n"))
            t("create beside the leaf", lambda: os.close(os.open("new", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=descend(len(names), names=names))))
            """#
        var strataSide: Hostile.Side?
        var diffs: (walk: Shell.Result, trees: Shell.Result)?
        let transcripts = try Hostile.onEach(lowers: [l1, l2], in: tmp) { side in
            let transcript = try Self.python(in: side.root, operations)
            if side.implementation == .strata {
                strataSide = side
                #expect(Hostile.answers(side.root), "the Strata mount stopped answering after the deep copy-up")
                // strata diff of a 3,000-deep upper, both engines (each used to overflow its stack near 1,000 levels).
                let walk = try StrataBinary.run(["diff", side.root])
                var trees = walk
                if TestEnvironment.hasKernelOverlay {
                    let lowerView = tmp.makeDirectory("dv-lower"), mergedView = tmp.makeDirectory("dv-merged")
                    trees = try Mounts.withKernelOverlay(lowers: [l1, l2], at: lowerView) {
                        try Mounts.withKernelOverlay(lowers: [side.upper, l1, l2], at: mergedView) {
                            try StrataBinary.run(["diff", lowerView, mergedView])
                        }
                    }
                }
                diffs = (walk, trees)
                // Renaming the top of the deep lower tree copies it up whole (a Strata extension;
                // the kernel answers EXDEV): one level per loop iteration, not per stack frame.
                let moved = try Self.python(in: side.root, "names = [\"moved\"] + [\"d\"] * \(Self.depth)\n" + #"""
                    t("rename the deep tree's top", lambda: os.rename("deep", "moved"))
                    t("read the leaf at its new path", lambda: read(descend(len(names), names=names), "leaf"))
                    """#)
                #expect(moved.steps.map(\.result) == ["ok", "ok leaf more"], "\(moved.steps)")
                #expect(Hostile.answers(side.root), "the Strata mount stopped answering after the deep rename")
            }
            return transcript
        }
        Hostile.expectSameOutcomes(transcripts, "a 3,000-deep lower tree")
        let strata = try #require(transcripts[.strata])
        #expect(strata.steps.first?.result == "ok leaf")
        #expect(strata.steps.dropFirst().first?.result == "ok leaf more")
        if let (walk, trees) = diffs {
            #expect(walk.status == 0, "strata diff of the deep upper: \(walk.status) \(walk.stderr.prefix(300))")
            #expect(trees.status == 0, "two-tree diff of the deep views: \(trees.status) \(trees.stderr.prefix(300))")
            // C for every ancestor of the leaf, C for the leaf, A for the new file.
            #expect(walk.stdout.split(separator: "\n").count == Self.depth + 3)
            #expect(walk.stdout == trees.stdout)
        }
        _ = strataSide
        canary.expectUnchanged("deep tree")
    }

    // MARK: A huge lower directory

    static var hugeCount: Int { ProcessInfo.processInfo.environment["STRATA_HOSTILE_LONG"] == "1" ? 1_000_000 : 100_000 }

    @Test("a lower directory of 100,000 entries (1,000,000 with STRATA_HOSTILE_LONG=1): exact listing, stat, delete, create")
    func hugeDirectory() throws {
        let count = Self.hugeCount
        let tmp = TemporaryDirectory(prefix: "hhuge")
        let canary = try Canary(at: tmp.sub("outside"))
        let l1 = tmp.makeDirectory("l1"), l2 = tmp.makeDirectory("l2")
        let start = Date()
        try Hostile.build(#"""
            mkdir "$0/huge"
            python3 -c 'import os, sys
            fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
            for i in range(int(sys.argv[2])):
                os.mknod("f%07d" % i, 0o100644, dir_fd=fd)' "$0/huge" "$1"
            """#, l2, "\(count)")
        print("hugeDirectory: \(count) entries made in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        let mount = tmp.makeDirectory("m"), upper = tmp.makeDirectory("u"), work = tmp.makeDirectory("w")
        try Mounts.withStrata(["--lower", "\(l1):\(l2)", "--upper", upper, "--work", work], at: mount) {
            let huge = mount + "/huge"
            func listing() throws -> [Substring] {
                let r = try Shell.run(["timeout", "-s", "KILL", "300", "ls", "-f", huge], timeout: 330)
                #expect(r.succeeded, "ls -f failed: \(r.stderr)")
                return r.stdout.split(separator: "\n")
            }
            var t0 = Date()
            let first = try listing()
            print("hugeDirectory: first listing \(String(format: "%.2f", Date().timeIntervalSince(t0))) s")
            #expect(first.count == count + 2, "ls -f listed \(first.count) names, expected \(count) + . and ..")
            let expected = Set((0..<count).map { "f" + String(format: "%07d", $0) } + [".", ".."])
            #expect(Set(first.map(String.init)) == expected, "the listing is not exactly the layer's names")
            let one = try System.attributes(huge + "/f" + String(format: "%07d", count / 2), followSymlinks: false)
            #expect(one.kind == .regular && one.size == 0)
            let victim = huge + "/f" + String(format: "%07d", count - 1)
            #expect(unlink(victim) == 0, "unlink in the huge dir: \(String(cString: strerror(errno)))")
            #expect(access(victim, F_OK) != 0 && errno == ENOENT)
            t0 = Date()
            let second = try listing()
            print("hugeDirectory: listing after a delete \(String(format: "%.2f", Date().timeIntervalSince(t0))) s")
            #expect(second.count == count + 1 && !second.contains(Substring(victim.split(separator: "/").last!)))
            #expect(creat(huge + "/new", 0o644) >= 0)
            #expect(try listing().count == count + 2)
            // The upper holds the whiteout and the new file only.
            #expect(try FileManager.default.contentsOfDirectory(atPath: upper + "/huge").sorted() == ["f" + String(format: "%07d", count - 1), "new"])
            if let pid = Mounts.daemonPID(of: mount), let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) {
                print("hugeDirectory: daemon " + (status.split(separator: "\n").first { $0.hasPrefix("VmRSS") } ?? ""))
            }
            #expect(Hostile.answers(mount))
        }
        canary.expectUnchanged("huge directory")
    }
}
