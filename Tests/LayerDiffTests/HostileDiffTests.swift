import Foundation
import Glibc
import LayerDiff
import LayerSystem
import StrataTestSupport
import Testing

/// `strata diff` on damaged and hostile layers: device look-alikes of
/// whiteouts, a fifo where a directory is expected, opaque xattrs with other
/// values, junk overlay xattrs, lower redirects and xwhiteouts, trees deep
/// enough to overflow a stack, files vanishing mid-walk, roots that are not
/// directories. Every mode must print the list the kernel's views give (the
/// two-tree walk over kernel overlayfs mounts, docker's own method) or fail
/// with one `strata: …` line and exit status 2, never a wrong list with exit 0.
@Suite("strata diff on hostile layers", .serialized, rootOnly, strataBinaryPresent)
struct HostileDiffTests {
    static func build(_ script: String, _ arguments: String...) throws {
        let r = try Shell.run(["/bin/sh", "-ec", script] + arguments)
        guard r.succeeded else { throw TestFailure(message: "building the layers failed: \(r.stderr)") }
    }

    /// The two-tree walk over read-only kernel mounts of the lowers and of
    /// upper + lowers: the list docker would print for these layers.
    static func kernelTwoTree(lowers: [String], upper: String, in t: TemporaryDirectory) throws -> Shell.Result {
        let lowerView = t.makeDirectory("kv-lower"), merged = t.makeDirectory("kv-merged")
        return try Mounts.withKernelOverlay(lowers: lowers, at: lowerView) {
            try Mounts.withKernelOverlay(lowers: [upper] + lowers, at: merged) {
                try StrataBinary.run(["diff", lowerView, merged])
            }
        }
    }

    /// Either the expected list with exit 0, or one `strata: …` line with exit 2.
    static func expectRightListOrOneLineError(_ r: Shell.Result, expected: String, _ label: String,
                                              sourceLocation: SourceLocation = #_sourceLocation) {
        if r.status == 0 {
            #expect(r.stdout == expected, "\(label): exit 0 with a wrong list:\n\(r.stdout)\nexpected:\n\(expected)",
                    sourceLocation: sourceLocation)
        } else {
            #expect(r.status == 2 && r.stderr.hasPrefix("strata: ") && r.stderr.split(separator: "\n").count == 1,
                    "\(label): exit \(r.status), stderr: \(r.stderr)", sourceLocation: sourceLocation)
        }
    }

    /// `$0` = top lower, `$1` = bottom lower, `$2` = upper.
    static let damagedScript = #"""
        cd "$1"
        echo b > f01; echo b > f10; echo b > f00blk
        mkdir dir_to_blk; echo c > dir_to_blk/child
        mkdir etc; echo h > etc/hosts; echo p > etc/passwd
        for d in op_n op_e op_yy op_x op_y op_sp; do mkdir $d; echo low > $d/low; done
        mkdir lowerdev; mknod lowerdev/c01 c 0 1; mknod lowerdev/c10 c 1 0; mknod lowerdev/b00 b 0 0; echo k > lowerdev/keep
        mkdir fifodir; mkfifo fifodir/p; echo f > fifodir/f
        cd "$0"
        mkdir junk; setfattr -n trusted.overlay.origin -v 0xffff00 junk; setfattr -n trusted.overlay.impure -v 0x00ff junk
        echo j > junk/f; setfattr -n trusted.overlay.nlink -v 0xdeadbeef junk/f
        mknod shadow01 c 0 1
        cd "$2"
        mknod f01 c 0 1; mknod f10 c 1 0; mknod f00blk b 0 0; mknod dir_to_blk b 0 0
        mkfifo etc
        for d in op_n op_e op_yy op_x op_y op_sp; do mkdir $d; echo top > $d/top; done
        setfattr -n trusted.overlay.opaque -v n op_n
        setfattr -n trusted.overlay.opaque -v '""' op_e
        setfattr -n trusted.overlay.opaque -v yy op_yy
        setfattr -n trusted.overlay.opaque -v x op_x
        setfattr -n trusted.overlay.opaque -v y op_y
        setfattr -n trusted.overlay.opaque -v 0x7920 op_sp
        mkdir orig; setfattr -n trusted.overlay.origin -v 0x00ff01 orig; echo x > orig/f
        mkdir junk; setfattr -n trusted.overlay.origin -v 0x0102 junk; echo more > junk/new
        mkdir lowerdev; echo x > lowerdev/c01; mknod lowerdev/b00 c 0 0; mknod lowerdev/keep c 0 0
        mkdir fifodir; mknod fifodir/p c 0 0; mkfifo fifodir/f
        """#

    @Test("look-alike whiteouts, a fifo where a directory was, odd opaque values, junk xattrs: every mode gives the kernel's list",
          kernelOverlay, .enabled(if: TestEnvironment.hasFuse, "skipped: /dev/fuse is absent"))
    func damagedLayersInEveryMode() throws {
        let t = TemporaryDirectory(prefix: "hdd")
        let l1 = t.makeDirectory("l1"), l2 = t.makeDirectory("l2"), upper = t.makeDirectory("u")
        try Self.build(Self.damagedScript, l1, l2, upper)
        let lowers = [l1, l2]
        let oracle = try Self.kernelTwoTree(lowers: lowers, upper: upper, in: t)
        try #require(oracle.status == 0, "the kernel two-tree walk failed: \(oracle.stderr)")
        // The premise: the kernel shows devices with other numbers as devices, a fifo over a
        // directory hides it, and only opaque=y hides the lower children.
        for line in ["C /f01", "C /f10", "C /f00blk", "C /dir_to_blk", "C /etc", "D /op_y/low", "C /lowerdev/c01", "D /lowerdev/b00"] {
            #expect(oracle.stdout.split(separator: "\n").contains(Substring(line)), "kernel list lacks \(line):\n\(oracle.stdout)")
        }
        #expect(!oracle.stdout.contains("D /op_yy/low") && !oracle.stdout.contains("/etc/"))

        let walk = try StrataBinary.run(["diff", "--lower", lowers.joined(separator: ":"), "--upper", upper])
        #expect(walk.status == 0 && walk.stdout == oracle.stdout, "upper walk:\n\(walk.stdout)\(walk.stderr)\nkernel:\n\(oracle.stdout)")

        // The same layers as a Docker overlay2 store (l/ short links, a lower file).
        let store = t.makeDirectory("store")
        try Self.build(#"""
            cd "$0"; mkdir -p l A B C
            ln -s "$1" A/diff; ln -s "$2" B/diff; ln -s "$3" C/diff
            ln -s ../A/diff l/LA; ln -s ../B/diff l/LB
            printf 'l/LB:l/LA' > C/lower; printf 'l/LA' > B/lower
            """#, store, l2, l1, upper)
        let docker = try StrataBinary.run(["diff", "--docker-layer", store + "/C"])
        #expect(docker.status == 0 && docker.stdout == oracle.stdout, "--docker-layer:\n\(docker.stdout)\(docker.stderr)")

        // A live Strata mount over the damaged upper (the mount does not change it).
        let work = t.makeDirectory("w"), mount = t.makeDirectory("m")
        let live = try Mounts.withStrata(["--lower", lowers.joined(separator: ":"), "--upper", upper, "--work", work], at: mount) {
            try StrataBinary.run(["diff", mount])
        }
        #expect(live.status == 0 && live.stdout == oracle.stdout, "MOUNTPOINT:\n\(live.stdout)\(live.stderr)")
        // JSON names the same paths.
        let json = try StrataBinary.run(["diff", "--format", "json", "--lower", lowers.joined(separator: ":"), "--upper", upper])
        let paths = try json.stdout.split(separator: "\n").map { line -> String in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            return "\(object["kind"]!) \(object["path"]!)"
        }
        #expect(paths.joined(separator: "\n") + "\n" == oracle.stdout)
    }

    @Test("a lower directory renamed with redirect_dir (the kernel follows it): one-line error, never a wrong list", kernelOverlay)
    func lowerRedirect() throws {
        let t = TemporaryDirectory(prefix: "hdr")
        let l1 = t.makeDirectory("l1"), l2 = t.makeDirectory("l2"), upper = t.makeDirectory("u")
        try Self.build(#"""
            cd "$1"; mkdir orig; echo o > orig/of; echo k > orig/keep
            cd "$0"; mkdir moved; setfattr -n trusted.overlay.redirect -v /orig moved
            cd "$2"; mkdir moved; mknod moved/of c 0 0
            """#, l1, l2, upper)
        let oracle = try Self.kernelTwoTree(lowers: [l1, l2], upper: upper, in: t)
        #expect(oracle.status == 0 && oracle.stdout == "C /moved\nD /moved/of\n", "the kernel follows the redirect: \(oracle.stdout)")
        let walk = try StrataBinary.run(["diff", "--lower", "\(l1):\(l2)", "--upper", upper])
        Self.expectRightListOrOneLineError(walk, expected: oracle.stdout, "lower redirect")
        #expect(walk.stderr.contains("redirect"), "\(walk.stderr)")
        // A redirect in the bottom layer leads nowhere: no error.
        let bottomOnly = try StrataBinary.run(["diff", "--lower", l1, "--upper", upper])
        #expect(bottomOnly.status == 0, "\(bottomOnly.stderr)")
    }

    @Test("lower xwhiteouts (opaque=x, overlay.whiteout files) hide names, as in the kernel's lower view", kernelOverlay)
    func lowerExtendedWhiteouts() throws {
        let t = TemporaryDirectory(prefix: "hdx")
        let l1 = t.makeDirectory("l1"), l2 = t.makeDirectory("l2"), upper = t.makeDirectory("u")
        try Self.build(#"""
            cd "$1"; mkdir xw op; echo b > xw/a; echo b > xw/b; echo b > xw/c; echo b > op/gone
            cd "$0"; mkdir xw op
            setfattr -n trusted.overlay.opaque -v x xw
            touch xw/a; setfattr -n trusted.overlay.whiteout -v '""' xw/a
            touch xw/c; setfattr -n trusted.overlay.whiteout -v '""' xw/c
            setfattr -n trusted.overlay.opaque -v x op
            touch op/gone; setfattr -n trusted.overlay.whiteout -v '""' op/gone
            cd "$2"; mkdir xw; echo new > xw/a; mknod xw/b c 0 0
            mkdir op; setfattr -n trusted.overlay.opaque -v y op; echo n > op/n
            """#, l1, l2, upper)
        let oracle = try Self.kernelTwoTree(lowers: [l1, l2], upper: upper, in: t)
        try #require(oracle.status == 0, "\(oracle.stderr)")
        #expect(oracle.stdout == "C /op\nA /op/n\nC /xw\nA /xw/a\nD /xw/b\n", "kernel: \(oracle.stdout)")
        let walk = try StrataBinary.run(["diff", "--lower", "\(l1):\(l2)", "--upper", upper])
        Self.expectRightListOrOneLineError(walk, expected: oracle.stdout, "lower xwhiteouts")
    }

    @Test("junk metacopy and redirect xattrs: the kernel's list or a one-line error, never a trap", kernelOverlay)
    func junkMetacopyAndRedirect() throws {
        for (index, script) in [
            #"cd "$1"; echo low > meta; cd "$0"; echo top > meta; setfattr -n trusted.overlay.metacopy -v 0xdeadbeef meta; cd "$2"; echo u > other"#,
            #"cd "$1"; echo low > meta; cd "$2"; echo up > meta; setfattr -n trusted.overlay.metacopy -v 0xdeadbeefdeadbeef meta"#,
            #"cd "$1"; mkdir d; echo l > d/l; cd "$2"; mkdir d; setfattr -n trusted.overlay.redirect -v 0x01ff006a756e6b0a7365636f6e64 d"#,
            #"cd "$1"; mkdir d; echo l > d/l; cd "$2"; mkdir d; setfattr -n trusted.overlay.redirect -v ../../../../.. d; mknod d/l c 0 0"#,
        ].enumerated() {
            let t = TemporaryDirectory(prefix: "hdj")
            let l1 = t.makeDirectory("l1"), l2 = t.makeDirectory("l2"), upper = t.makeDirectory("u")
            try Self.build(script, l1, l2, upper)
            let oracle = try Self.kernelTwoTree(lowers: [l1, l2], upper: upper, in: t)
            for arguments in [["--lower", "\(l1):\(l2)", "--upper", upper], ["--strict", "--lower", "\(l1):\(l2)", "--upper", upper]] {
                let walk = try StrataBinary.run(["diff"] + arguments)
                #expect(walk.status == 0 || walk.status == 2, "case \(index): exit \(walk.status) (a trap?): \(walk.stderr)")
                #expect(walk.stderr.split(separator: "\n").count <= 1, "case \(index): more than one error line: \(walk.stderr)")
                if oracle.status == 0 && walk.status == 0 && !arguments.contains("--strict") {
                    #expect(walk.stdout == oracle.stdout, "case \(index): \(walk.stdout) vs kernel \(oracle.stdout)")
                }
            }
        }
    }

    @Test("trees nested past the limit end in a one-line error; 3,000 levels diff fine in both engines (they used to overflow the stack)")
    func deepTrees() throws {
        let t = TemporaryDirectory(prefix: "hdeep")
        let lower = t.makeDirectory("l"), upper = t.makeDirectory("u"), deep = t.makeDirectory("deep")
        let nest = #"""
            python3 -c 'import os, sys
            fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
            for i in range(int(sys.argv[2])):
                os.mkdir("d", dir_fd=fd)
                nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd); os.close(fd); fd = nfd' "$0" "$1"
            """#
        try Self.build(nest, upper, "3000")
        let walk = try StrataBinary.run(["diff", "--lower", lower, "--upper", upper])
        #expect(walk.status == 0 && walk.stdout.split(separator: "\n").count == 3000, "upper walk: \(walk.status) \(walk.stderr.prefix(200))")
        let trees = try StrataBinary.run(["diff", lower, upper])
        #expect(trees.status == 0 && trees.stdout == walk.stdout, "two-tree walk: \(trees.status) \(trees.stderr.prefix(200))")

        // Past the limit (in process, so the 100 MB of lines above it are not collected).
        try Self.build(nest, deep, "10050")
        for source in [try UpperWalk(lowerPaths: [lower], upperPath: deep) as any ChangeSource,
                       try TreeWalk(oldPath: lower, newPath: deep)] {
            var count = 0
            #expect {
                try source.forEachChange { _ in count += 1 }
            } throws: { error in
                (error as? DiffError)?.code == .unsupported && "\(error)".contains("nested more than 10000 levels")
            }
            #expect(count == 10_000)
        }
        let cli = try Shell.run(["sh", "-c", "exec \"$0\" diff --lower \"$1\" --upper \"$2\" > /dev/null", StrataBinary.path, lower, deep])
        #expect(cli.status == 2 && cli.stderr.split(separator: "\n").count == 1 && cli.stderr.count < 400,
                "exit \(cli.status): \(cli.stderr.prefix(500))")
    }

    @Test("files vanishing and appearing mid-walk: each run is a list of one instant's names or a one-line error")
    func filesVanishingMidWalk() throws {
        let t = TemporaryDirectory(prefix: "hdv")
        let lower = t.makeDirectory("l"), upper = t.makeDirectory("u")
        try Self.build(#"""
            cd "$0"; mkdir d; i=0; while [ $i -lt 300 ]; do echo l > d/low$i; i=$((i+1)); done
            cd "$1"; mkdir d; i=0; while [ $i -lt 1500 ]; do echo s > d/stable$i; i=$((i+1)); done
            mknod d/low0 c 0 0
            """#, lower, upper)
        let base = try StrataBinary.run(["diff", "--lower", lower, "--upper", upper])
        try #require(base.status == 0)
        let required = Set(base.stdout.split(separator: "\n").map(String.init))
        let allowed = required.union((0..<200).map { "A /d/flip\($0)" })
        // A background writer (ours, stopped by pid) creates and removes 200 names in a loop.
        let flipper = Process()
        flipper.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        flipper.arguments = ["python3", "-c", """
            import os, sys
            d = sys.argv[1]
            while True:
                for i in range(200):
                    p = f"{d}/flip{i}"
                    open(p, "w").close()
                for i in range(200):
                    os.unlink(f"{d}/flip{i}")
            """, upper + "/d"]
        try flipper.run()
        defer {
            kill(flipper.processIdentifier, SIGKILL)
            flipper.waitUntilExit()
        }
        var outcomes: [Int32: Int] = [:]
        for round in 0..<30 {
            let arguments = round % 2 == 0 ? ["diff", "--lower", lower, "--upper", upper] : ["diff", lower, upper]
            let r = try StrataBinary.run(arguments)
            outcomes[r.status, default: 0] += 1
            if r.status == 0 {
                let lines = Set(r.stdout.split(separator: "\n").map(String.init))
                if round % 2 == 0 {
                    #expect(lines.isSuperset(of: required) && lines.isSubset(of: allowed),
                            "round \(round): lines outside any instant's list: \(lines.subtracting(allowed).prefix(5)), missing \(required.subtracting(lines).prefix(5))")
                } else {
                    // The two-tree walk of the raw directories: the flipping names are A, the rest fixed.
                    #expect(lines.allSatisfy { !$0.hasPrefix("D /d/flip") && !$0.hasPrefix("C /d/flip") }, "round \(round)")
                }
            } else {
                #expect(r.status == 2 && r.stderr.hasPrefix("strata: ") && r.stderr.split(separator: "\n").count == 1,
                        "round \(round): exit \(r.status): \(r.stderr)")
            }
        }
        print("filesVanishingMidWalk: exit statuses \(outcomes.sorted { $0.key < $1.key })")
    }

    @Test("roots that are fifos, devices, dangling or looping links: one line, exit 2, no hang")
    func badRoots() throws {
        let t = TemporaryDirectory(prefix: "hdb")
        let lower = t.makeDirectory("l"), upper = t.makeDirectory("u")
        try Fixture.build([.file("f", "x")], at: upper)
        try Self.build(#"""
            cd "$0"; mkfifo fifo; mknod null c 1 3; ln -s nowhere dangling; ln -s loop loop
            mkdir -p store/X/diff store/l; ln -s ../l/LOOP store/l/LOOP; printf 'l/LOOP' > store/X/lower
            mkdir -p store/Y/diff; printf 'l/NOWHERE' > store/Y/lower
            """#, t.path)
        for (arguments, word) in [
            (["diff", "--lower", lower, "--upper", t.sub("fifo")], "not a directory"),
            (["diff", "--lower", t.sub("fifo"), "--upper", upper], "fifo"),
            (["diff", "--lower", t.sub("null"), "--upper", upper], "null"),
            (["diff", "--lower", lower, "--upper", t.sub("dangling")], "does not exist"),
            (["diff", "--lower", t.sub("loop"), "--upper", upper], "loop"),
            (["diff", t.sub("fifo"), upper], "not a directory"),
            (["diff", lower, t.sub("loop")], "loop"),
            (["diff", "--docker-layer", t.sub("store/X")], "l/LOOP"),
            (["diff", "--docker-layer", t.sub("store/Y")], "l/NOWHERE"),
        ] {
            let r = try Shell.run(["timeout", "-s", "KILL", "20", StrataBinary.path] + arguments, timeout: 40)
            #expect(r.status != 137, "\(arguments): hung")
            expectOneLineFailure(r, mentioning: word)
        }
    }

    @Test("names and xattr values with newlines keep an error on one line")
    func errorsStayOneLine() throws {
        let t = TemporaryDirectory(prefix: "hdn")
        chmod(t.path, 0o755)
        let lower = t.makeDirectory("l"), upper = t.makeDirectory("u"), secret = t.makeDirectory("s")
        try Self.build(#"""
            mkdir "$1/d"; mkdir "$0/d"; setfattr -n trusted.overlay.redirect -v "$(printf 'evil\nsecond line')" "$0/d"
            mkdir "$2/$(printf 'x\ny')"; chmod 700 "$2/$(printf 'x\ny')"
            """#, upper, lower, secret)
        let redirect = try StrataBinary.run(["diff", "--lower", lower, "--upper", upper])
        expectOneLineFailure(redirect, mentioning: "evil\\nsecond line")
        let unreadable = try Shell.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                        StrataBinary.path, "diff", "--lower", lower, "--upper", secret])
        expectOneLineFailure(unreadable, mentioning: "/x\\ny")
    }
}
