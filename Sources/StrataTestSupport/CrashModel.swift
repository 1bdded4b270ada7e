import Foundation
import Glibc
import LayerSystem

/// File contents compared with `memcmp` (tens of MiB per file in the crash-point
/// tests: an element-by-element `==` in a debug build takes seconds).
public struct Bytes: Equatable, Sendable {
    public var array: [UInt8]
    public init(_ array: [UInt8]) { self.array = array }
    public var count: Int { array.count }

    public static func == (a: Bytes, b: Bytes) -> Bool {
        a.array.count == b.array.count && a.hasPrefix(b.array)
    }

    /// Whether these bytes start with `prefix`.
    public func hasPrefix(_ prefix: [UInt8]) -> Bool { Self.equal(array, 0, prefix, 0, prefix.count) }

    /// Whether these bytes are `base` followed by a prefix (possibly empty, possibly all) of `tail`.
    public func isExtension(of base: [UInt8], byPrefixOf tail: [UInt8]) -> Bool {
        array.count >= base.count && array.count <= base.count + tail.count && hasPrefix(base)
            && Self.equal(array, base.count, tail, 0, array.count - base.count)
    }

    static func equal(_ a: [UInt8], _ aOffset: Int, _ b: [UInt8], _ bOffset: Int, _ count: Int) -> Bool {
        guard count > 0 else { return true }
        guard a.count >= aOffset + count, b.count >= bOffset + count else { return false }
        return a.withUnsafeBytes { x in b.withUnsafeBytes { y in memcmp(x.baseAddress! + aOffset, y.baseAddress! + bOffset, count) == 0 } }
    }

    /// `size=N` and the first bytes, for failure messages.
    public var summary: String {
        let head = String(decoding: array.prefix(24).map { $0 >= 0x20 && $0 < 0x7f ? $0 : UInt8(ascii: ".") }, as: UTF8.self)
        return "size=\(array.count) \"\(head)\(array.count > 24 ? "…" : "")\""
    }
}

/// What a merged view holds, path by path, as the crash-point tests compare it:
/// type, permission bits, `user.*` xattrs, file contents, symlink targets.
/// (Times, owners and link counts are left to the TreeDump comparison with the kernel.)
public enum CrashView {
    public enum Entry: Equatable, Sendable, CustomStringConvertible {
        case directory(mode: UInt32, xattrs: [String: [UInt8]])
        case file(mode: UInt32, xattrs: [String: [UInt8]], content: Bytes)
        case symlink([UInt8])
        case special(FileKind, mode: UInt32)

        public var description: String {
            func x(_ xattrs: [String: [UInt8]]) -> String {
                xattrs.keys.sorted().map { " \($0)=\(String(decoding: xattrs[$0]!, as: UTF8.self))" }.joined()
            }
            switch self {
            case .directory(let mode, let xattrs): return "dir \(String(mode, radix: 8))\(x(xattrs))"
            case .file(let mode, let xattrs, let content): return "file \(String(mode, radix: 8)) \(content.summary)\(x(xattrs))"
            case .symlink(let target): return "symlink -> \(String(decoding: target, as: UTF8.self))"
            case .special(let kind, let mode): return "\(kind) \(String(mode, radix: 8))"
            }
        }
    }

    /// A view plus the hard-link identity of files with several names
    /// (path → inode), which the model needs to know which names are one file.
    public struct Snapshot: Sendable {
        public var entries: [String: Entry]
        public var linkedInodes: [String: UInt64]
    }

    /// Reads every entry under `root` (which is not itself included).
    public static func read(_ root: String) throws -> Snapshot {
        var snapshot = Snapshot(entries: [:], linkedInodes: [:])
        try walk(try System.open(root, [.directory]), path: "", into: &snapshot)
        return snapshot
    }

    static func walk(_ directory: Descriptor, path: String, into snapshot: inout Snapshot) throws {
        var names: [FileName] = []
        try directory.forEachEntry { names.append($0.name) }
        for name in names {
            let p = CrashModel.join(path, String(decoding: name.bytes, as: UTF8.self))
            guard let a = try directory.attributesIfPresent(of: name) else { continue }   // a stray whiteout (kernel)
            switch a.kind {
            case .directory:
                let child = try directory.open(name, [.directory])
                snapshot.entries[p] = .directory(mode: a.permissions, xattrs: try userAttributes(child))
                try walk(child, path: p, into: &snapshot)
            case .regular:
                let file = try directory.open(name, [])
                snapshot.entries[p] = .file(mode: a.permissions, xattrs: try userAttributes(file), content: Bytes(try contents(file, size: a.size)))
                if a.linkCount > 1 { snapshot.linkedInodes[p] = a.inode }
            case .symlink:
                snapshot.entries[p] = .symlink(try directory.readLink(name))
            default:
                snapshot.entries[p] = .special(a.kind ?? .regular, mode: a.permissions)
            }
        }
    }

    static func userAttributes(_ object: Descriptor) throws -> [String: [UInt8]] {
        var result: [String: [UInt8]] = [:]
        for raw in try object.extendedAttributeNames() {
            let key = String(decoding: raw, as: UTF8.self)
            guard key.hasPrefix("user.") else { continue }
            result[key] = try object.extendedAttribute(key) ?? []
        }
        return result
    }

    /// The whole file, read in large chunks into one buffer.
    static func contents(_ file: Descriptor, size: Int64) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: Int(size) + 1)
        var filled = 0
        while true {
            if filled == buffer.count { buffer.append(contentsOf: [UInt8](repeating: 0, count: max(buffer.count, 1 << 16))) }
            let n = try buffer.withUnsafeMutableBytes { (b) throws in
                try file.read(into: UnsafeMutableRawBufferPointer(rebasing: b[filled...]), at: Int64(filled))
            }
            if n == 0 { break }
            filled += n
        }
        buffer.removeSubrange(filled...)
        return buffer
    }
}

/// The expected merged view of the crash-point workload: paths to entries,
/// regular files as shared objects (names made with `link` through the mount
/// are one object: a write through one name shows through all). Names that are
/// hard links in a lower layer are separate objects: kernel overlayfs without
/// an index (and Strata) copy each name up to its own file.
public struct CrashModel: Sendable {
    public enum Entry: Sendable, Equatable {
        case directory(mode: UInt32, xattrs: [String: [UInt8]])
        case file(object: Int)
        case symlink([UInt8])
        case special(FileKind, mode: UInt32)
    }

    public struct FileObject: Sendable {
        public var content: [UInt8]
        public var mode: UInt32
        public var xattrs: [String: [UInt8]]
        /// The lower inode of a name that is a hard link in a lower layer (rename
        /// between two such names is a no-op: they are one lower file).
        public var lowerInode: UInt64?
    }

    public private(set) var entries: [String: Entry] = [:]
    public private(set) var objects: [Int: FileObject] = [:]
    /// Directory path ("" = root) → names in it.
    public private(set) var children: [String: Set<String>] = ["": []]
    var nextObject = 0

    /// The model of a view as read (each name its own object).
    public init(_ snapshot: CrashView.Snapshot) {
        for path in snapshot.entries.keys.sorted() {
            switch snapshot.entries[path]! {
            case .directory(let mode, let xattrs): insert(path, .directory(mode: mode, xattrs: xattrs))
            case .file(let mode, let xattrs, let content):
                insert(path, .file(object: makeObject(FileObject(content: content.array, mode: mode, xattrs: xattrs,
                                                                  lowerInode: snapshot.linkedInodes[path]))))
            case .symlink(let target): insert(path, .symlink(target))
            case .special(let kind, let mode): insert(path, .special(kind, mode: mode))
            }
        }
    }

    // MARK: Paths

    public static func join(_ parent: String, _ name: String) -> String { parent.isEmpty ? name : parent + "/" + name }
    public static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return String(path[..<slash])
    }
    public static func name(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }
    /// Whether `path` is `ancestor` or lies below it.
    public static func isWithin(_ path: String, _ ancestor: String) -> Bool {
        ancestor.isEmpty || path == ancestor || path.hasPrefix(ancestor + "/")
    }

    public func isDirectory(_ path: String) -> Bool {
        if path.isEmpty { return true }
        if case .directory = entries[path] { return true }
        return false
    }
    public func object(at path: String) -> Int? {
        if case .file(let o) = entries[path] { return o }
        return nil
    }
    /// Whether two names are one file (one object, or one lower inode).
    public func sameFile(_ a: String, _ b: String) -> Bool {
        guard let x = object(at: a), let y = object(at: b) else { return false }
        if x == y { return true }
        if let i = objects[x]!.lowerInode, i == objects[y]!.lowerInode { return true }
        return false
    }
    /// `path` and everything below it, parents before children.
    public func subtree(_ path: String) -> [String] {
        var out = [path]
        if isDirectory(path) {
            for name in (children[path] ?? []).sorted() { out += subtree(Self.join(path, name)) }
        }
        return out
    }

    // MARK: Changes

    mutating func makeObject(_ object: FileObject) -> Int {
        nextObject += 1
        objects[nextObject] = object
        return nextObject
    }

    mutating func insert(_ path: String, _ entry: Entry) {
        entries[path] = entry
        children[Self.parent(of: path), default: []].insert(Self.name(of: path))
        if case .directory = entry, children[path] == nil { children[path] = [] }
    }

    mutating func removeTree(_ path: String) {
        for p in subtree(path).reversed() {
            entries[p] = nil
            children[p] = nil
        }
        children[Self.parent(of: path)]?.remove(Self.name(of: path))
    }

    mutating func moveTree(_ from: String, to: String) {
        let moved = subtree(from).map { ($0, entries[$0]!) }
        removeTree(from)
        for (p, entry) in moved { insert(to + p.dropFirst(from.count), entry) }
    }

    mutating func changeObject(at path: String, _ change: (inout FileObject) -> Void) {
        guard let o = object(at: path) else { return }
        change(&objects[o]!)
    }

    mutating func changeAttributes(at path: String, mode: UInt32? = nil, xattr: (String, [UInt8]?)? = nil) {
        switch entries[path] {
        case .directory(var m, var xattrs):
            if let mode { m = mode }
            if let (key, value) = xattr { xattrs[key] = value }
            entries[path] = .directory(mode: m, xattrs: xattrs)
        case .file:
            changeObject(at: path) { o in
                if let mode { o.mode = mode }
                if let (key, value) = xattr { o.xattrs[key] = value }
            }
        default: break
        }
    }

    /// The model after `step` succeeded.
    public mutating func apply(_ step: CrashStep) {
        let path = step.path
        switch step.kind {
        case .put:
            let o = makeObject(FileObject(content: step.payload, mode: 0o644, xattrs: [:], lowerInode: nil))
            if entries[path] != nil { removeTree(path) }
            insert(path, .file(object: o))
        case .overwrite:
            changeObject(at: path) { $0.content = step.payload }
        case .append:
            changeObject(at: path) { $0.content += step.payload }
        case .truncate:
            let size = step.size ?? 0
            changeObject(at: path) { o in
                if o.content.count > size { o.content.removeSubrange(size...) } else {
                    o.content += [UInt8](repeating: 0, count: size - o.content.count)
                }
            }
        case .mkdir:
            insert(path, .directory(mode: step.mode ?? 0o755, xattrs: [:]))
        case .rmdir, .unlink:
            removeTree(path)
        case .rename:
            let target = step.target!
            if step.flags == CrashStep.exchange {
                let a = subtree(path).map { ($0, entries[$0]!) }, b = subtree(target).map { ($0, entries[$0]!) }
                removeTree(path)
                removeTree(target)
                for (p, e) in a { insert(target + p.dropFirst(path.count), e) }
                for (p, e) in b { insert(path + p.dropFirst(target.count), e) }
            } else if !sameFile(path, target) {
                if entries[target] != nil { removeTree(target) }
                moveTree(path, to: target)
            }
        case .link:
            insert(step.target!, entries[path]!)
        case .symlink:
            insert(path, .symlink(Array(step.target!.utf8)))
        case .chmod:
            changeAttributes(at: path, mode: step.mode)
        case .setxattr:
            changeAttributes(at: path, xattr: (CrashStep.xattrName, Array(step.value!.utf8)))
        case .removexattr:
            changeAttributes(at: path, xattr: (CrashStep.xattrName, nil))
        }
    }

    /// The view this model describes.
    public func view() -> [String: CrashView.Entry] {
        var out: [String: CrashView.Entry] = [:]
        for (path, entry) in entries {
            switch entry {
            case .directory(let mode, let xattrs): out[path] = .directory(mode: mode, xattrs: xattrs)
            case .file(let o):
                let object = objects[o]!
                out[path] = .file(mode: object.mode, xattrs: object.xattrs, content: Bytes(object.content))
            case .symlink(let target): out[path] = .symlink(target)
            case .special(let kind, let mode): out[path] = .special(kind, mode: mode)
            }
        }
        return out
    }

    /// The user xattrs of the entry at `path` (for the generator).
    public func xattrs(at path: String) -> [String: [UInt8]] {
        switch entries[path] {
        case .directory(_, let xattrs): return xattrs
        case .file(let o): return objects[o]!.xattrs
        default: return [:]
        }
    }
}

/// One operation of the crash-point workload, as the executor
/// (`scripts/crash-workload.py`) reads it: one JSON object per line.
public struct CrashStep: Codable, Sendable, CustomStringConvertible {
    public enum Kind: String, Codable, Sendable {
        case put, overwrite, append, truncate, mkdir, rmdir, unlink, rename, link, symlink, chmod, setxattr, removexattr
    }
    public static let noReplace: UInt32 = 1   // RENAME_NOREPLACE
    public static let exchange: UInt32 = 2    // RENAME_EXCHANGE
    public static let xattrName = "user.crash"

    public var index: Int
    public var kind: Kind
    public var path: String
    /// rename/link: the new name; symlink: the link's target.
    public var target: String?
    /// put: the name the data is written under before the rename.
    public var temporary: String?
    public var token: String?
    public var length: Int?
    public var size: Int?
    public var mode: UInt32?
    public var value: String?
    public var flags: UInt32?
    /// put/overwrite/append: fsync the data (and the directory, for put).
    public var sync: Bool?

    public init(index: Int, kind: Kind, path: String) {
        self.index = index
        self.kind = kind
        self.path = path
    }

    /// The bytes put/overwrite/append write: `token` repeated to `length`.
    public var payload: [UInt8] {
        let t = Array((token ?? "").utf8), n = length ?? 0
        guard !t.isEmpty, n > 0 else { return [] }
        var out = Array(t.prefix(n))
        out.reserveCapacity(n)
        while out.count < n { out += out.prefix(n - out.count) }   // doubling: a few copies, not one per token
        return out
    }

    public var description: String {
        var s = "\(index): \(kind) \(path)"
        if let target { s += " -> \(target)" }
        if let length { s += " \(length) bytes" }
        if let size { s += " size \(size)" }
        if let mode { s += " mode \(String(mode, radix: 8))" }
        if let flags, flags != 0 { s += flags == Self.exchange ? " (exchange)" : " (noreplace)" }
        if sync == true { s += " +fsync" }
        return s
    }
}
