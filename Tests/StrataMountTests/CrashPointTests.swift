import Foundation
import Glibc
import LayerSystem
import StrataTestSupport
import Testing

/// SIGKILL of the daemon at random points of seeded random workloads, and at
/// the syscall boundaries of single steps.
///
/// A plan of random steps (the differential tester's operation mix, every step
/// valid on a model of the view, plus appends to 10–20 MiB lower files, i.e.
/// large copy-ups, and renames of lower directories of 300–600 files) runs in
/// a child process (`scripts/crash-workload.py`) that logs each step before and
/// after it (fsynced). Each plan first runs to the end without a kill: every
/// step succeeds and the view equals the model's. Then, for each kill, a fresh
/// upper runs the plan again and the daemon is SIGKILLed by pid: during a
/// chosen step (half of them the heavy ones) at a random offset within the time
/// that step took, at a random instant of the run, or (a third, where strace is
/// installed) on entry to its Nth call of a changing syscall from a chosen step
/// on (strace fault injection). The second test lists, with strace, every
/// changing syscall the daemon makes during one step of 14 scenarios (copy-up,
/// lower directory rename, rename over an emptied lower directory or a
/// whiteout, exchange, unlink, rmdir, mkdir over a whiteout, link, put, chmod,
/// setxattr) and kills at each (`make test`: one per scenario).
/// After each kill, `strata unmount` and a new mount over the same upper:
/// - the view is the model's state before the step in flight or after it
///   (whole view compared: no half-renamed directory, no torn copy-up); the
///   only other states accepted are the step's own legitimate intermediate
///   ones: a `put`'s temporary file with part of the data, an overwrite or
///   append with part of its data written (for an append, after the old
///   content whole: a copied-up file is never short);
/// - every step that finished is there (fsynced or not: a daemon kill loses
///   nothing the kernel acknowledged; fsynced steps are among them);
/// - the work directory holds no debris after the new mount;
/// - kernel overlayfs over the same upper (mounted read-only, the upper as the
///   topmost lower) shows the same tree (TreeDump) and the same contents.
///
/// `STRATA_CRASH_KILLS=N` runs N random kills (20 by default; `make
/// crash-points` 300), `STRATA_CRASH_SEED=S` other plans (a new plan every 10
/// kills), `STRATA_CRASH_ALL_BOUNDARIES=1` every syscall boundary.
@Suite("Crash points: SIGKILL of the daemon mid-workload", .serialized,
       .enabled(if: TestEnvironment.hasFuse, "skipped: /dev/fuse is absent on this machine"),
       .enabled(if: TestEnvironment.hasKernelOverlay, "skipped: kernel overlayfs cannot be mounted here (needs root)"))
struct CrashPointTests {
    static let environment = ProcessInfo.processInfo.environment
    static let kills = Int(environment["STRATA_CRASH_KILLS"] ?? "") ?? 20
    static let seed = UInt64(environment["STRATA_CRASH_SEED"] ?? "") ?? 1
    static let killsPerPlan = 10
    static let stepsPerPlan = 120

    @Test("SIGKILL at random points: view before or after the step in flight, no debris, kernel agrees")
    func randomKills() throws {
        let stack = try Stack.random()
        let lowersBefore = try stack.lowerDump()
        let initial = try Mounts.withKernelOverlay(lowers: stack.lowers, at: stack.kernelMount) {
            CrashModel(try CrashView.read(stack.kernelMount))
        }
        var random = SeededRandom(seed: Self.seed)
        var tally = Tally()
        var planNumber: UInt64 = 0
        let started = Date()
        while tally.kills < Self.kills {
            let planSeed = Self.seed &* 1000 &+ planNumber
            planNumber += 1
            let plan = CrashPlanGenerator.plan(from: initial, seed: planSeed, steps: Self.stepsPerPlan,
                                               largeFiles: Stack.largeFiles, trees: Stack.trees)
            var states = [initial]
            for step in plan {
                var next = states.last!
                next.apply(step)
                states.append(next)
            }
            try stack.write(plan)

            // The whole plan without a kill: every step succeeds, the view is the model's.
            let (full, _) = try stack.run(until: nil)
            guard full.completed == plan.count else {
                let step = full.completed < plan.count ? "\(plan[full.completed])" : "?"
                Issue.record("plan \(planSeed): step \(step) failed without a kill (errno \(full.failure ?? 0))")
                return
            }
            var unused = Tally()
            guard try check(stack, log: full, plan: plan, states: states, label: "plan \(planSeed), no kill", tally: &unused) else { return }

            for _ in 0..<min(Self.killsPerPlan, Self.kills - tally.kills) {
                let point = KillPoint.random(plan: plan, timing: full, using: &random)
                let (log, killed) = try stack.run(until: point)
                tally.kills += 1
                if case .syscall = point { tally.syscallKills[killed ? "fired" : "not reached", default: 0] += 1 }
                tally.syncedSteps += plan.prefix(log.completed).filter { $0.sync == true }.count
                let label = "plan \(planSeed), kill \(tally.kills) (\(point.description(plan)))"
                if let index = log.inFlight { tally.midStep[plan[index].kind.rawValue + (plan[index].isHeavy ? "*" : ""), default: 0] += 1 }
                guard try check(stack, log: log, plan: plan, states: states, label: label, tally: &tally) else { return }
            }
        }
        #expect(try stack.lowerDump() == lowersBefore, "the lower layers changed")
        print("""
            crash points: \(tally.kills) kills on \(planNumber) plans (seed \(Self.seed)) in \(Int(Date().timeIntervalSince(started))) s; \
            outcomes \(tally.outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")); \
            steps in flight (* heavy): \(tally.midStep.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")); \
            kills at a syscall: \(tally.syscallKills.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")); \
            \(tally.syncedSteps) fsynced steps finished before a kill, all present after it
            """)
    }

    /// `make crash-points` (STRATA_CRASH_ALL_BOUNDARIES=1) kills at every boundary; `make test` at one per scenario.
    static let allBoundaries = environment["STRATA_CRASH_ALL_BOUNDARIES"] == "1"

    @Test("SIGKILL at the syscall boundaries of single steps: view before or after, no debris, kernel agrees",
          .enabled(if: KillPoint.hasStrace, "skipped: strace is not installed (make crash-points installs it)"),
          arguments: BoundaryScenario.all)
    func syscallBoundaries(_ scenario: BoundaryScenario) throws {
        let stack = try Stack(BoundaryScenario.buildLowers)
        let initial = try Mounts.withKernelOverlay(lowers: stack.lowers, at: stack.kernelMount) {
            CrashModel(try CrashView.read(stack.kernelMount))
        }
        let plan = scenario.plan
        var states = [initial]
        for step in plan {
            var next = states.last!
            next.apply(step)
            states.append(next)
        }
        try stack.write(plan)
        let target = plan.count - 1
        // The daemon's changing calls during the step, in order, each as (name, its number on its thread).
        let boundaries = try stack.traceCalls(of: target)
        try #require(!boundaries.isEmpty, "\(scenario): no changing syscall traced during the step")
        var tally = Tally()
        var chosen = boundaries
        if !Self.allBoundaries {
            var random = SeededRandom(seed: Self.seed &+ UInt64(scenario.name.utf8.count))
            chosen = [boundaries.randomElement(using: &random)!]
        }
        var fired = 0
        for (name, nth) in chosen {
            let point = KillPoint.syscall(step: target, name: name, nth: nth)
            let (log, killed) = try stack.run(until: point)
            if killed { fired += 1 }
            tally.kills += 1
            guard try check(stack, log: log, plan: plan, states: states, label: "\(scenario), kill \(point.description(plan))", tally: &tally)
            else { return }
        }
        print("crash points: \(scenario): \(chosen.count) of \(boundaries.count) syscall boundaries (\(fired) reached); outcomes \(tally.outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
    }

    /// One step whose every syscall boundary is a kill point, after setup steps.
    struct BoundaryScenario: Sendable, CustomStringConvertible, CustomTestStringConvertible {
        let name: String
        let plan: [CrashStep]
        var description: String { name }
        var testDescription: String { name }

        init(_ name: String, _ steps: [(CrashStep.Kind, String, String?)]) {
            self.name = name
            plan = steps.enumerated().map { i, s in
                var step = CrashStep(index: i, kind: s.0, path: s.1)
                step.target = s.2
                switch s.0 {
                case .put:
                    step.temporary = CrashModel.join(CrashModel.parent(of: s.1), ".tmp-\(i)")
                    step.token = "<put \(i)>"
                    step.length = 3000
                case .append, .overwrite:
                    step.token = "<\(s.0) \(i)>"
                    step.length = 200_000
                case .mkdir: step.mode = 0o755
                case .chmod: step.mode = 0o700
                case .setxattr: step.value = "v\(i)"
                case .rename where s.1 == "dir" && s.2 == "lowerfile": step.flags = CrashStep.exchange
                default: break
                }
                return step
            }
        }

        static let all: [BoundaryScenario] = [
            .init("append to a 3 MiB lower file", [(.append, "big", nil)]),
            .init("overwrite (O_TRUNC) a lower file", [(.overwrite, "big", nil)]),
            .init("rename a lower directory with whiteouts", [(.rename, "tree", "moved")]),
            .init("rename a new directory over an emptied lower one",
                  [(.unlink, "X/f", nil), (.mkdir, "Y", nil), (.put, "Y/g", nil), (.rename, "Y", "X")]),
            .init("rename a new directory to a whited-out lower name", [(.unlink, "lowerfile2", nil), (.mkdir, "Y", nil), (.rename, "Y", "lowerfile2")]),
            .init("exchange a lower directory and a lower file", [(.rename, "dir", "lowerfile")]),
            .init("rename a lower file over another", [(.rename, "lowerfile", "lowerfile2")]),
            .init("unlink a lower file", [(.unlink, "lowerfile", nil)]),
            .init("rmdir an emptied lower directory", [(.unlink, "emptied/f", nil), (.rmdir, "emptied", nil)]),
            .init("mkdir over a whiteout", [(.unlink, "lowerfile2", nil), (.mkdir, "lowerfile2", nil)]),
            .init("link a lower hard link", [(.link, "h", "h3")]),
            .init("put over a lower file", [(.put, "lowerfile", nil)]),
            .init("chmod a lower directory", [(.chmod, "tree", nil)]),
            .init("setxattr on a lower file", [(.setxattr, "lowerfile", nil)]),
        ]

        /// Small lowers: every step above has a few dozen boundaries at most.
        static func buildLowers(top: String, bottom: String) throws {
            try Shell.sh("head -c 3M /dev/urandom > '\(bottom)/big'").expectSuccess()
            try Fixture.build([
                .dir("tree", [.file("a", "a\n"), .file("b", "b\n"), .dir("sub", [.file("c", "c\n")]), .xattr(on: "a", name: "user.t", value: "1")]),
                .dir("X", [.file("f", "lower f\n")]),
                .dir("emptied", [.file("f", "f\n")]),
                .dir("dir", [.file("inside", "inside\n")]),
                .file("lowerfile", "lower file\n"), .file("lowerfile2", "lower file 2\n"),
                .file("h", "linked\n"), .hardlink("h2", to: "h"),
            ], at: bottom)
            try Fixture.build([.dir("tree", [.whiteout("b"), .file("top", "top\n")])], at: top)
        }
    }

    struct Tally {
        var kills = 0
        var outcomes: [String: Int] = [:]
        var midStep: [String: Int] = [:]
        /// Kills at a syscall: whether the call was reached (the daemon died) or not.
        var syscallKills: [String: Int] = [:]
        /// Steps with fsync finished before a kill (each one checked present after it).
        var syncedSteps = 0
    }

    static let dumpOptions: TreeDump.Options = {
        var o = TreeDump.Options()
        o.directorySizes = false
        o.contentHashes = false   // contents are compared whole, through CrashView
        return o
    }()

    /// Remounts over the upper the run left and checks the four invariants;
    /// false when it recorded a failure (the test stops at the first one).
    func check(_ stack: Stack, log: CrashLog, plan: [CrashStep], states: [CrashModel], label: String,
               tally: inout Tally) throws -> Bool {
        var ok = true
        let m = log.completed
        if let failure = log.failure, failure != ENOTCONN && failure != ECONNABORTED {
            Issue.record("\(label): \(plan[m]) failed with errno \(failure) (\(String(cString: strerror(failure)))), not with the connection's end")
            ok = false
        }
        let step = log.inFlight.map { plan[$0] }
        let after = log.inFlight.map { states[$0 + 1] }
        let (strataDump, strataView) = try Mounts.withStrata(stack.arguments, at: stack.mount) { () throws -> ([String], [String: CrashView.Entry]) in
            let debris = CrashTests.workDebris(stack.work)
            if !debris.isEmpty {
                Issue.record("\(label): work directory not cleaned at mount: \(debris.prefix(5))")
                ok = false
            }
            let view = try CrashView.read(stack.mount).entries
            switch CrashJudge.judge(view, before: states[m], step: step, after: after) {
            case .success(let outcome): tally.outcomes[outcome.rawValue, default: 0] += 1
            case .failure(let violation):
                let recent = plan[max(0, m - 4)..<min(plan.count, m + 1)].map { "  \($0)" }.joined(separator: "\n")
                Issue.record("""
                    \(label): the view after the kill is neither the state before nor after \(step.map { "\($0)" } ?? "step \(m)"):
                    \(violation)
                    last steps (\(m) finished):
                    \(recent)
                    """)
                ok = false
            }
            return (try TreeDump.lines(of: stack.mount, options: Self.dumpOptions), view)
        }
        // Kernel overlayfs over the same upper, read-only: the upper as the topmost lower.
        let (kernelDump, kernelView) = try Mounts.withKernelOverlay(lowers: [stack.upper] + stack.lowers, at: stack.kernelMount) {
            (try TreeDump.lines(of: stack.kernelMount, options: Self.dumpOptions), try CrashView.read(stack.kernelMount).entries)
        }
        if strataDump != kernelDump { ok = false }
        expectSame(strataDump, kernelDump, "\(label): kernel overlayfs over the same upper")
        if strataView != kernelView {
            let differing = Set(strataView.keys).union(kernelView.keys).filter { strataView[$0] != kernelView[$0] }.sorted()
            Issue.record("\(label): contents differ from kernel overlayfs over the same upper: \(differing.prefix(5))")
            ok = false
        }
        return ok
    }

    /// Where the daemon is killed: `at` microseconds after step `step` began,
    /// or `at` microseconds after the workload started.
    enum KillPoint {
        case during(step: Int, at: UInt32)
        case elapsed(UInt32)
        /// At the daemon's `nth` call of `syscall` (each thread counted apart)
        /// from the start of `step` on, through strace's fault injection: the
        /// daemon dies on entry to that call, exactly between two of its
        /// changes to the upper, windows a random instant almost never hits.
        case syscall(step: Int, name: String, nth: Int)

        /// The daemon's calls that change the upper or the work directory (what `strace -c` shows it making).
        static let mutatingCalls = ["renameat2", "setxattr", "unlinkat", "linkat", "mkdirat", "openat", "fchmodat", "fchownat",
                                    "utimensat", "copy_file_range", "pwrite64", "ftruncate", "symlinkat", "fdatasync"]
        static let hasStrace = FileManager.default.isExecutableFile(atPath: "/usr/bin/strace")

        /// A third at a syscall of a random step (where strace is installed),
        /// a sixth at a random instant of the run, the rest during a random
        /// step at a random offset within the time that step took in the run
        /// without a kill. Half of the steps aimed at are heavy ones.
        static func random(plan: [CrashStep], timing: CrashLog, using random: inout SeededRandom) -> KillPoint {
            let roll = Int.random(in: 0..<100, using: &random)
            if roll < 17 {
                return .elapsed(UInt32.random(in: 0...UInt32(timing.total / 1000 + 100_000), using: &random))
            }
            let heavy = plan.indices.filter { plan[$0].isHeavy || (timing.durations[$0] ?? 0) > 5_000_000 }
            let step = Bool.random(using: &random) && !heavy.isEmpty ? heavy.randomElement(using: &random)! : Int.random(in: 0..<plan.count, using: &random)
            if roll >= 67 && hasStrace {
                return .syscall(step: step, name: mutatingCalls.randomElement(using: &random)!,
                                nth: [1, 1, 1, 2, 2, 3, 5, 20][Int.random(in: 0..<8, using: &random)])
            }
            let took = UInt32(min((timing.durations[step] ?? 0) / 1000, 10_000_000))
            return .during(step: step, at: UInt32.random(in: 0...(took + took / 10), using: &random))
        }

        func description(_ plan: [CrashStep]) -> String {
            switch self {
            case .during(let step, let at): "\(at) µs into \(plan[step])"
            case .elapsed(let at): "\(at) µs into the run"
            case .syscall(let step, let name, let nth): "at \(name) #\(nth) from \(plan[step]) on"
            }
        }
    }

    /// The lower stack (built once), a fresh upper per run, the mountpoints.
    final class Stack {
        static let largeFiles = ["big/b0", "big/b1", "big/b2"]
        static let trees = ["trees/t0", "trees/t1"]
        let tmp = TemporaryDirectory(prefix: "cp")
        /// Top first.
        var lowers: [String] { [tmp.sub("l0"), tmp.sub("l1")] }
        var upper: String { tmp.sub("u") }
        var work: String { tmp.sub("w") }
        var mount: String { tmp.sub("m") }
        var kernelMount: String { tmp.sub("k") }
        var planPath: String { tmp.sub("plan.jsonl") }
        var logPath: String { tmp.sub("log") }
        var goPath: String { tmp.sub("go") }
        var arguments: [String] { ["--lower", lowers.joined(separator: ":"), "--upper", upper, "--work", work] }
        static let script = "\(StrataBinary.packageRoot)/scripts/crash-workload.py"

        /// Makes the directories; `build` fills the lower layers (top, bottom).
        init(_ build: (_ top: String, _ bottom: String) throws -> Void) throws {
            for d in ["l0", "l1", "m", "k"] { tmp.makeDirectory(d) }
            try build(lowers[0], lowers[1])
        }

        /// The random workloads' stack.
        static func random() throws -> Stack {
            try Stack { top, bottom in
                // Generated layers (whiteouts, opaque dirs, symlinks, hard links, fifos, xattrs, 255-byte names) under gen/.
                let generator = LayerStackGenerator(seed: 11, layers: 2, maxDepth: 3)
                try FileManager.default.createDirectory(atPath: "\(bottom)/gen", withIntermediateDirectories: true)
                try FileManager.default.createDirectory(atPath: "\(top)/gen", withIntermediateDirectories: true)
                try generator.write(layer: 0, format: .overlay, at: "\(bottom)/gen")
                try generator.write(layer: 1, format: .overlay, at: "\(top)/gen")
                // Large files to append to (each append copies the whole file up first).
                try Shell.sh("""
                    mkdir -p '\(bottom)/big' '\(top)/big' && head -c 20M /dev/urandom > '\(bottom)/big/b0' \
                    && head -c 10M /dev/urandom > '\(bottom)/big/b1' && head -c 12M /dev/urandom > '\(top)/big/b2'
                    """).expectSuccess()
                // Lower directories of many files to rename (each is copied up whole first).
                try CrashTests.makeTree("\(bottom)/trees/t0", files: 600)
                try CrashTests.makeTree("\(bottom)/trees/t1", files: 300)
                try Fixture.build([
                    .dir("trees", [
                        .dir("t0", [.dir("d00", [.whiteout("f0")]), .dir("d01", [.opaque, .file("top", "from the top layer\n")]),
                                    .dir("d02", [.file("extra", "extra\n", mode: 0o600)])]),
                        .dir("t1", [.file("top-only", "top\n")]),
                    ]),
                    .dir("misc", [.file("over", "top version\n"), .dir("sub", [])]),
                ], at: top)
                try Fixture.build([
                    .dir("misc", [.file("over", "bottom version\n"), .file("h1", "linked\n"), .hardlink("h2", to: "misc/h1"),
                                  .symlink("link", to: "h1"), .dir("sub", [.dir("deep", [.file("file", "deep\n")])])]),
                ], at: bottom)
            }
        }

        func write(_ plan: [CrashStep]) throws {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
            var data = Data()
            for step in plan {
                data += try encoder.encode(step)
                data += Data("\n".utf8)
            }
            try data.write(to: URL(fileURLWithPath: planPath))
        }

        /// Runs the plan over a fresh upper, killing the daemon at `point`
        /// (nil: no kill); returns the executor's log. Always unmounts.
        func run(until point: KillPoint?) throws -> (log: CrashLog, killed: Bool) {
            try Shell.run(["rm", "-rf", "--one-file-system", upper, work, logPath, goPath]).expectSuccess()
            tmp.makeDirectory("u")
            tmp.makeDirectory("w")
            var daemonDied = false
            try Mounts.withStrata(arguments, at: mount) {
                let daemon = try #require(Mounts.daemonPID(of: mount), "no daemon registered for \(mount)")
                defer { daemonDied = !ProcessControl.isRunning(daemon) }
                var arguments = ["python3", Self.script, mount, planPath, logPath]
                if case .syscall(let step, _, _)? = point { arguments += ["\(step)", goPath] }
                let workload = try WorkloadProcess(arguments)
                var tracer: Int32?
                switch point {
                case .during(let step, let at)?:
                    if workload.waitForLine(timeout: 300, { $0.hasPrefix("B \(step) ") }) != nil { usleep(at) }
                    kill(daemon, SIGKILL)
                case .elapsed(let at)?:
                    usleep(at)
                    kill(daemon, SIGKILL)
                case .syscall(let step, let name, let nth)?:
                    // The workload waits before the step until the tracer holds every daemon thread.
                    if workload.waitForLine(timeout: 300, { $0.hasPrefix("P \(step) ") }) != nil {
                        tracer = try ProcessControl.spawnInNewSession("/usr/bin/env", arguments: [
                            "env", "strace", "-f", "-qq", "-o", "/dev/null", "-p", "\(daemon)",
                            "-e", "trace=\(name)", "-e", "inject=\(name):signal=KILL:when=\(nth)",
                        ])
                        let traced = Self.waitUntilTraced(daemon)
                        #expect(traced, "strace did not attach to the daemon's threads within 10 s")
                    }
                    try Data().write(to: URL(fileURLWithPath: goPath))
                case nil:
                    break
                }
                let (status, killed) = workload.finish(timeout: 300)
                #expect(!killed, "the workload hung (killed after 300 s)")
                if point == nil { #expect(status == 0, "the workload exited with \(status)") }
                if let tracer {
                    // The call was not reached (the daemon lives): detach, the daemon goes on.
                    if ProcessControl.isRunning(tracer) { kill(tracer, SIGTERM) }
                    _ = try? ProcessControl.waitForExit(tracer)
                }
            }
            return (CrashLog((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""), daemonDied)
        }

        /// Runs the plan over a fresh upper with strace recording the daemon's
        /// changing calls from the start of `step` on (no kill); returns them
        /// in order as (name, how many calls of that name its thread had made).
        func traceCalls(of step: Int) throws -> [(String, Int)] {
            try Shell.run(["rm", "-rf", "--one-file-system", upper, work, logPath, goPath]).expectSuccess()
            tmp.makeDirectory("u")
            tmp.makeDirectory("w")
            let traceFile = tmp.sub("trace")
            try Mounts.withStrata(arguments, at: mount) {
                let daemon = try #require(Mounts.daemonPID(of: mount), "no daemon registered for \(mount)")
                let workload = try WorkloadProcess(["python3", Self.script, mount, planPath, logPath, "\(step)", goPath])
                if workload.waitForLine(timeout: 300, { $0.hasPrefix("P \(step) ") }) != nil {
                    let tracer = try ProcessControl.spawnInNewSession("/usr/bin/env", arguments: [
                        "env", "strace", "-f", "-qq", "-o", traceFile, "-p", "\(daemon)",
                        "-e", "trace=" + KillPoint.mutatingCalls.joined(separator: ","),
                    ])
                    #expect(Self.waitUntilTraced(daemon), "strace did not attach to the daemon's threads within 10 s")
                    try Data().write(to: URL(fileURLWithPath: goPath))
                    let (status, _) = workload.finish(timeout: 300)
                    #expect(status == 0, "the traced workload exited with \(status)")
                    kill(tracer, SIGTERM)
                    _ = try? ProcessControl.waitForExit(tracer)
                } else {
                    workload.finish(timeout: 300)
                }
            }
            var counts: [String: Int] = [:]
            var calls: [(String, Int)] = []
            for line in ((try? String(contentsOfFile: traceFile, encoding: .utf8)) ?? "").split(separator: "\n") {
                // "TID  name(args…) = result" (TID padded to five columns), or the halves
                // "<unfinished …>" / "<… name resumed>" of an interrupted line: count the start only.
                guard let space = line.firstIndex(of: " ") else { continue }
                let tid = line[..<space], call = line[space...].drop { $0 == " " }
                guard let open = call.firstIndex(of: "("), !call.hasPrefix("<") else { continue }
                let name = String(call[..<open])
                guard KillPoint.mutatingCalls.contains(name) else { continue }
                let key = "\(tid) \(name)"
                counts[key, default: 0] += 1
                if !calls.contains(where: { $0 == (name, counts[key]!) }) { calls.append((name, counts[key]!)) }
            }
            return calls
        }

        /// Whether every thread of `pid` has a tracer within 10 s (`TracerPid` in its status).
        static func waitUntilTraced(_ pid: Int32) -> Bool {
            for _ in 0..<1000 {
                let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
                let traced = tasks.allSatisfy { task in
                    let status = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8)) ?? ""
                    return status.split(separator: "\n").contains { $0.hasPrefix("TracerPid:") && !$0.hasSuffix("\t0") }
                }
                if !tasks.isEmpty && traced { return true }
                usleep(10_000)
            }
            return false
        }

        func lowerDump() throws -> [String] {
            var options = TreeDump.Options()
            options.contentHashes = false
            return try lowers.flatMap { try TreeDump.lines(of: $0, options: options) }
        }
    }
}

extension CrashStep {
    /// The steps the kills aim at: appends to the large lower files, renames of the trees.
    var isHeavy: Bool {
        (kind == .append && CrashPointTests.Stack.largeFiles.contains(path))
            || (kind == .rename && CrashPointTests.Stack.trees.contains(path))
    }
}
