import Glibc

/// One line of `/proc/self/mountinfo`.
public struct MountEntry: Sendable, Hashable {
    /// Mount point, unescaped.
    public var mountPoint: String
    /// Filesystem type, e.g. `fuse.strata` or `overlay`.
    public var fileSystemType: String
    /// Mount source (`fsname`).
    public var source: String
    /// Per-superblock options.
    public var superOptions: String
    /// `major:minor` of the mounted filesystem.
    public var device: String
}

/// Reader for `/proc/self/mountinfo`.
public enum MountTable {
    /// All current mounts of this process's mount namespace.
    public static func entries() -> [MountEntry] {
        guard let fd = try? System.open("/proc/self/mountinfo", .readOnly),
              let bytes = try? fd.readAll() else { return [] }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").compactMap(parse)
    }

    /// The mount whose mount point is exactly `path` (canonical), topmost first.
    public static func mount(at path: String) -> MountEntry? {
        entries().last { $0.mountPoint == path }
    }

    static func parse(_ line: Substring) -> MountEntry? {
        let halves = line.split(separator: " - ", maxSplits: 1)
        guard halves.count == 2 else { return nil }
        let left = halves[0].split(separator: " ")
        let right = halves[1].split(separator: " ")
        guard left.count >= 5, right.count >= 2 else { return nil }
        return MountEntry(mountPoint: unescape(left[4]), fileSystemType: String(right[0]),
                          source: unescape(right[1]), superOptions: right.count > 2 ? String(right[2]) : "",
                          device: String(left[2]))
    }

    /// Undoes the kernel's `\ooo` octal escapes of space, tab, newline and backslash.
    static func unescape(_ field: Substring) -> String {
        var out: [UInt8] = []
        let bytes = Array(field.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x5C, i + 4 <= bytes.count,
               let v = UInt8(String(decoding: bytes[(i + 1)..<(i + 4)], as: UTF8.self), radix: 8) {
                out.append(v)
                i += 4
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
