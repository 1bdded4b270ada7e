import Foundation
import StrataTestSupport
import Testing

/// A short soak (`scripts/soak.sh`, `make soak` runs 10 minutes): stress-ng's
/// verifying filesystem stressors, fio with crc32c verification and find/tar
/// readers through one writable mount at once. No verification error, the
/// daemon's descriptors back to their start level once the load's files are
/// removed and the kernel forgot its inodes, RSS growth within the script's
/// bound. `STRATA_SOAK_DURATION=N` runs N seconds of load (30 by default).
@Suite("Soak: stress-ng, fio and readers through a writable mount",
       .enabled(if: TestEnvironment.hasFuse, "skipped: /dev/fuse is absent on this machine"),
       .enabled(if: TestEnvironment.hasKernelOverlay, "skipped: needs root and kernel overlayfs (the readers' reference)"))
struct SoakTests {
    @Test("load through the mount: no verification error, no descriptor leak, bounded RSS")
    func shortSoak() throws {
        let duration = Int(ProcessInfo.processInfo.environment["STRATA_SOAK_DURATION"] ?? "") ?? 30
        // SIGTERM first (the script's trap unmounts and removes what it made); the
        // outer timeout only guards against a script that ignores it.
        let r = try Shell.run(["timeout", "--kill-after=60", "\(duration + 600)", "bash", "\(StrataBinary.packageRoot)/scripts/soak.sh"],
                              environment: ["DURATION": "\(duration)", "STRATA_BIN": StrataBinary.path],
                              timeout: Double(duration + 900))
        #expect(r.succeeded, "scripts/soak.sh failed (exit \(r.status)):\n\(r.stdout)\n\(r.stderr.suffix(6000))")
        print(r.stdout, terminator: "")
    }
}
