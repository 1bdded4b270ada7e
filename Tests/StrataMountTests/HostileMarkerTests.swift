import Foundation
import Glibc
import LayerSystem
import StrataTestSupport
import Testing

/// Marker look-alikes and special files in the layers: device numbers next to
/// the whiteout's (char 0/1, char 1/0, block 0/0), opaque xattrs with values
/// other than `y`, overlay xattrs full of junk (origin, impure, redirect,
/// metacopy), sockets, fifos and devices in lower layers. Where kernel
/// overlayfs defines the result, Strata's must be the same (operation by
/// operation, then the merged views and the uppers); where the kernel refuses
/// (a metacopy file without `metacopy=on`, an invalid redirect) Strata shows
/// the objects as they are (README: deliberate differences). Never a trap,
/// never a hang, and the canary stays byte-identical.
@Suite("Hostile layers: marker look-alikes, junk overlay xattrs, special files", .serialized,
       .enabled(if: TestEnvironment.hasFuse, "skipped: /dev/fuse is absent on this machine"),
       .enabled(if: TestEnvironment.isRoot, "skipped: needs root (device nodes, trusted xattrs, kernel overlayfs as the oracle)"))
struct HostileMarkerTests {
    /// `$0` = top lower, `$1` = bottom lower, `$2` = the canary (redirects aim at it).
    /// `cmp/` holds what the kernel defines, `j/` what it refuses, `xw/` kernel xwhiteouts.
    static let lowerScript = #"""
        cd "$1"
        mkdir cmp j xw
        cd cmp
        for f in c01 c10 b00; do echo below > $f; done
        for d in op_n op_e op_yy op_x op_y op_sp uop_n uop_e uop_yy uop_x uop_y; do mkdir $d; echo low > $d/low; done
        mkdir d_orig; echo low > d_orig/low
        cd ../j
        for d in rd_bin rd_rel rd_up rd_abs uopq_user; do mkdir $d; echo low > $d/low; done
        mkdir target; echo t > target/t
        cd ../xw
        echo b > a; echo b > b
        cd "$0"
        mkdir cmp j xw
        cd cmp
        mknod c01 c 0 1; mknod c10 c 1 0; mknod b00 b 0 0
        for d in op_n op_e op_yy op_x op_y op_sp; do mkdir $d; echo top > $d/top; done
        setfattr -n trusted.overlay.opaque -v n op_n
        setfattr -n trusted.overlay.opaque -v '""' op_e
        setfattr -n trusted.overlay.opaque -v yy op_yy
        setfattr -n trusted.overlay.opaque -v x op_x
        setfattr -n trusted.overlay.opaque -v y op_y
        setfattr -n trusted.overlay.opaque -v 0x7920 op_sp
        mkdir d_orig; echo top > d_orig/top
        setfattr -n trusted.overlay.origin -v 0x00fb0102ff d_orig
        setfattr -n trusted.overlay.impure -v 0xff00ff d_orig
        echo top > f_orig
        setfattr -n trusted.overlay.origin -v 0xdeadbeef f_orig
        setfattr -n trusted.overlay.nlink -v 0x2b3939ff f_orig
        cd ../j
        for d in rd_bin rd_rel rd_up rd_abs; do mkdir $d; echo top > $d/top; done
        setfattr -n trusted.overlay.redirect -v 0x01ff006a756e6b rd_bin
        setfattr -n trusted.overlay.redirect -v rel/ative rd_rel
        setfattr -n trusted.overlay.redirect -v ../../../../../../.. rd_up
        setfattr -n trusted.overlay.redirect -v /j/target rd_abs
        echo top > meta
        setfattr -n trusted.overlay.metacopy -v 0xdeadbeefdeadbeef meta
        echo top > meta_empty
        setfattr -n trusted.overlay.metacopy -v '""' meta_empty
        cd ../xw
        setfattr -n trusted.overlay.opaque -v x .
        touch a
        setfattr -n trusted.overlay.whiteout -v '""' a
        """#

    /// Prepares an upper (`$0`): device look-alikes and junk xattrs in upper position.
    static let upperScript = #"""
        cd "$0"
        mkdir cmp j
        cd cmp
        mknod uc01 c 0 1; mknod uc10 c 1 0; mknod ub00 b 0 0
        for d in uop_n uop_e uop_yy uop_x uop_y; do mkdir $d; echo utop > $d/utop; done
        setfattr -n trusted.overlay.opaque -v n uop_n
        setfattr -n trusted.overlay.opaque -v '""' uop_e
        setfattr -n trusted.overlay.opaque -v yy uop_yy
        setfattr -n trusted.overlay.opaque -v x uop_x
        setfattr -n trusted.overlay.opaque -v y uop_y
        echo u > uorig
        setfattr -n trusted.overlay.origin -v 0x00fb01020304 uorig
        cd ../j
        mkdir urd; setfattr -n trusted.overlay.redirect -v 0x01ff00 urd
        echo u > umeta; setfattr -n trusted.overlay.metacopy -v 0xdeadbeef umeta
        mkdir uopq_user; echo utop > uopq_user/utop; setfattr -n user.overlay.opaque -v y uopq_user
        """#

    /// Run in `cmp/` of each mount: everything here is defined by the kernel.
    static let markerOperations = #"""
        v "types" stat -c '%n %F %t:%T %a' c01 c10 b00 uc01 uc10 ub00
        for d in op_n op_e op_yy op_x op_y op_sp uop_n uop_e uop_yy uop_x uop_y d_orig; do v "list $d" ls -A $d; done
        v "read a file with junk origin/nlink xattrs" cat f_orig
        v "visible xattrs of the junk-xattr objects" getfattr -d -m - f_orig d_orig uorig
        r "chmod a lower char 0/1 (copy-up)" chmod 600 c01
        r "chown a lower block 0/0 (copy-up)" chown 1:1 b00
        r "rm a lower char 1/0 (whiteout over a device)" rm c10
        r "rename an upper char 0/1" mv uc01 uc01moved
        r "rm an upper block 0/0" rm ub00
        r "append to a file with a junk origin (copy-up)" sh -c 'echo more >> f_orig'
        v "read it back" cat f_orig
        r "create in a dir with a junk origin" touch d_orig/new
        r "rm a lower file under opaque=n" rm op_n/low
        r "rm -r a dir with opaque=x" rm -r op_x
        r "mkdir it again" mkdir op_x
        v "list it" ls -A op_x
        r "rmdir a non-empty dir with opaque=yy" rmdir op_yy
        r "create under opaque=\"\"" touch op_e/new
        r "rm -r an upper dir with opaque=y over a lower dir" rm -r uop_y
        r "chmod the upper char 1/0" chmod 640 uc10
        v "types after" stat -c '%n %F %t:%T %a %u:%g' c01 b00 uc01moved uc10
        v "root after" ls -A
        """#

    @Test("devices with other numbers, opaque values other than y, junk overlay xattrs: as on kernel overlayfs")
    func markerLookAlikes() throws {
        let tmp = TemporaryDirectory(prefix: "hmark")
        chmod(tmp.path, 0o755)
        let canary = try Canary(at: tmp.sub("outside"))
        let l1 = tmp.makeDirectory("l1"), l2 = tmp.makeDirectory("l2")
        try Hostile.build(Self.lowerScript, l1, l2, canary.path)
        var views: [WriteLimitsImplementation: [String]] = [:], uppers: [WriteLimitsImplementation: [String]] = [:]
        var marks: [WriteLimitsImplementation: [String]] = [:], xwhiteoutListing: [WriteLimitsImplementation: String] = [:]
        var junk = WriteLimitsTranscript()
        let transcripts = try Hostile.onEach(lowers: [l1, l2], in: tmp, prepareUpper: { try Hostile.build(Self.upperScript, $0) }) { side in
            let (transcript, _) = try Hostile.transcript(in: side.root + "/cmp", Self.markerOperations)
            views[side.implementation] = try TreeDump.lines(of: side.root + "/cmp", options: Hostile.viewOptions)
            uppers[side.implementation] = try TreeDump.lines(of: side.upper + "/cmp", options: Hostile.upperOptions)
            marks[side.implementation] = try Hostile.opaqueMarks(in: side.upper + "/cmp")
            xwhiteoutListing[side.implementation] = try Hostile.transcript(in: side.root, #"v "xw" ls -A xw"#).0.steps.first?.result
            if side.implementation == .strata {
                junk = try Self.junkOnStrata(side)
                #expect(Hostile.answers(side.root), "the Strata mount stopped answering")
            }
            return transcript
        }
        Hostile.expectSameOutcomes(transcripts, "marker look-alikes")
        if let k = views[.kernel], let s = views[.strata] { expectSame(s, k, "merged views of cmp/") }
        if let k = uppers[.kernel], let s = uppers[.strata] { expectSame(s, k, "uppers of cmp/") }
        if let k = marks[.kernel], let s = marks[.strata] { expectSame(s, k, "opaque marks in the uppers") }
        // What the kernel itself answers, so the premise of the comparison holds.
        if let k = transcripts[.kernel] {
            for (label, expected) in [("list op_yy", "low top"), ("list op_x", "low top"), ("list op_y", "top"), ("list op_sp", "low top"),
                                      ("list uop_x", "low utop"), ("list uop_y", "utop")] {
                #expect(k.steps.first { $0.label == label }?.result == expected, "kernel overlayfs: \(label)")
            }
        }
        // Kernel xwhiteouts (6.7+: opaque=x on the directory, a zero-size file with
        // overlay.whiteout) are whiteouts in lower layers, for the kernel and Strata.
        if let k = xwhiteoutListing[.kernel], let s = xwhiteoutListing[.strata] {
            #expect(k == "b", "kernel overlayfs hides an xwhiteout: \(k)")
            #expect(s == k, "xwhiteout directory: kernel lists \(k), strata \(s)")
        }
        for step in junk.steps where step.result != "ok" && !step.label.hasPrefix("list") && !step.label.hasPrefix("read")
            && !step.label.hasPrefix("xattrs") {
            Issue.record("strata, junk overlay xattrs: \(step.label): \(step.result)")
        }
        canary.expectUnchanged("marker look-alikes")
    }

    /// What the kernel refuses (EPERM for metacopy files, EINVAL for invalid
    /// redirects, a redirect followed) Strata shows as plain objects: the
    /// redirect and metacopy xattrs are not followed (README), and nothing of
    /// them is visible.
    static func junkOnStrata(_ side: Hostile.Side) throws -> WriteLimitsTranscript {
        let (t, _) = try Hostile.transcript(in: side.root + "/j", #"""
            for d in rd_bin rd_rel rd_up rd_abs urd uopq_user; do v "list $d" ls -A $d; done
            v "read meta" cat meta
            v "read meta_empty" cat meta_empty
            v "read umeta" cat umeta
            v "xattrs" getfattr -d -m - rd_bin rd_up meta umeta urd uopq_user
            r "append to a metacopy-junk file" sh -c 'echo more >> meta'
            r "create in a redirect-junk dir" touch rd_up/new
            r "rm -r a redirect-junk dir" rm -r rd_bin
            r "rename an upper redirect-junk dir" mv urd urd2
            """#)
        let expected: [String: String] = [
            "list rd_bin": "low top", "list rd_rel": "low top", "list rd_up": "low top", "list rd_abs": "low top",
            "list urd": "", "list uopq_user": "utop", "read meta": "top", "read meta_empty": "top", "read umeta": "u", "xattrs": "",
        ]
        for (label, value) in expected {
            #expect(t.steps.first { $0.label == label }?.result == value, "strata: \(label)")
        }
        // Copied-up objects carry no overlay xattrs of their lower.
        let copied = try System.open(side.upper + "/j/meta", [.path]).extendedAttributeNames()
        #expect(!copied.contains { $0.starts(with: Array("trusted.overlay.".utf8)) }, "a copy-up copied overlay xattrs: \(copied)")
        return t
    }

    /// Run in each mount: special files from a lower layer.
    static let specialOperations = #"""
        v "types" stat -c '%n %F %a %u:%g %t:%T' sock fifo cdev bdev d/sock2 d/cdev2
        r "chmod a lower socket (copy-up)" chmod 600 sock
        r "chown a lower fifo (copy-up)" chown 1:2 fifo
        r "chmod a lower char device" chmod 640 cdev
        r "chown a lower block device" chown 3:3 bdev
        r "utimes of a lower socket" touch -h -d @1600000000 d/sock2
        r "rename a lower socket" mv d/sock2 d/sock3
        r "rename a lower char device to another dir" mv d/cdev2 cdev3
        r "hard link a lower device" ln cdev3 cdevlink
        r "rm a lower fifo" rm fifo
        r "read the char 1/3 device" head -c 1 cdev
        r "write the char 1/3 device" sh -c 'echo x > cdev'
        r "mknod a char 1/3 device beside them" mknod newnull c 1 3
        v "types after" stat -c '%n %F %a %u:%g %t:%T %h' sock cdev bdev d/sock3 cdev3 cdevlink newnull
        v "mtime of the moved socket" stat -c %Y d/sock3
        v "listing" ls -A . d
        """#

    @Test("sockets, fifos and devices in a lower layer: stat, copy-up by chmod/chown, rename, link, rm")
    func specialFilesInLowers() throws {
        let tmp = TemporaryDirectory(prefix: "hspec")
        let canary = try Canary(at: tmp.sub("outside"))
        let l1 = tmp.makeDirectory("l1"), l2 = tmp.makeDirectory("l2")
        try Hostile.build(#"""
            cd "$1"
            python3 -c 'import socket, sys
            for p in sys.argv[1:]:
                s = socket.socket(socket.AF_UNIX); s.bind(p); s.close()' sock d-sock2-placeholder
            mkdir d; mv d-sock2-placeholder d/sock2
            mkfifo fifo; mknod cdev c 1 3; mknod bdev b 7 0; mknod d/cdev2 c 1 5
            chmod 666 cdev; chown 5:5 d/sock2
            cd "$0"; mkdir d; echo f > d/f
            """#, l1, l2)
        var views: [WriteLimitsImplementation: [String]] = [:], uppers: [WriteLimitsImplementation: [String]] = [:]
        let transcripts = try Hostile.onEach(lowers: [l1, l2], in: tmp) { side in
            let (transcript, _) = try Hostile.transcript(in: side.root, Self.specialOperations)
            views[side.implementation] = try TreeDump.lines(of: side.root, options: Hostile.viewOptions)
            uppers[side.implementation] = try TreeDump.lines(of: side.upper, options: Hostile.upperOptions)
            return transcript
        }
        Hostile.expectSameOutcomes(transcripts, "special files in a lower layer")
        let strata = try #require(transcripts[.strata])
        for label in ["chmod a lower socket (copy-up)", "chown a lower fifo (copy-up)", "rename a lower socket", "hard link a lower device"] {
            #expect(strata.steps.first { $0.label == label }?.result == "ok", "strata: \(label)")
        }
        if let k = views[.kernel], let s = views[.strata] { expectSame(s, k, "merged views") }
        if let k = uppers[.kernel], let s = uppers[.strata] { expectSame(s, k, "uppers") }
        canary.expectUnchanged("special files")
    }
}
