import Foundation
import Glibc
import LayerSystem
import StrataTestSupport
import Testing

/// SIGKILL of the daemon in the middle of a long change: after `strata
/// unmount` and a new mount, the view is one that existed before or after the
/// change (never a torn file or a half-made directory), every byte fsynced
/// before the kill is there, the work directory holds no debris, and kernel
/// overlayfs over the same upper shows the same tree.
@Suite("Daemon killed mid-change (SIGKILL)", .serialized,
       .enabled(if: TestEnvironment.hasFuse, "skipped: /dev/fuse is absent on this machine"),
       .enabled(if: TestEnvironment.hasKernelOverlay, "skipped: kernel overlayfs cannot be mounted here (needs root)"))
struct CrashTests {
    struct Layers {
        let tmp = TemporaryDirectory(prefix: "crash")
        var lower: String { tmp.sub("l") }
        var upper: String { tmp.sub("u") }
        var work: String { tmp.sub("w") }
        var mount: String { tmp.sub("m") }
        var arguments: [String] { ["--lower", lower, "--upper", upper, "--work", work] }
        init() { for d in ["l", "u", "w", "m"] { _ = tmp.makeDirectory(d) } }
    }

    var dumpOptions: TreeDump.Options {
        var o = TreeDump.Options()
        o.directorySizes = false
        return o
    }

    @Test("kill while a 512 MiB file is copied up")
    func killDuringCopyUp() throws {
        let layers = Layers()
        try Shell.sh("head -c 512M /dev/urandom > '\(layers.lower)/big' && mkdir '\(layers.lower)/rest' && echo keep > '\(layers.lower)/rest/small'")
            .expectSuccess()
        try Mounts.withStrata(layers.arguments, at: layers.mount) {
            try Self.writeSynced("\(layers.mount)/rest/durable", "fsynced before the kill\n")
            try Self.killDaemon(of: layers.mount, while: "echo appended >> '\(layers.mount)/big'") {
                Self.workFile(in: layers.work, largerThan: 1 << 20)
            }
        }
        let strataView = try Mounts.withStrata(layers.arguments, at: layers.mount) { () throws -> [String] in
            #expect(Self.workDebris(layers.work).isEmpty, "work directory not cleaned: \(Self.workDebris(layers.work))")
            #expect(try Shell.run(["cmp", "\(layers.lower)/big", "\(layers.mount)/big"]).succeeded,
                    "big file differs from the lower after the kill (torn copy-up visible)")
            #expect(try String(contentsOfFile: "\(layers.mount)/rest/durable", encoding: .utf8) == "fsynced before the kill\n")
            return try TreeDump.lines(of: "\(layers.mount)/rest", options: dumpOptions)
        }
        #expect(!FileManager.default.fileExists(atPath: "\(layers.upper)/big"), "a partial copy reached the upper layer")
        try Mounts.withKernelOverlay(lowers: [layers.lower], upper: layers.upper, work: layers.work, at: layers.mount) {
            expectSame(strataView, try TreeDump.lines(of: "\(layers.mount)/rest", options: dumpOptions), "kernel overlayfs over the same upper")
            #expect(try Shell.run(["cmp", "\(layers.lower)/big", "\(layers.mount)/big"]).succeeded)
        }
    }

    @Test("kill while a lower directory of 3000 files is renamed")
    func killDuringDirectoryRename() throws {
        let layers = Layers()
        try Self.makeTree("\(layers.lower)/tree", files: 3000)
        let original = try TreeDump.lines(of: "\(layers.lower)/tree", options: dumpOptions)
        try Mounts.withStrata(layers.arguments, at: layers.mount) {
            try Self.killDaemon(of: layers.mount, while: "mv '\(layers.mount)/tree' '\(layers.mount)/moved'") {
                Self.count(in: "\(layers.upper)/tree", atLeast: 3)   // three of 30 subdirectories being copied up
            }
        }
        let strataView = try Mounts.withStrata(layers.arguments, at: layers.mount) { () throws -> [String] in
            #expect(Self.workDebris(layers.work).isEmpty, "work directory not cleaned: \(Self.workDebris(layers.work))")
            let names = try FileManager.default.contentsOfDirectory(atPath: layers.mount).sorted()
            #expect(names == ["moved"] || names == ["tree"], "after the kill the view shows \(names): neither before nor after the rename")
            if let name = names.first {
                expectSame(try TreeDump.lines(of: "\(layers.mount)/\(name)", options: dumpOptions), original, "the directory after the kill")
            }
            return try TreeDump.lines(of: layers.mount, options: dumpOptions)
        }
        try Mounts.withKernelOverlay(lowers: [layers.lower], upper: layers.upper, work: layers.work, at: layers.mount) {
            expectSame(strataView, try TreeDump.lines(of: layers.mount, options: dumpOptions), "kernel overlayfs over the same upper")
        }
    }

    @Test("kill during rm -rf of a lower tree of 3000 files")
    func killDuringRecursiveRemove() throws {
        let layers = Layers()
        try Self.makeTree("\(layers.lower)/tree", files: 3000)
        let original = Set(try TreeDump.lines(of: layers.lower, options: dumpOptions))
        try Mounts.withStrata(layers.arguments, at: layers.mount) {
            try Self.killDaemon(of: layers.mount, while: "rm -rf '\(layers.mount)/tree'") {
                Self.count(in: "\(layers.upper)/tree", atLeast: 5)   // five of 30 subdirectories being emptied
            }
        }
        let strataView = try Mounts.withStrata(layers.arguments, at: layers.mount) { () throws -> [String] in
            #expect(Self.workDebris(layers.work).isEmpty, "work directory not cleaned: \(Self.workDebris(layers.work))")
            let lines = try TreeDump.lines(of: layers.mount, options: dumpOptions)
            // Whatever is left is untouched lower content (directories lose entries, so
            // only non-directories are compared line for line).
            let files = lines.filter { !$0.contains(" dir ") }
            #expect(files.allSatisfy(original.contains), "changed entries after the kill: \(files.filter { !original.contains($0) }.prefix(5))")
            #expect(files.count < original.count, "rm -rf removed nothing before the kill")
            return lines
        }
        try Mounts.withKernelOverlay(lowers: [layers.lower], upper: layers.upper, work: layers.work, at: layers.mount) {
            expectSame(strataView, try TreeDump.lines(of: layers.mount, options: dumpOptions), "kernel overlayfs over the same upper")
        }
    }

    // MARK: Helpers

    /// Runs `script` in the background, waits until `ready` holds (at most
    /// 60 s), SIGKILLs the daemon of `mountPoint`, and reaps the script.
    static func killDaemon(of mountPoint: String, while script: String, until ready: () -> Bool) throws {
        let pid = try #require(Mounts.daemonPID(of: mountPoint), "no daemon registered for \(mountPoint)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        var reached = false
        for _ in 0..<3000 {
            if ready() { reached = true; break }
            if !process.isRunning { break }
            usleep(20_000)
        }
        kill(pid, SIGKILL)
        process.waitUntilExit()
        #expect(reached, "the change finished (or never started) before the kill point was reached: \(script)")
    }

    /// Writes `text` to a new file and fsyncs it.
    static func writeSynced(_ path: String, _ text: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        try #require(fd >= 0, "cannot create \(path): errno \(errno)")
        defer { close(fd) }
        #expect(text.withCString { write(fd, $0, strlen($0)) } == text.utf8.count)
        #expect(fsync(fd) == 0)
    }

    static func makeTree(_ root: String, files: Int) throws {
        try Shell.run(["python3", "-c", """
            import os, sys, random
            random.seed(7)
            root, n = sys.argv[1], int(sys.argv[2])
            for i in range(n):
                d = f"{root}/d{i % 30:02d}"
                os.makedirs(d, exist_ok=True)
                with open(f"{d}/f{i}", "w") as f: f.write(str(i) * random.randint(1, 40))
            """, root, String(files)]).expectSuccess()
    }

    /// Names the daemon left in the work directory (its `work` subdirectory).
    /// (The shared whiteout every whiteout links to is not debris.)
    static func workDebris(_ work: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "\(work)/work")) ?? []).filter { $0 != "#strata-whiteout" }
    }

    static func workFile(in work: String, largerThan size: Int) -> Bool {
        workDebris(work).contains { name in
            ((try? FileManager.default.attributesOfItem(atPath: "\(work)/work/\(name)"))?[.size] as? Int ?? 0) > size
        }
    }

    /// Whether `directory` has at least `count` entries.
    static func count(in directory: String, atLeast count: Int) -> Bool {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory))?.count ?? 0) >= count
    }
}

extension Shell.Result {
    func expectSuccess(sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(succeeded, "command failed (\(status)): \(stderr)", sourceLocation: sourceLocation)
    }
}
