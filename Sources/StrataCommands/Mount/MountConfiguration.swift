import LayerSystem
import OverlayCore
import OverlayFUSE

/// Everything `strata mount` was asked to do, from either syntax
/// (`--lower …` or fuse-overlayfs's `-o lowerdir=…`), validated before
/// anything is mounted.
public struct MountConfiguration: Sendable {
    public var lowers: [String] = []
    public var upper: String?
    public var work: String?
    public var mountPoint: String = ""
    public var fuse = FuseMountOptions()
    public var overlay = OverlayOptions()

    /// Options `-o` accepts besides the layer ones, passed to the kernel mount as they are.
    static let kernelPassThrough: Set<String> = [
        "suid", "nosuid", "dev", "nodev", "exec", "noexec", "atime", "noatime", "relatime",
        "strictatime", "diratime", "nodiratime", "sync", "async", "dirsync",
    ]

    public init() {}

    /// Applies one `-o` option list (comma-separated, `\,` escapes a comma; empty items allowed).
    public mutating func apply(optionList: String) throws(CommandFailure) {
        for item in LayerList.split(optionList, separator: ",") where !item.isEmpty {
            let key: String, value: String?
            if let eq = item.firstIndex(of: "=") {
                key = String(item[..<eq]); value = String(item[item.index(after: eq)...])
            } else {
                key = item; value = nil
            }
            func required() throws(CommandFailure) -> String {
                guard let value, !value.isEmpty else { throw CommandFailure("mount option \(key) needs a value (\(key)=…)") }
                return value
            }
            /// A switch: `key` alone means `default`; `key=0|1` says it.
            func flag(default on: Bool) throws(CommandFailure) -> Bool {
                guard let value else { return on }
                guard value == "0" || value == "1" else { throw CommandFailure("mount option \(key)=\(value): expected 0 or 1") }
                return value == "1"
            }
            func seconds() throws(CommandFailure) -> Double {
                let v = try required()
                guard let d = Double(v), d >= 0, d.isFinite else { throw CommandFailure("mount option \(key)=\(v): not a number of seconds") }
                return d
            }
            switch key {
            case "lowerdir": lowers = LayerList.layers(try required())
            case "upperdir": upper = try required()
            case "workdir": work = try required()
            case "timeout":
                let t = try seconds()
                fuse.entryTimeout = t; fuse.attributeTimeout = t; fuse.negativeTimeout = t
            case "entry_timeout": fuse.entryTimeout = try seconds()
            case "attr_timeout": fuse.attributeTimeout = try seconds()
            case "negative_timeout": fuse.negativeTimeout = try seconds()
            case "threads", "max_threads":
                let v = try required()
                guard let n = Int(v), (1...256).contains(n) else { throw CommandFailure("mount option \(key)=\(v): expected 1…256") }
                fuse.maxThreads = n
            case "max_dir_fds":
                let v = try required()
                guard let n = Int(v), (16...1_000_000).contains(n) else { throw CommandFailure("mount option \(key)=\(v): expected 16…1000000") }
                overlay.directoryDescriptorLimit = n
            case "whiteout":
                let v = try required()
                guard let format = WhiteoutFormat(rawValue: v) else { throw CommandFailure("mount option whiteout=\(v): expected kernel or oci") }
                overlay.whiteoutFormat = format
            case "uidmapping", "gidmapping":
                let v = try required()
                guard let ranges = AttributePresentation.ranges(v) else {
                    throw CommandFailure("mount option \(key)=\(v): expected STORED:SHOWN:COUNT[:STORED:SHOWN:COUNT…]")
                }
                if key == "uidmapping" { fuse.presentation.users = ranges } else { fuse.presentation.groups = ranges }
            case "squash_to_root":
                fuse.presentation.squashedUser = fuse.presentation.squashedUser ?? 0
                fuse.presentation.squashedGroup = fuse.presentation.squashedGroup ?? 0
            case "squash_to_uid", "squash_to_gid":
                let v = try required()
                guard let id = UInt32(v) else { throw CommandFailure("mount option \(key)=\(v): expected a numeric ID") }
                if key == "squash_to_uid" { fuse.presentation.squashedUser = id } else { fuse.presentation.squashedGroup = id }
            case "static_nlink": fuse.presentation.staticDirectoryLinks = true
            case "fsync":
                let v = try required()
                guard v == "0" || v == "1" else { throw CommandFailure("mount option fsync=\(v): expected 0 or 1") }
                fuse.synchronous = v == "1"; overlay.synchronousCopyUp = v == "1"
            case "volatile": fuse.synchronous = false; overlay.synchronousCopyUp = false
            case "threaded":
                let v = try required()
                guard v == "0" || v == "1" else { throw CommandFailure("mount option threaded=\(v): expected 0 or 1") }
                if v == "0" { fuse.maxThreads = 1 }
            case "writeback", "writeback_cache": fuse.writebackCache = try flag(default: true)
            case "readdirplus":
                let v = try required()
                guard let policy = FuseMountOptions.ReaddirPlus(rawValue: v) else {
                    throw CommandFailure("mount option readdirplus=\(v): expected auto, yes or no")
                }
                fuse.readdirPlus = policy
            case "clone_fd": fuse.cloneDescriptor = try flag(default: true)
            case "no_open": fuse.openless = try flag(default: true)
            case "max_write":
                let v = try required()
                guard let n = Int(v), (4096...(1 << 20)).contains(n) else { throw CommandFailure("mount option max_write=\(v): expected 4096…1048576 bytes") }
                fuse.maxWrite = n
            case "max_nodes":
                let v = try required()
                guard let n = Int(v), n >= 1000 else { throw CommandFailure("mount option max_nodes=\(v): expected a number of nodes, at least 1000") }
                fuse.maxNodes = n
            case "dir_cache_entries":
                let v = try required()
                guard let n = Int(v), n >= 0 else { throw CommandFailure("mount option dir_cache_entries=\(v): expected a number of names (0 = no directory caches)") }
                overlay.cachedEntryLimit = n
            case "noacl": break   // Strata never enables POSIX ACL enforcement (no FUSE_CAP_POSIX_ACL)
            case "xattr_permissions":
                let v = try required()
                guard v == "0" else {
                    throw CommandFailure("mount option xattr_permissions=\(v) is not supported (owners are stored as real owners; use 0)")
                }
            case "allow_other": fuse.allowOther = true
            case "default_permissions": fuse.defaultPermissions = true
            case "ro": break
            case "rw": break
            case _ where Self.kernelPassThrough.contains(key) && value == nil: fuse.kernelOptions.append(key)
            default: throw CommandFailure("unknown mount option: \(item)")
            }
        }
    }

    /// Checks the layers and the mountpoint; each problem is one line naming it.
    public func validate() throws(CommandFailure) {
        guard !lowers.isEmpty else { throw CommandFailure("no lower layers given (use --lower TOP:…:BOTTOM or -o lowerdir=…)") }
        if lowers.contains(where: \.isEmpty) { throw CommandFailure("empty layer path in the lower list") }
        if upper != nil && work == nil { throw CommandFailure("an upper layer needs a work directory (--work or -o workdir=…)") }
        if work != nil && upper == nil { throw CommandFailure("a work directory was given without an upper layer") }
        guard !mountPoint.isEmpty else { throw CommandFailure("no mountpoint given") }
        let point = try Self.directory(mountPoint, role: "mountpoint")
        var layers: [(String, String)] = []
        for lower in lowers { layers.append((lower, try Self.directory(lower, role: "layer"))) }
        if let upper { layers.append((upper, try Self.directory(upper, role: "upper layer"))) }
        if let work { layers.append((work, try Self.directory(work, role: "work directory"))) }
        for (given, canonical) in layers {
            if canonical == point { throw CommandFailure("the mountpoint \(mountPoint) is the layer \(given)") }
            if point.hasPrefix(canonical == "/" ? "/" : canonical + "/") {
                throw CommandFailure("the mountpoint \(mountPoint) is inside the layer \(given)")
            }
            if canonical.hasPrefix(point == "/" ? "/" : point + "/") {
                throw CommandFailure("the mountpoint \(mountPoint) contains the layer \(given)")
            }
        }
    }

    /// The canonical path of an existing directory, or a one-line failure.
    static func directory(_ path: String, role: String) throws(CommandFailure) -> String {
        let attributes: FileAttributes
        do { attributes = try System.attributes(path) } catch {
            let reason = (error as? SystemCallError)?.message.lowercased() ?? "\(error)"
            throw CommandFailure("\(role) \(path) cannot be used: \(reason)")
        }
        guard attributes.isDirectory else { throw CommandFailure("\(role) \(path) is not a directory") }
        do { return try System.canonicalPath(path) } catch {
            throw CommandFailure("\(role) \(path) cannot be resolved: \(error)")
        }
    }
}

