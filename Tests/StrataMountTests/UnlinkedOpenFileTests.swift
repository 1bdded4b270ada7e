import Foundation
import Glibc
import LayerSystem
import StrataTestSupport
import Testing

/// A file whose name is gone while it is open (unlinked, or renamed over):
/// fstat, ftruncate, fallocate, fchmod, fsetxattr, futimens and writes on the
/// descriptor keep reaching the file, with the results kernel overlayfs gives.
/// (Regression: Strata answered ENOENT to ftruncate/fchmod/fsetxattr/futimens
/// and a stale size to fstat, so stress-ng's fallocate, sync-file, copy-file
/// and file-ioctl stressors failed on a Strata mount; temporary files that are
/// unlinked at once, as databases make them, were broken.)
@Suite("Open files whose name is gone", .serialized,
       .enabled(if: TestEnvironment.hasFuse, "skipped: /dev/fuse is absent on this machine"),
       .enabled(if: TestEnvironment.hasKernelOverlay, "skipped: kernel overlayfs cannot be mounted here (needs root)"))
struct UnlinkedOpenFileTests {
    enum Removal: String, CaseIterable, Sendable { case unlink, renameOver }

    @Test("operations on an open file after its name is gone equal the kernel's",
          arguments: [(Removal.unlink, false), (.unlink, true), (.renameOver, false), (.renameOver, true)])
    func operationsAfterRemoval(removal: Removal, lowerFile: Bool) throws {
        let tmp = TemporaryDirectory(prefix: "unl")
        let lower = tmp.makeDirectory("l")
        try Fixture.build([.file("lower", "from the lower layer\n"), .file("other", "replacement\n")], at: lower)
        let mount = tmp.makeDirectory("m")
        let kernel = try Mounts.withKernelOverlay(lowers: [lower], upper: tmp.makeDirectory("ku"), work: tmp.makeDirectory("kw"), at: mount) {
            Self.transcript(mount, removal: removal, lowerFile: lowerFile)
        }
        let strata = try Mounts.withStrata(["--lower", lower, "--upper", tmp.makeDirectory("su"), "--work", tmp.makeDirectory("sw")], at: mount) {
            Self.transcript(mount, removal: removal, lowerFile: lowerFile)
        }
        #expect(strata == kernel, "strata:\n\(strata.joined(separator: "\n"))\nkernel overlayfs:\n\(kernel.joined(separator: "\n"))")
    }

    /// Opens a file (a new one, or the lower one: copied up by the open),
    /// removes its name, and records what each call on the descriptor answers.
    static func transcript(_ root: String, removal: Removal, lowerFile: Bool) -> [String] {
        var out: [String] = []
        let path = root + (lowerFile ? "/lower" : "/new")
        let fd = open(path, lowerFile ? O_RDWR : O_RDWR | O_CREAT, 0o644)
        guard fd >= 0 else { return ["open: errno \(errno)"] }
        defer { close(fd) }
        func record(_ label: String, _ rc: Int32) { out.append("\(label): \(rc == 0 ? "ok" : "errno \(errno)")") }
        func stat(_ label: String) {
            var st = Glibc.stat()
            if fstat(fd, &st) != 0 { out.append("\(label) fstat: errno \(errno)"); return }
            // mtime: the value futimens set, or "recent" (the two runs are seconds apart).
            let mtime = st.st_mtim.tv_sec == 1_600_000_000 ? "set" : abs(st.st_mtim.tv_sec - time(nil)) < 60 ? "recent" : "\(st.st_mtim.tv_sec)"
            out.append("\(label) fstat: size=\(st.st_size) mode=\(String(st.st_mode, radix: 8)) nlink=\(st.st_nlink) mtime=\(mtime)")
        }
        out.append("write: \("0123456789".withCString { write(fd, $0, 10) })")
        switch removal {
        case .unlink: record("unlink", unlink(path))
        case .renameOver: record("rename over", rename(root + "/other", path))
        }
        stat("after removal")
        record("ftruncate 4096", ftruncate(fd, 4096))
        stat("after ftruncate")
        let allocated = posix_fallocate(fd, 0, 1 << 20)
        out.append("fallocate 1 MiB: \(allocated == 0 ? "ok" : "errno \(allocated)")")
        stat("after fallocate")
        record("fchmod 600", fchmod(fd, 0o600))
        var times = [timespec(tv_sec: 1_600_000_000, tv_nsec: 0), timespec(tv_sec: 1_600_000_000, tv_nsec: 0)]
        record("futimens", futimens(fd, &times))
        stat("after fchmod, futimens")
        let object = Descriptor(owning: dup(fd))
        do {
            try object.setExtendedAttribute("user.t", Array("v".utf8))
            out.append("setxattr: ok, reads \(String(decoding: try object.extendedAttribute("user.t") ?? [], as: UTF8.self))")
        } catch { out.append("setxattr: \(error)") }
        out.append("pwrite at 2 MiB: \("x".withCString { pwrite(fd, $0, 1, 2 << 20) })")
        stat("after pwrite")
        var byte: UInt8 = 0
        out.append("pread at 5: \(pread(fd, &byte, 1, 5)) \(byte)")
        // The names left in the merged view.
        out.append("names: \(((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted())")
        return out
    }
}
