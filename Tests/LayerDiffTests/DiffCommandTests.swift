import Foundation
import LayerDiff
import LayerSystem
import StrataTestSupport
import Testing

let strataBinaryPresent = Testing.ConditionTrait.enabled(
    if: FileManager.default.isExecutableFile(atPath: StrataBinary.path),
    "the strata binary is not built (swift build --product strata, or set STRATA_BIN)")

/// A failed run: exit 2, nothing on stdout, exactly one `strata: …` line on stderr.
func expectOneLineFailure(_ r: Shell.Result, mentioning word: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(r.status == 2, "exit status \(r.status), stderr: \(r.stderr)", sourceLocation: sourceLocation)
    #expect(r.stdout.isEmpty, "stdout: \(r.stdout)", sourceLocation: sourceLocation)
    let errorLines = r.stderr.split(separator: "\n")
    #expect(errorLines.count == 1 && r.stderr.hasPrefix("strata: "), "stderr: \(r.stderr)", sourceLocation: sourceLocation)
    #expect(r.stderr.contains(word), "stderr: \(r.stderr)", sourceLocation: sourceLocation)
}

@Suite("strata diff command", strataBinaryPresent)
struct DiffCommandTests {
    @Test(kernelOverlay)
    func everyModeGivesTheSameLines() throws {
        let s = try DiffScenario(layers: [[.dir("etc", [.file("hosts", "h")])], baseImage])
        let expected = "C /etc\nA /etc/new\nD /etc/motd\nC /opt\nC /opt/d\nD /opt/d/x\nD /opt/d/y\n"
        try s.withMounts {
            try s.run("touch etc/new; rm etc/motd; rm -rf opt/d; mkdir opt/d")
            let upper = try StrataBinary.run(["diff", "--lower", s.lowerList, "--upper", s.upper])
            #expect(upper.status == 0 && upper.stdout == expected, "\(upper.stderr)")
            let trees = try StrataBinary.run(["diff", s.lowerView, s.merged])
            #expect(trees.status == 0 && trees.stdout == expected, "\(trees.stderr)")
            let mount = try StrataBinary.run(["diff", s.merged])
            #expect(mount.status == 0 && mount.stdout == expected, "\(mount.stderr)")
            let exit = try StrataBinary.run(["diff", "--exit-code", s.merged])
            #expect(exit.status == 1 && exit.stdout == expected)
            let readOnly = try StrataBinary.run(["diff", "--exit-code", s.lowerView])
            #expect(readOnly.status == 0 && readOnly.stdout.isEmpty, "\(readOnly.stderr)")

            let json = try StrataBinary.run(["diff", "--format", "json", "--verbose", "--lower", s.lowerList, "--upper", s.upper])
            #expect(json.status == 0)
            let objects = try json.stdout.split(separator: "\n").map {
                try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
            }
            #expect(objects.map { "\($0["kind"]!) \($0["path"]!)\n" }.joined() == expected)
            #expect((objects[1]["new"] as? [String: Any])?["type"] as? String == "file")
            #expect(objects[2]["new"] is NSNull)
        }
        let noChanges = try StrataBinary.run(["diff", "--exit-code", "--lower", s.lowerList, "--upper", s.directory.makeDirectory("empty")])
        #expect(noChanges.status == 0 && noChanges.stdout.isEmpty, "\(noChanges.stderr)")
    }

    @Test(kernelOverlay)
    func strictFlag() throws {
        let s = try DiffScenario(layers: [baseImage])
        try s.withMounts {
            try s.run("setfattr -n user.k -v v etc/issue; touch opt")
            #expect(try StrataBinary.run(["diff", s.merged]).stdout == "")
            #expect(try StrataBinary.run(["diff", "--strict", s.merged]).stdout == "C /etc\nC /etc/issue\nC /opt\n")
            #expect(try StrataBinary.run(["diff", "--strict", s.lowerView, s.merged]).stdout == "C /etc\nC /etc/issue\nC /opt\n")
        }
    }

    @Test(rootOnly)
    func escapedColonInLowerList() throws {
        let t = TemporaryDirectory(prefix: "sdc")
        let lower = t.makeDirectory("a:b"), upper = t.makeDirectory("u")
        try Fixture.build([.file("x", "1")], at: lower)
        try Fixture.build([.file("y", "1")], at: upper)
        let r = try StrataBinary.run(["diff", "--lower", lower.replacingOccurrences(of: ":", with: "\\:"), "--upper", upper])
        #expect(r.status == 0 && r.stdout == "A /y\n", "\(r.stderr)")
    }

    /// A Docker overlay2 store: layers A (base) and B, container layer C on top.
    static func dockerStore(_ t: TemporaryDirectory) throws -> String {
        let store = t.makeDirectory("overlay2")
        for (id, short) in [("aaaa", "LA"), ("bbbb", "LB"), ("cccc", "LC")] {
            t.makeDirectory("overlay2/\(id)/diff")
            t.makeDirectory("overlay2/\(id)/work")
            try Shell.run(["mkdir", "-p", "\(store)/l"])
            try Shell.run(["ln", "-s", "../\(id)/diff", "\(store)/l/\(short)"])
            try short.write(toFile: "\(store)/\(id)/link", atomically: true, encoding: .utf8)
        }
        try Fixture.build([.dir("etc", [.file("motd", "hi"), .file("issue", "x")]), .dir("usr", [.file("bin", "b")])], at: "\(store)/aaaa/diff")
        try Fixture.build([.dir("etc", [.whiteout("issue"), .file("app", "1")])], at: "\(store)/bbbb/diff")
        try Fixture.build([.dir("etc", [.whiteout("motd"), .file("issue", "new"), .file("app", "22")]), .file("new", "n")],
                          at: "\(store)/cccc/diff")
        try Shell.run(["find", "\(store)/aaaa/diff", "\(store)/bbbb/diff", "-exec", "touch", "-h", "-d", "@\(DiffScenario.imageTime)", "{}", "+"])
        try "l/LA".write(toFile: "\(store)/bbbb/lower", atomically: true, encoding: .utf8)
        try "l/LB:l/LA\n".write(toFile: "\(store)/cccc/lower", atomically: true, encoding: .utf8)
        return store
    }

    @Test(rootOnly)
    func dockerLayerDirectory() throws {
        let t = TemporaryDirectory(prefix: "sdd")
        let store = try Self.dockerStore(t)
        let r = try StrataBinary.run(["diff", "--docker-layer", "\(store)/cccc"])
        #expect(r.status == 0, "\(r.stderr)")
        // issue was deleted by layer B, so re-creating it is A, not C.
        #expect(r.stdout == "C /etc\nC /etc/app\nA /etc/issue\nD /etc/motd\nA /new\n")
        let base = try StrataBinary.run(["diff", "--docker-layer", "\(store)/aaaa"])
        #expect(base.stdout == "A /etc\nA /etc/issue\nA /etc/motd\nA /usr\nA /usr/bin\n", "\(base.stderr)")

        try "l/LB:l/MISSING".write(toFile: "\(store)/cccc/lower", atomically: true, encoding: .utf8)
        expectOneLineFailure(try StrataBinary.run(["diff", "--docker-layer", "\(store)/cccc"]), mentioning: "l/MISSING")
        try "l/LB::l/LA".write(toFile: "\(store)/cccc/lower", atomically: true, encoding: .utf8)
        expectOneLineFailure(try StrataBinary.run(["diff", "--docker-layer", "\(store)/cccc"]), mentioning: "malformed")
        try "../../etc".write(toFile: "\(store)/cccc/lower", atomically: true, encoding: .utf8)
        expectOneLineFailure(try StrataBinary.run(["diff", "--docker-layer", "\(store)/cccc"]), mentioning: "malformed")
        expectOneLineFailure(try StrataBinary.run(["diff", "--docker-layer", "\(store)/l"]), mentioning: "no diff/")
    }

    @Test(rootOnly)
    func badInputs() throws {
        let t = TemporaryDirectory(prefix: "sdb")
        let lower = t.makeDirectory("l"), upper = t.makeDirectory("u")
        try Fixture.build([.dir("etc", [.file("a")])], at: lower)
        try Fixture.build([.dir("etc", [.file("b")]), .dir("secret", [.file("s")])], at: upper)
        expectOneLineFailure(try StrataBinary.run(["diff", "--lower", "/nonexistent/strata", "--upper", upper]), mentioning: "does not exist")
        expectOneLineFailure(try StrataBinary.run(["diff", "--lower", lower, "--upper", "/nonexistent/strata"]), mentioning: "does not exist")
        expectOneLineFailure(try StrataBinary.run(["diff", "--upper", upper]), mentioning: "--lower")
        expectOneLineFailure(try StrataBinary.run(["diff", "--lower", lower]), mentioning: "--upper")
        expectOneLineFailure(try StrataBinary.run(["diff", "--lower", "\(lower)::\(lower)", "--upper", upper]), mentioning: "empty")
        expectOneLineFailure(try StrataBinary.run(["diff", "/nonexistent/a", upper]), mentioning: "does not exist")
        expectOneLineFailure(try StrataBinary.run(["diff", lower]), mentioning: "not a mountpoint")
        expectOneLineFailure(try StrataBinary.run(["diff"]), mentioning: "nothing to diff")
        expectOneLineFailure(try StrataBinary.run(["diff", "--format", "yaml", lower, upper]), mentioning: "--format")
        expectOneLineFailure(try StrataBinary.run(["diff", "--lower", lower, "--upper", "\(upper)/etc/b"]), mentioning: "not a directory")

        // An unreadable entry: a directory only root may read, diffed by an unprivileged user.
        try Shell.run(["chmod", "755", t.path])
        try Shell.run(["chmod", "700", "\(upper)/secret"])
        let r = try Shell.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               StrataBinary.path, "diff", "--lower", lower, "--upper", upper])
        expectOneLineFailure(r, mentioning: "/secret")
    }
}
