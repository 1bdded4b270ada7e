import LayerSystem

/// `FileAttributes` in 88 bytes instead of 120, for the copies the daemon
/// keeps (one per node and per cached name: hundreds of thousands).
///
/// Lossless for every value Linux's `stat` returns: the kernel keeps device
/// numbers in 32 bits (12-bit major, 20-bit minor), link counts and block
/// sizes in 32 bits, and nanoseconds below 10^9. (A value outside those
/// ranges can only be made by hand, and would be stored truncated.)
struct PackedAttributes: Sendable {
    private var inode: UInt64
    private var size: Int64
    private var blocks: Int64
    private var accessSeconds: Int64
    private var modificationSeconds: Int64
    private var changeSeconds: Int64
    private var device: UInt32
    private var specialDevice: UInt32
    private(set) var mode: UInt32
    private var userID: UInt32
    private var groupID: UInt32
    private var linkCount: UInt32
    private var blockSize: UInt32
    private var accessNanoseconds: UInt32
    private var modificationNanoseconds: UInt32
    private var changeNanoseconds: UInt32

    init(_ a: FileAttributes) {
        inode = a.inode
        size = a.size
        blocks = a.blocks
        accessSeconds = a.accessTime.seconds
        modificationSeconds = a.modificationTime.seconds
        changeSeconds = a.changeTime.seconds
        device = Self.pack(a.device)
        specialDevice = Self.pack(a.specialDevice)
        mode = a.mode
        userID = a.userID
        groupID = a.groupID
        linkCount = UInt32(truncatingIfNeeded: a.linkCount)
        blockSize = UInt32(truncatingIfNeeded: a.blockSize)
        accessNanoseconds = UInt32(truncatingIfNeeded: a.accessTime.nanoseconds)
        modificationNanoseconds = UInt32(truncatingIfNeeded: a.modificationTime.nanoseconds)
        changeNanoseconds = UInt32(truncatingIfNeeded: a.changeTime.nanoseconds)
    }

    var attributes: FileAttributes {
        FileAttributes(device: Self.unpack(device), inode: inode, mode: mode, linkCount: UInt64(linkCount),
                       userID: userID, groupID: groupID, specialDevice: Self.unpack(specialDevice), size: size,
                       blockSize: Int64(blockSize), blocks: blocks,
                       accessTime: TimeSpec(seconds: accessSeconds, nanoseconds: Int64(accessNanoseconds)),
                       modificationTime: TimeSpec(seconds: modificationSeconds, nanoseconds: Int64(modificationNanoseconds)),
                       changeTime: TimeSpec(seconds: changeSeconds, nanoseconds: Int64(changeNanoseconds)))
    }

    /// The kernel's own 32-bit device encoding (`new_encode_dev` without the
    /// split: major in the top 12 bits, minor in the low 20).
    private static func pack(_ device: UInt64) -> UInt32 {
        (FileAttributes.major(of: device) & 0xfff) << 20 | (FileAttributes.minor(of: device) & 0xf_ffff)
    }

    private static func unpack(_ packed: UInt32) -> UInt64 {
        FileAttributes.makeDevice(major: packed >> 20, minor: packed & 0xf_ffff)
    }
}
