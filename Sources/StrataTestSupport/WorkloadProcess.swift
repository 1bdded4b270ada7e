import Foundation
import Glibc
import LayerSystem

/// A workload run in its own process (its own session), reporting progress as
/// lines on a pipe (its descriptor 3), so a test can act at a chosen point of
/// it, e.g. kill a daemon when a given step begins. Every wait is bounded;
/// only this process (by pid) is ever signalled.
public final class WorkloadProcess {
    public let pid: Int32
    let events: Descriptor
    var pending: [UInt8] = []
    var exitStatus: Int32?

    /// Starts `arguments` (argv[0] first, resolved through PATH by `env`).
    public init(_ arguments: [String]) throws {
        let (read, write) = try ProcessControl.makeReadinessPipe()
        pid = try ProcessControl.spawnInNewSession("/usr/bin/env", arguments: ["env"] + arguments, passing: write)
        events = read   // `write` closes when this initializer returns: the child holds the only write end
    }

    /// Reads progress lines until one satisfies `match` (returned), the
    /// workload exits, or `timeout` seconds pass (nil).
    public func waitForLine(timeout: Double, _ match: (String) -> Bool) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                if match(line) { return line }
            }
            if !readMore(milliseconds: 50) && !ProcessControl.isRunning(pid) { return nil }
        }
        return nil
    }

    /// Reads what is available within `milliseconds`; false at end of file or when nothing came.
    func readMore(milliseconds: Int32) -> Bool {
        var descriptor = pollfd(fd: events.rawValue, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, milliseconds) > 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(events.rawValue, $0.baseAddress, $0.count) }
        guard n > 0 else { return false }
        pending += buffer.prefix(n)
        return true
    }

    /// Waits (draining the pipe) for the workload to exit; after `timeout`
    /// seconds it is killed (SIGKILL to its process group, which it leads).
    /// Returns its exit status and whether it had to be killed.
    @discardableResult
    public func finish(timeout: Double) -> (status: Int32, killed: Bool) {
        if let exitStatus { return (exitStatus, false) }
        let deadline = Date().addingTimeInterval(timeout)
        var killed = false
        while ProcessControl.isRunning(pid) {
            if Date() >= deadline {
                kill(-pid, SIGKILL)
                killed = true
                break
            }
            _ = readMore(milliseconds: 20)
            pending.removeAll()
        }
        let status = (try? ProcessControl.waitForExit(pid)) ?? -1
        exitStatus = status
        return (status, killed)
    }

    deinit {
        if exitStatus == nil { finish(timeout: 0) }
    }
}
