import LayerSystem

/// What happened to one path, with docker's letters and API numbers
/// (`Kind` 0 = Modified "C", 1 = Added "A", 2 = Deleted "D").
public enum ChangeKind: UInt8, Sendable, Hashable, CustomStringConvertible {
    case modified = 0
    case added = 1
    case deleted = 2

    /// `C`, `A` or `D`.
    public var letter: Character {
        switch self {
        case .modified: "C"
        case .added: "A"
        case .deleted: "D"
        }
    }

    public var description: String { String(letter) }
}

/// One line of a change list.
///
/// `path` is absolute (`/` joined with the relative path), cleaned, without a
/// trailing slash, as raw bytes: names that are not valid UTF-8 survive intact.
/// `old` is the entry in the old tree (absent for `A`), `new` the entry in the
/// new tree (absent for `D`). For a `C` line that only exists because a
/// descendant changed (the ancestor rule), both are present and may be equal.
public struct Change: Sendable, Hashable, CustomStringConvertible {
    public var kind: ChangeKind
    public var path: [UInt8]
    public var old: FileAttributes?
    public var new: FileAttributes?

    public init(kind: ChangeKind, path: [UInt8], old: FileAttributes? = nil, new: FileAttributes? = nil) {
        self.kind = kind
        self.path = path
        self.old = old
        self.new = new
    }

    /// The path for display (invalid UTF-8 replaced by U+FFFD).
    public var pathString: String { String(decoding: path, as: UTF8.self) }

    /// docker's form: letter, one space, path.
    public var description: String { "\(kind.letter) \(pathString)" }
}
