import Foundation
import Glibc
import LayerSystem
import StrataTestSupport
import Testing

/// Layers that try to make the daemon write outside the upper directory, or
/// trap it: symlinks to outside in every position, an upper changed behind
/// the daemon's back, marker look-alikes, odd names. A canary tree outside the
/// layers must stay byte-identical, and the mount must keep answering.
@Suite("Hostile and damaged layers", .serialized,
       .enabled(if: TestEnvironment.hasFuse, "skipped: /dev/fuse is absent on this machine"),
       .enabled(if: TestEnvironment.isRoot, "skipped: needs root (device nodes and trusted xattrs in the fixtures)"))
struct HostileLayerTests {
    @Test("nothing reaches outside the upper, the daemon never traps")
    func hostileLayers() throws {
        let tmp = TemporaryDirectory(prefix: "hostile")
        let canary = tmp.makeDirectory("canary")
        let lower = tmp.makeDirectory("l"), upper = tmp.makeDirectory("u"), work = tmp.makeDirectory("w"), mount = tmp.makeDirectory("m")
        try Shell.run(["sh", "-c", """
            set -e
            cd "$1"
            echo precious > "$2/file"; mkdir "$2/dir"; echo inside > "$2/dir/f"
            ln -s "$2" abs; ln -s ../../../../../../.. up; ln -s "$2/file" absfile
            mkdir d; ln -s "$2" d/escape; echo data > d/real
            mknod notwhiteout c 1 3
            mkdir fakeopaque; echo kept > fakeopaque/f; setfattr -n trusted.overlay.opaque -v garbage fakeopaque
            mkdir redirect; setfattr -n trusted.overlay.redirect -v /etc redirect
            printf 'n' > "$(printf 'new\\nline')"; printf 'x' > "$(printf 'bad\\377name')"
            mkdir victim; echo v > victim/f
            """, "-", lower, canary]).expectSuccess()
        let before = try TreeDump.lines(of: canary)
        try Mounts.withStrata(["--lower", lower, "--upper", upper, "--work", work], at: mount) {
            // Through the mount, symlinks are the caller's business (the kernel resolves them
            // in the caller's namespace); these exercise the daemon on the links themselves.
            let script = #"""
                cd "$1"
                touch -h abs up absfile d/escape            # copy-up of the links themselves
                chown -h 1:1 abs d/escape
                setfattr -h -n trusted.x -v 1 abs 2>/dev/null
                mv abs abs2; mv d/escape d/escape2; ln d/escape2 hardlink-to-link
                rm -f up absfile; echo new > d/new; echo more >> d/real
                cat notwhiteout > /dev/null 2>&1; ls fakeopaque redirect > /dev/null
                cat "$(printf 'new\nline')" "$(printf 'bad\377name')" > /dev/null
                echo y >> "$(printf 'bad\377name')"; mv "$(printf 'new\nline')" renamed
                exit 0
                """#
            try Shell.run(["sh", "-c", script, "-", mount]).expectSuccess()
            // The upper changed behind the daemon's back: a directory it knows becomes a
            // symlink to the canary. Writes through the mount must not land in the canary.
            #expect(FileManager.default.fileExists(atPath: mount + "/victim/f"))
            try Shell.run(["sh", "-c", "echo w >> '\(mount)/victim/f'"]).expectSuccess()   // copies victim up
            try Shell.run(["sh", "-c", "rm -rf '\(upper)/victim' && ln -s '\(canary)' '\(upper)/victim'"]).expectSuccess()
            _ = try Shell.run(["sh", "-c", "echo evil > '\(mount)/victim/planted'; mkdir '\(mount)/victim/dir2'; echo x >> '\(mount)/victim/file'; true"])
            // A file in the upper replaced by a fifo: opening it must not hang the daemon.
            try Shell.run(["sh", "-c", "rm -f '\(upper)/d/real' && mkfifo '\(upper)/d/real'"]).expectSuccess()
            let opened = try Shell.run(["timeout", "-s", "KILL", "10", "cat", mount + "/d/real"], timeout: 30)
            #expect(opened.status != 137, "opening a file that became a fifo in the upper hung")
            #expect(opened.stderr.contains("Input/output error"), "expected EIO for a file that became a fifo: \(opened.stderr)")

            // Markers that are not markers.
            var st = stat()
            #expect(lstat(mount + "/notwhiteout", &st) == 0 && (st.st_mode & S_IFMT) == S_IFCHR, "char 1/3 is a device, not a whiteout")
            #expect(FileManager.default.fileExists(atPath: mount + "/fakeopaque/f"), "opaque=garbage must not hide the directory's content")
            #expect((try? FileManager.default.contentsOfDirectory(atPath: mount + "/redirect")) == [], "a redirect xattr must not be followed")
            #expect(FileManager.default.fileExists(atPath: mount + "/renamed"))
            // The daemon still answers.
            // (`victim` itself may answer oddly: the upper changed behind the mount, which is
            // unsupported; what matters is that nothing escapes and nothing traps.)
            let listing = try Shell.run(["ls", "-la", mount + "/d", mount + "/fakeopaque"])
            #expect(listing.succeeded, "the mount stopped answering: \(listing.stderr)")
        }
        expectSame(try TreeDump.lines(of: canary), before, "the canary tree outside the layers changed")
        #expect(!FileManager.default.fileExists(atPath: canary + "/planted") && !FileManager.default.fileExists(atPath: canary + "/dir2"))
    }

    @Test("an upper file swapped for a fifo behind the mount: truncate(2) and the other setattrs answer, no worker hangs")
    func upperFileSwappedForFifo() throws {
        let tmp = TemporaryDirectory(prefix: "hfifo")
        let canary = try Canary(at: tmp.sub("outside"))
        let lower = tmp.makeDirectory("l"), upper = tmp.makeDirectory("u"), work = tmp.makeDirectory("w"), mount = tmp.makeDirectory("m")
        try Shell.run(["sh", "-c", "mkdir \"$0/d\" && echo data > \"$0/d/real\" && echo data > \"$0/d/other\"", lower]).expectSuccess()
        try Mounts.withStrata(["--lower", lower, "--upper", upper, "--work", work], at: mount) {
            try Shell.run(["sh", "-c", "echo more >> \"$0/d/real\"", mount]).expectSuccess()   // copies it up
            try Shell.run(["sh", "-c", "rm \"$0/d/real\" && mkfifo \"$0/d/real\"", upper]).expectSuccess()
            // Whatever happens, release a worker blocked on the fifo before unmounting (O_RDWR never blocks).
            defer { _ = try? Shell.run(["timeout", "-s", "KILL", "5", "sh", "-c", "exec 3<> \"$0\"", upper + "/d/real"], timeout: 10) }
            let r = try Shell.run(["timeout", "-s", "KILL", "20", "python3", "-c", #"""
                import os, sys, errno
                p = sys.argv[1]
                for label, f in [("truncate(2)", lambda: os.truncate(p, 0)), ("chmod", lambda: os.chmod(p, 0o600)),
                                 ("utimes", lambda: os.utime(p, (1, 1))), ("setxattr", lambda: os.setxattr(p, "user.k", b"v"))]:
                    try:
                        f(); print(label, "ok", flush=True)
                    except OSError as e:
                        print(label, errno.errorcode.get(e.errno, e.errno), flush=True)
                """#, mount + "/d/real"], timeout: 40)
            #expect(r.status != 137, "a setattr on a file that became a fifo hung: \(r.stdout)")
            // Refused without blocking: ENXIO (a fifo without a reader) or EIO (not a regular file).
            #expect(r.stdout.hasPrefix("truncate(2) ENXIO\n") || r.stdout.hasPrefix("truncate(2) EIO\n"),
                    "truncate(2) of a file that became a fifo: \(r.stdout)")
            #expect(r.stdout.split(separator: "\n").count == 4, "\(r.stdout) \(r.stderr)")
            let other = try Shell.run(["timeout", "-s", "KILL", "10", "cat", mount + "/d/other"], timeout: 20)
            #expect(other.stdout == "data\n", "the mount stopped answering: \(other.stderr)")
        }
        canary.expectUnchanged("upper file swapped for a fifo")
    }
}
