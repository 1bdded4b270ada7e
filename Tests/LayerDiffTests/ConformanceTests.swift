import Foundation
import LayerDiff
import LayerSystem
import StrataTestSupport
import Testing

/// One row of spec §9 (or an extra case of §3.3/§10.3), performed for real on a
/// kernel overlayfs mount.
struct DiffCase: Sendable, CustomTestStringConvertible {
    var id: String
    var layers: [[Fixture]]
    /// A shell script run in the merged mount, or a socket to create there.
    var script: String
    var socket: String? = nil
    var expected: [String]
    /// `--strict` result when it differs from `expected`.
    var strict: [String]? = nil

    var testDescription: String { id }
}

/// The image most rows start from (all mtimes whole seconds, dirs 0755 root:root).
let baseImage: [Fixture] = [
    .dir("etc", [
        .file("issue", "Debian GNU/Linux 12\n"), .file("motd", "hello\n"), .file("debian_version", "12.0\n"),
        .file("passwd", "root:x:0:0\n"), .file("f", "f\n"), .file("a", "a\n"), .file("c", "c\n"),
        .symlink("l", to: "aaaa"), .file("conf", "aaaa\n"),
    ]),
    .dir("opt", [
        .dir("app", [.dir("bin", [.file("x", "x")]), .dir("lib", [.file("y", "y")])]),
        .dir("d", [.file("x", "x"), .file("y", "y")]),
    ]),
    .dir("srv", [.file("a", "a"), .file("b", "b")]),
    .dir("tmp", []),
    .dir("run", []),
    .file("rootfile", "root\n"),
]

func row(_ id: String, _ script: String, _ expected: [String], strict: [String]? = nil,
         layers: [[Fixture]] = [baseImage]) -> DiffCase {
    DiffCase(id: id, layers: layers, script: script, expected: expected, strict: strict)
}

let conformanceCases: [DiffCase] = [
    row("S1 mkdir + file", "mkdir foo; echo xyzzy > foo/bar", ["A /foo", "A /foo/bar"]),
    row("S2 new file in existing dir", "touch etc/new", ["C /etc", "A /etc/new"]),
    row("S3 new file at root", "touch newfile", ["A /newfile"]),
    row("S4 append", "echo x >> etc/debian_version", ["C /etc", "C /etc/debian_version"]),
    row("S5 append at root", "echo x >> rootfile", ["C /rootfile"]),
    row("S6 chmod", "chmod 600 etc/issue", ["C /etc", "C /etc/issue"]),
    row("S7 chmod to same mode", "chmod 644 etc/issue", []),
    row("S8 chown", "chown 1000:1000 etc/issue", ["C /etc", "C /etc/issue"]),
    row("S9 touch file", "touch etc/issue", ["C /etc", "C /etc/issue"]),
    row("S11 touch dir", "touch opt", [], strict: ["C /opt"]),
    row("S12 chmod dir", "chmod 700 opt", ["C /opt"]),
    row("S13 rm file", "rm etc/motd", ["C /etc", "D /etc/motd"]),
    row("S14 rm -rf subtree", "rm -rf opt/app", ["C /opt", "D /opt/app"]),
    row("S15 rm -rf top dir", "rm -rf srv", ["D /srv"]),
    row("S16 rm and recreate", "rm etc/motd; echo new > etc/motd", ["C /etc", "C /etc/motd"]),
    row("S18 file to dir", "rm etc/f; mkdir etc/f; touch etc/f/x", ["C /etc", "C /etc/f", "A /etc/f/x"]),
    row("S19 dir to file", "rm -rf opt/d; echo z > opt/d", ["C /opt", "C /opt/d"]),
    row("S20 file to symlink", "rm etc/f; ln -s /tmp/t etc/f", ["C /etc", "C /etc/f"]),
    row("S21 rename in dir", "mv etc/a etc/b", ["C /etc", "A /etc/b", "D /etc/a"]),
    row("S22 rename at root", "mv a b", ["A /b", "D /a"], layers: [[.file("a", "a")]]),
    row("S25 rm -rf + mkdir (opaque)", "rm -rf opt/d && mkdir opt/d",
        ["C /opt", "C /opt/d", "D /opt/d/x", "D /opt/d/y"]),
    // Regression: only the new top directory is marked opaque; what lies below it is upper-only too.
    row("nested dir under an opaque dir", "rm -rf opt/app && mkdir -p opt/app/bin",
        ["C /opt", "C /opt/app", "C /opt/app/bin", "D /opt/app/bin/x", "D /opt/app/lib"]),
    row("S27 mkdir in existing dir", "mkdir etc/newd", ["C /etc", "A /etc/newd"]),
    row("S28 new symlink", "ln -s target etc/link", ["C /etc", "A /etc/link"]),
    row("S30 hardlink to lower file", "ln etc/passwd etc/pw2", ["C /etc", "A /etc/pw2"]),
    row("S31 new hardlinked pair", "echo x > h1; ln h1 h2", ["A /h1", "A /h2"]),
    row("S32 user xattr", "setfattr -n user.k -v v etc/issue", [], strict: ["C /etc", "C /etc/issue"]),
    row("S34 deep mkdir -p", "mkdir -p a/b/c && touch a/b/c/f", ["A /a", "A /a/b", "A /a/b/c", "A /a/b/c/f"]),
    row("S36 fifo", "mkfifo tmp/p", ["C /tmp", "A /tmp/p"]),
    row("S37 char device", "mknod nd c 1 3", ["A /nd"]),
    DiffCase(id: "S38 socket", layers: [baseImage], script: "true", socket: "run/app.sock",
             expected: ["C /run", "A /run/app.sock"]),
    row("S43 volume mountpoint", "mkdir data && mount -t tmpfs tmpfs data && echo x > data/f && umount data", ["A /data"]),
    row("S44 chmod root", "chmod 700 .", []),
    row("S48 adds before deletes", "echo 1 > etc/n1; echo 2 > etc/n2; rm etc/c",
        ["C /etc", "A /etc/n1", "A /etc/n2", "D /etc/c"]),
    // Beyond §9: what docker misses, found only with --strict (§10.2).
    row("strict: symlink retarget with restored mtime",
        "rm etc/l; ln -s bbbb etc/l; touch -h -d @\(DiffScenario.imageTime) etc/l", [], strict: ["C /etc", "C /etc/l"]),
    row("strict: content hidden by restored mtime",
        "printf 'bbbb\\n' > etc/conf; touch -d @\(DiffScenario.imageTime) etc/conf", [], strict: ["C /etc", "C /etc/conf"]),
    row("restored copy is invisible", "cp -p etc/motd /tmp/.motd.$$; rm etc/motd; mv /tmp/.motd.$$ etc/motd", [],
        strict: ["C /etc"]),  // --strict reports the directory's new mtime
    row("temporary file leaves no line", "touch etc/tmpfile; rm etc/tmpfile", [], strict: ["C /etc"]),
    row("open for write without writing", ": >> etc/issue", []),
    // Upper-walk hazards (§3.2, §3.3, §10.3).
    row("lower whiteout, name re-created: A not C", "echo new > x", ["A /x"],
        layers: [[.whiteout("x")], [.file("x", "old")]]),
    row("lower whiteout on an ancestor (ENOTDIR probe)", "mkdir -p usr/lib/gcc && touch usr/lib/gcc/f",
        ["C /usr", "A /usr/lib", "A /usr/lib/gcc", "A /usr/lib/gcc/f"],
        layers: [[.dir("usr", [.whiteout("lib")])], [.dir("usr", [.dir("lib", [.dir("gcc", [.file("f")])])])]]),
    row("opaque lower dir hides the layer below", "touch opt/b", ["C /opt", "A /opt/b"],
        layers: [[.dir("opt", [.opaque, .file("a")])], [.dir("opt", [.file("b")])]]),
    row("replaced dir with one child re-created", "rm -rf opt/d && mkdir opt/d && echo x > opt/d/x",
        ["C /opt", "C /opt/d", "C /opt/d/x", "D /opt/d/y"]),
    row("dir to symlink and file to dir in one dir", "rm -rf opt/app && ln -s /x opt/app && rm -rf opt/d && mkdir opt/d && mkdir opt/d/e",
        ["C /opt", "C /opt/app", "C /opt/d", "A /opt/d/e", "D /opt/d/x", "D /opt/d/y"]),
    row("chown dir only", "chown 5:5 srv", ["C /srv"]),
    row("merged dirs over two lowers", "touch etc/x; rm etc/y",
        ["C /etc", "A /etc/x", "D /etc/y"],
        layers: [[.dir("etc", [.file("y", "y")])], [.dir("etc", [.file("z", "z")])]]),
]

@Suite("docker diff conformance on kernel overlayfs (spec §9)", kernelOverlay)
struct ConformanceTests {
    @Test(arguments: conformanceCases)
    func scenario(_ c: DiffCase) throws {
        let s = try DiffScenario(layers: c.layers)
        try s.withMounts {
            try s.run(c.script)
            if let socket = c.socket { try makeSocket(at: s.merged + "/" + socket) }
            #expect(try upperWalkLines(s) == c.expected, "upper walk, default rules")
            #expect(try treeWalkLines(s) == c.expected, "two-tree walk, default rules")
            let strict = c.strict ?? c.expected
            #expect(try upperWalkLines(s, strict: true) == strict, "upper walk, --strict")
            #expect(try treeWalkLines(s, strict: true) == strict, "two-tree walk, --strict")
        }
    }
}
