#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ArgumentParser
import Glibc
import LayerSystem
import OverlayCore
import OverlayFUSE

/// `strata mount`: stack layers into one merged view over FUSE.
public struct MountCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount layer directories as one merged view (like kernel overlayfs).",
        discussion: """
        Either syntax works:
          strata mount --lower TOP:…:BOTTOM MOUNTPOINT
          strata mount -o lowerdir=TOP:…:BOTTOM[,upperdir=DIR,workdir=DIR][,OPTION…] MOUNTPOINT
        Without an upper layer the mount is read-only (writes fail with EROFS).
        By default the command returns once the mount is live and the daemon runs
        in the background; -f keeps it in the foreground. SIGINT/SIGTERM unmount.

        -o options: lowerdir=, upperdir=, workdir=, timeout=SECONDS (entry, attribute
        and negative timeouts; default 3600), entry_timeout=, attr_timeout=,
        negative_timeout=, threads=N (default 8), max_dir_fds=N (directory descriptors
        the daemon keeps open, default 8192), allow_other, default_permissions
        (always on), ro, rw, and the kernel flags suid, nosuid, dev, nodev, exec,
        noexec, atime, noatime, relatime, strictatime, diratime, nodiratime, sync,
        async, dirsync. Empty items (a trailing comma) are ignored; a literal comma
        in a path is written \\, and a literal colon \\:.
        """
    )

    @Option(name: .long, help: ArgumentHelp("Lower layers, topmost first, colon-separated (\\: for a literal colon).", valueName: "TOP:…:BOTTOM"))
    var lower: String?

    @Option(name: .long, help: "Writable upper layer directory (needs --work).")
    var upper: String?

    @Option(name: .long, help: "Work directory on the upper layer's filesystem.")
    var work: String?

    @Option(name: .customShort("o"), help: ArgumentHelp("Mount options, fuse-overlayfs syntax (see below). Repeatable.", valueName: "OPTIONS"))
    var options: [String] = []

    @Option(name: .long, help: "Kernel entry/attribute/negative cache timeout in seconds. (default: 3600)")
    var timeout: Double?

    @Option(name: .long, help: "Maximum FUSE worker threads. (default: 8)")
    var threads: Int?

    @Flag(name: .long, help: "Allow other users to access the mount (default: on when run as root, as fuse-overlayfs does).")
    var allowOther = false

    @Flag(name: [.customShort("f"), .long], help: "Stay in the foreground and log to stderr. (default: background daemon)")
    var foreground = false

    @Option(name: .long, help: "Background daemon: append its log to this file. (default: discard)")
    var log: String?

    @Flag(name: .long, help: "Log every failed request (with --foreground or --log).")
    var debug = false

    @Option(name: .long, help: .hidden)
    var readyFd: Int32?

    @Argument(help: "Directory to mount on.")
    var mountpoint: String

    public init() {}

    /// The validated configuration from the flags and `-o` lists.
    func configuration() throws(CommandFailure) -> MountConfiguration {
        var c = MountConfiguration()
        c.fuse.allowOther = allowOther || System.effectiveUserID == 0
        for list in options { try c.apply(optionList: list) }
        if let lower { c.lowers = LayerList.layers(lower) }
        if let upper { c.upper = upper }
        if let work { c.work = work }
        if let timeout {
            guard timeout >= 0, timeout.isFinite else { throw CommandFailure("--timeout \(timeout): not a number of seconds") }
            c.fuse.entryTimeout = timeout; c.fuse.attributeTimeout = timeout; c.fuse.negativeTimeout = timeout
        }
        if let threads {
            guard (1...256).contains(threads) else { throw CommandFailure("--threads \(threads): expected 1…256") }
            c.fuse.maxThreads = threads
        }
        c.fuse.debugLog = debug
        // As root the mount is meant to be a container root: setuid programs and
        // device nodes must work, as on kernel overlayfs (libfuse defaults to nosuid,nodev).
        if System.isInitialNamespaceRoot {
            if !c.fuse.kernelOptions.contains("nosuid") { c.fuse.kernelOptions.append("suid") }
            if !c.fuse.kernelOptions.contains("nodev") { c.fuse.kernelOptions.append("dev") }
        }
        c.fuse.readOnly = c.upper == nil
        c.mountPoint = mountpoint
        try c.validate()
        return c
    }

    public func run() throws {
        let config = try configuration()
        if System.effectiveUserID == 0 || !ProcessControl.isExecutable("/usr/bin/fusermount3") {
            if let problem = ProcessControl.checkFuseDevice() {
                let hint = problem.errno == EACCES && !System.isInitialNamespaceRoot
                    ? " (inside a user namespace /dev/fuse must be mode 0666, udev's default)" : ""
                throw CommandFailure("cannot use /dev/fuse: \(problem.message.lowercased())\(hint)")
            }
        }
        if foreground || readyFd != nil {
            try serve(config)
        } else {
            try startDaemon()
        }
    }

    /// Runs the daemon in this process until unmounted.
    func serve(_ config: MountConfiguration) throws {
        let stack: LayerStack
        let overlay: OverlayFileSystem
        do throws(OverlayError) {
            stack = try LayerStack(lowerPaths: config.lowers, upperPath: config.upper, workPath: config.work)
            // Modes from the kernel already carry the caller's umask; the daemon's own
            // must not mask them a second time.
            System.setFileCreationMask(0)
            var options = config.overlay
            // Before any worker thread exists: they inherit the securebit.
            options.createsAsCaller = stack.upper != nil && System.keepCapabilitiesOnIdentitySwitch()
            overlay = try OverlayFileSystem(stack: stack, options: options)
        } catch {
            throw CommandFailure(error.message)
        }
        let canonicalMountPoint = (try? System.canonicalPath(config.mountPoint)) ?? config.mountPoint
        var registryFile: String?
        let readyFd = self.readyFd
        let logPath = log
        do {
            try FuseSession.run(overlay: overlay, mountPoint: canonicalMountPoint, options: config.fuse) {
                registryFile = MountRegistry.register(MountRecord(
                    mountpoint: canonicalMountPoint, lowers: stack.lowers.map(\.canonicalPath),
                    upper: stack.upper?.canonicalPath, work: stack.work?.canonicalPath, pid: System.processID))
                if let readyFd {
                    ProcessControl.detachStandardStreams(logPath: logPath)
                    ProcessControl.signalReadiness(fileDescriptor: readyFd)
                }
            }
        } catch {
            if let registryFile { MountRegistry.remove(registryFile) }
            throw CommandFailure(error.description)
        }
        if let registryFile { MountRegistry.remove(registryFile) }
    }

    /// Starts `strata mount --foreground --ready-fd N …` in a new session and
    /// returns once it reports the mount live, or fails with its exit status
    /// (it has already printed the reason on our stderr).
    func startDaemon() throws {
        var arguments = StrataCommand.commandLineArguments()
        let at = arguments.firstIndex(of: "mount").map { $0 + 1 } ?? 0
        let executable = try ProcessControl.executablePath()
        // The write end lives only inside this closure: once it returns, the
        // daemon holds the only copy, so EOF on the read end means it exited.
        let (readEnd, pid) = try { () throws -> (Descriptor, Int32) in
            let pipe = try ProcessControl.makeReadinessPipe()
            arguments.insert(contentsOf: ["--ready-fd", "3"], at: at)
            let pid = try ProcessControl.spawnInNewSession(executable, arguments: ["strata"] + arguments, passing: pipe.write)
            return (pipe.read, pid)
        }()
        try waitForDaemon(pid: pid, readEnd: readEnd)
    }

    private func waitForDaemon(pid: Int32, readEnd: Descriptor) throws {
        if try ProcessControl.readByte(readEnd) == 1 { return }
        let status = try ProcessControl.waitForExit(pid)
        throw ExitCode(status == 0 ? 1 : status)
    }
}
