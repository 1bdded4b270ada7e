/// One path component as the kernel stores it: bytes, no `/`, no NUL, not
/// necessarily valid UTF-8. Names read from layers are kept as bytes so that
/// every name a layer holds round-trips exactly.
public struct FileName: Hashable, Sendable, Comparable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The raw bytes, without a terminating NUL.
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }
    public init<S: Sequence<UInt8>>(_ bytes: S) { self.bytes = Array(bytes) }
    public init(_ string: String) { self.bytes = Array(string.utf8) }
    public init(stringLiteral value: String) { self.init(value) }

    /// Whether the name is usable as a single component: non-empty, not `.` or
    /// `..`, no `/`, no NUL, at most 255 bytes.
    public var isValidComponent: Bool {
        // Compared as bytes: no temporary FileName (lookups stay allocation-free).
        let dot: UInt8 = 0x2E
        let isDots = (bytes.count == 1 && bytes[0] == dot) || (bytes.count == 2 && bytes[0] == dot && bytes[1] == dot)
        return !bytes.isEmpty && bytes.count <= 255 && !isDots && !bytes.contains(0x2F) && !bytes.contains(0)
    }

    /// Whether the name starts with `prefix`.
    public func hasPrefix(_ prefix: FileName) -> Bool {
        bytes.count >= prefix.bytes.count && bytes.starts(with: prefix.bytes)
    }

    /// The name without its first `count` bytes.
    public func dropFirst(_ count: Int) -> FileName { FileName(bytes: Array(bytes.dropFirst(count))) }

    /// The name with `suffix` appended.
    public static func + (lhs: FileName, rhs: FileName) -> FileName { FileName(bytes: lhs.bytes + rhs.bytes) }

    /// UTF-8 decoding with U+FFFD for invalid sequences (for messages only).
    public var description: String { String(decoding: bytes, as: UTF8.self) }

    /// Byte-wise ordering (what `LC_ALL=C sort` gives).
    public static func < (lhs: FileName, rhs: FileName) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }
}
