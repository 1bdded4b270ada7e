import Foundation
import Glibc
import StrataTestSupport
import Testing

/// Many writers at once through the multithreaded daemon give what kernel
/// overlayfs gives: parallel `tar -x` into two directories, writers to
/// different regions of one file and to files of their own, appends that
/// copy lower files up, and renames racing with lookups and listings in one
/// directory.
@Suite("Concurrent writers equal kernel overlayfs", .serialized,
       .enabled(if: TestEnvironment.hasFuse, "skipped: /dev/fuse is absent on this machine"),
       .enabled(if: TestEnvironment.hasKernelOverlay, "skipped: kernel overlayfs cannot be mounted here (needs root)"))
struct ConcurrencyTests {
    /// The workload, run with the mount as the current directory. `$1` is the tarball.
    static let workload = #"""
        set -e
        mkdir x1 x2
        tar -xf "$1" -C x1 & tar -xf "$1" -C x2 &
        for i in 0 1 2 3; do
            (yes "writer $i" | head -c 1048576 | dd of=shared bs=65536 seek=$((i * 16)) conv=notrunc status=none) &
            (yes "own $i" | head -c 300000 > own$i) &
            (for j in $(seq $i 4 199); do echo "appended by $i" >> busy/f$j; done) &
            (for j in $(seq $i 4 199); do mv busy/g$j busy/renamed$j; done) &
        done
        (for k in $(seq 30); do ls -l busy > /dev/null; stat busy/g1 busy/renamed1 > /dev/null 2>&1 || true; done) &
        (for k in $(seq 30); do find x1 x2 > /dev/null 2>&1 || true; done) &
        wait
        """#

    @Test("parallel tar, writers, copy-ups and renames")
    func parallelWorkload() throws {
        let tmp = TemporaryDirectory(prefix: "conc")
        let lowers = try LayerStackGenerator(seed: 11, layers: 2, maxDepth: 3).writeStack(format: .overlay, under: tmp.sub("l"))
        try Shell.run(["python3", "-c", """
            import os, sys, random
            random.seed(3)
            busy, src = sys.argv[1], sys.argv[2]
            os.makedirs(busy, exist_ok=True)
            for j in range(200):
                open(f"{busy}/f{j}", "w").write(f"lower file {j}\\n" * random.randint(1, 50))
                open(f"{busy}/g{j}", "w").write(f"to be renamed {j}\\n")
            for i in range(1500):
                d = f"{src}/t{i % 40}/u{i % 7}"
                os.makedirs(d, exist_ok=True)
                open(f"{d}/file{i}", "w").write(str(i) * random.randint(1, 3000))
            """, lowers[0] + "/busy", tmp.sub("src")]).expectSuccess()
        let tarball = tmp.sub("t.tar")
        try Shell.run(["tar", "-cf", tarball, "-C", tmp.sub("src"), "."]).expectSuccess()

        let kernel = tmp.makeDirectory("k"), strata = tmp.makeDirectory("s")
        let ku = tmp.makeDirectory("ku"), kw = tmp.makeDirectory("kw"), su = tmp.makeDirectory("su"), sw = tmp.makeDirectory("sw")
        var options = TreeDump.Options()
        options.directorySizes = false
        options.mtimes = false
        let expected = try Mounts.withKernelOverlay(lowers: lowers, upper: ku, work: kw, at: kernel) { () throws -> [String] in
            try Shell.run(["sh", "-c", "cd \"$0\" && sh -c \"$1\" - \"$2\"", kernel, Self.workload, tarball], timeout: 120).expectSuccess()
            return try TreeDump.lines(of: kernel, options: options)
        }
        let actual = try Mounts.withStrata(["--lower", lowers.joined(separator: ":"), "--upper", su, "--work", sw], at: strata) { () throws -> [String] in
            try Shell.run(["sh", "-c", "cd \"$0\" && sh -c \"$1\" - \"$2\"", strata, Self.workload, tarball], timeout: 120).expectSuccess()
            return try TreeDump.lines(of: strata, options: options)
        }
        expectSame(actual, expected, "merged views after the concurrent workload")
        var structure = options
        structure.xattrs = false
        structure.linkCounts = false
        expectSame(try TreeDump.lines(of: su, options: structure), try TreeDump.lines(of: ku, options: structure), "upper directories")
    }
}
