import Foundation
import Glibc
import LayerSystem
import StrataTestSupport
import Testing

// `strata mount` run by ordinary users, through the setuid fusermount3: the
// formats written to the upper (whiteouts, `user.overlay.opaque`), the mount
// record under the user's XDG_RUNTIME_DIR, unmounting as that user; then a
// mount by user A with allow_other used by user B. Kernel overlayfs (mounted by
// root, `userxattr` where the upper belongs to a user) is the oracle.
//
// Users: A is uid/gid 65534 (nobody, present on Debian), B is uid/gid 65533 (no
// passwd entry needed: setpriv takes numbers). No user is created. This VM's
// /dev/fuse is mode 0600, which no user can open (fusermount3 opens it with the
// user's rights): the suite makes it 0666 while it runs and restores the
// original mode afterwards, also on failure; `user_allow_other` is added to
// /etc/fuse.conf only for the allow_other test, and the file's bytes restored.

enum Unprivileged {
    static let userA: (uid: UInt32, gid: UInt32) = (65534, 65534)
    static let userB: (uid: UInt32, gid: UInt32) = (65533, 65533)

    static var available: Bool {
        TestEnvironment.isRoot && TestEnvironment.hasFuse && WriteLimits.hasSetpriv
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/fusermount3")
    }

    /// Makes /dev/fuse world read-write for `body`, then restores its mode (also when `body` throws).
    static func withWorldAccessibleFuse<T>(_ body: () throws -> T) throws -> T {
        let original = try System.attributes("/dev/fuse").permissions
        guard chmod("/dev/fuse", 0o666) == 0 else { throw HostileError(description: "chmod /dev/fuse: \(String(cString: strerror(errno)))") }
        defer {
            if chmod("/dev/fuse", mode_t(original)) != 0 { Issue.record("could not restore /dev/fuse to \(String(original, radix: 8))") }
        }
        return try body()
    }

    /// Adds `user_allow_other` to /etc/fuse.conf for `body`, then writes the original bytes back.
    static func withUserAllowOther<T>(_ body: () throws -> T) throws -> T {
        let path = "/etc/fuse.conf"
        let original = FileManager.default.contents(atPath: path)
        let text = original.map { String(decoding: $0, as: UTF8.self) } ?? ""
        let enabled = text.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces) == "user_allow_other" }
        if !enabled {
            try Data((text + (text.isEmpty || text.hasSuffix("\n") ? "" : "\n") + "user_allow_other\n").utf8)
                .write(to: URL(fileURLWithPath: path))
        }
        defer {
            if !enabled {
                if let original { try? original.write(to: URL(fileURLWithPath: path)) } else { try? FileManager.default.removeItem(atPath: path) }
            }
        }
        return try body()
    }

    /// A test directory a user can work in: `T` (0755) with the strata binary
    /// copied in (so every path component is searchable), `run` (the user's
    /// XDG_RUNTIME_DIR, 0700) and `home`.
    struct Home {
        let tmp: TemporaryDirectory
        let strata: String
        let environment: [String: String]
        let user: (uid: UInt32, gid: UInt32)

        init(prefix: String, user: (uid: UInt32, gid: UInt32)) throws {
            tmp = TemporaryDirectory(prefix: prefix)
            chmod(tmp.path, 0o755)
            self.user = user
            strata = tmp.sub("strata")
            try FileManager.default.copyItem(atPath: StrataBinary.path, toPath: strata)
            chmod(strata, 0o755)
            let run = tmp.makeDirectory("run-\(user.uid)"), home = tmp.makeDirectory("home-\(user.uid)")
            for directory in [run, home] { chown(directory, user.uid, user.gid) }
            chmod(run, 0o700)
            environment = ["HOME": home, "XDG_RUNTIME_DIR": run, "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"]
        }

        /// A directory owned by the user.
        func owned(_ name: String, mode: mode_t = 0o755) -> String {
            let d = tmp.makeDirectory(name)
            chown(d, user.uid, user.gid)
            chmod(d, mode)
            return d
        }

        /// Runs `arguments` as `who` (default: this home's user) with this home's environment, bounded.
        func run(_ arguments: [String], as who: (uid: UInt32, gid: UInt32)? = nil, timeout: Int = 60) throws -> Shell.Result {
            let u = who ?? user
            return try Shell.run(["timeout", "-s", "KILL", "\(timeout)", "setpriv", "--reuid=\(u.uid)", "--regid=\(u.gid)", "--clear-groups",
                                  "env"] + environment.map { "\($0.key)=\($0.value)" }.sorted() + arguments, timeout: Double(timeout + 30))
        }

        /// The mount record the daemon wrote under the user's XDG_RUNTIME_DIR, if any.
        func record(of mountPoint: String) -> [String: Any]? {
            guard let entry = MountTable.mount(at: mountPoint),
                  let data = FileManager.default.contents(atPath: "\(environment["XDG_RUNTIME_DIR"]!)/strata/mounts/\(entry.device).json")
            else { return nil }
            return try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        }
    }

    /// Unmounts a user's mount left behind by a failed test (root may unmount anything it mounted for the test).
    static func cleanUp(_ mountPoint: String) {
        if MountTable.mount(at: mountPoint) != nil { Mounts.unmountStrata(mountPoint) }
    }

    /// Waits up to 10 s for `pid` to exit.
    static func waitForExit(_ pid: Int32) -> Bool {
        for _ in 0..<1000 {
            if !ProcessControl.isRunning(pid) { return true }
            usleep(10_000)
        }
        return false
    }

    /// `find`-based dump a user can take of a mount: path, type, mode, owner,
    /// size (not for directories), link target, content hash (or the error).
    static let userDump = #"""
        find . -mindepth 1 | LC_ALL=C sort | while IFS= read -r p; do
            line=$(stat -c '%n %F %a %u:%g' "$p")
            case $(stat -c %F "$p") in
                "regular file"|"regular empty file") line="$line size=$(stat -c %s "$p") $(md5sum < "$p" 2>&1 | cut -c1-12)";;
                "symbolic link") line="$line -> $(readlink "$p")";;
                "character special file") line="$line dev=$(stat -c %t:%T "$p")";;
            esac
            echo "$line"
        done
        """#
}

@Suite("Unprivileged users: a user's own mount (fusermount3), and another user on an allow_other mount", .serialized,
       .enabled(if: Unprivileged.available, "skipped: needs root to set up users' directories, /dev/fuse, setpriv and fusermount3"))
struct UnprivilegedMountTests {
    /// `$0` = top lower, `$1` = bottom lower, `$2` = A's uid.
    static let ownLowers = #"""
        umask 022
        cd "$1"
        echo lower > f; mkdir d; echo a > d/a; echo b > d/b
        mkdir rd; echo z > rd/z
        mkdir lowerdir; mkdir lowerdir/sub; echo s > lowerdir/sub/s
        echo secret > ro600; chmod 600 ro600
        mkdir rootdir; echo x > rootdir/x
        echo shared > rootshared; chmod 666 rootshared
        chown -R "$2:$2" f d rd lowerdir
        cd "$0"
        echo top > g; mkdir d; echo c > d/c
        chown -R "$2:$2" g d
        """#

    /// What user A does on its own mount (and on the kernel's, for comparison).
    static let ownOperations = #"""
        v "whoami" id -u
        r "read own lower file" cat f
        r "read a root 0600 lower file" cat ro600
        r "write own lower file (copy-up)" sh -c 'echo more >> f'
        v "read it back" cat f
        r "rm a lower file (whiteout)" rm d/a
        r "rm -r a lower dir" rm -r rd
        r "mkdir where the lower dir was (opaque)" mkdir rd
        r "create in it" touch rd/new
        r "rename a lower file" mv d/b d/b2
        r "symlink" ln -s f flink
        r "chmod own lower file" chmod 600 g
        r "setfattr user.x on own file" setfattr -n user.x -v 1 g
        v "getfattr user.x" getfattr --only-values -n user.x g
        r "setfattr user.overlay.opaque (overlay-private)" setfattr -n user.overlay.opaque -v y rd
        r "rm in a root-owned lower dir" rm rootdir/x
        r "write a root-owned 0666 lower file (copy-up)" sh -c 'echo w >> rootshared'
        v "read rootshared back" cat rootshared
        r "mknod a whiteout" mknod wh c 0 0
        r "mkfifo" mkfifo fifo
        r "rmdir a merged lower dir with entries" rmdir d
        v "listing" ls -A . d rd
        """#

    @Test("a user mounts with fusermount3: whiteouts, user.overlay.opaque, copy-up, rename, unmount as the user, record under XDG_RUNTIME_DIR")
    func userMountsThroughFusermount() throws {
        let a = try Unprivileged.Home(prefix: "unpriv", user: Unprivileged.userA)
        let l1 = a.tmp.makeDirectory("l1"), l2 = a.tmp.makeDirectory("l2")
        try Hostile.build(Self.ownLowers, l1, l2, "\(a.user.uid)")
        let lowers = "\(l1):\(l2)"
        let upper = a.owned("u"), work = a.owned("w"), mount = a.owned("m")
        defer { Unprivileged.cleanUp(mount) }

        let (strata, strataDump) = try Unprivileged.withWorldAccessibleFuse { () throws -> (WriteLimitsTranscript, String) in
            let mounted = try a.run([a.strata, "mount", "--lower", lowers, "--upper", upper, "--work", work, mount])
            try #require(mounted.succeeded, "strata mount as uid \(a.user.uid) failed: \(mounted.stderr)")
            let entry = try #require(MountTable.mount(at: mount))
            #expect(entry.fileSystemType == "fuse.strata")
            #expect(entry.superOptions.contains("user_id=\(a.user.uid)") && !entry.superOptions.contains("allow_other"),
                    "a user's mount is the user's alone: \(entry.superOptions)")
            let options = try Shell.run(["findmnt", "-n", "-o", "OPTIONS", mount]).stdout
            #expect(options.contains("nosuid") && options.contains("nodev"), "a user's mount is nosuid,nodev: \(options)")
            // The mount record lives under the user's XDG_RUNTIME_DIR, not in /run/strata.
            let record = try #require(a.record(of: mount), "no mount record under XDG_RUNTIME_DIR")
            let pid = Int32(try #require(record["pid"] as? Int))
            #expect(record["mountpoint"] as? String == mount && record["upper"] as? String == upper)
            // (A stale root record may hold a reused device number: only one naming this mount counts.)
            let rootRecord = FileManager.default.contents(atPath: "/run/strata/mounts/\(entry.device).json")
                .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
            #expect(rootRecord?["mountpoint"] as? String != mount, "the user's mount was recorded in /run/strata")
            // Without allow_other nobody else may use it, root included.
            #expect(access(mount + "/f", F_OK) != 0 && errno == EACCES, "root reached a user's mount without allow_other")

            let (transcript, _) = try Hostile.transcript(in: mount, Self.ownOperations, user: (a.user.uid, a.user.gid), environment: a.environment)
            let dump = try a.run(["sh", "-c", "cd \"$0\" && " + Unprivileged.userDump, mount])
            let diff = try a.run([a.strata, "diff", mount])
            #expect(diff.succeeded, "strata diff MOUNTPOINT as the user: \(diff.stderr)")
            #expect(diff.stdout.contains("D /d/a") && diff.stdout.contains("A /rd/new"), "\(diff.stdout)")

            // Unmount as the user, with fusermount3; the daemon exits and removes its record.
            let unmounted = try a.run(["fusermount3", "-u", mount])
            #expect(unmounted.succeeded, "fusermount3 -u as the user: \(unmounted.stderr)")
            #expect(Unprivileged.waitForExit(pid), "the daemon (pid \(pid)) did not exit after fusermount3 -u")
            #expect(MountTable.mount(at: mount) == nil)
            #expect(!FileManager.default.fileExists(atPath: "\(a.environment["XDG_RUNTIME_DIR"]!)/strata/mounts/\(entry.device).json"),
                    "the mount record outlived the daemon")

            // `strata unmount` as the user works too (it runs fusermount3 -u and waits for the daemon).
            let again = try a.run([a.strata, "mount", "--lower", lowers, "--upper", upper, "--work", work, mount])
            try #require(again.succeeded, "second mount: \(again.stderr)")
            let secondPID = Int32(try #require(a.record(of: mount)?["pid"] as? Int))
            let viaStrata = try a.run([a.strata, "unmount", mount])
            #expect(viaStrata.succeeded, "strata unmount as the user: \(viaStrata.stderr)")
            #expect(MountTable.mount(at: mount) == nil && !ProcessControl.isRunning(secondPID))
            return (transcript, dump.stdout)
        }

        // What the user could and could not do.
        for (label, expected) in [("whoami", "\(a.user.uid)"), ("read a root 0600 lower file", "Permission denied"),
                                  ("write own lower file (copy-up)", "ok"), ("rm a lower file (whiteout)", "ok"),
                                  ("mkdir where the lower dir was (opaque)", "ok"), ("rename a lower file", "ok"),
                                  ("setfattr user.overlay.opaque (overlay-private)", "Operation not permitted"),
                                  ("rm in a root-owned lower dir", "Permission denied"), ("mknod a whiteout", "Operation not permitted")] {
            #expect(strata.steps.first { $0.label == label }?.result == expected, "strata as uid \(a.user.uid): \(label)")
        }

        // The formats on disk: whiteouts are 0/0 character devices (unprivileged mknod of a
        // whiteout is allowed since Linux 5.8), opaque marks are user.overlay.opaque, and
        // no trusted.overlay.* xattr anywhere (an ordinary user cannot write them).
        let whiteout = try System.attributes(upper + "/d/a", followSymlinks: false)
        #expect(whiteout.kind == .characterDevice && whiteout.specialDevice == 0, "d/a is not a 0/0 whiteout")
        let rd = try System.open(upper + "/rd", [.directory])
        #expect(try rd.extendedAttribute("user.overlay.opaque") == Array("y".utf8))
        #expect(try rd.extendedAttribute("trusted.overlay.opaque") == nil)
        let trusted = try Shell.run(["getfattr", "-R", "-h", "-m", "^trusted\\.overlay\\.", "--absolute-names", upper])
        #expect(trusted.stdout.isEmpty, "trusted overlay xattrs in a user's upper: \(trusted.stdout)")
        let owners = try Shell.run(["find", upper, "-mindepth", "1", "!", "-uid", "\(a.user.uid)"])
        #expect(owners.stdout.isEmpty, "objects in the upper not owned by the user: \(owners.stdout)")
        #expect(CrashTests.workDebris(work).isEmpty, "work directory debris: \(CrashTests.workDebris(work))")

        guard TestEnvironment.hasKernelOverlay else { return }
        // Kernel overlayfs (userxattr) reads the user's upper as Strata showed it.
        let kernelMount = a.owned("k"), kernelWork = a.owned("kw")
        let kernelView = try Mounts.withKernelOverlay(lowers: [l1, l2], upper: upper, work: kernelWork, at: kernelMount,
                                                      extraOptions: "userxattr") {
            try a.run(["sh", "-c", "cd \"$0\" && " + Unprivileged.userDump, kernelMount]).stdout
        }
        expectSame(strataDump.split(separator: "\n").map(String.init), kernelView.split(separator: "\n").map(String.init),
                   "the user's upper through kernel overlayfs (userxattr) vs through Strata")

        // The same operations by the same user on kernel overlayfs (mounted by root, userxattr):
        // every result the same; the uppers the same but for the whiteouts' owner (the kernel
        // makes them with the mounter's credentials).
        let ku = a.owned("ku"), kw = a.owned("kw2"), km = a.owned("km")
        let kernel = try Mounts.withKernelOverlay(lowers: [l1, l2], upper: ku, work: kw, at: km, extraOptions: "userxattr") {
            try Hostile.transcript(in: km, Self.ownOperations, user: (a.user.uid, a.user.gid), environment: a.environment).0
        }
        // Two answers differ by design. setxattr of user.overlay.*: Strata refuses overlay-private
        // names (the kernel stores them escaped, README). Copy-up of a file the user does not own:
        // the daemon runs with the user's rights and cannot give the copy its owner, so it refuses
        // (EPERM) rather than change the owner; kernel overlayfs copies up with its mounter's (root's).
        let byDesign: Set<String> = ["setfattr user.overlay.opaque (overlay-private)", "write a root-owned 0666 lower file (copy-up)",
                                     "read rootshared back"]
        #expect(strata.steps.first { $0.label == "write a root-owned 0666 lower file (copy-up)" }?.result == "Operation not permitted")
        #expect(strata.steps.first { $0.label == "read rootshared back" }?.result == "shared", "a refused copy-up changed the file")
        #expect(kernel.steps.first { $0.label == "write a root-owned 0666 lower file (copy-up)" }?.result == "ok")
        WriteLimits.expectSameOutcomes(strata: strata.without(byDesign), kernel: kernel.without(byDesign), "a user's operations on its own mount")
        func structure(_ upper: String) throws -> [String] {
            try TreeDump.lines(of: upper, options: Hostile.upperOptions).map { line in
                line.contains(" chardev ") ? line.replacingOccurrences(of: #" \d+:\d+ "#, with: " -:- ", options: .regularExpression) : line
            }
        }
        expectSame(try structure(upper), try structure(ku).filter { !$0.hasPrefix("/rootshared ") },
                   "uppers written by Strata and by kernel overlayfs (but for the copy-up Strata refused)")
        expectSame(try Hostile.opaqueMarks(in: upper), try Hostile.opaqueMarks(in: ku), "opaque marks")
    }

    /// `$0` = top lower, `$1` = bottom lower, `$2` = A's uid. Everything belongs to A.
    static let sharedLowers = #"""
        umask 022
        cd "$1"
        printf 'secret\n' > f600; chmod 600 f600
        printf 'public\n' > f644
        printf 'shared\n' > f666; chmod 666 f666
        mkdir d755; echo in > d755/inner
        printf 'setuid data\n' > suid; chmod 4777 suid
        printf 'setgid data\n' > sgid; chmod 2777 sgid
        printf '#!/bin/sh\nid -u\n' > script; chmod 4755 script
        mkdir sticky; echo a > sticky/afile; chmod 666 sticky/afile; chmod 1777 sticky
        mkdir d700; echo s > d700/s; chmod 700 d700
        chown -R "$2:$2" .
        cd "$0"
        echo top > top; chown "$2:$2" top
        """#

    /// What user B does on user A's mount.
    static let otherOperations = #"""
        v "whoami" id -u
        r "read another user's 0600 file" cat f600
        r "read another user's 0644 file" cat f644
        r "write another user's 0644 file" sh -c 'echo x >> f644'
        r "write another user's 0666 file" sh -c 'echo x >> f666'
        r "create in another user's 0755 dir" touch d755/x
        r "unlink in another user's 0755 dir" rm -f d755/inner
        r "list another user's 0700 dir" ls d700
        r "chmod another user's file" chmod 666 f644
        r "chown another user's file" chown 65533 f644
        r "set explicit times on another user's 0666 file" touch -d @1600000000 f666
        r "write another user's setuid 4777 file" sh -c 'echo x >> suid'
        v "its mode afterwards (setuid cleared)" stat -c %a suid
        r "truncate another user's setgid 2777 file" truncate -s 1 sgid
        v "its mode afterwards (setgid cleared)" stat -c %a sgid
        v "a setuid script runs as the caller" ./script
        r "delete another user's file in a 1777 dir" rm -f sticky/afile
        r "rename another user's file in a 1777 dir" mv sticky/afile sticky/mine
        r "setfattr user.x on another user's 0644 file" setfattr -n user.x -v 1 f644
        v "listing" ls -A . sticky
        """#

    @Test("allow_other: user A's mount, user B's operations: denied and allowed as on kernel overlayfs, setuid dropped on write")
    func otherUserOnAllowOtherMount() throws {
        let a = try Unprivileged.Home(prefix: "unpriv2", user: Unprivileged.userA)
        let l1 = a.tmp.makeDirectory("l1"), l2 = a.tmp.makeDirectory("l2")
        try Hostile.build(Self.sharedLowers, l1, l2, "\(a.user.uid)")
        let upper = a.owned("u"), work = a.owned("w"), mount = a.owned("m")
        defer { Unprivileged.cleanUp(mount) }
        let b = Unprivileged.userB
        let strata = try Unprivileged.withWorldAccessibleFuse {
            try Unprivileged.withUserAllowOther { () throws -> WriteLimitsTranscript in
                let mounted = try a.run([a.strata, "mount", "-o", "allow_other", "--lower", "\(l1):\(l2)", "--upper", upper, "--work", work, mount])
                try #require(mounted.succeeded, "strata mount -o allow_other as uid \(a.user.uid): \(mounted.stderr)")
                let entry = try #require(MountTable.mount(at: mount))
                #expect(entry.superOptions.contains("allow_other") && entry.superOptions.contains("default_permissions")
                        && entry.superOptions.contains("user_id=\(a.user.uid)"), "\(entry.superOptions)")
                let pid = Int32(try #require(a.record(of: mount)?["pid"] as? Int))
                let (transcript, _) = try Hostile.transcript(in: mount, Self.otherOperations, user: (b.uid, b.gid))
                // B cannot create anything there: the daemon runs as A and cannot give B's
                // files to B (kernel overlayfs, mounted by root, can).
                let (create, _) = try Hostile.transcript(in: mount, #"""
                    r "create in a 1777 dir" touch sticky/bfile
                    r "mkdir in a 1777 dir" mkdir sticky/bdir
                    """#, user: (b.uid, b.gid))
                #expect(create.steps.map(\.result) == ["Operation not permitted", "Operation not permitted"], "\(create.steps)")
                #expect(CrashTests.workDebris(work).isEmpty, "a refused create left debris: \(CrashTests.workDebris(work))")
                // A itself still works on its mount, and root may use an allow_other mount.
                #expect(try a.run(["sh", "-c", "echo mine > \"$0/sticky/afile2\"", mount]).succeeded)
                #expect(FileManager.default.fileExists(atPath: mount + "/f644"))
                let unmounted = try a.run([a.strata, "unmount", mount])
                #expect(unmounted.succeeded, "strata unmount as A: \(unmounted.stderr)")
                #expect(Unprivileged.waitForExit(pid) && MountTable.mount(at: mount) == nil)
                return transcript
            }
        }
        let expected: [String: String] = [
            "whoami": "\(b.uid)", "read another user's 0600 file": "Permission denied", "read another user's 0644 file": "ok",
            "create in another user's 0755 dir": "Permission denied", "chmod another user's file": "Operation not permitted",
            "write another user's setuid 4777 file": "ok", "its mode afterwards (setuid cleared)": "777",
            "a setuid script runs as the caller": "\(b.uid)", "delete another user's file in a 1777 dir": "Operation not permitted",
        ]
        for (label, value) in expected {
            #expect(strata.steps.first { $0.label == label }?.result == value, "strata, uid \(b.uid) on uid \(a.user.uid)'s mount: \(label)")
        }
        guard TestEnvironment.hasKernelOverlay else { return }
        // Kernel overlayfs over the same lowers (mounted by root, upper owned by A): same answers.
        let ku = a.owned("ku"), kw = a.owned("kw"), km = a.owned("km")
        let kernel = try Mounts.withKernelOverlay(lowers: [l1, l2], upper: ku, work: kw, at: km) {
            try Hostile.transcript(in: km, Self.otherOperations, user: (b.uid, b.gid)).0
        }
        WriteLimits.expectSameOutcomes(strata: strata, kernel: kernel, "uid \(b.uid) on uid \(a.user.uid)'s allow_other mount")
    }
}

extension WriteLimitsTranscript {
    /// This transcript without the steps labelled `labels`.
    func without(_ labels: Set<String>) -> WriteLimitsTranscript {
        var t = WriteLimitsTranscript()
        t.steps = steps.filter { !labels.contains($0.label) }
        return t
    }
}
