import Foundation
import Glibc
import LayerSystem
import StrataTestSupport
import Testing

// Shared plumbing of the hostile-layer suites (HostileSymlinkTests,
// HostileMarkerTests, HostileLimitsTests): a canary tree that must stay
// byte-identical, layers built by shell scripts, and the same operations run on
// kernel overlayfs and on Strata with their outcomes compared step by step
// (`WriteLimitsTranscript`, `WriteLimits.expectSameOutcomes`).

/// A tree outside every layer, upper and work directory that hostile layers
/// point at. Nothing a mount does may change it, and no read through a mount
/// may return its bytes (`marker`) unless a test follows an absolute link on purpose.
struct Canary {
    let path: String
    let before: [String]
    /// Content of the canary's files: must never appear in what a mount returns.
    static let marker = "CANARY-SECRET"

    init(at path: String) throws {
        self.path = path
        let r = try Shell.run(["/bin/sh", "-ec", """
            mkdir -p "$0/dir/sub"
            printf '\(Self.marker)\\n' > "$0/secret"
            printf '\(Self.marker) inner\\n' > "$0/dir/inner"
            printf '\(Self.marker) deeper\\n' > "$0/dir/sub/deeper"
            ln -s secret "$0/link"
            chmod 644 "$0/secret"
            """, path])
        guard r.succeeded else { throw HostileError(description: "building the canary failed: \(r.stderr)") }
        before = try TreeDump.lines(of: path)
    }

    /// Records an issue when anything in the canary changed.
    func expectUnchanged(_ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            expectSame(try TreeDump.lines(of: path), before, "\(label): the canary tree outside the layers changed",
                       sourceLocation: sourceLocation)
        } catch {
            Issue.record("\(label): the canary cannot be read: \(error)", sourceLocation: sourceLocation)
        }
    }
}

struct HostileError: Error, CustomStringConvertible {
    var description: String
}

enum Hostile {
    /// Shell functions for transcripts: `r LABEL CMD…` prints `LABEL: ok` or the
    /// strerror text that ends the command's last error line; `v LABEL CMD…`
    /// prints `LABEL: ` and the command's output on one line (errors included).
    static let prelude = #"""
        r() { label=$1; shift; out=$("$@" 2>&1 >/dev/null); st=$?
              if [ $st -eq 0 ]; then echo "$label: ok"; else
              msg=$(printf '%s\n' "$out" | tail -n 1 | sed 's/.*: //'); echo "$label: ${msg:-failed, status $st}"; fi; }
        v() { label=$1; shift; out=$("$@" 2>&1); echo "$label: $(printf '%s' "$out" | tr '\n' ' ')"; }

        """#

    /// Runs `script` (after `prelude`) with `directory` as its working
    /// directory, killed after `timeout` seconds (a hang is a failure, never a
    /// stuck run); `user` runs it as that uid/gid via setpriv.
    static func transcript(in directory: String, _ script: String, user: (UInt32, UInt32)? = nil,
                           environment: [String: String] = [:], timeout: Int = 60) throws -> (WriteLimitsTranscript, Shell.Result) {
        var command = ["timeout", "-s", "KILL", "\(timeout)"]
        if let (uid, gid) = user { command += ["setpriv", "--reuid=\(uid)", "--regid=\(gid)", "--clear-groups"] }
        if !environment.isEmpty { command += ["env"] + environment.map { "\($0.key)=\($0.value)" }.sorted() }
        command += ["/bin/sh", "-c", "cd \"$0\" || exit 99\n" + prelude + script, directory]
        let r = try Shell.run(command, timeout: Double(timeout + 30))
        if r.status == 137 { Issue.record("the script timed out (a hang): \(r.stderr)") }
        return (WriteLimitsTranscript(lines: r.stdout), r)
    }

    /// Runs a `/bin/sh -ec` script that builds layers; `arguments` are `$0 $1 …`.
    static func build(_ script: String, _ arguments: String...) throws {
        let r = try Shell.run(["/bin/sh", "-ec", script] + arguments)
        guard r.succeeded else { throw HostileError(description: "building the layers failed: \(r.stderr)") }
    }

    /// One implementation's writable mount for a hostile case.
    struct Side {
        var implementation: WriteLimitsImplementation
        var root: String
        var upper: String
        var work: String
    }

    /// Mounts each implementation in turn over `lowers` (kernel overlayfs only
    /// where it can be mounted), each with its own upper and work directory
    /// under `tmp/NAME-*`, prepared by `prepareUpper` before mounting; runs
    /// `body` and unmounts (also when it throws). Strata gets `strataOptions` too.
    /// `layout` names the three directories (default `tmp/NAME-m`, `-u`, `-w`).
    static func onEach<T>(lowers: [String], in tmp: TemporaryDirectory, strataOptions: [String] = [],
                          layout: ((WriteLimitsImplementation) -> (root: String, upper: String, work: String))? = nil,
                          prepareUpper: (String) throws -> Void = { _ in },
                          _ body: (Side) throws -> T) throws -> [WriteLimitsImplementation: T] {
        var results: [WriteLimitsImplementation: T] = [:]
        for implementation in WriteLimits.implementations {
            let name = implementation.rawValue
            let paths = layout?(implementation) ?? (root: tmp.sub("\(name)-m"), upper: tmp.sub("\(name)-u"), work: tmp.sub("\(name)-w"))
            for directory in [paths.root, paths.upper, paths.work] {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            let side = Side(implementation: implementation, root: paths.root, upper: paths.upper, work: paths.work)
            try prepareUpper(side.upper)
            switch implementation {
            case .kernel:
                results[.kernel] = try Mounts.withKernelOverlay(lowers: lowers, upper: side.upper, work: side.work, at: side.root) {
                    try body(side)
                }
            case .strata:
                results[.strata] = try Mounts.withStrata(
                    strataOptions + ["--lower", lowers.joined(separator: ":"), "--upper", side.upper, "--work", side.work],
                    at: side.root) { try body(side) }
            }
        }
        return results
    }

    /// Compares the kernel's and Strata's transcripts (when both ran) and
    /// records any step that hung or failed with EIO on either.
    static func expectSameOutcomes(_ transcripts: [WriteLimitsImplementation: WriteLimitsTranscript], _ label: String,
                                   sourceLocation: SourceLocation = #_sourceLocation) {
        for (implementation, transcript) in transcripts {
            for step in transcript.steps where step.result.contains("TIMED OUT") || step.result.contains("Input/output error")
                || step.result.contains("Transport endpoint") || step.result.contains("Software caused connection abort") {
                Issue.record("\(implementation.rawValue): \(label): \(step.label): \(step.result)", sourceLocation: sourceLocation)
            }
        }
        if let k = transcripts[.kernel], let s = transcripts[.strata] {
            WriteLimits.expectSameOutcomes(strata: s, kernel: k, label, sourceLocation: sourceLocation)
        }
    }

    /// Dump options that compare across implementations: no directory sizes,
    /// no mtimes (the two mounts run at different instants).
    static var viewOptions: TreeDump.Options {
        var o = TreeDump.Options()
        o.directorySizes = false
        o.mtimes = false
        return o
    }

    /// Dump options for upper directories: structure, owners, modes, devices, targets, contents.
    static var upperOptions: TreeDump.Options {
        var o = viewOptions
        o.xattrs = false
        o.linkCounts = false
        return o
    }

    /// The upper's overlay xattrs on directories, `PATH KEY=VALUE`, sorted
    /// (TreeDump shows visible xattrs only through a mount; on the raw upper it shows all).
    static func opaqueMarks(in upper: String) throws -> [String] {
        try TreeDump.lines(of: upper).compactMap { line -> String? in
            guard line.contains(" dir ") else { return nil }
            let path = String(line.split(separator: " ").first ?? "")
            let marks = line.split(separator: " ").filter { $0.hasPrefix("x:trusted.overlay.opaque=") || $0.hasPrefix("x:user.overlay.opaque=") }
            return marks.isEmpty ? nil : ([path] + marks.map(String.init)).joined(separator: " ")
        }
    }

    /// Whether the daemon of the Strata mount at `mountPoint` is alive (the
    /// mount answers a stat of its root).
    static func answers(_ mountPoint: String) -> Bool {
        (try? Shell.run(["timeout", "-s", "KILL", "10", "stat", "-c", "%i", mountPoint], timeout: 20))?.succeeded == true
    }
}
