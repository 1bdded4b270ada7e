import CFuse
import Glibc
import LayerSystem
import OverlayCore

/// The write half of the ops table (only reached when the mount has an upper
/// layer; a read-only mount is mounted `ro`, so the kernel answers EROFS).
/// Decode, call the core, reply.
enum FuseWriteOperations {
    /// Who asks, as stored on disk (through the owner mapping).
    static func caller(_ req: fuse_req_t?) -> Caller {
        // SAFETY: fuse_req_ctx is valid for the request's lifetime.
        let ctx = fuse_req_ctx(req)!.pointee
        let presentation = FuseContext.of(req).options.presentation
        return Caller(userID: presentation.storedUser(ctx.uid), groupID: presentation.storedGroup(ctx.gid))
    }

    static func replyEntry(_ req: fuse_req_t?, _ c: FuseContext, _ result: (node: UInt64, attributes: FileAttributes)) {
        var e = c.entry(node: result.node, attributes: result.attributes)
        if fuse_reply_entry(req, &e) != 0 { c.overlay.forget(result.node, count: 1) }
    }

    /// Runs a core call that answers with success or an errno, and replies.
    static func replyStatus(_ req: fuse_req_t?, _ op: StaticString, _ body: (FuseContext) throws(OverlayError) -> Void) {
        let c = FuseContext.of(req)
        do throws(OverlayError) {
            try body(c)
            fuse_reply_err(req, 0)
        } catch { c.fail(req, error, op) }
    }

    static func install(into ops: inout fuse_lowlevel_ops) {
        ops.mkdir = { req, parent, name, mode in
            let c = FuseContext.of(req)
            do throws(OverlayError) {
                FuseWriteOperations.replyEntry(req, c, try c.overlay.makeDirectory(parent: UInt64(parent), name: fileName(name), mode: UInt32(mode), caller: FuseWriteOperations.caller(req)))
            } catch { c.fail(req, error, "mkdir") }
        }
        ops.mknod = { req, parent, name, mode, rdev in
            let c = FuseContext.of(req)
            do throws(OverlayError) {
                FuseWriteOperations.replyEntry(req, c, try c.overlay.makeNode(parent: UInt64(parent), name: fileName(name), mode: UInt32(mode),
                                                          device: UInt64(rdev), caller: FuseWriteOperations.caller(req)))
            } catch { c.fail(req, error, "mknod") }
        }
        ops.symlink = { req, target, parent, name in
            let c = FuseContext.of(req)
            do throws(OverlayError) {
                let t = fileName(target).bytes
                FuseWriteOperations.replyEntry(req, c, try c.overlay.makeSymlink(parent: UInt64(parent), name: fileName(name), target: t, caller: FuseWriteOperations.caller(req)))
            } catch { c.fail(req, error, "symlink") }
        }
        ops.link = { req, ino, parent, name in
            let c = FuseContext.of(req)
            do throws(OverlayError) {
                FuseWriteOperations.replyEntry(req, c, try c.overlay.link(UInt64(ino), parent: UInt64(parent), name: fileName(name)))
            } catch { c.fail(req, error, "link") }
        }
        ops.unlink = { req, parent, name in
            FuseWriteOperations.replyStatus(req, "unlink") { (c) throws(OverlayError) in
                try c.overlay.unlink(parent: UInt64(parent), name: fileName(name))
            }
        }
        ops.rmdir = { req, parent, name in
            FuseWriteOperations.replyStatus(req, "rmdir") { (c) throws(OverlayError) in
                try c.overlay.removeDirectory(parent: UInt64(parent), name: fileName(name))
            }
        }
        ops.rename = { req, parent, name, newParent, newName, flags in
            FuseWriteOperations.replyStatus(req, "rename") { (c) throws(OverlayError) in
                try c.overlay.rename(parent: UInt64(parent), name: fileName(name), to: UInt64(newParent), as: fileName(newName),
                                     flags: RenameFlags(rawValue: flags))
            }
        }
        ops.create = { req, parent, name, mode, fi in
            let c = FuseContext.of(req)
            guard let fi else { fuse_reply_err(req, EINVAL); return }
            do throws(OverlayError) {
                let (node, attributes, file) = try c.overlay.create(parent: UInt64(parent), name: fileName(name), mode: UInt32(mode),
                                                                    flags: c.options.layerOpenFlags(fi.pointee.flags),
                                                                    caller: FuseWriteOperations.caller(req))
                fi.pointee.fh = c.handles.addFile(file)
                var e = c.entry(node: node, attributes: attributes)
                if fuse_reply_create(req, &e, fi) != 0 {
                    _ = c.handles.removeFile(fi.pointee.fh)
                    c.overlay.fileReleased(node)
                    c.overlay.forget(node, count: 1)
                }
            } catch { c.fail(req, error, "create") }
        }
        ops.write = { req, _, buffer, size, offset, fi in
            let c = FuseContext.of(req)
            guard let fi, let d = c.handles.file(fi.pointee.fh) else { fuse_reply_err(req, EBADF); return }
            do {
                // SAFETY: the kernel passes `size` bytes at `buffer` for this request.
                let n = try d.write(UnsafeRawBufferPointer(start: buffer, count: size), at: Int64(offset))
                fuse_reply_write(req, n)
            } catch let error as SystemCallError {
                fuse_reply_err(req, error.errno)
            } catch { fuse_reply_err(req, EIO) }
        }
        ops.fsync = { req, _, dataOnly, fi in
            let c = FuseContext.of(req)
            guard c.options.synchronous, let fi, let d = c.handles.file(fi.pointee.fh) else { fuse_reply_err(req, 0); return }
            do { try d.synchronize(dataOnly: dataOnly != 0); fuse_reply_err(req, 0) } catch let error as SystemCallError {
                fuse_reply_err(req, error.errno)
            } catch { fuse_reply_err(req, EIO) }
        }
        ops.fallocate = { req, _, mode, offset, length, fi in
            let c = FuseContext.of(req)
            guard let fi, let d = c.handles.file(fi.pointee.fh) else { fuse_reply_err(req, EBADF); return }
            do { try d.allocate(mode: mode, offset: Int64(offset), length: Int64(length)); fuse_reply_err(req, 0) } catch let error as SystemCallError {
                fuse_reply_err(req, error.errno)
            } catch { fuse_reply_err(req, EIO) }
        }
        ops.setattr = { req, ino, attr, toSet, fi in
            let c = FuseContext.of(req)
            guard let attr else { fuse_reply_err(req, EINVAL); return }
            var changes = AttributeChanges()
            let st = attr.pointee
            if toSet & FUSE_SET_ATTR_MODE != 0 { changes.mode = UInt32(st.st_mode) }
            let presentation = c.options.presentation
            if toSet & FUSE_SET_ATTR_UID != 0 && !presentation.ignoresOwnerChanges { changes.userID = presentation.storedUser(st.st_uid) }
            if toSet & FUSE_SET_ATTR_GID != 0 && !presentation.ignoresOwnerChanges { changes.groupID = presentation.storedGroup(st.st_gid) }
            if toSet & FUSE_SET_ATTR_SIZE != 0 { changes.size = Int64(st.st_size) }
            if toSet & FUSE_SET_ATTR_ATIME_NOW != 0 { changes.accessTime = .some(nil) } else if toSet & FUSE_SET_ATTR_ATIME != 0 {
                changes.accessTime = TimeSpec(seconds: Int64(st.st_atim.tv_sec), nanoseconds: Int64(st.st_atim.tv_nsec))
            }
            if toSet & FUSE_SET_ATTR_MTIME_NOW != 0 { changes.modificationTime = .some(nil) } else if toSet & FUSE_SET_ATTR_MTIME != 0 {
                changes.modificationTime = TimeSpec(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: Int64(st.st_mtim.tv_nsec))
            }
            let handle = fi.flatMap { c.handles.file($0.pointee.fh) }
            do throws(OverlayError) {
                let attributes = try c.overlay.setAttributes(UInt64(ino), changes, handle: handle)
                c.replyAttributes(req, attributes)
            } catch { c.fail(req, error, "setattr") }
        }
        ops.setxattr = { req, ino, name, value, size, flags in
            FuseWriteOperations.replyStatus(req, "setxattr") { (c) throws(OverlayError) in
                // SAFETY: the kernel passes `size` bytes of value.
                let bytes = size == 0 ? [] : Array(UnsafeRawBufferPointer(start: value, count: size))
                try c.overlay.setExtendedAttribute(UInt64(ino), name: name.map { String(cString: $0) } ?? "", value: bytes, flags: flags)
            }
        }
        ops.removexattr = { req, ino, name in
            FuseWriteOperations.replyStatus(req, "removexattr") { (c) throws(OverlayError) in
                try c.overlay.removeExtendedAttribute(UInt64(ino), name: name.map { String(cString: $0) } ?? "")
            }
        }
    }
}
