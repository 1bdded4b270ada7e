/// Parses overlayfs-style layer lists: colon-separated, top-first, with `\:`
/// for a literal colon (and `\\` for a backslash).
public enum LayerList {
    /// Splits `text` on unescaped `separator`, unescaping `\<separator>` and `\\`.
    public static func split(_ text: String, separator: Character = ":") -> [String] {
        var parts: [String] = []
        var current = ""
        var escaped = false
        for ch in text {
            if escaped {
                if ch != separator && ch != "\\" { current.append("\\") }
                current.append(ch)
                escaped = false
            } else if ch == "\\" {
                escaped = true
            } else if ch == separator {
                parts.append(current)
                current = ""
            } else {
                current.append(ch)
            }
        }
        if escaped { current.append("\\") }
        parts.append(current)
        return parts
    }

    /// Layers of a `--lower` value; empty components are rejected by the caller.
    public static func layers(_ text: String) -> [String] { split(text, separator: ":") }
}
