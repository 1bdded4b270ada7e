import LayerDiff
import LayerSystem

/// Buffered standard output for a change list.
///
/// Lines are held in memory until the diff completes, so an error never leaves
/// a partial list on stdout looking complete. Past `holdLimit` bytes (a change
/// list of roughly a million lines) the buffer is flushed in large chunks to
/// bound memory; if the diff then fails, the error message says the list is
/// incomplete and the exit status is non-zero.
final class DiffOutput {
    let renderer: ChangeRenderer
    private var buffer: [UInt8] = []
    private(set) var count = 0
    private(set) var flushedAny = false
    /// Some output could not be written: the list on stdout is incomplete.
    private(set) var failed = false
    static let holdLimit = 64 << 20
    static let chunk = 1 << 20

    init(renderer: ChangeRenderer) {
        self.renderer = renderer
        buffer.reserveCapacity(1 << 16)
    }

    func write(_ change: Change) {
        count += 1
        renderer.append(change, to: &buffer)
        if buffer.count >= Self.holdLimit || (flushedAny && buffer.count >= Self.chunk) {
            if !ProcessControl.writeStandardOutput(bytes: buffer) { failed = true }
            buffer.removeAll(keepingCapacity: true)
            flushedAny = true
        }
    }

    func finish() {
        if !buffer.isEmpty && !ProcessControl.writeStandardOutput(bytes: buffer) { failed = true }
        buffer = []
    }
}

/// A progress line on standard error, only when it is a terminal and only for
/// diffs that take longer than `delay`; cleared when the diff ends.
final class DiffProgress {
    private let output: DiffOutput
    private let start = System.monotonicNanoseconds()
    private var lastDraw: UInt64 = 0
    private var drawn = false
    static let delay: UInt64 = 1_000_000_000
    static let redraw: UInt64 = 200_000_000

    init?(output: DiffOutput) {
        guard ProcessControl.standardErrorIsTerminal else { return nil }
        self.output = output
    }

    func update(examined: Int) {
        let now = System.monotonicNanoseconds()
        guard now - start >= Self.delay, now - lastDraw >= Self.redraw else { return }
        lastDraw = now
        drawn = true
        ProcessControl.writeStandardError("\rstrata diff: \(examined) entries examined, \(output.count) changes\u{1B}[K")
    }

    func finish() {
        if drawn { ProcessControl.writeStandardError("\r\u{1B}[K") }
        drawn = false
    }
}
