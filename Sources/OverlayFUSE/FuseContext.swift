import CFuse
import Glibc
import LayerSystem
import OverlayCore
import Synchronization

/// State every FUSE callback reaches through `fuse_req_userdata` (never a
/// global): the overlay core, the open handles, and the session options.
final class FuseContext: Sendable {
    let overlay: OverlayFileSystem
    let options: FuseMountOptions
    let handles = HandleTable()
    /// Set at INIT when OPEN and OPENDIR are answered ENOSYS, so the kernel
    /// stops sending them (a read-only mount whose kernel supports it: see
    /// `FuseMountOptions.openless`). Reads and listings then come without a handle.
    let openless = Atomic<Bool>(false)
    /// Listings of directories read without a handle (openless mounts):
    /// the most recent few, so a directory read in many READDIR chunks is
    /// listed once.
    let recentListings = Locked(RecentListings())

    struct RecentListings {
        var entries: [(node: UInt64, listing: [ListingEntry])] = []
        static let capacity = 32
        func listing(of node: UInt64) -> [ListingEntry]? { entries.first { $0.node == node }?.listing }
        mutating func keep(_ listing: [ListingEntry], of node: UInt64) {
            entries.removeAll { $0.node == node }
            entries.append((node, listing))
            if entries.count > Self.capacity { entries.removeFirst() }
        }
    }

    init(overlay: OverlayFileSystem, options: FuseMountOptions) {
        self.overlay = overlay
        self.options = options
    }

    /// The listing a handle-less READDIR reads (openless mounts).
    func listingWithoutHandle(of node: UInt64) throws(OverlayError) -> [ListingEntry] {
        if let listing = recentListings.withLock({ $0.listing(of: node) }) { return listing }
        let listing = try overlay.listing(of: node)
        recentListings.withLock { $0.keep(listing, of: node) }
        return listing
    }

    /// The context of a request.
    static func of(_ req: fuse_req_t?) -> FuseContext {
        // SAFETY: userdata is the Unmanaged FuseContext passed to fuse_session_new, retained for the session's life.
        Unmanaged<FuseContext>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }

    /// Replies with the errno of `error`, logging it in debug mode.
    func fail(_ req: fuse_req_t?, _ error: OverlayError, _ op: StaticString) {
        if options.debugLog || error.errno == EIO {
            ProcessControl.writeStandardError("strata: \(op): \(error)\n")
        }
        fuse_reply_err(req, error.errno)
    }

    /// Replies to getattr/setattr with `attributes` as the mount shows them.
    func replyAttributes(_ req: fuse_req_t?, _ attributes: FileAttributes) {
        options.presentation.present(attributes).withStat { st in _ = fuse_reply_attr(req, &st, options.attributeTimeout) }
    }

    /// Fills an entry reply for `node`.
    func entry(node: UInt64, attributes: FileAttributes) -> fuse_entry_param {
        var e = fuse_entry_param()
        e.ino = fuse_ino_t(node)
        e.generation = 1
        options.presentation.present(attributes).withStat { e.attr = $0 }
        e.attr_timeout = options.attributeTimeout
        e.entry_timeout = options.entryTimeout
        return e
    }
}

/// Decodes a C name from the kernel into a `FileName`.
@inline(__always)
func fileName(_ name: UnsafePointer<CChar>?) -> FileName {
    guard let name else { return FileName(bytes: []) }
    // SAFETY: the kernel passes a NUL-terminated name valid for the callback.
    return FileName(bytes: Array(UnsafeRawBufferPointer(start: name, count: strlen(name))))
}
