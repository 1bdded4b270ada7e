import Foundation
import Glibc
import LayerSystem
import OverlayCore
import StrataTestSupport
import Testing

/// Symlinks that point outside the layers (`/etc`, `../../..`, relative and
/// absolute paths to a canary) as the first, a middle and the last component of
/// paths, in lower layers and in the upper, shadowing directories and shadowed
/// by them. The daemon must never resolve through them: a lookup returns the
/// link itself, and a path through a link is resolved by the kernel in the
/// caller's namespace, exactly as on kernel overlayfs.
///
/// The layers sit one level higher than the mounts, so each relative link
/// reaches the canary (`T/outside`) from the layer directory but a decoy
/// (`T/mnt/outside`) from the mount: reading the canary's bytes through a
/// relative link would mean the daemon followed it. Absolute links lead to
/// `/etc` (read only) or to the canary (only the links themselves are touched).
@Suite("Hostile layers: symlinks to outside in every position", .serialized,
       .enabled(if: TestEnvironment.hasFuse, "skipped: /dev/fuse is absent on this machine"),
       .enabled(if: TestEnvironment.isRoot, "skipped: needs root (trusted xattrs, chown, kernel overlayfs as the oracle)"))
struct HostileSymlinkTests {
    /// `$0` = T (the test directory), `$1` = top lower, `$2` = bottom lower.
    static let lowerScript = #"""
        cd "$1"
        ln -s /etc abs
        ln -s ../../outside rel
        ln -s ../../../../../../../../../../.. up
        ln -s "$0/outside" canaryabs
        mkdir -p d/e
        ln -s /etc d/absmid
        ln -s ../../../outside d/mid
        ln -s /etc/passwd d/e/abslast
        ln -s ../../../../outside/secret d/e/last
        echo f > d/e/f
        ln -s /etc sh1
        mkdir sh2; echo own > sh2/own
        cd "$2"
        mkdir sh1; echo inner > sh1/inner
        ln -s ../../outside sh2
        mkdir ush1; echo x > ush1/x
        ln -s /etc ush2
        mkdir -p ud/mid; echo x > ud/mid/x
        mkdir d; echo keep > d/keep
        """#

    /// Prepares an upper directory (`$0`, two levels below T like the layers).
    static let upperScript = #"""
        cd "$0"
        ln -s ../../outside ush1
        mkdir ush2; echo uown > ush2/uown
        mkdir ud
        ln -s ../../../outside ud/mid
        ln -s /etc/passwd ud/last
        """#

    /// Run with the mount as working directory; `$CANARY` names the canary.
    static let operations = #"""
        for p in abs rel up canaryabs d/absmid d/mid d/e/abslast d/e/last sh1 sh2 ush1 ush2 ud/mid ud/last; do
            v "lstat $p" stat -c '%F %a %u:%g' "$p"
            v "readlink $p" readlink "$p"
        done
        v "relative link, first component (decoy expected)" cat rel/secret
        v "relative link, middle component" cat d/mid/secret
        v "relative link, last component" cat d/e/last
        v "relative link in the upper over a lower dir" ls ush1
        v "relative link in the upper, middle component" cat ud/mid/secret
        v "lower dir over a lower symlink: its own content only" ls -A sh2
        v "upper dir over a lower symlink: its own content only" ls -A ush2
        v "absolute link, first component" head -n 1 abs/passwd
        v "absolute link, middle component" head -n 1 d/absmid/passwd
        v "absolute link, last component" head -n 1 d/e/abslast
        v "absolute link in the upper, last component" head -n 1 ud/last
        v "link climbing to /" stat -L -c %F up/etc
        r "touch -h a relative link" touch -h rel
        r "chown -h a middle link" chown -h 1:1 d/mid
        r "touch -h the absolute canary link" touch -h canaryabs
        r "chown -h the absolute canary link" chown -h 2:2 canaryabs
        r "setfattr -h trusted.t on a link" setfattr -h -n trusted.t -v 1 abs
        r "rename a last-component link" mv d/e/last d/e/last2
        r "hard link to a link" ln d/absmid d/hard
        r "rename a link that shadows a lower dir" mv sh1 sh1moved
        r "remove the absolute canary link" rm canaryabs
        r "remove an upper link over a lower dir" rm ush1
        r "rename an upper link in a merged dir" mv ud/mid ud/mid2
        r "create beside links (copies the dir up)" touch d/new
        r "chmod a dir holding links" chmod 700 d/e
        r "write through a relative link (lands in the decoy)" sh -c 'echo w > rel/written'
        v "read it back" cat rel/written
        r "remove it through the link" rm rel/written
        r "rm -r a dir of links" rm -r d
        v "lstat after rm -r" ls -A
        v "canary link target after everything" readlink sh1moved
        """#

    @Test("never followed by the daemon, in lower and upper, as on kernel overlayfs; the canary is untouched")
    func symlinksEverywhere() throws {
        let tmp = TemporaryDirectory(prefix: "hsym")
        chmod(tmp.path, 0o755)
        let canary = try Canary(at: tmp.sub("outside"))
        let decoy = tmp.makeDirectory("mnt/outside")
        try Hostile.build(#"mkdir -p "$0/dir"; echo decoy > "$0/secret"; echo decoy > "$0/dir/inner""#, decoy)
        let l1 = tmp.makeDirectory("layers/l1"), l2 = tmp.makeDirectory("layers/l2")
        try Hostile.build(Self.lowerScript, tmp.path, l1, l2)
        let lowers = [l1, l2]

        var outputs: [String] = []
        var views: [WriteLimitsImplementation: [String]] = [:], uppers: [WriteLimitsImplementation: [String]] = [:]
        let transcripts = try Hostile.onEach(lowers: lowers, in: tmp, layout: { implementation in
            let name = implementation.rawValue
            return (tmp.sub("mnt/\(name)/m"), tmp.sub("uppers/\(name)"), tmp.sub("work/\(name)"))
        }, prepareUpper: { upper in try Hostile.build(Self.upperScript, upper) }) { side in
            let (transcript, result) = try Hostile.transcript(in: side.root, Self.operations)
            outputs.append(result.stdout + result.stderr)
            views[side.implementation] = try TreeDump.lines(of: side.root, options: Hostile.viewOptions)
            if side.implementation == .strata {
                #expect(Hostile.answers(side.root), "the Strata mount stopped answering")
            }
            uppers[side.implementation] = try TreeDump.lines(of: side.upper, options: Hostile.upperOptions)
            return transcript
        }
        Hostile.expectSameOutcomes(transcripts, "operations through outside symlinks")
        let strata = try #require(transcripts[.strata])
        // What a relative link reads is the decoy next to the mount, never the canary next to the layers.
        #expect(strata.steps.first { $0.label.hasPrefix("relative link, first") }?.result == "decoy")
        #expect(strata.steps.first { $0.label.hasPrefix("relative link, last") }?.result == "decoy")
        for output in outputs {
            #expect(!output.contains(Canary.marker), "a read through the mount returned the canary's bytes: \(output)")
        }
        if let k = views[.kernel], let s = views[.strata] { expectSame(s, k, "merged views (links not followed)") }
        if let k = uppers[.kernel], let s = uppers[.strata] { expectSame(s, k, "upper directories") }
        canary.expectUnchanged("symlinks in every position")
        // A write through a relative link lands where the caller's path leads: the decoy.
        #expect(strata.steps.first { $0.label == "read it back" }?.result == "w")
        #expect(try FileManager.default.contentsOfDirectory(atPath: decoy).sorted() == ["dir", "secret"])
    }

    @Test("the resolver itself: a lookup below a link is ENOTDIR, the link is returned as it is")
    func resolverNeverCrossesLinks() throws {
        let tmp = TemporaryDirectory(prefix: "hsymr")
        chmod(tmp.path, 0o755)
        let canary = try Canary(at: tmp.sub("outside"))
        let l1 = tmp.makeDirectory("layers/l1"), l2 = tmp.makeDirectory("layers/l2")
        try Hostile.build(Self.lowerScript, tmp.path, l1, l2)
        let overlay = try OverlayFileSystem(stack: LayerStack(lowerPaths: [l1, l2]))
        for path in ["abs/passwd", "rel/secret", "up/etc", "canaryabs/secret", "d/mid/secret", "d/absmid/passwd", "sh1/inner"] {
            let components = path.split(separator: "/").map { FileName(String($0)) }
            do {
                let (node, attributes) = try overlay.resolve(path: components)
                Issue.record("\(path) resolved through a symlink to a \(attributes.kind.map { "\($0)" } ?? "?") (node \(node))")
            } catch {
                #expect(error.errno == ENOTDIR, "\(path): expected ENOTDIR, got \(error.errno) (\(error.message))")
            }
        }
        for (path, target) in [("d/e/last", "../../../../outside/secret"), ("d/e/abslast", "/etc/passwd"),
                               ("canaryabs", tmp.path + "/outside"), ("sh1", "/etc")] {
            let (node, attributes) = try overlay.resolve(path: path.split(separator: "/").map { FileName(String($0)) })
            #expect(attributes.kind == .symlink, "\(path) must resolve to the link itself")
            #expect(try overlay.readLink(node) == Array(target.utf8))
        }
        // A directory over a lower symlink (and the reverse) does not merge with the link's target.
        let (sh2, _) = try overlay.resolve(path: ["sh2"])
        #expect(try overlay.listing(of: sh2).map(\.name) == ["own"])
        canary.expectUnchanged("resolver")
    }
}
