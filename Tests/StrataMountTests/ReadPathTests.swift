import Foundation
import Glibc
import LayerSystem
import StrataTestSupport
import Testing

/// What a user of a read-only Strata mount notices: listings, reads,
/// executables, xattrs, statfs, EROFS, descriptors, signals.
@Suite("Read-only mount behaviour", .serialized,
       .enabled(if: TestEnvironment.hasFuse, "skipped: /dev/fuse is absent on this machine"))
struct ReadPathTests {
    /// base + app with both whiteout formats, an opaque dir and odd names.
    static func makeStack(_ tmp: TemporaryDirectory) throws -> (top: String, bottom: String) {
        let base = tmp.makeDirectory("base"), app = tmp.makeDirectory("app")
        try Fixture.build([
            .dir("etc", [.file("motd", "base motd\n"), .file("hostname", "base\n"), .file("issue", "issue\n")]),
            .dir("big", (0..<300).map { .file("f\($0)", "\($0)\n") }),
            .dir("opt", [.dir("legacy", [.file("README", "old\n")]), .file("keep", "k\n")]),
            .dir("var", [.dir("lib", [.dir("old", [.file("data", "d\n")]), .file("gone", "")])]),
            .file("name\nwith newline", "n\n"),
            .symlink("dangling", to: "/nonexistent/target"),
            .fifo("pipe"),
            .device("null", major: 1, minor: 3),
        ], at: base)
        try Fixture.build([
            .dir("etc", [.file("motd", "app motd\n"), .ociWhiteout("hostname"), .whiteout("issue")]),
            .dir("opt", [.whiteout("legacy")]),
            .dir("var", [.dir("lib", [.ociOpaque, .file("new", "new\n")])]),
            .xattr(on: "etc", name: "user.layer", value: "app"),
            .xattr(on: "etc", name: "trusted.overlay.impure", value: "y"),
        ], at: app)
        return (app, base)
    }

    @Test("merged listing: each name once, markers hidden, dot entries present")
    func mergedListing() throws {
        let tmp = TemporaryDirectory(prefix: "rp")
        let (top, bottom) = try Self.makeStack(tmp)
        let mnt = tmp.makeDirectory("m")
        try Mounts.withStrata(["--lower", "\(top):\(bottom)"], at: mnt) {
            #expect(try names(mnt + "/etc") == [".", "..", "motd"])
            #expect(try names(mnt + "/opt") == [".", "..", "keep"])
            #expect(try names(mnt + "/var/lib") == [".", "..", "new"])
            #expect(try String(contentsOfFile: mnt + "/etc/motd", encoding: .utf8) == "app motd\n")
            #expect(FileManager.default.fileExists(atPath: mnt + "/etc/hostname") == false)
            #expect(FileManager.default.fileExists(atPath: mnt + "/etc/.wh.hostname") == false)
            #expect(try names(mnt + "/big").count == 302)
            let root = try names(mnt)
            #expect(root.contains("name\nwith newline") && root.contains("dangling") && root.contains("pipe") && root.contains("null"))
            let link = try System.attributes(mnt + "/dangling", followSymlinks: false)
            #expect(link.kind == .symlink)
            #expect(try System.attributes(mnt + "/pipe", followSymlinks: false).kind == .fifo)
            let dev = try System.attributes(mnt + "/null", followSymlinks: false)
            #expect(dev.kind == .characterDevice && dev.deviceMajor == 1 && dev.deviceMinor == 3)
        }
    }

    @Test("readdir is stable across handles and seekable mid-directory")
    func readdirSeek() throws {
        let tmp = TemporaryDirectory(prefix: "rp")
        let (top, bottom) = try Self.makeStack(tmp)
        let mnt = tmp.makeDirectory("m")
        try Mounts.withStrata(["--lower", "\(top):\(bottom)"], at: mnt) {
            let first = try names(mnt + "/big", sorted: false)
            let second = try names(mnt + "/big", sorted: false)
            #expect(first == second)
            guard let dir = opendir(mnt + "/big") else { Issue.record("opendir failed"); return }
            defer { closedir(dir) }
            var prefix: [String] = []
            for _ in 0..<150 { if let e = readdir(dir) { prefix.append(direntName(e)) } }
            let mark = telldir(dir)
            var rest: [String] = []
            while let e = readdir(dir) { rest.append(direntName(e)) }
            #expect(prefix + rest == first)
            seekdir(dir, mark)
            var again: [String] = []
            while let e = readdir(dir) { again.append(direntName(e)) }
            #expect(again == rest)
            rewinddir(dir)
            var all: [String] = []
            while let e = readdir(dir) { all.append(direntName(e)) }
            #expect(all == first)
        }
    }

    /// Read-only mounts are openless by default (no OPEN/OPENDIR requests:
    /// reads come without a handle; KernelConformanceTests covers listings);
    /// `no_open=0` keeps the requests.
    @Test("large reads and executables from a lower layer", arguments: [[], ["-o", "no_open=0"]])
    func readsAndExec(options: [String]) throws {
        let tmp = TemporaryDirectory(prefix: "rp")
        let (top, bottom) = try Self.makeStack(tmp)
        var big = [UInt8](repeating: 0, count: 5 << 20)
        var random = SeededRandom(seed: 9)
        for i in stride(from: 0, to: big.count, by: 8) { withUnsafeBytes(of: random.next()) { for (j, b) in $0.enumerated() where i + j < big.count { big[i + j] = b } } }
        try Data(big).write(to: URL(fileURLWithPath: bottom + "/big.bin"))
        try FileManager.default.copyItem(atPath: "/bin/echo", toPath: top + "/echo")
        let mnt = tmp.makeDirectory("m")
        try Mounts.withStrata(["--lower", "\(top):\(bottom)"] + options, at: mnt) {
            let read = try Data(contentsOf: URL(fileURLWithPath: mnt + "/big.bin"))
            #expect(read.count == big.count)
            #expect(TreeDump.fnv1a(Array(read)) == TreeDump.fnv1a(big))
            let r = try Shell.run([mnt + "/echo", "from", "strata"])   // exec maps the binary
            #expect(r.succeeded && r.stdout == "from strata\n")
            let tail = try Shell.run(["dd", "if=\(mnt)/big.bin", "bs=1M", "skip=4", "status=none"])
            #expect(tail.succeeded)
        }
    }

    @Test("xattrs: visible ones shown, overlay-private ones hidden")
    func xattrs() throws {
        let tmp = TemporaryDirectory(prefix: "rp")
        let (top, bottom) = try Self.makeStack(tmp)
        let mnt = tmp.makeDirectory("m")
        try Mounts.withStrata(["--lower", "\(top):\(bottom)"], at: mnt) {
            let d = try System.open(mnt + "/etc", [.directory])
            let listed = try d.extendedAttributeNames().map { String(decoding: $0, as: UTF8.self) }
            #expect(listed == ["user.layer"])
            #expect(try d.extendedAttribute("user.layer") == Array("app".utf8))
            #expect(try d.extendedAttribute("trusted.overlay.impure") == nil)
            let opaque = try System.open(mnt + "/var/lib", [.directory])
            #expect(try opaque.extendedAttributeNames().isEmpty)
        }
    }

    @Test("writes fail with EROFS; statfs reports the top layer")
    func readOnly() throws {
        let tmp = TemporaryDirectory(prefix: "rp")
        let (top, bottom) = try Self.makeStack(tmp)
        let mnt = tmp.makeDirectory("m")
        try Mounts.withStrata(["--lower", "\(top):\(bottom)"], at: mnt) {
            #expect(open(mnt + "/new", O_CREAT | O_WRONLY, 0o644) == -1 && errno == EROFS)
            #expect(open(mnt + "/etc/motd", O_WRONLY) == -1 && errno == EROFS)
            #expect(mkdir(mnt + "/d", 0o755) == -1 && errno == EROFS)
            #expect(unlink(mnt + "/etc/motd") == -1 && errno == EROFS)
            #expect(chmod(mnt + "/etc/motd", 0o600) == -1 && errno == EROFS)
            #expect(access(mnt + "/etc/motd", R_OK) == 0)
            let a = try System.open(mnt, [.directory]).fileSystemStatistics()
            let b = try System.open(top, [.directory]).fileSystemStatistics()
            #expect(a.blocks == b.blocks && a.blockSize == b.blockSize)
        }
    }

    @Test("descriptors stay bounded by max_dir_fds; dropped caches are survived")
    func boundedDescriptors() throws {
        let tmp = TemporaryDirectory(prefix: "rp")
        let top = tmp.makeDirectory("top"), bottom = tmp.makeDirectory("bottom")
        let tree: [Fixture] = (0..<40).map { i in .dir("d\(i)", (0..<10).map { j in .dir("e\(j)", [.file("f", "\(i)/\(j)\n")]) }) }
        try Fixture.build(tree, at: top)
        try Fixture.build(tree, at: bottom)
        let mnt = tmp.makeDirectory("m")
        try Mounts.withStrata(["-o", "lowerdir=\(top):\(bottom),max_dir_fds=32,timeout=0"], at: mnt) {
            let r = try Shell.run(["find", mnt, "-type", "f"])
            #expect(r.stdout.split(separator: "\n").count == 400)
            let pid = try #require(daemonPID(mnt))
            let fds = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
            #expect(fds < 32 + 16, "daemon holds \(fds) descriptors")
            try "3".write(toFile: "/proc/sys/vm/drop_caches", atomically: false, encoding: .utf8)
            let again = try Shell.run(["find", mnt, "-type", "f"])
            #expect(again.stdout == r.stdout)
        }
    }

    @Test("max_nodes: a walk of 4000 names with the kernel asked to drop nodes past 1000 reads as kernel overlayfs")
    func boundedNodes() throws {
        let tmp = TemporaryDirectory(prefix: "rp-nodes")
        let top = tmp.makeDirectory("top"), bottom = tmp.makeDirectory("bottom")
        try Fixture.build((0..<20).map { i in .dir("d\(i)", (0..<100).map { j in .file("t\(j)", "\(i)/\(j)\n") }) }, at: top)
        try Fixture.build((0..<20).map { i in .dir("d\(i)", (0..<100).map { j in .file("b\(j)", "b\(i)/\(j)\n") } + [.whiteout("t\(i)")]) }, at: bottom)
        let kernel = tmp.makeDirectory("k"), strata = tmp.makeDirectory("s")
        let expected = try Mounts.withKernelOverlay(lowers: [top, bottom], at: kernel) { try TreeDump.lines(of: kernel) }
        try Mounts.withStrata(["-o", "lowerdir=\(top):\(bottom),max_nodes=1000,dir_cache_entries=500"], at: strata) {
            for _ in 0..<2 { expectSame(try TreeDump.lines(of: strata), expected, "walk under node reclaim") }
            let pid = try #require(daemonPID(strata))
            #expect(kill(pid, 0) == 0, "the daemon is alive")
        }
    }

    @Test("a layer path with a colon, and fuse-overlayfs -o syntax with a trailing comma")
    func colonsAndOptionSyntax() throws {
        let tmp = TemporaryDirectory(prefix: "rp")
        let odd = tmp.makeDirectory("with:colon"), base = tmp.makeDirectory("base")
        try Fixture.build([.file("top", "t\n")], at: odd)
        try Fixture.build([.file("bottom", "b\n")], at: base)
        let mnt = tmp.makeDirectory("m")
        let escaped = odd.replacingOccurrences(of: ":", with: "\\:")
        try Mounts.withStrata(["--lower", "\(escaped):\(base)"], at: mnt) { () throws in
            #expect(try names(mnt) == [".", "..", "bottom", "top"])
        }
        try Mounts.withStrata(["-o", "lowerdir=\(escaped):\(base),", "-o", "noatime,nodev"], at: mnt) { () throws in
            #expect(try names(mnt) == [".", "..", "bottom", "top"])
            #expect(MountTable.mount(at: mnt)?.fileSystemType == "fuse.strata")
        }
    }

    @Test("SIGTERM to the daemon unmounts cleanly; foreground mode serves until SIGINT")
    func signals() throws {
        let tmp = TemporaryDirectory(prefix: "rp")
        let (top, bottom) = try Self.makeStack(tmp)
        let mnt = tmp.makeDirectory("m")
        let r = try StrataBinary.run(["mount", "--lower", "\(top):\(bottom)", mnt])
        #expect(r.succeeded)
        defer { Mounts.unmountStrata(mnt) }
        let pid = try #require(daemonPID(mnt))
        kill(pid, SIGTERM)
        #expect(waitUntil { MountTable.mount(at: mnt) == nil }, "still mounted after SIGTERM")
        #expect(waitUntil { !ProcessControl.isRunning(pid) }, "daemon still running after SIGTERM")

        let process = Process()
        process.executableURL = URL(fileURLWithPath: StrataBinary.path)
        process.arguments = ["mount", "-f", "--lower", "\(top):\(bottom)", mnt]
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        #expect(waitUntil { MountTable.mount(at: mnt)?.fileSystemType == "fuse.strata" })
        #expect(try names(mnt + "/etc") == [".", "..", "motd"])
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(MountTable.mount(at: mnt) == nil)
    }
}

func names(_ path: String, sorted: Bool = true) throws -> [String] {
    guard let dir = opendir(path) else { throw SystemCallError("opendir", errno: errno) }
    defer { closedir(dir) }
    var out: [String] = []
    while let e = readdir(dir) { out.append(direntName(e)) }
    return sorted ? out.sorted() : out
}

func direntName(_ e: UnsafeMutablePointer<dirent>) -> String {
    withUnsafePointer(to: e.pointee.d_name) { p in
        p.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
    }
}

/// The PID of the daemon serving `mountpoint`, from its mount record.
func daemonPID(_ mountpoint: String) -> Int32? {
    guard let entry = MountTable.mount(at: mountpoint),
          let data = FileManager.default.contents(atPath: "/run/strata/mounts/\(entry.device).json"),
          let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
    return (object["pid"] as? NSNumber)?.int32Value
}

func waitUntil(seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}
