import Foundation
import LayerDiff
import LayerSystem
import OverlayCore
import StrataTestSupport
import Testing

/// Upper directories in every encoding an overlay writer may use (spec §3.3,
/// §10.3), built directly on disk: Strata's OCI-format option, rootless and
/// fuse-overlayfs opaque xattrs, kernel xwhiteouts, older kernels' opaque new
/// directories, redirects. No mount needed.
@Suite("upper-walk encodings", rootOnly)
struct UpperEncodingTests {
    struct Layers {
        let directory = TemporaryDirectory(prefix: "sdu")
        var lowers: [String] = []
        var upper: String

        init(lowers: [[Fixture]], upper: [Fixture]) throws {
            for (i, fixture) in lowers.enumerated() {
                let path = directory.makeDirectory("l\(i)")
                try Fixture.build(fixture, at: path)
                self.lowers.append(path)
            }
            self.upper = directory.makeDirectory("u")
            try Fixture.build(upper, at: self.upper)
            // Lowers at a whole second in the past; the upper keeps "now".
            let r = try Shell.run(["find"] + self.lowers + ["-exec", "touch", "-h", "-d", "@\(DiffScenario.imageTime)", "{}", "+"])
            precondition(r.succeeded, r.stderr)
        }

        func lines(strict: Bool = false) throws -> [String] {
            try LayerDiffTests.lines(UpperWalk(lowerPaths: lowers, upperPath: upper, options: DiffOptions(strict: strict)))
        }
    }

    static let etcAB: [Fixture] = [.dir("etc", [.file("a", "a"), .file("b", "b")])]

    @Test func ociWhiteoutFileInUpper() throws {
        let l = try Layers(lowers: [Self.etcAB], upper: [.dir("etc", [.ociWhiteout("a"), .file("n", "n")])])
        #expect(try l.lines() == ["C /etc", "A /etc/n", "D /etc/a"])
    }

    @Test func ociOpaqueMarkerInUpper() throws {
        let l = try Layers(lowers: [Self.etcAB], upper: [.dir("etc", [.ociOpaque, .file("a", "a2")])])
        #expect(try l.lines() == ["C /etc", "C /etc/a", "D /etc/b"])
    }

    @Test(arguments: ["trusted.overlay.opaque", "user.overlay.opaque", "user.fuseoverlayfs.opaque"])
    func opaqueXattrVariants(_ key: String) throws {
        let l = try Layers(lowers: [Self.etcAB], upper: [.dir("etc", [.file("a", "zz")]), .xattr(on: "etc", name: key, value: "y")])
        #expect(try l.lines() == ["C /etc", "C /etc/a", "D /etc/b"])
    }

    @Test func newDirectoryMarkedOpaqueIsAddedNotDeleted() throws {
        // Kernels before 6.18 and fuse-overlayfs mark every new directory opaque (moby#37880).
        let l = try Layers(lowers: [Self.etcAB], upper: [.dir("etc", [.dir("newd", [.opaque, .file("f")])])])
        #expect(try l.lines() == ["C /etc", "A /etc/newd", "A /etc/newd/f"])
    }

    @Test func extendedWhiteouts() throws {
        let l = try Layers(lowers: [Self.etcAB], upper: [
            .dir("etc", [.file("a", ""), .xattr(on: "a", name: "trusted.overlay.whiteout", value: "")]),
            .xattr(on: "etc", name: "trusted.overlay.opaque", value: "x"),
        ])
        #expect(try l.lines() == ["C /etc", "D /etc/a"])
    }

    @Test func redirectIsRefusedNotGuessed() throws {
        let l = try Layers(lowers: [Self.etcAB], upper: [
            .dir("moved", [.file("a", "a")]), .xattr(on: "moved", name: "trusted.overlay.redirect", value: "/etc"),
        ])
        #expect {
            try l.lines()
        } throws: { error in
            (error as? DiffError)?.code == .unsupported
        }
    }

    @Test func lowerOCIWhiteoutAndOpaqueMarker() throws {
        let l = try Layers(
            lowers: [[.ociWhiteout("x"), .dir("opt", [.ociOpaque, .file("a")])], [.file("x", "old"), .dir("opt", [.file("b")])]],
            upper: [.file("x", "new"), .dir("opt", [.whiteout("a"), .whiteout("b")])])
        // x was deleted by the upper lower layer: re-creating it is A. opt/b is hidden by the
        // lower opaque marker, so its whiteout removes nothing.
        #expect(try l.lines() == ["C /opt", "D /opt/a", "A /x"])
    }

    @Test func whiteoutOfNothingIsSilent() throws {
        let l = try Layers(lowers: [Self.etcAB], upper: [.dir("etc", [.whiteout("zz")])])
        #expect(try l.lines() == [])
    }

    @Test func baseLayerWithoutLowers() throws {
        let l = try Layers(lowers: [], upper: [.dir("etc", [.file("a"), .whiteout("gone")]), .file("z")])
        #expect(try l.lines() == ["A /etc", "A /etc/a", "A /z"])
    }

    @Test func nonUTF8NamesRoundTripInJSON() throws {
        let l = try Layers(lowers: [Self.etcAB], upper: [])
        let upper = try System.open(l.upper, [.directory])
        _ = try upper.open(FileName(bytes: [0x66, 0xFF, 0x0A]), [.writeOnly, .create], mode: 0o644)
        _ = try upper.open(FileName("quote\"é"), [.writeOnly, .create], mode: 0o644)
        let changes = try UpperWalk(lowerPaths: l.lowers, upperPath: l.upper).changes()
        #expect(changes.map(\.path) == [Array("/f".utf8) + [0xFF, 0x0A], Array("/quote\"é".utf8)])
        let json = ChangeRenderer(format: .json)
        #expect(String(decoding: json.render(changes[0]), as: UTF8.self)
            == "{\"kind\":\"A\",\"path\":\"/f\u{FFFD}\\n\",\"path_bytes\":\"L2b/Cg==\"}\n")
        #expect(String(decoding: json.render(changes[1]), as: UTF8.self) == "{\"kind\":\"A\",\"path\":\"/quote\\\"é\"}\n")
        // Text is docker's: raw bytes.
        #expect(ChangeRenderer(format: .text).render(changes[0]) == Array("A /f".utf8) + [0xFF, 0x0A, 0x0A])
    }

    @Test func capabilityChangeIsDockerVisible() throws {
        let l = try Layers(lowers: [Self.etcAB], upper: [.dir("etc", [.file("a", "a")])])
        // Same size and (restored) mtime as the lower file: only the capability differs.
        try Shell.run(["touch", "-d", "@\(DiffScenario.imageTime)", l.upper + "/etc/a"])
        #expect(try l.lines() == [])
        let r = try Shell.run(["setcap", "cap_net_raw+ep", l.upper + "/etc/a"])
        try #require(r.succeeded, "setcap failed: \(r.stderr)")
        #expect(try l.lines() == ["C /etc", "C /etc/a"])
    }

    @Test func verboseTextAndJSON() throws {
        let l = try Layers(lowers: [Self.etcAB], upper: [.dir("etc", [.file("a", "abc", mode: 0o600)])])
        try Shell.run(["touch", "-d", "@\(DiffScenario.imageTime)", l.upper + "/etc/a"])
        let changes = try UpperWalk(lowerPaths: l.lowers, upperPath: l.upper).changes()
        #expect(changes.map(\.description) == ["C /etc", "C /etc/a"])
        let text = String(decoding: ChangeRenderer(format: .text, verbose: true).render(changes[1]), as: UTF8.self)
        #expect(text == "C /etc/a\told=file 0644 0:0 size=1 mtime=2020-09-13T12:26:40Z\tnew=file 0600 0:0 size=3 mtime=2020-09-13T12:26:40Z\n")
        let json = String(decoding: ChangeRenderer(format: .json, verbose: true).render(changes[1]), as: UTF8.self)
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        #expect(object?["kind"] as? String == "C")
        #expect((object?["old"] as? [String: Any])?["mode"] as? String == "0644")
        #expect((object?["new"] as? [String: Any])?["size"] as? Int == 3)
    }
}
