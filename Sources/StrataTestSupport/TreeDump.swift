import Foundation
import LayerSystem

/// A canonical dump of a tree: one line per entry, sorted by path, with
/// type, mode, owner, size, mtime, nlink (non-directories), symlink target,
/// a content hash (regular files) and visible xattrs. Goldens and
/// Strata-vs-kernel comparisons use it.
public enum TreeDump {
    public struct Options: Sendable {
        /// Include directory sizes (they differ between filesystems).
        public var directorySizes = true
        public var mtimes = true
        public var xattrs = true
        public var linkCounts = true
        /// Hash regular files' contents (`fnv=`). Tests that compare contents
        /// by other means (tens of MiB: slow in a debug build) turn it off.
        public var contentHashes = true
        public init() {}
    }

    public static func lines(of root: String, options: Options = Options()) throws -> [String] {
        var out: [String] = []
        let top = try System.open(root, [.directory])
        try walk(top, path: "", options: options, into: &out)
        return out.sorted()
    }

    static func walk(_ directory: Descriptor, path: String, options: Options, into out: inout [String]) throws {
        var names: [FileName] = []
        try directory.forEachEntry { names.append($0.name) }
        for name in names.sorted() {
            let p = path + "/" + escape(name)
            // Kernel overlayfs lists stray whiteouts of non-merged directories
            // (readdir shows them, lookup says ENOENT); Strata hides them. A name
            // that cannot be looked up is not part of the visible tree.
            guard let a = try directory.attributesIfPresent(of: name) else { continue }
            var line = "\(p) \(a.kind.map { "\($0)" } ?? "?") \(String(a.permissions, radix: 8)) \(a.userID):\(a.groupID)"
            if a.kind != .directory || options.directorySizes { line += " size=\(a.size)" }
            if options.mtimes { line += " mtime=\(a.modificationTime.seconds).\(a.modificationTime.nanoseconds)" }
            if a.kind != .directory && options.linkCounts { line += " nlink=\(a.linkCount)" }
            switch a.kind {
            case .symlink: line += " -> " + escape(FileName(bytes: try directory.readLink(name)))
            case .regular where options.contentHashes:
                let f = try directory.open(name, [])
                line += " fnv=\(String(fnv1a(try f.readAll()), radix: 16))"
            case .characterDevice, .blockDevice: line += " dev=\(a.deviceMajor),\(a.deviceMinor)"
            default: break
            }
            if options.xattrs {
                let object = try directory.open(name, [.path])
                let names = (try? object.extendedAttributeNames()) ?? []
                for x in names.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                    let key = String(decoding: x, as: UTF8.self)
                    let value = (try? object.extendedAttribute(key)).flatMap { $0 } ?? []
                    line += " x:\(key)=\(String(decoding: value, as: UTF8.self))"
                }
            }
            out.append(line)
            if a.kind == .directory {
                try walk(try directory.open(name, [.directory]), path: p, options: options, into: &out)
            }
        }
    }

    /// Printable form of a name: bytes outside printable ASCII as `\xHH`.
    public static func escape(_ name: FileName) -> String {
        var s = ""
        for b in name.bytes {
            if b >= 0x21 && b < 0x7f && b != 0x5C { s.unicodeScalars.append(UnicodeScalar(b)) } else { s += String(format: "\\x%02x", b) }
        }
        return s
    }

    public static func fnv1a(_ bytes: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }
}
