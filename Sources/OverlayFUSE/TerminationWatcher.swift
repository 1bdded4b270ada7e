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
/// and one watcher thread takes them with sigwait: it marks the session
/// exited and detaches the mount, which ends the kernel connection and
/// wakes every worker. Files still open keep the detached filesystem alive
/// until they are closed, so no reader sees an error.
final class TerminationWatcher: Sendable {
    // SAFETY: libfuse allows fuse_session_exit from any thread (it sets a flag); the session outlives the watcher.
    nonisolated(unsafe) let session: OpaquePointer
    let mountPoint: String
    private let finished = Atomic<Bool>(false)
    private let thread = Atomic<UInt>(0)

    init(session: OpaquePointer, mountPoint: String) {
        self.session = session
        self.mountPoint = mountPoint
    }

    /// Blocks the signals in the calling thread and starts the watcher. Call
    /// before the loop creates its workers.
    func start() {
        _ = strata_block_termination_signals()
        var tid = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        // SAFETY: the watcher is retained for the thread's life and released by it.
        let rc = pthread_create(&tid, nil, { raw in
            let watcher = Unmanaged<TerminationWatcher>.fromOpaque(raw!).takeRetainedValue()
            watcher.watch()
            return nil
        }, context)
        if rc == 0 { thread.store(UInt(tid), ordering: .releasing) } else {
            Unmanaged<TerminationWatcher>.fromOpaque(context).release()
        }
    }

    private func watch() {
        let signal = strata_wait_termination_signal()
        if finished.load(ordering: .acquiring) { return }
        ProcessControl.writeStandardError("strata: signal \(signal): unmounting \(mountPoint)\n")
        fuse_session_exit(session)
        if System.effectiveUserID == 0 {
            try? System.unmount(mountPoint, lazy: true)
        } else if let pid = try? ProcessControl.spawnInNewSession("/usr/bin/fusermount3",
                                                                  arguments: ["fusermount3", "-u", "-z", mountPoint]) {
            _ = try? ProcessControl.waitForExit(pid)
        }
    }

    /// Stops the watcher after the loop has ended on its own (unmounted from outside).
    func stop() {
        finished.store(true, ordering: .releasing)
        let t = thread.load(ordering: .acquiring)
        if t != 0 { _ = strata_signal_thread(t, SIGUSR1) }
    }
}
