import LayerSystem

/// Turns a walk's decisions into lines in moby-canonical order and applies the
/// ancestor rule while streaming.
///
/// Ordering contract (spec §2.4), which both engines follow by visiting each
/// directory's children sorted by name bytes, existing-or-new children first
/// (each with its whole subtree), then the removed children sorted by name:
/// - O1: a directory's own line (`A`, `C`, or an inserted `C`) precedes every
///   line of its descendants;
/// - O2: a child's own line and its subtree's lines are contiguous;
/// - O3: within one directory, lines of surviving and new children precede the
///   `D` lines of removed children.
/// This is one of the orders moby can produce (moby's sibling order is Go map
/// order, i.e. random), and it is deterministic.
///
/// Ancestor rule (§2.3.5): a directory present on both sides that is not
/// itself recorded gets `C` as soon as anything below it is emitted, inserted
/// before that line. The walker `enter`s every such directory; the first line
/// emitted beneath it flushes the pending ancestors top-down. `/` is never
/// entered, so it never appears.
struct ChangeEmitter {
    /// Directories on the current path below `/`, outermost first.
    private var frames: [Change] = []
    /// `frames[..<flushed]` already have their line out.
    private var flushed = 0
    private let sink: (Change) throws -> Void
    /// Lines emitted so far.
    private(set) var count = 0

    init(_ sink: @escaping (Change) throws -> Void) { self.sink = sink }

    /// Emits `change` after any pending ancestor lines.
    mutating func emit(_ change: Change) throws {
        while flushed < frames.count {
            try sink(frames[flushed])
            count += 1
            flushed += 1
        }
        try sink(change)
        count += 1
    }

    /// Enters a directory whose own line was already emitted (`A` or `C`).
    mutating func enterRecorded(_ change: Change) {
        frames.append(change)
        flushed = frames.count
    }

    /// Enters a directory present on both sides and not recorded: `C` is
    /// emitted for it only if something beneath it changes.
    mutating func enterPending(path: [UInt8], old: FileAttributes, new: FileAttributes) {
        frames.append(Change(kind: .modified, path: path, old: old, new: new))
    }

    /// Leaves the innermost directory.
    mutating func leave() {
        frames.removeLast()
        flushed = min(flushed, frames.count)
    }
}

/// Counts examined entries and calls the progress hook every `interval`.
struct ProgressCounter {
    private var examined = 0
    private let interval: Int
    private let hook: ((Int) -> Void)?

    init(_ options: DiffOptions) {
        interval = max(1, options.progressInterval)
        hook = options.progress
    }

    @inline(__always) mutating func tick() {
        examined += 1
        if let hook, examined % interval == 0 { hook(examined) }
    }

    var total: Int { examined }
}

/// `path + "/" + name`.
@inline(__always)
func childPath(_ path: [UInt8], _ name: FileName) -> [UInt8] {
    var p = path
    p.reserveCapacity(path.count + 1 + name.bytes.count)
    p.append(0x2F)
    p.append(contentsOf: name.bytes)
    return p
}
