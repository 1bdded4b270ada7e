import LayerSystem
import OverlayCore
import Synchronization

/// Open file and directory handles, keyed by the `fh` value given to the kernel.
///
/// Files: `fh` is the descriptor number, and the table keeps the owning
/// `Descriptor` alive until `release`. Directories: `fh` is a counter and the
/// entry is the listing snapshot the handle reads from (so offsets stay
/// meaningful for that handle: telldir/seekdir work).
///
/// Lock: one leaf mutex; no syscall and no other lock under it.
final class HandleTable: Sendable {
    struct DirectoryHandle: Sendable {
        var node: UInt64
        var entries: [ListingEntry]
    }
    struct State {
        var files: [UInt64: Descriptor] = [:]
        var directories: [UInt64: DirectoryHandle] = [:]
        var nextDirectory: UInt64 = 1
    }
    private let state = Locked(State())

    func addFile(_ d: Descriptor) -> UInt64 {
        let fh = UInt64(d.rawValue)
        state.withLock { $0.files[fh] = d }
        return fh
    }
    func file(_ fh: UInt64) -> Descriptor? { state.withLock { $0.files[fh] } }
    func removeFile(_ fh: UInt64) -> Descriptor? { state.withLock { $0.files.removeValue(forKey: fh) } }

    func addDirectory(_ h: DirectoryHandle) -> UInt64 {
        state.withLock { s in
            let fh = s.nextDirectory
            s.nextDirectory += 1
            s.directories[fh] = h
            return fh
        }
    }
    func directory(_ fh: UInt64) -> DirectoryHandle? { state.withLock { $0.directories[fh] } }
    func removeDirectory(_ fh: UInt64) -> DirectoryHandle? { state.withLock { $0.directories.removeValue(forKey: fh) } }
}
