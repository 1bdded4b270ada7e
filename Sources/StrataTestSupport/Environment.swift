import Foundation

/// What the machine allows, for tests that must skip with a clear reason.
public enum TestEnvironment {
    /// Whether /dev/fuse exists (FUSE tests skip without it).
    public static var hasFuse: Bool { FileManager.default.fileExists(atPath: "/dev/fuse") }
    public static var isRoot: Bool { geteuid() == 0 }
    /// Whether kernel overlayfs can be mounted here (root and the module present).
    public static let hasKernelOverlay: Bool = {
        guard geteuid() == 0 else { return false }
        let probe = TemporaryDirectory(prefix: "ovlprobe")
        let l1 = probe.makeDirectory("a"), l2 = probe.makeDirectory("b"), m = probe.makeDirectory("m")
        guard (try? Shell.run(["mount", "-t", "overlay", "overlay", "-o", "lowerdir=\(l1):\(l2)", m]))?.succeeded == true else { return false }
        _ = try? Shell.run(["umount", m])
        return true
    }()
}
