import Foundation
import LayerSystem

/// Mounting helpers that always unmount, also when the body throws.
public enum Mounts {
    public struct MountError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Mounts kernel overlayfs (the reference oracle) at `mountPoint`, runs `body`, unmounts.
    /// One lower and no upper is not allowed by the kernel: an empty second lower is added.
    public static func withKernelOverlay<T>(lowers: [String], upper: String? = nil, work: String? = nil,
                                            at mountPoint: String, extraOptions: String = "",
                                            _ body: () throws -> T) throws -> T {
        var lowers = lowers
        var scratch: TemporaryDirectory?
        if upper == nil && lowers.count == 1 {
            scratch = TemporaryDirectory(prefix: "ovlempty")
            lowers.append(scratch!.path)
        }
        var options = "lowerdir=" + lowers.map { $0.replacingOccurrences(of: ":", with: "\\:") }.joined(separator: ":")
        if let upper, let work { options += ",upperdir=\(upper),workdir=\(work)" }
        if !extraOptions.isEmpty { options += "," + extraOptions }
        let r = try Shell.run(["mount", "-t", "overlay", "overlay", "-o", options, mountPoint])
        guard r.succeeded else { throw MountError(description: "mount -t overlay failed: \(r.stderr)") }
        defer {
            _ = try? Shell.run(["umount", mountPoint])
            _ = scratch
        }
        return try body()
    }

    /// Mounts Strata with `arguments` (everything after `strata mount`, the
    /// mountpoint last), runs `body`, unmounts with `strata unmount` (falling
    /// back to a lazy `umount -l` of this mountpoint only).
    /// `$STRATA_TEST_MOUNT_OPTIONS` (e.g. `writeback`) is added as one more `-o`,
    /// to run whole suites under another kernel cache setting.
    public static func withStrata<T>(_ arguments: [String], at mountPoint: String, _ body: () throws -> T) throws -> T {
        var extra: [String] = []
        if let options = ProcessInfo.processInfo.environment["STRATA_TEST_MOUNT_OPTIONS"], !options.isEmpty { extra = ["-o", options] }
        let r = try StrataBinary.run(["mount"] + arguments + extra + [mountPoint])
        guard r.succeeded else { throw MountError(description: "strata mount failed (\(r.status)): \(r.stderr)") }
        defer { unmountStrata(mountPoint) }
        return try body()
    }

    /// The pid of the Strata daemon serving `mountPoint`, from Strata's mount
    /// registry (`/run/strata/mounts/*.json` for root).
    public static func daemonPID(of mountPoint: String) -> Int32? {
        let canonical = (try? System.canonicalPath(mountPoint)) ?? mountPoint
        guard let entry = MountTable.mount(at: canonical),
              let data = FileManager.default.contents(atPath: "/run/strata/mounts/\(entry.device).json"),
              let record = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              record["mountpoint"] as? String == canonical, let pid = record["pid"] as? Int else { return nil }
        return Int32(pid)
    }

    /// Unmounts a Strata mount this test made, waiting until it is gone.
    public static func unmountStrata(_ mountPoint: String) {
        let canonical = (try? System.canonicalPath(mountPoint)) ?? mountPoint
        if MountTable.mount(at: canonical) == nil { return }
        if (try? StrataBinary.run(["unmount", mountPoint]))?.succeeded != true {
            _ = try? Shell.run(["umount", "-l", mountPoint])
        }
        for _ in 0..<200 where MountTable.mount(at: canonical)?.fileSystemType.hasPrefix("fuse") == true {
            usleep(10_000)
        }
    }
}
