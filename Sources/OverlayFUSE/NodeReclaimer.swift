import CFuse
import Glibc
import LayerSystem
import OverlayCore
import Synchronization

/// Keeps the daemon's node count near `-o max_nodes=N`.
///
/// Nodes live as long as the kernel holds their inodes, and the kernel keeps
/// those until memory pressure: walking a huge tree would grow the daemon
/// without bound. Every 20 ms this thread checks the count (one lock, one
/// load); over the limit
/// it asks the kernel to drop the least recently looked-up unused names
/// (`fuse_lowlevel_notify_inval_entry`), whose FORGETs then free the nodes.
/// Names in use (open files, working directories, mountpoints) stay.
///
/// It runs on its own thread and holds no lock while it notifies, as libfuse
/// requires (a notification can wait for the kernel's lock on the directory,
/// which a request being served may hold). `stop` joins it; call it before
/// the session is unmounted and destroyed.
final class NodeReclaimer: @unchecked Sendable {
    // @unchecked: `session` is only used by the reclaimer thread between
    // `start` and `stop`, while the session exists (the owner's contract).
    private let session: OpaquePointer
    private let overlay: OverlayFileSystem
    private let limit: Int
    private let finished = Atomic<Bool>(false)
    private let thread = Atomic<UInt>(0)

    init(session: OpaquePointer, overlay: OverlayFileSystem, limit: Int) {
        self.session = session
        self.overlay = overlay
        self.limit = limit
    }

    func start() {
        if let t = ProcessControl.startThread({ self.run() }) { thread.store(t, ordering: .releasing) }
    }

    private func run() {
        while !finished.load(ordering: .acquiring) {
            let victims = overlay.reclaimCandidates(limit: limit)
            for (parent, name) in victims {
                if finished.load(ordering: .acquiring) { return }
                // Failures (the name is gone, the mount is going away) change nothing.
                _ = name.bytes.withUnsafeBufferPointer { bytes in
                    bytes.withMemoryRebound(to: CChar.self) {
                        fuse_lowlevel_notify_inval_entry(session, fuse_ino_t(parent), $0.baseAddress, $0.count)
                    }
                }
            }
            // Over the limit with no candidate (only directories with live children):
            // back off instead of scanning the table every 20 ms.
            usleep(victims.isEmpty && overlay.nodeCount > limit ? 500_000 : 20_000)
        }
    }

    /// Ends the thread and waits for it.
    func stop() {
        finished.store(true, ordering: .releasing)
        let t = thread.load(ordering: .acquiring)
        if t != 0 { ProcessControl.joinThread(t) }
    }
}
