import Foundation
import Glibc
import LayerSystem
import StrataTestSupport
import Testing

/// Containers on Strata: podman with containers-storage's overlay driver and
/// Strata as its `mount_program` (the drop-in for fuse-overlayfs). The classic
/// exercise: run a container that writes a file, start it again and find the
/// file, a second container from the same image does not see it, `podman diff`,
/// `podman commit` and a run of the new image, `podman exec` into a running
/// container, `podman build` from a local base image, then `rm`/`rmi` of
/// everything with no FUSE mount left under the storage root.
///
/// The mount program is `$STRATA_PODMAN_MOUNT_PROGRAM` (e.g. /usr/bin/fuse-overlayfs,
/// the reference), else Strata (`exec STRATA_BIN mount "$@"`, STRATA_BIN as
/// `StrataBinary.path` finds it). Either way it is called through a small script
/// in the test's directory that first appends its argv to `mount-program.log`,
/// which failures quote.
///
/// Isolation: a private storage root, run root and podman tmp dir in the test's
/// temporary directory; `CONTAINERS_STORAGE_CONF` and `CONTAINERS_CONF` point at
/// files written there (file locks instead of /dev/shm/libpod_lock); no network
/// (`--network none`), no registry (the image is imported from a busybox-static
/// rootfs, `podman build --pull=never`). The flags this kind of machine needs:
/// `--ulimit nofile=20000:20000 --ulimit nproc=1000:1000` (runc cannot raise the
/// rlimits to podman's defaults), `--cgroup-manager cgroupfs` (no systemd),
/// `--events-backend file` (no journald), `--runtime /usr/sbin/runc`.
///
/// Skips (cancels) only when podman, runc or busybox-static cannot be installed
/// with apt, or podman cannot run a container here at all (probed with the vfs
/// driver, which needs no mount program).
@Suite("podman on Strata (containers-storage mount_program)", .serialized,
       .enabled(if: TestEnvironment.hasFuse, "skipped: /dev/fuse is absent on this machine"),
       .enabled(if: TestEnvironment.isRoot, "skipped: podman with a private storage root needs root here"))
struct PodmanTests {
    static let image = "localhost/strata-busybox"

    @Test("run, start again, second container, diff, commit, exec, build, rm/rmi: nothing left mounted",
          .timeLimit(.minutes(5)))
    func classicExercise() throws {
        if let reason = PodmanMachine.unavailableReason { try Test.cancel(Comment(rawValue: reason)) }
        let program = ProcessInfo.processInfo.environment["STRATA_PODMAN_MOUNT_PROGRAM"].flatMap { $0.isEmpty ? nil : $0 }
        let sandbox = try PodmanSandbox(prefix: "podman", storageDriver: "overlay",
                                        mountProgramCommand: program.map { [$0] } ?? [StrataBinary.path, "mount"])
        defer { sandbox.cleanUp() }
        let run = PodmanSandbox.containerArguments

        try sandbox.step("import the busybox rootfs") {
            try sandbox.must(["import", sandbox.rootfsTar, "\(Self.image):base"])
        }

        // Each part records its own failure and the next independent part still runs.
        sandbox.part("run, start again, second container, diff, commit") {
            let probe = "cat /hello.txt 2>/dev/null || echo absent; echo hello from a container > /hello.txt"
            let first = try sandbox.must(["run", "--name", "writer"] + run + ["\(Self.image):base", "sh", "-c", probe])
            #expect(first == "absent\n", "first run of the writer: the fresh image already had /hello.txt")

            let again = try sandbox.must(["start", "--attach", "writer"])
            #expect(again == "hello from a container\n", "podman start of the same container: /hello.txt is not there")

            let other = try sandbox.must(["run", "--rm", "--name", "other"] + run
                                         + ["\(Self.image):base", "sh", "-c", "cat /hello.txt 2>/dev/null || echo absent"])
            #expect(other == "absent\n", "a second container from the same image sees the first one's /hello.txt")

            // Podman hides /run, /etc/hosts, /etc/hostname, /etc/mtab (its own mounts); /etc holds them.
            let diff = try sandbox.must(["diff", "writer"])
            #expect(Self.lines(diff) == ["A /hello.txt", "C /etc"], "podman diff writer:\n\(diff)")

            // The same answer without podman: strata diff reads the container's layer in the store.
            let upper = try sandbox.must(["inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", "writer"]).trimmed
            let layer = (upper as NSString).deletingLastPathComponent
            let strataDiff = try StrataBinary.run(["diff", "--docker-layer", layer])
            #expect(strataDiff.succeeded, "strata diff --docker-layer \(layer): \(strataDiff.stderr)")
            // podman leaves out the files it bind-mounts over the container's own (/etc/hosts, …).
            let podmanManaged: Set<String> = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/etc/mtab", "/run", "/run/.containerenv"]
            let strataLines = Self.lines(strataDiff.stdout).filter { !podmanManaged.contains(String($0.dropFirst(2))) }
            #expect(strataLines == Self.lines(diff), "strata diff --docker-layer vs podman diff:\n\(strataDiff.stdout)")

            try sandbox.must(["commit", "--quiet", "writer", "\(Self.image):committed"])
            let committed = try sandbox.must(["run", "--rm"] + run + ["\(Self.image):committed", "cat", "/hello.txt"])
            #expect(committed == "hello from a container\n", "the committed image lacks /hello.txt")
        }

        sandbox.part("exec into a running container") {
            try sandbox.must(["run", "--detach", "--name", "sleeper"] + run + ["\(Self.image):base", "sleep", "60"])
            // The running container's root is the mount program's FUSE mount (Strata's is fuse.strata).
            let rootfs = try sandbox.must(["inspect", "--format", "{{.GraphDriver.Data.MergedDir}}", "sleeper"]).trimmed
            let type = MountTable.mount(at: rootfs)?.fileSystemType
            #expect(type == (program == nil ? "fuse.strata" : type.flatMap { $0.hasPrefix("fuse") ? $0 : nil }),
                    "the running container's root \(rootfs) is mounted as \(type ?? "nothing"), not by the mount program")
            let out = try sandbox.must(["exec", "sleeper", "sh", "-c",
                                        "echo from exec > /tmp/exec.txt && cat /tmp/exec.txt && ls /bin/busybox"])
            #expect(out == "from exec\n/bin/busybox\n", "podman exec output")
            let diff = try sandbox.must(["diff", "sleeper"])
            #expect(Self.lines(diff) == ["A /tmp/exec.txt", "C /etc", "C /tmp"], "podman diff of the running container:\n\(diff)")
            try sandbox.must(["rm", "--force", "--time", "0", "sleeper"])
        }

        sandbox.part("build from the local image") {
            let context = sandbox.directory.makeDirectory("build")
            try """
                FROM \(Self.image):base
                RUN echo built > /built.txt && mkdir -p /data/sub && echo one > /data/sub/f
                RUN rm /data/sub/f && cat /built.txt && test ! -e /hello.txt

                """.write(toFile: "\(context)/Containerfile", atomically: true, encoding: .utf8)
            try sandbox.must(["build", "--pull=never", "--quiet", "--tag", "\(Self.image):built"] + run + [context],
                             timeout: 120)
            let out = try sandbox.must(["run", "--rm"] + run
                                       + ["\(Self.image):built", "sh", "-c", "cat /built.txt; ls -A /data/sub; echo end"])
            #expect(out == "built\nend\n", "run of the built image (expected /built.txt and an empty /data/sub)")
        }

        sandbox.part("rm and rmi everything") {
            try sandbox.must(["rm", "--all", "--force", "--time", "0"])
            try sandbox.must(["rmi", "--all", "--force"])
            #expect(try sandbox.must(["ps", "--all", "--quiet"]) == "", "containers left")
            #expect(try sandbox.must(["images", "--all", "--quiet"]) == "", "images left")
        }

        let fuseLeft = sandbox.mountsLeft().filter { $0.fileSystemType.hasPrefix("fuse") }
        let fuseList = fuseLeft.map { "\($0.mountPoint) (\($0.fileSystemType))" }.joined(separator: ", ")
        #expect(fuseLeft.isEmpty, "FUSE mounts left under the storage root after rm/rmi: \(fuseList)")
        let daemons = sandbox.processesUsingSandbox(waitingUpTo: 5)
        #expect(daemons.isEmpty, "processes still running on the storage root after rm/rmi (mount-program daemons?): \(daemons)")
    }

    static func lines(_ text: String) -> [String] {
        text.split(separator: "\n").map(String.init).sorted()
    }
}

/// Whether podman can be used here: installs podman, runc and busybox-static
/// with apt when missing, then runs one container on the vfs driver (no mount
/// program involved). nil when it works, else the reason to skip.
enum PodmanMachine {
    static let unavailableReason: String? = {
        if let reason = installPackages() { return reason }
        do {
            let probe = try PodmanSandbox(prefix: "podprobe", storageDriver: "vfs", mountProgramCommand: nil)
            defer { probe.cleanUp() }
            let imported = try probe.podman(["import", probe.rootfsTar, "localhost/strata-probe"])
            guard imported.succeeded else {
                return "skipped: podman cannot import an image on this machine: \(imported.stderr.trimmed)"
            }
            let ran = try probe.podman(["run", "--rm"] + PodmanSandbox.containerArguments + ["localhost/strata-probe", "true"])
            guard ran.succeeded else {
                return "skipped: podman cannot run a container on this machine (vfs driver, no mount program): \(ran.stderr.trimmed)"
            }
            return nil
        } catch {
            return "skipped: podman cannot be started: \(error)"
        }
    }()

    /// Installs what is missing (the tests run as root); nil on success.
    static func installPackages() -> String? {
        var missing: [String] = []
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/podman") { missing.append("podman") }
        if !FileManager.default.isExecutableFile(atPath: "/usr/sbin/runc") { missing.append("runc") }
        if !staticBusyboxInstalled { missing.append("busybox-static") }
        if missing.isEmpty { return nil }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/apt-get") else {
            return "skipped: \(missing.joined(separator: ", ")) missing and there is no apt-get to install them"
        }
        let env = ["DEBIAN_FRONTEND": "noninteractive"]
        let install = ["apt-get", "install", "-y", "-q", "--no-install-recommends"] + missing
        var result = try? Shell.run(install, environment: env, timeout: 600)
        if result?.succeeded != true {
            _ = try? Shell.run(["apt-get", "update", "-q"], environment: env, timeout: 300)
            result = try? Shell.run(install, environment: env, timeout: 600)
        }
        guard let result, result.succeeded else {
            return "skipped: apt-get install \(missing.joined(separator: " ")) failed: "
                + (result.map { String($0.stderr.trimmed.suffix(600)) } ?? "apt-get did not start")
        }
        return staticBusyboxInstalled ? nil : "skipped: busybox-static installed but /bin/busybox is missing"
    }

    static var staticBusyboxInstalled: Bool {
        guard let r = try? Shell.run(["dpkg-query", "-W", "-f=${Status}", "busybox-static"], timeout: 30) else { return false }
        return r.succeeded && r.stdout.hasSuffix("installed") && FileManager.default.isExecutableFile(atPath: "/bin/busybox")
    }
}

/// One podman "installation" inside a temporary directory: storage root, run
/// root, tmp dir, config files, the busybox rootfs tarball and the logging
/// mount-program script. `cleanUp()` removes containers and images, unmounts
/// anything left below the directory and leaves the system as it found it.
final class PodmanSandbox: @unchecked Sendable {
    struct Failure: Error, CustomStringConvertible { var description: String }

    /// Per-container flags this machine needs (see the suite's comment).
    static let containerArguments = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=1000:1000", "--network", "none"]
    static let busyboxApplets = ["sh", "ls", "cat", "echo", "sleep", "touch", "rm", "mkdir", "test", "true", "false", "id", "env"]

    let directory: TemporaryDirectory
    let root: String, runRoot: String, tmpDir: String
    let rootfsTar: String
    let mountProgramLog: String
    let globalArguments: [String]
    let environment: [String: String]
    /// Whether /var/lib/containers existed before: podman 4.3's `import` writes
    /// its blob-info cache there whatever `--root` says; removed again if we made it.
    let systemContainersDirExisted = FileManager.default.fileExists(atPath: "/var/lib/containers")
    private var cleanedUp = false

    /// `mountProgramCommand`: the mount program and its leading arguments
    /// (containers-storage appends `-o OPTIONS MOUNTPOINT`), nil for none.
    init(prefix: String, storageDriver: String, mountProgramCommand: [String]?) throws {
        directory = TemporaryDirectory(prefix: prefix)
        root = directory.makeDirectory("root")
        runRoot = directory.makeDirectory("run")
        tmpDir = directory.makeDirectory("tmp")
        mountProgramLog = directory.sub("mount-program.log")
        let storageConf = directory.sub("storage.conf"), containersConf = directory.sub("containers.conf")
        try """
            [storage]
            driver = "\(storageDriver)"
            graphroot = "\(root)"
            runroot = "\(runRoot)"

            """.write(toFile: storageConf, atomically: true, encoding: .utf8)
        try """
            [engine]
            cgroup_manager = "cgroupfs"
            events_logger = "file"
            lock_type = "file"
            tmp_dir = "\(tmpDir)"

            """.write(toFile: containersConf, atomically: true, encoding: .utf8)
        environment = ["CONTAINERS_STORAGE_CONF": storageConf, "CONTAINERS_CONF": containersConf]

        var global = ["--root", root, "--runroot", runRoot, "--tmpdir", tmpDir, "--storage-driver", storageDriver,
                      "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", "/usr/sbin/runc"]
        if let command = mountProgramCommand {
            let script = directory.sub("mount-program")
            let quoted = command.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
            try """
                #!/bin/sh
                # containers-storage's mount_program for this test: logs its argv, then runs the program under test.
                echo "$(date +%T.%N) $*" >> '\(mountProgramLog)'
                exec \(quoted) "$@"

                """.write(toFile: script, atomically: true, encoding: .utf8)
            chmod(script, 0o755)
            global += ["--storage-opt", "overlay.mount_program=\(script)"]
        }
        globalArguments = global

        let rootfs = directory.makeDirectory("rootfs")
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] { _ = directory.makeDirectory("rootfs/\(d)") }
        try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: "\(rootfs)/bin/busybox")
        for applet in Self.busyboxApplets {
            try FileManager.default.createSymbolicLink(atPath: "\(rootfs)/bin/\(applet)", withDestinationPath: "busybox")
        }
        rootfsTar = directory.sub("rootfs.tar")
        let tar = try Shell.run(["tar", "-C", rootfs, "-cf", rootfsTar, "."], timeout: 60)
        guard tar.succeeded else { throw Failure(description: "tar of the rootfs failed: \(tar.stderr)") }
    }

    deinit { cleanUp() }

    /// Runs `podman GLOBAL-FLAGS ARGS` with a time bound. podman starts
    /// processes that outlive it (conmon, the mount program's daemon) and they
    /// inherit its descriptors: Foundation's `Process` on Linux notices the exit
    /// of its child by EOF on a socket it passes down, and a pipe's reader waits
    /// for every writer, so `Shell.run` would wait for those daemons (a detached
    /// container's whole life). Hence bash closes every descriptor above 2 and
    /// podman's output goes to files.
    @discardableResult
    func podman(_ arguments: [String], timeout: Double = 60) throws -> Shell.Result {
        let out = directory.sub("podman.out"), err = directory.sub("podman.err")
        let script = """
            for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
            exec "$0" "$@" </dev/null >'\(out)' 2>'\(err)'
            """
        var r = try Shell.run(["/bin/bash", "-c", script, "podman"]
                              + globalArguments + arguments, environment: environment, timeout: timeout)
        r.stdout = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        r.stderr += (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
        return r
    }

    /// Runs podman, returns its stdout; throws with everything useful when it fails.
    @discardableResult
    func must(_ arguments: [String], timeout: Double = 60) throws -> String {
        let start = Date()
        let r = try podman(arguments, timeout: timeout)
        guard r.succeeded else {
            let elapsed = Date().timeIntervalSince(start)
            throw Failure(description: """
                podman \(arguments.joined(separator: " ")) failed (status \(r.status)\
                \(elapsed >= timeout - 1 ? ", killed after the \(Int(timeout)) s time limit" : ""))
                stderr: \(r.stderr.trimmed)
                stdout: \(r.stdout.trimmed)
                last mount-program calls:
                \(mountProgramCalls(last: 4))
                """)
        }
        return r.stdout
    }

    /// A step the rest depends on: a failure ends the test.
    func step(_ name: String, _ body: () throws -> Void) throws {
        do { try body() } catch { throw Failure(description: "\(name): \(error)") }
    }

    /// An independent part: a failure is recorded and the test goes on.
    func part(_ name: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
        do { try body() } catch { Issue.record(Comment(rawValue: "\(name): \(error)"), sourceLocation: sourceLocation) }
    }

    func mountProgramCalls(last count: Int) -> String {
        guard let text = try? String(contentsOfFile: mountProgramLog, encoding: .utf8) else { return "(none)" }
        return text.split(separator: "\n").suffix(count).joined(separator: "\n")
    }

    /// Mounts at or below the sandbox directory, deepest first.
    func mountsLeft() -> [MountEntry] {
        MountTable.entries().filter { $0.mountPoint.hasPrefix(directory.path + "/") }
            .sorted { $0.mountPoint.count > $1.mountPoint.count }
    }

    /// Pids (with their command lines) of processes other than this one whose
    /// command line names the sandbox directory, after waiting up to `seconds`
    /// for them to go away.
    func processesUsingSandbox(waitingUpTo seconds: Double) -> [String] {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            var found: [String] = []
            let me = String(getpid())
            for pid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
            where pid != me && pid.allSatisfy(\.isNumber) {
                guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !data.isEmpty else { continue }
                let cmdline = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
                if cmdline.contains(directory.path + "/") { found.append("\(pid): \(cmdline.prefix(200))") }
            }
            if found.isEmpty || Date() >= deadline { return found }
            usleep(100_000)
        }
    }

    /// podman `system reset` for this root only (without its network cleanup):
    /// containers and images removed, then anything still mounted below the
    /// directory lazily unmounted; the directory itself goes with `directory`.
    func cleanUp() {
        if cleanedUp { return }
        cleanedUp = true
        _ = try? podman(["rm", "--all", "--force", "--time", "0"], timeout: 60)
        _ = try? podman(["rmi", "--all", "--force"], timeout: 60)
        for entry in mountsLeft() { _ = try? Shell.run(["umount", "-l", entry.mountPoint], timeout: 30) }
        if !systemContainersDirExisted {
            // Only the blob-info cache podman import made there; rmdir fails if anything else appeared.
            try? FileManager.default.removeItem(atPath: "/var/lib/containers/cache/blob-info-cache-v1.boltdb")
            _ = rmdir("/var/lib/containers/cache")
            _ = rmdir("/var/lib/containers")
        }
    }
}

extension String {
    fileprivate var trimmed: String { trimmingCharacters(in: .whitespacesAndNewlines) }
}
