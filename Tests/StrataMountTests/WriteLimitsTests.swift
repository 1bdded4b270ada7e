import Foundation
import Glibc
import LayerSystem
import StrataTestSupport
import Testing

// Two limits a user of the write path runs into: a full upper filesystem, and
// other users on an `allow_other` mount. Kernel overlayfs is the oracle: each
// scenario runs on both, and the per-step outcomes (success or the errno text)
// must be the same; invariants that hold whatever the outcome (no EIO, no hang,
// nothing half-done, no leftovers in the work directory) are checked on both.

// MARK: - Shared plumbing

/// The two writable overlays compared here.
enum WriteLimitsImplementation: String, CaseIterable, Sendable {
    case kernel, strata
}

/// A scenario's outcomes, step by step: `label: ok` or `label: <strerror text>`.
/// `STRATA_SHOW_TRANSCRIPTS=1` prints both implementations' transcripts side by side.
struct WriteLimitsTranscript {
    var steps: [(label: String, result: String)] = []
    mutating func note(_ label: String, _ result: String) { steps.append((label, result)) }
    mutating func note(_ label: String, _ result: Bool) { steps.append((label, result ? "yes" : "NO")) }

    /// Parses `label: result` lines (the output of the permission script).
    init(lines: String = "") {
        for line in lines.split(separator: "\n", omittingEmptySubsequences: true) {
            guard let colon = line.range(of: ": ") else { steps.append((String(line), "")); continue }
            steps.append((String(line[..<colon.lowerBound]), String(line[colon.upperBound...])))
        }
    }
}

struct WriteLimitsError: Error, CustomStringConvertible {
    var description: String
}

enum WriteLimits {
    static let hasSetpriv = ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv"].contains { FileManager.default.isExecutableFile(atPath: $0) }

    /// Records every step whose outcome differs between kernel overlayfs and Strata, side by side.
    static func expectSameOutcomes(strata: WriteLimitsTranscript, kernel: WriteLimitsTranscript, _ label: String,
                                   sourceLocation: SourceLocation = #_sourceLocation) {
        if ProcessInfo.processInfo.environment["STRATA_SHOW_TRANSCRIPTS"] == "1" {
            print("== \(label): step | kernel overlayfs | strata")
            for (k, s) in zip(kernel.steps, strata.steps) { print("\(k.label) | \(k.result) | \(s.result)") }
        }
        var differences: [String] = []
        for i in 0..<max(strata.steps.count, kernel.steps.count) {
            let k = i < kernel.steps.count ? kernel.steps[i] : ("(missing)", "")
            let s = i < strata.steps.count ? strata.steps[i] : ("(missing)", "")
            if k.0 != s.0 {
                differences.append("step \(i): kernel ran '\(k.0)', strata ran '\(s.0)' (transcripts out of step)")
                break
            }
            if k.1 != s.1 { differences.append("\(k.0):\n    kernel overlayfs: \(k.1)\n    strata:           \(s.1)") }
        }
        guard !differences.isEmpty else { return }
        let report = "\(label): \(differences.count) step(s) differ from kernel overlayfs\n" + differences.joined(separator: "\n")
        Issue.record(Comment(rawValue: report), sourceLocation: sourceLocation)
    }

    /// Runs `arguments` with `directory` as working directory (so messages name
    /// relative paths, identical on both mounts), killed after 60 s: a hang is a
    /// failure, never a stuck test run.
    @discardableResult
    static func run(in directory: String, _ arguments: [String]) throws -> Shell.Result {
        try Shell.run(["timeout", "-s", "KILL", "60", "sh", "-c", "cd \"$0\" && exec \"$@\"", directory] + arguments, timeout: 90)
    }

    /// A `/bin/sh` script run in `directory`, bounded the same way.
    @discardableResult
    static func script(in directory: String, _ text: String) throws -> Shell.Result {
        try run(in: directory, ["sh", "-c", text])
    }

    /// `ok`, `timed out`, or the strerror text that ends the first error line
    /// (coreutils, dd and sh all end it with `: <strerror>`).
    static func outcome(_ r: Shell.Result) -> String {
        if r.status == 137 || r.status == 124 { return "TIMED OUT (hang)" }
        if r.succeeded { return "ok" }
        let line = r.stderr.split(separator: "\n").first { $0.contains(": ") }.map(String.init) ?? ""
        guard let last = line.range(of: ": ", options: .backwards) else { return "failed (status \(r.status), no message)" }
        return String(line[last.upperBound...])
    }

    /// Mounts a tmpfs at `path` with `options`, runs `body`, unmounts it (also when `body` throws).
    static func withTmpfs<T>(at path: String, options: String, _ body: () throws -> T) throws -> T {
        let r = try Shell.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path])
        guard r.succeeded else { throw WriteLimitsError(description: "mount -t tmpfs failed: \(r.stderr)") }
        defer {
            if (try? Shell.run(["umount", path]))?.succeeded != true { _ = try? Shell.run(["umount", "-l", path]) }
        }
        return try body()
    }

    /// A writable overlay whose upper and work directories are on their own tmpfs.
    struct SmallUpper {
        var root: String      // the merged mount
        var upper: String
        var work: String
        var tmpfs: String     // the tmpfs mount point (upper and work are inside)
    }

    /// Mounts `implementation` over `lowers` with upper and work on a fresh
    /// tmpfs (`tmpfsOptions`) under `tmp`, runs `body`, unmounts both.
    static func withSmallUpper<T>(_ implementation: WriteLimitsImplementation, lowers: [String], in tmp: TemporaryDirectory,
                                  tmpfsOptions: String, _ body: (SmallUpper) throws -> T) throws -> T {
        let name = implementation.rawValue
        let fs = tmp.makeDirectory("\(name)-fs"), mountPoint = tmp.makeDirectory("\(name)-m")
        return try withTmpfs(at: fs, options: tmpfsOptions) {
            let m = SmallUpper(root: mountPoint, upper: fs + "/u", work: fs + "/w", tmpfs: fs)
            for d in [m.upper, m.work] where mkdir(d, 0o755) != 0 {
                throw WriteLimitsError(description: "mkdir \(d): \(String(cString: strerror(errno)))")
            }
            switch implementation {
            case .kernel:
                return try Mounts.withKernelOverlay(lowers: lowers, upper: m.upper, work: m.work, at: mountPoint) { try body(m) }
            case .strata:
                return try Mounts.withStrata(["--lower", lowers.joined(separator: ":"), "--upper", m.upper, "--work", m.work],
                                             at: mountPoint) { try body(m) }
            }
        }
    }

    /// The implementations a scenario runs on: Strata always, the kernel where it can be mounted.
    static var implementations: [WriteLimitsImplementation] {
        if TestEnvironment.hasKernelOverlay { return [.kernel, .strata] }
        print("note: kernel overlayfs cannot be mounted here: Strata is checked for its invariants only")
        return [.strata]
    }

    /// A step outcome that is wrong whatever the kernel does: a hang, EIO, a
    /// half-done operation, a failed check.
    static func isFailure(_ result: String) -> Bool {
        result.contains("TIMED OUT") || result.contains("HALF-DONE") || result.contains("Input/output error") || result == "NO"
    }

    /// Whether two files have the same bytes (`cmp`, bounded).
    static func same(_ a: String, _ b: String) throws -> Bool {
        try Shell.run(["timeout", "-s", "KILL", "60", "cmp", "-s", a, b], timeout: 90).succeeded
    }

    /// Entries of the work directory's scratch area (`WORK/work`): must be empty between operations.
    /// What the daemon left in `WORK/work`, besides the shared whiteout all whiteouts link to.
    static func workLeftovers(_ m: SmallUpper) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: m.work + "/work")) ?? []).filter { $0 != "#strata-whiteout" }.sorted()
    }

    /// Bytes available on the filesystem holding `path` (statfs, bounded).
    static func availableBytes(_ path: String) throws -> Int64 {
        let r = try Shell.run(["timeout", "-s", "KILL", "60", "stat", "-f", "-c", "%S %a", path], timeout: 90)
        let parts = r.stdout.split(separator: " ").compactMap { Int64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        return parts.count == 2 ? parts[0] * parts[1] : -1
    }

    /// How a lower file looks in the merged view, in one word or phrase: the
    /// name must be listed by readdir exactly when it can be looked up, and
    /// then hold `content`. Anything else is a half-done operation.
    static func state(of relative: String, in root: String, content: String) throws -> String {
        let slash = relative.lastIndex(of: "/")
        let parent = slash.map { String(relative[..<$0]) } ?? "."
        let name = slash.map { String(relative[relative.index(after: $0)...]) } ?? relative
        let r = try script(in: root, """
            if ls -a -- "\(parent)" | grep -qxF -- "\(name)"; then echo listed; else echo unlisted; fi
            if [ -e "\(relative)" ]; then echo exists; cat -- "\(relative)"; else echo absent; fi
            """)
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.count >= 2 else { return "HALF-DONE: cannot inspect (\(r.stderr))" }
        switch (lines[0], lines[1]) {
        case ("unlisted", "absent"): return "absent"
        case ("listed", "exists"):
            var body = lines.dropFirst(2).joined(separator: "\n")
            while body.hasSuffix("\n") { body.removeLast() }
            return body == content ? "present, content intact" : "HALF-DONE: content differs (\(body.prefix(40)))"
        default: return "HALF-DONE: readdir says \(lines[0]), lookup says \(lines[1])"
        }
    }

    /// Lines of `find DIR` (relative, sorted), bounded; `exclude` drops names with that prefix.
    static func entries(of directory: String, excludingPrefix exclude: String? = nil) throws -> String {
        let r = try script(in: directory, "find . -mindepth 1 | sort")
        return r.stdout.split(separator: "\n").map(String.init)
            .filter { line in exclude.map { !(line.split(separator: "/").last ?? "").hasPrefix($0) } ?? true }
            .joined(separator: " ")
    }
}

/// The two suites of this file (`--filter WriteLimitsTests` runs both).
enum WriteLimitsTests {}

// MARK: - 1. Full upper filesystem

extension WriteLimitsTests {

@Suite("Full upper filesystem: ENOSPC like kernel overlayfs", .serialized,
       .enabled(if: TestEnvironment.hasFuse, "skipped: /dev/fuse is absent on this machine"),
       .enabled(if: TestEnvironment.isRoot, "skipped: mounting the small tmpfs upper needs root"))
struct FullUpperFilesystem {
    /// Lowers on /tmp: `l1` (top) and `l2` (bottom).
    static func makeLowers(_ tmp: TemporaryDirectory, script: String) throws -> [String] {
        let l1 = tmp.makeDirectory("l1"), l2 = tmp.makeDirectory("l2")
        let r = try Shell.run(["/bin/sh", "-ec", script, l1, l2])
        guard r.succeeded else { throw WriteLimitsError(description: "building lowers failed: \(r.stderr)") }
        return [l1, l2]
    }

    @Test("writing until the upper is full: ENOSPC (not EIO, no hang), earlier files intact, usable again after a delete")
    func writeUntilFull() throws {
        let tmp = TemporaryDirectory(prefix: "wlfull")
        let lowers = try Self.makeLowers(tmp, script: """
            printf 'top\\n' > "$0/top"
            printf 'lower\\n' > "$1/lf"; printf 'lower2\\n' > "$1/lf2"
            mkdir "$1/ld"; printf 'inner\\n' > "$1/ld/inner"; printf 'inner2\\n' > "$1/ld/inner2"
            """)
        // Page-aligned sizes, so that once the tmpfs is full even a 1-byte append needs a new page.
        let keep1 = tmp.sub("keep1"), keep2 = tmp.sub("keep2"), after = tmp.sub("after")
        try Shell.sh("head -c 307200 /dev/urandom > \(keep1); head -c 1048576 /dev/urandom > \(keep2); head -c 2097152 /dev/urandom > \(after)")
        var transcripts: [WriteLimitsImplementation: WriteLimitsTranscript] = [:]
        for implementation in WriteLimits.implementations {
            let who = implementation.rawValue
            transcripts[implementation] = try WriteLimits.withSmallUpper(implementation, lowers: lowers, in: tmp, tmpfsOptions: "size=8m") { m in
                var t = WriteLimitsTranscript()
                t.note("copy keep1 (300 KiB)", WriteLimits.outcome(try WriteLimits.run(in: m.root, ["cp", keep1, "keep1"])))
                t.note("copy keep2 (1 MiB)", WriteLimits.outcome(try WriteLimits.run(in: m.root, ["cp", keep2, "keep2"])))

                let fill = try WriteLimits.run(in: m.root, ["dd", "if=/dev/zero", "of=big", "bs=64k"])
                t.note("dd into a new file until full", WriteLimits.outcome(fill))
                #expect(fill.status == 1 && fill.stderr.contains("No space left on device"),
                        "\(who): filling the upper must end in ENOSPC from write; dd exited \(fill.status): \(fill.stderr)")
                #expect(!fill.stderr.contains("Input/output error"), "\(who): EIO instead of ENOSPC: \(fill.stderr)")
                let big = try? System.attributes(m.root + "/big"), bigUpper = try? System.attributes(m.upper + "/big")
                #expect((big?.size ?? 0) > 6 << 20 && (big?.size ?? 0) <= 8 << 20,
                        "\(who): the full file should hold nearly 8 MiB, has \(big?.size ?? -1)")
                #expect(big?.size == bigUpper?.size, "\(who): merged size \(big?.size ?? -1) vs upper size \(bigUpper?.size ?? -1)")
                t.note("upper filesystem has no space left", try WriteLimits.availableBytes(m.tmpfs) < 64 << 10)
                t.note("statfs of the mount equals the upper filesystem's",
                       try WriteLimits.availableBytes(m.root) == WriteLimits.availableBytes(m.tmpfs))

                t.note("keep1 intact", try WriteLimits.same(keep1, m.root + "/keep1"))
                t.note("keep2 intact", try WriteLimits.same(keep2, m.root + "/keep2"))
                t.note("write 4 KiB into another new file",
                       WriteLimits.outcome(try WriteLimits.run(in: m.root, ["dd", "if=/dev/zero", "of=small", "bs=4k", "count=1"])))
                t.note("create an empty file (no data needed)", WriteLimits.outcome(try WriteLimits.run(in: m.root, ["touch", "empty"])))
                // dd, not the shell's printf: dash reports every failed write as "I/O error".
                let append = try WriteLimits.run(in: m.root, ["dd", "if=/dev/zero", "of=keep1", "bs=4", "count=1", "oflag=append", "conv=notrunc"])
                t.note("append to keep1", WriteLimits.outcome(append))
                if !append.succeeded {
                    #expect(try WriteLimits.same(keep1, m.root + "/keep1"), "\(who): keep1 changed by a failed append")
                }
                t.note("keep2 intact after failed writes", try WriteLimits.same(keep2, m.root + "/keep2"))

                // Deleting needs no data blocks: whiteouts and directory copy-ups still work.
                t.note("delete a lower file while full", WriteLimits.outcome(try WriteLimits.run(in: m.root, ["rm", "lf"])))
                t.note("lf after delete", try WriteLimits.state(of: "lf", in: m.root, content: "lower"))
                t.note("rename a lower file while full", WriteLimits.outcome(try WriteLimits.run(in: m.root, ["mv", "lf2", "lf2-moved"])))
                t.note("lf2 after rename", try WriteLimits.state(of: "lf2", in: m.root, content: "lower2"))
                t.note("lf2-moved after rename", try WriteLimits.state(of: "lf2-moved", in: m.root, content: "lower2"))
                t.note("delete a file of a lower dir while full", WriteLimits.outcome(try WriteLimits.run(in: m.root, ["rm", "ld/inner"])))
                t.note("ld/inner after delete", try WriteLimits.state(of: "ld/inner", in: m.root, content: "inner"))
                t.note("ld/inner2 untouched", try WriteLimits.state(of: "ld/inner2", in: m.root, content: "inner2"))

                t.note("rename an upper file while full", WriteLimits.outcome(try WriteLimits.run(in: m.root, ["mv", "empty", "empty2"])))
                t.note("mkdir while full", WriteLimits.outcome(try WriteLimits.run(in: m.root, ["mkdir", "newdir"])))
                t.note("mkdir over a deleted lower name while full (opaque dir)", WriteLimits.outcome(try WriteLimits.run(in: m.root, ["mkdir", "lf"])))
                t.note("fallocate 1 MiB while full", WriteLimits.outcome(try WriteLimits.run(in: m.root, ["fallocate", "-l", "1M", "falloc"])))
                t.note("size of the file fallocate failed on", ((try? System.attributes(m.root + "/falloc"))?.size).map { "\($0)" } ?? "absent")
                t.note("sparse truncate -s 100M while full", WriteLimits.outcome(try WriteLimits.run(in: m.root, ["truncate", "-s", "100M", "sparse"])))
                t.note("delete the big file", WriteLimits.outcome(try WriteLimits.run(in: m.root, ["rm", "big"])))
                t.note("space is back", try WriteLimits.availableBytes(m.tmpfs) > 4 << 20)
                t.note("copy 2 MiB into a new file after the delete", WriteLimits.outcome(try WriteLimits.run(in: m.root, ["cp", after, "after"])))
                t.note("new file correct", try WriteLimits.same(after, m.root + "/after"))
                t.note("new file correct in the upper", try WriteLimits.same(after, m.upper + "/after"))
                t.note("keep1 still intact", try WriteLimits.same(keep1, m.root + "/keep1"))
                t.note("append to keep2 now", WriteLimits.outcome(
                    try WriteLimits.run(in: m.root, ["dd", "if=/dev/zero", "of=keep2", "bs=4", "count=1", "oflag=append", "conv=notrunc"])))
                t.note("top-layer file readable", try WriteLimits.state(of: "top", in: m.root, content: "top"))
                if implementation == .strata {
                    #expect(WriteLimits.workLeftovers(m).isEmpty, "strata: leftovers in the work directory: \(WriteLimits.workLeftovers(m))")
                }
                t.note("upper entries", try WriteLimits.entries(of: m.upper))
                return t
            }
        }
        for (implementation, transcript) in transcripts {
            for step in transcript.steps where WriteLimits.isFailure(step.result) {
                Issue.record("\(implementation.rawValue): \(step.label): \(step.result)")
            }
        }
        if let k = transcripts[.kernel], let s = transcripts[.strata] {
            WriteLimits.expectSameOutcomes(strata: s, kernel: k, "writing until full")
        }
    }

    @Test("copy-up of a lower file larger than the free space: ENOSPC, lower view unchanged, no leftovers")
    func copyUpLargerThanFreeSpace() throws {
        let tmp = TemporaryDirectory(prefix: "wlcopy")
        let lowers = try Self.makeLowers(tmp, script: """
            printf 'top\\n' > "$0/top"
            head -c 20971520 /dev/urandom > "$1/big20"; chmod 640 "$1/big20"
            mkdir -p "$1/d/e"; head -c 12582912 /dev/urandom > "$1/d/e/big12"
            printf 'small\\n' > "$1/small"
            """)
        let big20 = lowers[1] + "/big20", big12 = lowers[1] + "/d/e/big12"
        var transcripts: [WriteLimitsImplementation: WriteLimitsTranscript] = [:]
        for implementation in WriteLimits.implementations {
            let who = implementation.rawValue
            transcripts[implementation] = try WriteLimits.withSmallUpper(implementation, lowers: lowers, in: tmp, tmpfsOptions: "size=8m") { m in
                var t = WriteLimitsTranscript()
                let free = try WriteLimits.availableBytes(m.tmpfs)
                let attempts: [(String, [String])] = [
                    ("append to the 20 MiB lower file", ["sh", "-c", "printf more >> big20"]),
                    ("hard link (copy-up first)", ["ln", "big20", "big20-link"]),
                    ("rename (copy-up first)", ["mv", "-T", "big20", "big20-moved"]),
                    ("write in place (O_WRONLY, no truncation)", ["dd", "if=/dev/zero", "of=big20", "bs=1", "count=1", "conv=notrunc"]),
                    ("chmod (copy-up with data)", ["chmod", "600", "big20"]),
                    ("set a user xattr", ["setfattr", "-n", "user.x", "-v", "1", "big20"]),
                    ("touch -d", ["touch", "-d", "@1600000000", "big20"]),
                    ("append to a 12 MiB file in a lower dir", ["sh", "-c", "printf more >> d/e/big12"]),
                ]
                for (label, command) in attempts {
                    let r = try WriteLimits.run(in: m.root, command)
                    t.note(label, WriteLimits.outcome(r))
                    #expect(!r.stderr.contains("Input/output error"), "\(who): \(label): EIO: \(r.stderr)")
                    if implementation == .strata {
                        let leftovers = WriteLimits.workLeftovers(m)
                        #expect(leftovers.isEmpty, "strata: \(label): the work directory keeps \(leftovers)")
                    }
                }
                t.note("big20-link after the failed link", try WriteLimits.state(of: "big20-link", in: m.root, content: ""))
                t.note("big20-moved after the failed rename", try WriteLimits.state(of: "big20-moved", in: m.root, content: ""))
                t.note("big20 unchanged in the merged view", try WriteLimits.same(big20, m.root + "/big20"))
                t.note("big12 unchanged in the merged view", try WriteLimits.same(big12, m.root + "/d/e/big12"))
                let a = try? System.attributes(m.root + "/big20")
                t.note("big20 mode and size", a.map { "\(String($0.permissions, radix: 8)) \($0.size)" } ?? "absent")
                t.note("big20 not in the upper", (try? System.attributes(m.upper + "/big20")) == nil)
                t.note("work directory entries", WriteLimits.workLeftovers(m).isEmpty ? "(none)" : WriteLimits.workLeftovers(m).joined(separator: " "))
                let freeAfter = try WriteLimits.availableBytes(m.tmpfs)
                t.note("no space leaked by the failed copy-ups", freeAfter >= free - (64 << 10))
                #expect(freeAfter >= free - (64 << 10), "\(who): free space \(free) before, \(freeAfter) after the failed copy-ups")
                t.note("upper after the failures", try WriteLimits.entries(of: m.upper))

                t.note("append to a small lower file", WriteLimits.outcome(try WriteLimits.script(in: m.root, "printf 'more\\n' >> small")))
                t.note("small after append", try WriteLimits.state(of: "small", in: m.root, content: "small\nmore"))
                t.note("write 4 MiB into a new file", WriteLimits.outcome(
                    try WriteLimits.run(in: m.root, ["dd", "if=/dev/zero", "of=new4", "bs=1M", "count=4"])))
                // O_TRUNC needs no data: the copy-up fits (kernel overlayfs skips the data too).
                t.note("open big20 with O_TRUNC", WriteLimits.outcome(try WriteLimits.script(in: m.root, ": > big20")))
                t.note("big20 size after O_TRUNC", ((try? System.attributes(m.root + "/big20"))?.size).map { "\($0)" } ?? "absent")
                if implementation == .strata {
                    #expect(WriteLimits.workLeftovers(m).isEmpty, "strata: leftovers in the work directory: \(WriteLimits.workLeftovers(m))")
                }
                t.note("upper at the end", try WriteLimits.entries(of: m.upper))
                return t
            }
        }
        for (implementation, transcript) in transcripts {
            for step in transcript.steps where WriteLimits.isFailure(step.result) {
                Issue.record("\(implementation.rawValue): \(step.label): \(step.result)")
            }
        }
        if let s = transcripts[.strata] {
            for step in s.steps.prefix(8) {
                #expect(step.result == "No space left on device", "strata: \(step.label): \(step.result), expected ENOSPC")
            }
        }
        if let k = transcripts[.kernel], let s = transcripts[.strata] {
            WriteLimits.expectSameOutcomes(strata: s, kernel: k, "copy-up larger than the free space")
        }
    }

    @Test("deleting and renaming lower entries with no inodes left: a clean errno, never half-deleted")
    func removeWithoutInodes() throws {
        let tmp = TemporaryDirectory(prefix: "wlinode")
        let lowers = try Self.makeLowers(tmp, script: """
            printf 'top\\n' > "$0/top"
            printf 'lower\\n' > "$1/lf"; printf 'lower2\\n' > "$1/lf2"
            mkdir "$1/ld"; printf 'inner\\n' > "$1/ld/inner"
            mkdir "$1/ld2"; printf 'x\\n' > "$1/ld2/x"
            """)
        var transcripts: [WriteLimitsImplementation: WriteLimitsTranscript] = [:]
        for implementation in WriteLimits.implementations {
            let who = implementation.rawValue
            transcripts[implementation] = try WriteLimits.withSmallUpper(implementation, lowers: lowers, in: tmp,
                                                                         tmpfsOptions: "size=8m,nr_inodes=24") { m in
                var t = WriteLimitsTranscript()
                // Use up the inodes through the mount (how many differs: the kernel keeps more in its work dir).
                let fill = try WriteLimits.script(in: m.root, "i=0; while [ $i -lt 200 ] && touch fill$i 2>/dev/null; do i=$((i+1)); done; echo $i")
                let filled = Int(fill.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
                #expect(filled > 3 && filled < 200, "\(who): created \(filled) files before running out of inodes")
                t.note("create one more file", WriteLimits.outcome(try WriteLimits.run(in: m.root, ["touch", "extra"])))

                func view() throws -> String {
                    [try WriteLimits.state(of: "lf", in: m.root, content: "lower"),
                     try WriteLimits.state(of: "lf-moved", in: m.root, content: "lower"),
                     try WriteLimits.state(of: "ld/inner", in: m.root, content: "inner"),
                     try WriteLimits.state(of: "ld2/x", in: m.root, content: "x")].joined(separator: "; ")
                }
                let attempts: [(String, [String])] = [
                    ("rm a lower file", ["rm", "lf"]),
                    ("rm a file in a lower dir", ["rm", "ld/inner"]),
                    ("mv a lower file", ["mv", "lf", "lf-moved"]),
                    ("rm -r a lower dir", ["rm", "-r", "ld2"]),
                    ("rmdir a lower dir (not empty)", ["rmdir", "ld"]),
                    ("append to a lower file (copy-up)", ["sh", "-c", "printf more >> lf"]),
                    ("chmod a lower file (copy-up)", ["chmod", "600", "lf"]),
                    ("mkdir", ["mkdir", "newdir"]),
                    ("symlink", ["ln", "-s", "lf", "sl"]),
                ]
                for (label, command) in attempts {
                    let r = try WriteLimits.run(in: m.root, command)
                    t.note(label, WriteLimits.outcome(r))
                    #expect(!r.stderr.contains("Input/output error"), "\(who): \(label): EIO: \(r.stderr)")
                    t.note("view after \(label)", try view())
                    if implementation == .strata {
                        let leftovers = WriteLimits.workLeftovers(m)
                        #expect(leftovers.isEmpty, "strata: \(label): the work directory keeps \(leftovers)")
                    }
                }
                // Upper-only files need no whiteout: deleting them frees inodes, then lower deletes work.
                t.note("rm the upper-only files", WriteLimits.outcome(try WriteLimits.script(in: m.root, "rm fill*")))
                let retry = try WriteLimits.run(in: m.root, ["rm", "lf"])
                #expect(retry.succeeded, "\(who): rm lf with free inodes: \(retry.stderr)")
                t.note("rm -r a lower dir with free inodes", WriteLimits.outcome(try WriteLimits.run(in: m.root, ["rm", "-r", "ld2"])))
                t.note("rm a file in a lower dir with free inodes", WriteLimits.outcome(try WriteLimits.run(in: m.root, ["rm", "ld/inner"])))
                t.note("view at the end", try view())
                let listing = try WriteLimits.script(in: m.root, "ls -A ld").stdout.split(separator: "\n").joined(separator: " ")
                t.note("ld listing", listing.isEmpty ? "(empty)" : listing)
                if implementation == .strata {
                    #expect(WriteLimits.workLeftovers(m).isEmpty, "strata: leftovers in the work directory: \(WriteLimits.workLeftovers(m))")
                }
                t.note("upper at the end (fill files aside)", try WriteLimits.entries(of: m.upper, excludingPrefix: "fill"))
                return t
            }
        }
        for (implementation, transcript) in transcripts {
            for step in transcript.steps where WriteLimits.isFailure(step.result) {
                Issue.record("\(implementation.rawValue): \(step.label): \(step.result)")
            }
        }
        if let k = transcripts[.kernel], let s = transcripts[.strata] {
            WriteLimits.expectSameOutcomes(strata: s, kernel: k, "no inodes left")
        }
    }
}

}

// MARK: - 2. Other users on an allow_other mount

extension WriteLimitsTests {

@Suite("allow_other: another user's permissions equal kernel overlayfs", .serialized,
       .enabled(if: TestEnvironment.hasFuse, "skipped: /dev/fuse is absent on this machine"),
       .enabled(if: TestEnvironment.hasKernelOverlay, "skipped: kernel overlayfs cannot be mounted here (needs root)"),
       .enabled(if: WriteLimits.hasSetpriv, "skipped: setpriv (util-linux) is not installed"))
struct AllowOtherPermissions {

    /// Root-owned lowers of every mode that matters, `$0` the top layer, `$1` the bottom one.
    static let lowerScript = #"""
        umask 022
        chmod 755 "$0" "$1"
        # bottom layer
        cd "$1"
        printf 'secret\n' > f600; chmod 600 f600
        printf 'public\n' > f644; chmod 644 f644; setfattr -n user.l -v lv f644
        printf 'shared\n' > f666; chmod 666 f666
        printf 'open\n' > f666b; chmod 666 f666b
        printf '#!/bin/sh\nid -u\n' > suid4755; chmod 4755 suid4755
        printf 'setuid data\n' > suid4777; chmod 4777 suid4777
        printf 'setgid data\n' > sgid2777; chmod 2777 sgid2777
        printf '#!/bin/sh\necho ran as $(id -u)\n' > script755; chmod 755 script755
        mkdir d755; printf 'in\n' > d755/inner; chmod 755 d755
        mkdir sticky; printf 'r\n' > sticky/rootfile; chmod 666 sticky/rootfile; mkdir sticky/rootdir
        printf 'u\n' > sticky/userfile; chown 65534:65534 sticky/userfile; chmod 1777 sticky
        mkdir d700; printf 's\n' > d700/secret; chmod 700 d700
        mkdir sgid; chmod 2777 sgid
        printf 'm\n' > mine; chown 65534:65534 mine
        mkdir mydir; printf 'z\n' > mydir/rootowned; chown 65534:65534 mydir
        printf 'S\n' > mysuid; chown 65534:65534 mysuid; chmod 4755 mysuid
        printf 'W\n' > mysuid2; chown 65534:65534 mysuid2; chmod 4755 mysuid2
        mkdir d744; printf 'f\n' > d744/f; chmod 744 d744
        mkdir d711; printf 'k\n' > d711/known; chmod 711 d711
        # top layer: merges d755 and sticky, and hides nothing
        cd "$0"
        mkdir d755; printf 'top\n' > d755/top; chmod 755 d755
        mkdir sticky; printf 't\n' > sticky/topfile; chmod 1777 sticky
        printf 'top\n' > topfile
        """#

    /// What uid/gid 65534 does on the mount; one `label: outcome` line per step
    /// (`ok` or the strerror text), `v` lines show values.
    static let userScript = #"""
        cd "$0" || exit 1
        umask 022
        r() { label=$1; shift; out=$("$@" 2>&1 >/dev/null); st=$?
              if [ $st -eq 0 ]; then echo "$label: ok"; else
              msg=$(printf '%s\n' "$out" | tail -n 1 | sed 's/.*: //'); echo "$label: ${msg:-failed, status $st}"; fi; }
        v() { label=$1; shift; out=$("$@" 2>&1); echo "$label: $(printf '%s' "$out" | tr '\n' ' ')"; }
        r "read 0600 file" cat f600
        r "access(R_OK) 0600 file" test -r f600
        r "access(W_OK) 0644 file" test -w f644
        r "access(W_OK) 0666 file" test -w f666
        r "access(X_OK) 0755 script" test -x script755
        r "read 0644 file" cat f644
        v "content of 0644 file" cat f644
        r "write 0644 file" sh -c 'echo x >> f644'
        r "truncate 0644 file" truncate -s 0 f644
        r "write 0666 file" sh -c 'echo appended >> f666'
        v "content of 0666 file" cat f666
        r "O_TRUNC 0666 file" sh -c ': > f666b'
        v "size of truncated 0666 file" stat -c %s f666b
        r "create in 0755 dir" touch d755/new
        r "mkdir in 0755 dir" mkdir d755/newdir
        r "unlink in 0755 dir" rm -f d755/inner
        r "rename in 0755 dir" mv d755/inner d755/moved
        r "write root file in 0755 dir" sh -c 'echo x >> d755/inner'
        v "list merged 0755 dir" ls -a d755
        r "create at the mount root (0755)" touch atroot
        r "create in 1777 dir" sh -c 'echo new > sticky/new'
        v "owner and mode of new file" stat -c '%u:%g %a' sticky/new
        r "mkdir in 1777 dir" mkdir sticky/newdir
        v "owner and mode of new dir" stat -c '%u:%g %a' sticky/newdir
        r "symlink in 1777 dir" ln -s ../f644 sticky/link
        v "owner of new symlink" stat -c '%u:%g' sticky/link
        r "mkfifo in 1777 dir" mkfifo sticky/fifo
        v "owner and mode of new fifo" stat -c '%u:%g %a %F' sticky/fifo
        r "mknod a whiteout (c 0 0)" mknod sticky/wh c 0 0
        r "rename own file in 1777 dir" mv sticky/new sticky/new2
        r "delete another user's file in 1777 dir" rm -f sticky/rootfile
        r "delete another user's top-layer file in 1777 dir" rm -f sticky/topfile
        r "rename another user's file in 1777 dir" mv -T sticky/rootfile sticky/stolen
        r "rename own file over another user's in 1777 dir" mv -fT sticky/new2 sticky/rootfile
        r "rmdir another user's empty dir in 1777 dir" rmdir sticky/rootdir
        r "write another user's 0666 file in 1777 dir" sh -c 'echo w >> sticky/rootfile'
        r "delete own lower file in 1777 dir" rm -f sticky/userfile
        r "hardlink root 0600 file (protected_hardlinks)" ln f600 sticky/hl600
        r "hardlink root 0666 file" ln f666 sticky/hl666
        v "link count of 0666 file" stat -c %h f666
        r "move own dir into 0755 dir" mv sticky/newdir d755/
        r "chmod root file" chmod 600 f666
        r "chown root file" chown 65534 f666
        r "chgrp root file" chgrp 65534 f666
        r "touch -d root 0666 file" touch -d @1600000000 f666
        r "touch (now) root 0666 file" touch f666
        r "touch (now) root 0644 file" touch f644
        r "touch -d 1777 dir of root" touch -d @1600000000 sticky
        r "chmod own lower file" chmod 600 mine
        v "mode of own file" stat -c %a mine
        r "touch -d own lower file" touch -d @1600000000 mine
        v "mtime of own file" stat -c %Y mine
        r "chown own file to root" chown 0 mine
        r "chgrp own file to a group not mine" chgrp 0 mine
        r "write own 0644 lower file" sh -c 'echo more >> mine'
        r "delete root file in own lower dir" rm -f mydir/rootowned
        r "create in own lower dir" touch mydir/x
        v "owner of file in own dir" stat -c '%u:%g %a' mydir/x
        r "chgrp own setuid file to own group" chgrp 65534 mysuid
        v "mode of own setuid file after chgrp (setuid cleared)" stat -c %a mysuid
        r "write own setuid file" sh -c 'echo more >> mysuid2'
        v "mode of own setuid file after write (setuid cleared)" stat -c %a mysuid2
        v "list 0744 dir (names only)" ls d744
        r "read file in 0744 dir (no search permission)" cat d744/f
        r "list 0711 dir (search only)" ls d711
        r "read known file in 0711 dir" cat d711/known
        r "list 0700 dir" ls d700
        r "read file in 0700 dir" cat d700/secret
        r "stat file in 0700 dir" stat d700/secret
        r "create in 0700 dir" touch d700/x
        r "mkdir in 0700 dir" mkdir d700/x
        r "rename in 0700 dir" mv d700/secret d700/s2
        r "unlink in 0700 dir" rm -f d700/secret
        r "rmdir the 0700 dir" rmdir d700
        r "write setuid 4755 file" sh -c 'echo x >> suid4755'
        v "mode of 4755 file" stat -c %a suid4755
        r "write setuid 4777 file" sh -c 'echo x >> suid4777'
        v "mode of 4777 file after write (setuid cleared)" stat -c %a suid4777
        r "truncate setgid 2777 file" truncate -s 1 sgid2777
        v "mode of 2777 file after truncate (setgid cleared)" stat -c %a sgid2777
        r "exec 0755 script" ./script755
        v "output of 0755 script" ./script755
        r "exec 0644 file" ./f644
        v "output of setuid 4755 script (not elevated)" ./suid4755
        r "setxattr user.x on not-owned 0644 file" setfattr -n user.x -v 1 f644
        r "setxattr user.x on not-owned 0666 file (writable)" setfattr -n user.x -v 1 f666b
        r "setxattr user.x on not-owned 1777 dir" setfattr -n user.x -v 1 sticky
        r "setxattr trusted.x on own file" setfattr -n trusted.x -v 1 mine
        r "setxattr user.x on own file" setfattr -n user.x -v 1 mine
        r "getxattr on 0600 file" getfattr -n user.l f600
        v "getxattr user.l on 0644 file" getfattr --only-values -n user.l f644
        r "removexattr on not-owned 0644 file" setfattr -x user.l f644
        r "create in 2777 (setgid) dir" touch sgid/f
        v "owner and mode of file in setgid dir" stat -c '%u:%g %a' sgid/f
        r "mkdir in 2777 (setgid) dir" mkdir sgid/d
        v "owner and mode of dir in setgid dir (setgid inherited)" stat -c '%u:%g %a' sgid/d
        r "chmod g+s own file, group not mine" chmod 2755 sgid/f
        v "mode after chmod g+s (setgid dropped)" stat -c %a sgid/f
        v "list 1777 dir" ls -a sticky
        v "list root" ls -a
        """#

    @Test("uid 65534 on root-owned lowers: every operation's result, then the merged views and uppers")
    func otherUserMatchesKernel() throws {
        let tmp = TemporaryDirectory(prefix: "wlperm")
        chmod(tmp.path, 0o755)   // mkdtemp makes it 0700: the other user must reach the mounts
        let l1 = tmp.makeDirectory("l1"), l2 = tmp.makeDirectory("l2")
        let built = try Shell.run(["/bin/sh", "-ec", Self.lowerScript, l1, l2])
        try #require(built.succeeded, "building lowers failed: \(built.stderr)")
        let lowers = [l1, l2]
        let kernel = tmp.makeDirectory("k"), strata = tmp.makeDirectory("s")
        let ku = tmp.makeDirectory("ku"), kw = tmp.makeDirectory("kw"), su = tmp.makeDirectory("su"), sw = tmp.makeDirectory("sw")
        for d in [kernel, strata, ku, su] { chmod(d, 0o755) }   // the merged roots take the uppers' mode

        func runAsNobody(_ root: String) throws -> Shell.Result {
            try Shell.run(["timeout", "-s", "KILL", "60", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "/bin/sh", "-c", Self.userScript, root], timeout: 90)
        }
        var dump = TreeDump.Options()
        dump.directorySizes = false
        dump.mtimes = false
        let (kernelRun, kernelView) = try Mounts.withKernelOverlay(lowers: lowers, upper: ku, work: kw, at: kernel) {
            (try runAsNobody(kernel), try TreeDump.lines(of: kernel, options: dump))
        }
        let (strataRun, strataView) = try Mounts.withStrata(["--lower", lowers.joined(separator: ":"), "--upper", su, "--work", sw],
                                                            at: strata) {
            let options = (try? Shell.run(["findmnt", "-n", "-o", "OPTIONS", strata]))?.stdout ?? ""
            #expect(options.contains("allow_other") && options.contains("default_permissions"),
                    "strata as root should mount with allow_other,default_permissions; findmnt says: \(options)")
            return (try runAsNobody(strata), try TreeDump.lines(of: strata, options: dump))
        }
        #expect(kernelRun.status != 137 && strataRun.status != 137, "the user script timed out (kernel \(kernelRun.status), strata \(strataRun.status))")
        let k = WriteLimitsTranscript(lines: kernelRun.stdout), s = WriteLimitsTranscript(lines: strataRun.stdout)
        #expect(k.steps.count > 80, "the user script stopped early on kernel overlayfs: \(kernelRun.stderr)")

        // What the kernel must answer: keeps this test honest about its premise.
        let expected: [String: String] = [
            "read 0600 file": "Permission denied", "read 0644 file": "ok", "write 0644 file": "Permission denied",
            "write 0666 file": "ok", "create in 0755 dir": "Permission denied", "create in 1777 dir": "ok",
            "owner and mode of new file": "65534:65534 644", "delete another user's file in 1777 dir": "Operation not permitted",
            "chmod root file": "Operation not permitted", "chown root file": "Operation not permitted",
            "touch -d root 0666 file": "Operation not permitted", "touch (now) root 0666 file": "ok",
            "mkdir in 0700 dir": "Permission denied", "rename in 0700 dir": "Permission denied",
            "unlink in 0700 dir": "Permission denied", "list 0700 dir": "Permission denied",
            "write setuid 4777 file": "ok", "mode of 4777 file after write (setuid cleared)": "777",
            "setxattr user.x on not-owned 0644 file": "Permission denied",
        ]
        for (label, result) in expected {
            let got = k.steps.first { $0.label == label }?.result
            #expect(got == result, "kernel overlayfs: \(label): \(got ?? "(not run)"), this test expects \(result)")
        }
        WriteLimits.expectSameOutcomes(strata: s, kernel: k, "operations as uid 65534")
        expectSame(strataView, kernelView, "merged views after the user's operations (as root, mtimes aside)")

        var structure = TreeDump.Options()
        structure.directorySizes = false; structure.mtimes = false; structure.xattrs = false; structure.linkCounts = false
        expectSame(try TreeDump.lines(of: su, options: structure).filter(DifferentialWriteTests.comparableUpperLine),
                   try TreeDump.lines(of: ku, options: structure).filter(DifferentialWriteTests.comparableUpperLine),
                   "upper directories after the user's operations")
    }
}
}
