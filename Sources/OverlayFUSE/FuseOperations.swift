import CFuse
import Glibc
import LayerSystem
import OverlayCore

/// The `fuse_lowlevel_ops` table. Each operation decodes the request, calls
/// the core, and replies; no overlay decision is made here.
enum FuseOperations {
    static func table() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, conn in
            guard let conn, let userdata else { return }
            let context = Unmanaged<FuseContext>.fromOpaque(userdata).takeUnretainedValue()
            let options = context.options
            func want(_ flag: Int32) {
                if conn.pointee.capable & UInt32(flag) != 0 { conn.pointee.want |= UInt32(flag) }
            }
            want(FUSE_CAP_SPLICE_WRITE)
            want(FUSE_CAP_SPLICE_MOVE)
            want(FUSE_CAP_CACHE_SYMLINKS)
            want(FUSE_CAP_PARALLEL_DIROPS)
            want(FUSE_CAP_ASYNC_READ)
            if options.writebackCache { want(FUSE_CAP_WRITEBACK_CACHE) }
            switch options.readdirPlus {
            case .auto: want(FUSE_CAP_READDIRPLUS); want(FUSE_CAP_READDIRPLUS_AUTO)
            case .always: want(FUSE_CAP_READDIRPLUS); conn.pointee.want &= ~UInt32(FUSE_CAP_READDIRPLUS_AUTO)
            case .never: conn.pointee.want &= ~UInt32(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO)
            }
            let openless = UInt32(FUSE_CAP_NO_OPEN_SUPPORT | FUSE_CAP_NO_OPENDIR_SUPPORT)
            if options.readOnly && options.openless && conn.pointee.capable & openless == openless {
                conn.pointee.want |= openless
                context.openless.store(true, ordering: .releasing)
            }
            if let maxWrite = options.maxWrite { conn.pointee.max_write = UInt32(min(maxWrite, Int(conn.pointee.max_write))) }
        }
        ops.lookup = { req, parent, name in
            let c = FuseContext.of(req)
            do throws(OverlayError) {
                let (node, attributes) = try c.overlay.lookup(parent: UInt64(parent), name: fileName(name))
                var e = c.entry(node: node, attributes: attributes)
                fuse_reply_entry(req, &e)
            } catch where error.errno == ENOENT && c.options.negativeTimeout > 0 {
                var e = fuse_entry_param()
                e.ino = 0
                e.entry_timeout = c.options.negativeTimeout
                fuse_reply_entry(req, &e)
            } catch {
                c.fail(req, error, "lookup")
            }
        }
        ops.forget = { req, ino, count in
            FuseContext.of(req).overlay.forget(UInt64(ino), count: count)
            fuse_reply_none(req)
        }
        ops.forget_multi = { req, count, forgets in
            let c = FuseContext.of(req)
            if let forgets {
                // SAFETY: the kernel passes `count` fuse_forget_data records.
                for f in UnsafeBufferPointer(start: forgets, count: count) {
                    c.overlay.forget(UInt64(f.ino), count: f.nlookup)
                }
            }
            fuse_reply_none(req)
        }
        ops.getattr = { req, ino, fi in
            let c = FuseContext.of(req)
            do throws(OverlayError) {
                let handle = fi.flatMap { c.handles.file($0.pointee.fh) }
                let attributes = try c.overlay.attributes(of: UInt64(ino), handle: handle)
                c.replyAttributes(req, attributes)
            } catch { c.fail(req, error, "getattr") }
        }
        ops.readlink = { req, ino in
            let c = FuseContext.of(req)
            do throws(OverlayError) {
                var target = try c.overlay.readLink(UInt64(ino))
                target.append(0)
                target.withUnsafeBufferPointer { b in
                    b.withMemoryRebound(to: CChar.self) { _ = fuse_reply_readlink(req, $0.baseAddress) }
                }
            } catch { c.fail(req, error, "readlink") }
        }
        ops.open = { req, ino, fi in
            let c = FuseContext.of(req)
            guard let fi else { fuse_reply_err(req, EINVAL); return }
            // Openless: ENOSYS once, and the kernel opens files by itself from then on.
            if c.openless.load(ordering: .acquiring) { fuse_reply_err(req, ENOSYS); return }
            do throws(OverlayError) {
                let d = try c.overlay.openFile(UInt64(ino), flags: c.options.layerOpenFlags(fi.pointee.flags))
                fi.pointee.fh = c.handles.addFile(d)
                // The page cache stays valid across opens: lower files never change while
                // mounted, and every change to an upper file passes through this kernel inode
                // (one node per upper object, hard links included), which updates the cache
                // as it writes and truncates. (Changing layers behind the mount is unsupported.)
                fi.pointee.keep_cache = 1
                if fuse_reply_open(req, fi) != 0 {
                    _ = c.handles.removeFile(fi.pointee.fh)
                    c.overlay.fileReleased(UInt64(ino))
                }
            } catch { c.fail(req, error, "open") }
        }
        ops.read = { req, ino, size, offset, fi in
            let c = FuseContext.of(req)
            let d: Descriptor
            if let fi, let handle = c.handles.file(fi.pointee.fh) {
                d = handle
            } else if c.openless.load(ordering: .acquiring) {
                // No OPEN was sent: a kept read descriptor of the lower file.
                do throws(OverlayError) { d = try c.overlay.readableFile(UInt64(ino)) } catch { c.fail(req, error, "read"); return }
            } else {
                fuse_reply_err(req, EBADF); return
            }
            var buffer = strata_fd_bufvec(size, d.rawValue, offset)
            // Splices from the layer file into the FUSE device where the kernel allows it.
            _ = fuse_reply_data(req, &buffer, FUSE_BUF_SPLICE_MOVE)
            withExtendedLifetime(d) {}
        }
        ops.release = { req, ino, fi in
            let c = FuseContext.of(req)
            if let fi, c.handles.removeFile(fi.pointee.fh) != nil { c.overlay.fileReleased(UInt64(ino)) }
            fuse_reply_err(req, 0)
        }
        // No FLUSH handler: the kernel gets ENOSYS once and stops sending FLUSH on
        // every close(2), a round trip that had nothing to do (writes go straight to
        // the layer file; with the writeback cache the kernel writes dirty pages back
        // itself before it would send FLUSH; POSIX locks are the kernel's own).
        ops.fsync = { req, _, _, _ in fuse_reply_err(req, 0) }
        FuseWriteOperations.install(into: &ops)
        ops.opendir = { req, ino, fi in
            let c = FuseContext.of(req)
            guard let fi else { fuse_reply_err(req, EINVAL); return }
            if c.openless.load(ordering: .acquiring) { fuse_reply_err(req, ENOSYS); return }
            do throws(OverlayError) {
                let entries = try c.overlay.listing(of: UInt64(ino))
                fi.pointee.fh = c.handles.addDirectory(.init(node: UInt64(ino), entries: entries))
                // The listing is cached by the core with its own invalidation rules; on a
                // read-only mount the kernel may cache it too. (On a writable one the
                // differential tester saw a stale link count after RENAME_EXCHANGE of copied-up
                // trees with the kernel's readdir cache on: it stays off there.)
                fi.pointee.cache_readdir = c.overlay.isWritable ? 0 : 1
                fi.pointee.keep_cache = c.overlay.isWritable ? 0 : 1
                if fuse_reply_open(req, fi) != 0 { _ = c.handles.removeDirectory(fi.pointee.fh) }
            } catch { c.fail(req, error, "opendir") }
        }
        ops.readdir = { req, ino, size, offset, fi in
            DirectoryReply.reply(req, ino: ino, size: size, offset: offset, fi: fi, plus: false)
        }
        ops.readdirplus = { req, ino, size, offset, fi in
            DirectoryReply.reply(req, ino: ino, size: size, offset: offset, fi: fi, plus: true)
        }
        ops.releasedir = { req, _, fi in
            let c = FuseContext.of(req)
            if let fi { _ = c.handles.removeDirectory(fi.pointee.fh) }
            fuse_reply_err(req, 0)
        }
        ops.fsyncdir = { req, _, _, _ in fuse_reply_err(req, 0) }
        ops.statfs = { req, _ in
            let c = FuseContext.of(req)
            do throws(OverlayError) {
                let s = try c.overlay.fileSystemStatistics()
                var v = statvfs()
                v.f_bsize = UInt(s.blockSize); v.f_frsize = UInt(s.fragmentSize)
                v.f_blocks = fsblkcnt_t(s.blocks); v.f_bfree = fsblkcnt_t(s.blocksFree)
                v.f_bavail = fsblkcnt_t(s.blocksAvailable); v.f_files = fsfilcnt_t(s.files)
                v.f_ffree = fsfilcnt_t(s.filesFree); v.f_favail = fsfilcnt_t(s.filesAvailable)
                v.f_namemax = UInt(s.maximumNameLength)
                fuse_reply_statfs(req, &v)
            } catch { c.fail(req, error, "statfs") }
        }
        ops.getxattr = { req, ino, name, size in
            let c = FuseContext.of(req)
            do throws(OverlayError) {
                let value = try c.overlay.extendedAttribute(UInt64(ino), name: name.map { String(cString: $0) } ?? "")
                XattrReply.reply(req, value, size: size)
            } catch { c.fail(req, error, "getxattr") }
        }
        ops.listxattr = { req, ino, size in
            let c = FuseContext.of(req)
            do throws(OverlayError) {
                var list: [UInt8] = []
                for name in try c.overlay.extendedAttributeNames(UInt64(ino)) { list += name; list.append(0) }
                XattrReply.reply(req, list, size: size)
            } catch { c.fail(req, error, "listxattr") }
        }
        return ops
    }
}

/// Replies to getxattr/listxattr: the size when asked for it, ERANGE when the
/// caller's buffer is too small, else the bytes.
enum XattrReply {
    static func reply(_ req: fuse_req_t?, _ value: [UInt8], size: Int) {
        if size == 0 { fuse_reply_xattr(req, value.count); return }
        if value.count > size { fuse_reply_err(req, ERANGE); return }
        value.withUnsafeBytes { _ = fuse_reply_buf(req, $0.baseAddress?.assumingMemoryBound(to: CChar.self), $0.count) }
    }
}
