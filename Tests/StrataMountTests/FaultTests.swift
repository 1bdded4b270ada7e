import Foundation
import Glibc
import LayerSystem
import StrataTestSupport
import Testing

/// The mount going away under a running workload: the kernel aborting the
/// FUSE connection, a lazy unmount, SIGTERM to the daemon mid-write. Each
/// time the daemon exits by itself, the upper stays consistent (kernel
/// overlayfs over it agrees with a new Strata mount), the work directory is
/// clean after that new mount, and no manual cleanup is needed.
@Suite("Faults under a running workload", .serialized,
       .enabled(if: TestEnvironment.hasFuse, "skipped: /dev/fuse is absent on this machine"),
       .enabled(if: TestEnvironment.hasKernelOverlay, "skipped: kernel overlayfs cannot be mounted here (needs root)"))
struct FaultTests {
    /// A writer and a reader that keep the mount busy for five seconds (each stops at its first error).
    static let workload = #"""
        exec > /dev/null 2>&1
        cd "$1" || exit 1
        end=$(( $(date +%s) + 5 ))
        (i=0; while [ $(date +%s) -lt $end ]; do i=$((i + 1)); dd if=/dev/zero of=big$((i % 4)) bs=1M count=4 conv=fsync status=none || exit 1; done) &
        (while [ $(date +%s) -lt $end ]; do cat lower/* > /dev/null || exit 1; ls -R . > /dev/null || exit 1; done) &
        wait
        """#

    @Test("kernel aborts the connection (fusectl abort)")
    func connectionAbort() throws {
        let layers = CrashTests.Layers()
        try Self.makeLower(layers.lower)
        let fusectl = "/sys/fs/fuse/connections"
        var mountedFusectl = false
        if MountTable.mount(at: fusectl) == nil {
            mountedFusectl = try Shell.run(["mount", "-t", "fusectl", "fusectl", fusectl]).succeeded
        }
        defer { if mountedFusectl { _ = try? Shell.run(["umount", fusectl]) } }
        try Mounts.withStrata(layers.arguments, at: layers.mount) {
            let pid = try #require(Mounts.daemonPID(of: layers.mount))
            let device = try #require(MountTable.mount(at: layers.mount)?.device)   // MAJOR:MINOR
            let connection = "\(fusectl)/\(device.split(separator: ":").last!)/abort"
            try Self.underWorkload(layers.mount) {
                try "1".write(toFile: connection, atomically: false, encoding: .utf8)
            }
            #expect(Self.exits(pid), "the daemon did not exit after the connection was aborted")
        }
        try Self.checkRecovery(layers)
    }

    @Test("lazy unmount under load")
    func lazyUnmount() throws {
        let layers = CrashTests.Layers()
        try Self.makeLower(layers.lower)
        try Mounts.withStrata(layers.arguments, at: layers.mount) {
            let pid = try #require(Mounts.daemonPID(of: layers.mount))
            let status = try Self.underWorkload(layers.mount) { () throws in
                let r = try Shell.run(["umount", "-l", layers.mount])
                #expect(r.succeeded, "umount -l: \(r.stderr)")
            }
            // Files open at the unmount stay served; the workload sees no error from that.
            #expect(status == 0, "the workload failed after a lazy unmount (status \(status))")
            #expect(Self.exits(pid), "the daemon did not exit once the lazily unmounted mount was idle")
        }
        try Self.checkRecovery(layers)
    }

    @Test("SIGTERM to the daemon mid-write")
    func terminateMidWrite() throws {
        let layers = CrashTests.Layers()
        try Self.makeLower(layers.lower)
        try Mounts.withStrata(layers.arguments, at: layers.mount) {
            let pid = try #require(Mounts.daemonPID(of: layers.mount))
            // One long write through one open file: SIGTERM detaches the mount, the open
            // file keeps being served until it is closed, then the daemon exits.
            let writer = Process()
            writer.executableURL = URL(fileURLWithPath: "/bin/sh")
            writer.arguments = ["-c", "exec dd if=/dev/zero of='\(layers.mount)/streamed' bs=1M count=120 conv=fsync status=none"]
            try writer.run()
            for _ in 0..<500 where ((try? FileManager.default.attributesOfItem(atPath: "\(layers.upper)/streamed"))?[.size] as? Int ?? 0) < 10 << 20 {
                usleep(10_000)
            }
            kill(pid, SIGTERM)
            writer.waitUntilExit()
            #expect(writer.terminationStatus == 0, "the write in progress at SIGTERM failed")
            #expect(Self.exits(pid), "the daemon did not exit after SIGTERM once the file was closed")
            let size = (try? FileManager.default.attributesOfItem(atPath: "\(layers.upper)/streamed"))?[.size] as? Int
            #expect(size == 120 << 20, "the file written across SIGTERM is \(size ?? -1) bytes, not 120 MiB")
        }
        try Self.checkRecovery(layers)
    }

    // MARK: Helpers

    static func makeLower(_ lower: String) throws {
        try Shell.sh("mkdir -p '\(lower)/lower' && for i in $(seq 50); do head -c 65536 /dev/urandom > '\(lower)/lower/f'$i; done")
            .expectSuccess()
    }

    /// Starts the workload, lets it run a moment, does `fault`, and returns the
    /// workload's exit status. (posix_spawn, not Foundation's Process: its exit
    /// detection can wait for descendants.)
    @discardableResult
    static func underWorkload(_ mount: String, _ fault: () throws -> Void) throws -> Int32 {
        let pid = try ProcessControl.spawnInNewSession("/bin/sh", arguments: ["sh", "-c", workload, "-", mount])
        usleep(700_000)
        try fault()
        // Bound the wait: a hang here is a failure, not a stuck suite.
        for _ in 0..<3000 where ProcessControl.isRunning(pid) { usleep(10_000) }
        if ProcessControl.isRunning(pid) {
            kill(-pid, SIGKILL)
            Issue.record("the workload hung after the fault")
        }
        return try ProcessControl.waitForExit(pid)
    }

    /// Whether `pid` is gone (or a zombie) within 10 s.
    static func exits(_ pid: Int32) -> Bool {
        for _ in 0..<1000 {
            if !ProcessControl.isRunning(pid) { return true }
            usleep(10_000)
        }
        return false
    }

    /// `strata mount` works again with no manual cleanup, the work directory is
    /// clean, and kernel overlayfs over the same upper shows the same tree.
    static func checkRecovery(_ layers: CrashTests.Layers) throws {
        var options = TreeDump.Options()
        options.directorySizes = false
        let view = try Mounts.withStrata(layers.arguments, at: layers.mount) { () throws -> [String] in
            #expect(CrashTests.workDebris(layers.work).isEmpty, "work directory not cleaned: \(CrashTests.workDebris(layers.work))")
            return try TreeDump.lines(of: layers.mount, options: options)
        }
        try Mounts.withKernelOverlay(lowers: [layers.lower], upper: layers.upper, work: layers.work, at: layers.mount) {
            expectSame(view, try TreeDump.lines(of: layers.mount, options: options), "kernel overlayfs over the same upper")
        }
    }
}
