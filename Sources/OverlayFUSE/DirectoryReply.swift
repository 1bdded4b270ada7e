import CFuse
import Glibc
import LayerSystem
import OverlayCore

/// Fills readdir / readdirplus replies from a directory handle's listing.
///
/// Offsets: entry `i` of [".", "..", listing...] carries offset `i + 1` (the
/// offset of the next entry), so a reader resumes exactly where it stopped
/// and telldir/seekdir round-trip. Every readdirplus entry is a lookup; one
/// that does not fit in the reply has its lookup undone.
enum DirectoryReply {
    static func reply(_ req: fuse_req_t?, ino: fuse_ino_t, size: Int, offset: off_t,
                      fi: UnsafeMutablePointer<fuse_file_info>?, plus: Bool) {
        let c = FuseContext.of(req)
        let node = UInt64(ino)
        let entries: [ListingEntry]
        if let fi, let handle = c.handles.directory(fi.pointee.fh) {
            entries = handle.entries
        } else if c.openless.load(ordering: .acquiring) {
            // No OPENDIR was sent (openless read-only mount): the directory's listing.
            do throws(OverlayError) { entries = try c.listingWithoutHandle(of: node) } catch { c.fail(req, error, "readdir"); return }
        } else {
            fuse_reply_err(req, EBADF); return
        }
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: size)
        defer { buffer.deallocate() }
        var used = 0
        var index = Int(offset)
        let total = entries.count + 2
        while index < total {
            let name: FileName
            var kind = FileKind.directory
            var inode: UInt64 = 0
            var child: (UInt64, FileAttributes)?
            switch index {
            case 0:
                name = "."
                inode = (try? c.overlay.attributes(of: node).inode) ?? 0
            case 1:
                name = ".."
                let parent = (try? c.overlay.parent(of: node)) ?? OverlayFileSystem.rootID
                inode = (try? c.overlay.attributes(of: parent).inode) ?? 0
            default:
                let entry = entries[index - 2]
                name = entry.name
                kind = entry.kind
                inode = entry.inode
                if plus { child = try? c.overlay.lookup(parent: node, name: entry.name, from: entry.layer) }
            }
            var cName = name.bytes
            cName.append(0)
            let remaining = size - used
            let needed: Int = cName.withUnsafeBufferPointer { n in
                n.withMemoryRebound(to: CChar.self) { n in
                    if plus {
                        var e = fuse_entry_param()
                        if let (childNode, attributes) = child {
                            e = c.entry(node: childNode, attributes: attributes)
                        } else {
                            e.attr.st_ino = ino_t(inode)
                            e.attr.st_mode = mode_t(kind.rawValue)
                        }
                        return fuse_add_direntry_plus(req, buffer + used, remaining, n.baseAddress, &e, off_t(index + 1))
                    } else {
                        var st = stat()
                        st.st_ino = ino_t(inode)
                        st.st_mode = mode_t(kind.rawValue)
                        return fuse_add_direntry(req, buffer + used, remaining, n.baseAddress, &st, off_t(index + 1))
                    }
                }
            }
            if needed > remaining {
                if let (childNode, _) = child { c.overlay.forget(childNode, count: 1) }
                break
            }
            used += needed
            index += 1
        }
        fuse_reply_buf(req, buffer, used)
    }
}
