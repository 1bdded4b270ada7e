import CFuse
import CStrataSys
import Glibc
import LayerSystem
import Synchronization

/// Ends a FUSE session cleanly on SIGINT, SIGTERM or SIGHUP.
///
/// libfuse's own handlers only set an "exited" flag, which worker threads
/// blocked in read(/dev/fuse) never see (measured: the daemon kept running
/// after SIGTERM). Instead these signals are blocked in every session thread
/// and one watcher thread takes them with sigwait and detaches the mount
/// (MNT_DETACH, or `fusermount3 -u -z`). The session is *not* marked exited:
/// files still open keep the detached filesystem alive and keep being served;
/// when the last one closes the kernel ends the connection, reads return
/// ENODEV, and the loop returns by itself.
final class TerminationWatcher: Sendable {
    let mountPoint: String
    private let finished = Atomic<Bool>(false)
    private let thread = Atomic<UInt>(0)

    init(mountPoint: String) {
        self.mountPoint = mountPoint
    }

    /// Blocks the signals in the calling thread and starts the watcher. Call
    /// before the loop creates its workers.
    func start() {
        _ = strata_block_termination_signals()
        if let t = ProcessControl.startThread({ self.watch() }) { thread.store(t, ordering: .releasing) }
    }

    private func watch() {
        let signal = strata_wait_termination_signal()
        if finished.load(ordering: .acquiring) { return }
        ProcessControl.writeStandardError("strata: signal \(signal): unmounting \(mountPoint)\n")
        if System.effectiveUserID == 0 {
            try? System.unmount(mountPoint, lazy: true)
        } else if let pid = try? ProcessControl.spawnInNewSession("/usr/bin/fusermount3",
                                                                  arguments: ["fusermount3", "-u", "-z", mountPoint]) {
            _ = try? ProcessControl.waitForExit(pid)
        }
    }

    /// Stops the watcher after the loop has ended and waits for its thread, so
    /// it can never act on a session that is about to be destroyed.
    func stop() {
        finished.store(true, ordering: .releasing)
        let t = thread.load(ordering: .acquiring)
        if t != 0 {
            _ = strata_signal_thread(t, SIGUSR1)
            ProcessControl.joinThread(t)
        }
    }
}
