import Foundation
import LayerSystem
import StrataTestSupport
import Testing

/// Bad input to `strata mount`: one line on stderr naming the problem, a
/// non-zero exit, and nothing mounted.
@Suite("strata mount rejects bad input", .serialized)
struct MountBadInputTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        /// Arguments after `strata mount`; `$T` is replaced by the temporary directory.
        var arguments: [String]
        /// A phrase the error line must contain.
        var message: String
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "layer does not exist", arguments: ["--lower", "$T/missing:$T/base", "$T/mnt"], message: "layer $T/missing cannot be used: no such file or directory"),
        Case(name: "layer is a file", arguments: ["--lower", "$T/file", "$T/mnt"], message: "layer $T/file is not a directory"),
        Case(name: "no layers", arguments: ["$T/mnt"], message: "no lower layers given"),
        Case(name: "empty lowerdir", arguments: ["-o", "lowerdir=", "$T/mnt"], message: "mount option lowerdir needs a value"),
        Case(name: "empty layer in list", arguments: ["--lower", "$T/base::$T/app", "$T/mnt"], message: "empty layer path"),
        Case(name: "mountpoint missing", arguments: ["--lower", "$T/base", "$T/nowhere"], message: "mountpoint $T/nowhere cannot be used: no such file or directory"),
        Case(name: "mountpoint is a file", arguments: ["--lower", "$T/base", "$T/file"], message: "mountpoint $T/file is not a directory"),
        Case(name: "mountpoint is a layer", arguments: ["--lower", "$T/app:$T/base", "$T/base"], message: "is the layer $T/base"),
        Case(name: "mountpoint inside a layer", arguments: ["--lower", "$T/base", "$T/base/inner"], message: "is inside the layer $T/base"),
        Case(name: "mountpoint contains a layer", arguments: ["--lower", "$T/mnt/nested", "$T/mnt"], message: "contains the layer $T/mnt/nested"),
        Case(name: "unknown -o option", arguments: ["-o", "lowerdir=$T/base,frobnicate", "$T/mnt"], message: "unknown mount option: frobnicate"),
        Case(name: "bad timeout", arguments: ["-o", "lowerdir=$T/base,timeout=soon", "$T/mnt"], message: "timeout=soon: not a number of seconds"),
        Case(name: "upper without work", arguments: ["--lower", "$T/base", "--upper", "$T/app", "$T/mnt"], message: "needs a work directory"),
        Case(name: "malformed uidmapping", arguments: ["-o", "lowerdir=$T/base,uidmapping=0:1000", "$T/mnt"], message: "uidmapping=0:1000: expected STORED:SHOWN:COUNT"),
        Case(name: "non-numeric squash_to_uid", arguments: ["-o", "lowerdir=$T/base,squash_to_uid=root", "$T/mnt"], message: "squash_to_uid=root: expected a numeric ID"),
        Case(name: "xattr_permissions", arguments: ["-o", "lowerdir=$T/base,xattr_permissions=2", "$T/mnt"], message: "xattr_permissions=2 is not supported"),
        Case(name: "bad fsync", arguments: ["-o", "lowerdir=$T/base,fsync=yes", "$T/mnt"], message: "fsync=yes: expected 0 or 1"),
        Case(name: "bad writeback", arguments: ["-o", "lowerdir=$T/base,writeback=2", "$T/mnt"], message: "writeback=2: expected 0 or 1"),
        Case(name: "bad readdirplus", arguments: ["-o", "lowerdir=$T/base,readdirplus=maybe", "$T/mnt"], message: "readdirplus=maybe: expected auto, yes or no"),
        Case(name: "max_write too small", arguments: ["-o", "lowerdir=$T/base,max_write=100", "$T/mnt"], message: "max_write=100: expected 4096…1048576 bytes"),
        Case(name: "bad dir_cache_entries", arguments: ["-o", "lowerdir=$T/base,dir_cache_entries=-1", "$T/mnt"], message: "dir_cache_entries=-1: expected a number of names"),
    ]

    @Test(arguments: cases)
    func rejected(_ c: Case) throws {
        let tmp = TemporaryDirectory(prefix: "cli")
        for d in ["base", "app", "mnt", "mnt/nested", "base/inner"] { tmp.makeDirectory(d) }
        FileManager.default.createFile(atPath: tmp.sub("file"), contents: Data("x".utf8))
        let arguments = c.arguments.map { $0.replacingOccurrences(of: "$T", with: tmp.path) }
        let result = try StrataBinary.run(["mount"] + arguments)
        defer { for m in ["mnt", "base", "base/inner", "nowhere"] { Mounts.unmountStrata(tmp.sub(m)) } }
        #expect(result.status != 0)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "expected one line, got: \(result.stderr)")
        #expect(result.stderr.contains(c.message.replacingOccurrences(of: "$T", with: tmp.path)), "stderr: \(result.stderr)")
        #expect(result.stderr.hasPrefix("strata: "))
        for m in ["mnt", "base", "base/inner"] {
            #expect(MountTable.mount(at: tmp.sub(m)) == nil, "something was mounted at \(m)")
        }
    }

    @Test("missing /dev/fuse is reported, nothing mounted",
          .enabled(if: TestEnvironment.isRoot && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare"), "skipped: needs root and unshare"))
    func missingFuseDevice() throws {
        let tmp = TemporaryDirectory(prefix: "cli")
        tmp.makeDirectory("base"); tmp.makeDirectory("mnt")
        // A private mount namespace whose /dev has no fuse node.
        let script = "mount -t tmpfs none /dev && exec \(StrataBinary.path) mount --lower \(tmp.sub("base")) \(tmp.sub("mnt"))"
        let result = try Shell.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script])
        #expect(result.status != 0)
        #expect(result.stderr.contains("cannot use /dev/fuse: no such file or directory"), "stderr: \(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1)
        #expect(MountTable.mount(at: tmp.sub("mnt")) == nil)
    }

    @Test("help describes every option with its default")
    func helpShowsDefaults() throws {
        let help = try StrataBinary.run(["mount", "--help"])
        #expect(help.succeeded)
        for needle in ["--lower", "--upper", "--work", "-o", "--timeout", "(default: 3600)", "--threads", "(default: 8)",
                       "--foreground", "--allow-other", "lowerdir=", "upperdir=", "workdir="] {
            #expect(help.stdout.contains(needle), "mount --help lacks \(needle)")
        }
        let root = try StrataBinary.run(["--help"])
        for sub in ["mount", "unmount", "diff"] { #expect(root.stdout.contains(sub)) }
        let unmount = try StrataBinary.run(["unmount", "--help"])
        #expect(unmount.stdout.contains("--lazy") && unmount.stdout.contains("(default: 10)"))
    }

    @Test("unmount of something that is not a Strata mount is refused")
    func unmountRefusesOthers() throws {
        let tmp = TemporaryDirectory(prefix: "cli")
        tmp.makeDirectory("plain")
        let r = try StrataBinary.run(["unmount", tmp.sub("plain")])
        #expect(r.status != 0 && r.stderr.contains("is not a mountpoint"))
        let proc = try StrataBinary.run(["unmount", "/proc"])
        #expect(proc.status != 0 && proc.stderr.contains("is not a Strata mount"))
    }
}
