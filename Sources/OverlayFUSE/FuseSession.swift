import CFuse
import Glibc
import LayerSystem
import OverlayCore

/// A failure to start or run the FUSE session.
public struct FuseSessionError: Error, CustomStringConvertible {
    public var description: String
}

/// One FUSE mount of an overlay: create the session, mount, serve requests on
/// the multithreaded loop until unmounted or signalled (SIGINT, SIGTERM,
/// SIGHUP: see `TerminationWatcher`), then unmount and tear down.
public enum FuseSession {
    /// Mounts `overlay` at `mountPoint` and serves it. `onMounted` runs once the
    /// kernel mount exists (before the first request is served). Returns when
    /// the filesystem is unmounted or a signal arrives, after unmounting.
    public static func run(overlay: OverlayFileSystem, mountPoint: String, options: FuseMountOptions,
                           onMounted: () -> Void) throws(FuseSessionError) {
        var mountOptions = ["fsname=strata", "subtype=strata"]
        if options.defaultPermissions { mountOptions.append("default_permissions") }
        if options.allowOther { mountOptions.append("allow_other") }
        if options.readOnly { mountOptions.append("ro") }
        mountOptions += options.kernelOptions
        let arguments = ["strata", "-o", mountOptions.joined(separator: ",")]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        defer { for p in argv { free(p) } }
        let context = FuseContext(overlay: overlay, options: options)
        let userdata = Unmanaged.passRetained(context)
        defer { userdata.release() }
        var ops = FuseOperations.table()

        // SAFETY: argv outlives the fuse_args (freed by fuse_opt_free_args below, then the strings by defer).
        var args = argv.withUnsafeMutableBufferPointer { strata_fuse_args_init(Int32(arguments.count), $0.baseAddress) }
        defer { fuse_opt_free_args(&args) }
        guard let session = fuse_session_new(&args, &ops, MemoryLayout<fuse_lowlevel_ops>.size, userdata.toOpaque()) else {
            throw FuseSessionError(description: "cannot create the FUSE session (bad mount options: \(mountOptions.joined(separator: ",")))")
        }
        defer { fuse_session_destroy(session) }
        guard fuse_session_mount(session, mountPoint) == 0 else {
            throw FuseSessionError(description: "cannot mount at \(mountPoint) (is /dev/fuse usable and the mountpoint free?)")
        }
        defer { fuse_session_unmount(session) }
        let reclaimer = options.maxNodes.map { NodeReclaimer(session: session, overlay: overlay, limit: $0) }
        reclaimer?.start()
        defer { reclaimer?.stop() }
        let watcher = TerminationWatcher(mountPoint: mountPoint)
        watcher.start()
        defer { watcher.stop() }
        onMounted()
        let config = fuse_loop_cfg_create()
        defer { fuse_loop_cfg_destroy(config) }
        fuse_loop_cfg_set_max_threads(config, UInt32(max(1, options.maxThreads)))
        fuse_loop_cfg_set_clone_fd(config, options.cloneDescriptor ? 1 : 0)
        let rc = fuse_session_loop_mt(session, config)
        if rc != 0 && rc != SIGTERM && rc != SIGINT && rc != SIGHUP && rc != -SIGTERM && rc != -SIGINT {
            throw FuseSessionError(description: "the FUSE loop ended with error \(rc)")
        }
    }
}
