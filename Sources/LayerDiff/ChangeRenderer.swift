import LayerSystem

/// Output formats of a change list.
public enum ChangeFormat: String, Sendable, CaseIterable {
    /// docker's `A|C|D /path` lines: letter, one space, raw path bytes, `\n`.
    case text
    /// One JSON object per line (see `ChangeRenderer`).
    case json
}

/// Renders changes into a byte buffer, kept apart from the walk.
///
/// Text: exactly docker's line, `C /etc/issue`, path bytes written raw (as
/// docker does, so a name containing `\n` breaks the line; use JSON for such
/// trees). With `verbose`, a tab and `old=…`/`new=…` descriptions follow:
/// `C /etc/issue<TAB>old=file 0644 0:0 size=5 mtime=2020-09-13T12:26:40Z<TAB>new=file 0600 …`
/// (`-` where a side is absent; devices add `rdev=MAJ:MIN`).
///
/// JSON: `{"kind":"C","path":"/etc/issue"}`. `path` is always a valid JSON
/// string; when the path is not valid UTF-8, invalid bytes appear there as
/// U+FFFD (docker's API does the same) **and** a `path_bytes` field carries the
/// exact bytes in standard base64 (RFC 4648 with padding), so no name is lost.
/// With `verbose`, `old` and `new` objects (or `null`) follow:
/// `{"type":"file","mode":"0644","uid":0,"gid":0,"size":5,"mtime":"2020-09-13T12:26:40Z"}`,
/// plus `"rdev":"1:3"` for devices. `mtime` is RFC 3339 UTC, with nine
/// fractional digits when the nanoseconds are not zero.
public struct ChangeRenderer: Sendable {
    public var format: ChangeFormat
    public var verbose: Bool

    public init(format: ChangeFormat = .text, verbose: Bool = false) {
        self.format = format
        self.verbose = verbose
    }

    /// Appends one rendered line (with its `\n`) to `buffer`.
    public func append(_ change: Change, to buffer: inout [UInt8]) {
        switch format {
        case .text: appendText(change, to: &buffer)
        case .json: appendJSON(change, to: &buffer)
        }
    }

    /// One rendered line as bytes.
    public func render(_ change: Change) -> [UInt8] {
        var buffer: [UInt8] = []
        append(change, to: &buffer)
        return buffer
    }

    private func appendText(_ change: Change, to buffer: inout [UInt8]) {
        buffer.append(change.kind.letter.asciiValue!)
        buffer.append(0x20)
        buffer.append(contentsOf: change.path)
        if verbose {
            buffer.append(contentsOf: Array("\told=".utf8))
            buffer.append(contentsOf: Array(Self.describe(change.old).utf8))
            buffer.append(contentsOf: Array("\tnew=".utf8))
            buffer.append(contentsOf: Array(Self.describe(change.new).utf8))
        }
        buffer.append(0x0A)
    }

    static func describe(_ attributes: FileAttributes?) -> String {
        guard let a = attributes else { return "-" }
        var s = "\(a.kind.map { "\($0)" } ?? "unknown") \(octal(a.permissions)) \(a.userID):\(a.groupID)"
        s += " size=\(a.size) mtime=\(rfc3339(a.modificationTime))"
        if a.kind == .characterDevice || a.kind == .blockDevice { s += " rdev=\(a.deviceMajor):\(a.deviceMinor)" }
        return s
    }

    private func appendJSON(_ change: Change, to buffer: inout [UInt8]) {
        buffer.append(contentsOf: Array("{\"kind\":\"".utf8))
        buffer.append(change.kind.letter.asciiValue!)
        buffer.append(contentsOf: Array("\",\"path\":".utf8))
        let valid = String(validating: change.path, as: UTF8.self)
        Self.appendJSONString(valid ?? change.pathString, to: &buffer)
        if valid == nil {
            buffer.append(contentsOf: Array(",\"path_bytes\":\"".utf8))
            Self.appendBase64(change.path, to: &buffer)
            buffer.append(0x22)
        }
        if verbose {
            buffer.append(contentsOf: Array(",\"old\":".utf8))
            Self.appendJSONAttributes(change.old, to: &buffer)
            buffer.append(contentsOf: Array(",\"new\":".utf8))
            Self.appendJSONAttributes(change.new, to: &buffer)
        }
        buffer.append(contentsOf: Array("}\n".utf8))
    }

    static func appendJSONAttributes(_ attributes: FileAttributes?, to buffer: inout [UInt8]) {
        guard let a = attributes else {
            buffer.append(contentsOf: Array("null".utf8))
            return
        }
        var s = "{\"type\":\"\(a.kind.map { "\($0)" } ?? "unknown")\",\"mode\":\"\(octal(a.permissions))\""
        s += ",\"uid\":\(a.userID),\"gid\":\(a.groupID),\"size\":\(a.size),\"mtime\":\"\(rfc3339(a.modificationTime))\""
        if a.kind == .characterDevice || a.kind == .blockDevice { s += ",\"rdev\":\"\(a.deviceMajor):\(a.deviceMinor)\"" }
        s += "}"
        buffer.append(contentsOf: Array(s.utf8))
    }

    /// A JSON string literal: `"`, `\` and control characters escaped, other
    /// characters as UTF-8.
    static func appendJSONString(_ string: String, to buffer: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        buffer.append(0x22)
        for byte in string.utf8 {
            switch byte {
            case 0x22: buffer.append(contentsOf: [0x5C, 0x22])
            case 0x5C: buffer.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: buffer.append(contentsOf: [0x5C, 0x6E])
            case 0x0D: buffer.append(contentsOf: [0x5C, 0x72])
            case 0x09: buffer.append(contentsOf: [0x5C, 0x74])
            case 0x00..<0x20, 0x7F:
                buffer.append(contentsOf: Array("\\u00".utf8))
                buffer.append(hex[Int(byte >> 4)])
                buffer.append(hex[Int(byte & 0xF)])
            default: buffer.append(byte)
            }
        }
        buffer.append(0x22)
    }

    static func appendBase64(_ bytes: [UInt8], to buffer: inout [UInt8]) {
        let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var i = 0
        while i + 3 <= bytes.count {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            buffer.append(contentsOf: [table[Int(v >> 18)], table[Int(v >> 12 & 63)], table[Int(v >> 6 & 63)], table[Int(v & 63)]])
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let v = UInt32(bytes[i]) << 16
            buffer.append(contentsOf: [table[Int(v >> 18)], table[Int(v >> 12 & 63)], 0x3D, 0x3D])
        } else if rest == 2 {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            buffer.append(contentsOf: [table[Int(v >> 18)], table[Int(v >> 12 & 63)], table[Int(v >> 6 & 63)], 0x3D])
        }
    }

    static func octal(_ value: UInt32) -> String {
        let s = String(value, radix: 8)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }

    /// RFC 3339 UTC (proleptic Gregorian calendar, days-from-civil algorithm).
    static func rfc3339(_ time: TimeSpec) -> String {
        let days = time.seconds >= 0 ? time.seconds / 86_400 : (time.seconds - 86_399) / 86_400
        let secondOfDay = time.seconds - days * 86_400
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        var s = "\(year)-\(two(month))-\(two(day))T\(two(secondOfDay / 3600)):\(two(secondOfDay / 60 % 60)):\(two(secondOfDay % 60))"
        if time.nanoseconds != 0 {
            let n = String(time.nanoseconds)
            s += "." + String(repeating: "0", count: max(0, 9 - n.count)) + n
        }
        return s + "Z"
    }
}
