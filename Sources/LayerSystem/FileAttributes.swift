import Glibc

/// A point in time with nanoseconds, as `struct timespec` holds it.
public struct TimeSpec: Hashable, Sendable, Comparable {
    public var seconds: Int64
    public var nanoseconds: Int64
    public init(seconds: Int64, nanoseconds: Int64) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }
    public static func < (a: TimeSpec, b: TimeSpec) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }
    init(_ ts: timespec) { self.init(seconds: Int64(ts.tv_sec), nanoseconds: Int64(ts.tv_nsec)) }
    var timespec: Glibc.timespec { Glibc.timespec(tv_sec: Int(seconds), tv_nsec: Int(nanoseconds)) }
}

/// The type of a file, from the `S_IFMT` bits of its mode.
public enum FileKind: UInt32, Sendable, Hashable, CustomStringConvertible {
    case regular = 0o100000
    case directory = 0o040000
    case symlink = 0o120000
    case characterDevice = 0o020000
    case blockDevice = 0o060000
    case fifo = 0o010000
    case socket = 0o140000

    /// The kind encoded in a full `st_mode`, or `nil` for an invalid type.
    public init?(mode: UInt32) { self.init(rawValue: mode & 0o170000) }

    /// The `d_type` value readdir reports for this kind.
    public var directoryEntryType: UInt8 {
        switch self {
        case .regular: 8
        case .directory: 4
        case .symlink: 10
        case .characterDevice: 2
        case .blockDevice: 6
        case .fifo: 1
        case .socket: 12
        }
    }

    /// The kind for a `d_type` value, `nil` for `DT_UNKNOWN`.
    public init?(directoryEntryType: UInt8) {
        switch directoryEntryType {
        case 8: self = .regular
        case 4: self = .directory
        case 10: self = .symlink
        case 2: self = .characterDevice
        case 6: self = .blockDevice
        case 1: self = .fifo
        case 12: self = .socket
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .regular: "file"
        case .directory: "dir"
        case .symlink: "symlink"
        case .characterDevice: "chardev"
        case .blockDevice: "blockdev"
        case .fifo: "fifo"
        case .socket: "socket"
        }
    }
}

/// A Swift value mirroring `struct stat`; `Glibc.stat` never leaves LayerSystem.
public struct FileAttributes: Hashable, Sendable {
    public var device: UInt64
    public var inode: UInt64
    /// Full `st_mode`: type and permission bits.
    public var mode: UInt32
    public var linkCount: UInt64
    public var userID: UInt32
    public var groupID: UInt32
    /// `st_rdev` for device nodes.
    public var specialDevice: UInt64
    public var size: Int64
    public var blockSize: Int64
    /// 512-byte blocks allocated.
    public var blocks: Int64
    public var accessTime: TimeSpec
    public var modificationTime: TimeSpec
    public var changeTime: TimeSpec

    public init(device: UInt64 = 0, inode: UInt64 = 0, mode: UInt32, linkCount: UInt64 = 1,
                userID: UInt32 = 0, groupID: UInt32 = 0, specialDevice: UInt64 = 0, size: Int64 = 0,
                blockSize: Int64 = 4096, blocks: Int64 = 0,
                accessTime: TimeSpec = .init(seconds: 0, nanoseconds: 0),
                modificationTime: TimeSpec = .init(seconds: 0, nanoseconds: 0),
                changeTime: TimeSpec = .init(seconds: 0, nanoseconds: 0)) {
        self.device = device; self.inode = inode; self.mode = mode; self.linkCount = linkCount
        self.userID = userID; self.groupID = groupID; self.specialDevice = specialDevice
        self.size = size; self.blockSize = blockSize; self.blocks = blocks
        self.accessTime = accessTime; self.modificationTime = modificationTime; self.changeTime = changeTime
    }

    init(_ st: stat) {
        self.init(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), mode: UInt32(st.st_mode),
                  linkCount: UInt64(st.st_nlink), userID: st.st_uid, groupID: st.st_gid,
                  specialDevice: UInt64(st.st_rdev), size: Int64(st.st_size),
                  blockSize: Int64(st.st_blksize), blocks: Int64(st.st_blocks),
                  accessTime: TimeSpec(st.st_atim), modificationTime: TimeSpec(st.st_mtim),
                  changeTime: TimeSpec(st.st_ctim))
    }

    /// The file's type; `nil` only for a corrupt mode.
    public var kind: FileKind? { FileKind(mode: mode) }
    /// Permission bits including setuid, setgid and sticky.
    public var permissions: UInt32 { mode & 0o7777 }
    public var isDirectory: Bool { kind == .directory }

    /// Major number of `specialDevice` (glibc's `gnu_dev_major` encoding).
    public var deviceMajor: UInt32 { Self.major(of: specialDevice) }
    /// Minor number of `specialDevice`.
    public var deviceMinor: UInt32 { Self.minor(of: specialDevice) }

    /// Major number of a device number (glibc's `gnu_dev_major` encoding).
    public static func major(of device: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: ((device >> 32) & 0xffff_f000) | ((device >> 8) & 0x0000_0fff))
    }
    /// Minor number of a device number.
    public static func minor(of device: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: ((device >> 12) & 0xffff_ff00) | (device & 0x0000_00ff))
    }

    /// Builds an `st_rdev` from major and minor numbers (`makedev`).
    public static func makeDevice(major: UInt32, minor: UInt32) -> UInt64 {
        let ma = UInt64(major), mi = UInt64(minor)
        return ((ma & 0x0000_0fff) << 8) | ((ma & 0xffff_f000) << 32) | (mi & 0x0000_00ff) | ((mi & 0xffff_ff00) << 12)
    }

    /// Converts back to `struct stat` for the FUSE adapter.
    public func withStat<R>(_ body: (inout stat) -> R) -> R {
        var st = stat()
        st.st_dev = __dev_t(device); st.st_ino = __ino_t(inode); st.st_mode = __mode_t(mode)
        st.st_nlink = __nlink_t(linkCount); st.st_uid = userID; st.st_gid = groupID
        st.st_rdev = __dev_t(specialDevice); st.st_size = __off_t(size)
        st.st_blksize = __blksize_t(blockSize); st.st_blocks = __blkcnt_t(blocks)
        st.st_atim = accessTime.timespec; st.st_mtim = modificationTime.timespec; st.st_ctim = changeTime.timespec
        return body(&st)
    }
}

/// Filesystem statistics (`struct statvfs`).
public struct FileSystemStatistics: Sendable, Hashable {
    public var blockSize: UInt64
    public var fragmentSize: UInt64
    public var blocks: UInt64
    public var blocksFree: UInt64
    public var blocksAvailable: UInt64
    public var files: UInt64
    public var filesFree: UInt64
    public var filesAvailable: UInt64
    public var fileSystemID: UInt64
    public var flags: UInt64
    public var maximumNameLength: UInt64
}
