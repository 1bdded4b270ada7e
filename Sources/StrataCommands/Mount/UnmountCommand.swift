import ArgumentParser
import Glibc
import LayerSystem

/// `strata unmount`: unmount a Strata mount and wait for its daemon to exit.
public struct UnmountCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "unmount",
        abstract: "Unmount a Strata mount (as root or as the user who mounted it).",
        aliases: ["umount"]
    )

    @Flag(name: .long, help: "Detach now even if files are open (MNT_DETACH). (default: off)")
    var lazy = false

    @Option(name: .long, help: "Seconds to wait for the daemon to exit after unmounting. (default: 10)")
    var wait: Double = 10

    @Argument(help: "The mountpoint.")
    var mountpoint: String

    public init() {}

    public func run() throws {
        guard wait.isFinite, (0...86_400).contains(wait) else { throw CommandFailure("--wait must be between 0 and 86400 seconds") }
        let path: String
        do { path = try System.canonicalPath(mountpoint) } catch {
            throw CommandFailure("mountpoint \(mountpoint) cannot be used: \((error as? SystemCallError)?.message.lowercased() ?? "\(error)")")
        }
        guard let entry = MountTable.mount(at: path) else { throw CommandFailure("\(mountpoint) is not a mountpoint") }
        guard entry.fileSystemType == "fuse.strata" else {
            throw CommandFailure("\(mountpoint) is not a Strata mount (it is \(entry.fileSystemType))")
        }
        let daemon = MountRegistry.record(at: path)?.pid
        if System.effectiveUserID == 0 {
            do { try System.unmount(path, lazy: lazy) } catch let error as SystemCallError {
                if error.errno == EBUSY { throw CommandFailure("\(mountpoint) is busy (files are open there); use --lazy to detach anyway") }
                throw CommandFailure("cannot unmount \(mountpoint): \(error.message.lowercased())")
            }
        } else {
            let args = ["fusermount3", "-u"] + (lazy ? ["-z"] : []) + [path]
            let pid = try ProcessControl.spawnInNewSession("/usr/bin/fusermount3", arguments: args)
            let status = try ProcessControl.waitForExit(pid)
            if status != 0 { throw CommandFailure("cannot unmount \(mountpoint): fusermount3 failed with status \(status)") }
        }
        if let daemon { waitForExit(daemon) }
    }

    /// Polls until `pid` no longer exists, for at most `wait` seconds.
    private func waitForExit(_ pid: Int32) {
        let deadline = System.monotonicNanoseconds() + UInt64(max(0, wait) * 1e9)
        while System.monotonicNanoseconds() < deadline {
            if !ProcessControl.isRunning(pid) { return }
            ProcessControl.sleep(milliseconds: 5)
        }
    }
}
