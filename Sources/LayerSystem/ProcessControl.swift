import Glibc
import CStrataSys

/// Process-level calls the command line needs: spawning the background daemon,
/// a readiness pipe, waiting, and writing to the standard streams (which Swift 6
/// strict concurrency does not let other modules touch through `stderr`).
public enum ProcessControl {
    /// A pipe; both ends are owned `Descriptor`s. The read end is close-on-exec,
    /// the write end is inherited by children (it is the daemon's readiness channel).
    public static func makeReadinessPipe() throws -> (read: Descriptor, write: Descriptor) {
        var fds: [Int32] = [0, 0]
        _ = try retrying("pipe") { Glibc.pipe(&fds) }
        _ = Glibc.fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        return (Descriptor(owning: fds[0]), Descriptor(owning: fds[1]))
    }

    /// Spawns `path` with `arguments` (argv[0] included) in a new session with
    /// stdin from /dev/null, inheriting stdout/stderr; `passing` (if given)
    /// becomes descriptor 3 in the child and every other descriptor is closed.
    /// Wraps `posix_spawn(3)` with POSIX_SPAWN_SETSID.
    public static func spawnInNewSession(_ path: String, arguments: [String], passing: Descriptor? = nil) throws -> Int32 {
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        defer { for p in argv { free(p) } }
        // SAFETY: argv is a NULL-terminated array of strdup'd strings freed after spawn; environ is the process environment.
        let pid = try retrying("posix_spawn") { strata_spawn_session(path, &argv, environ, passing?.rawValue ?? -1) }
        return pid
    }

    /// Waits for `pid` to exit; returns its exit status (128+signal for a signal).
    public static func waitForExit(_ pid: Int32) throws -> Int32 {
        var status: Int32 = 0
        _ = try retrying("waitpid") { Glibc.waitpid(pid, &status, 0) }
        if status & 0x7f == 0 { return (status >> 8) & 0xff }
        return 128 + (status & 0x7f)
    }

    /// Path of the running executable (`/proc/self/exe`).
    public static func executablePath() throws -> String {
        try System.canonicalPath("/proc/self/exe")
    }

    /// Reads one byte from `descriptor`; `nil` at end of file.
    public static func readByte(_ descriptor: Descriptor) throws -> UInt8? {
        var byte: UInt8 = 0
        let n = try retrying("read") { Glibc.read(descriptor.rawValue, &byte, 1) }
        return n == 1 ? byte : nil
    }

    /// Writes one byte to a raw descriptor number (the inherited readiness fd) and closes it.
    public static func signalReadiness(fileDescriptor: Int32) {
        var byte: UInt8 = 1
        _ = Glibc.write(fileDescriptor, &byte, 1)
        _ = Glibc.close(fileDescriptor)
    }

    /// Points stdin, stdout and stderr at /dev/null (or stdout/stderr at `logPath`,
    /// appended) so the daemon no longer holds its caller's terminal or pipes.
    public static func detachStandardStreams(logPath: String?) {
        let null = Glibc.open("/dev/null", O_RDWR)
        var out = null
        if let logPath {
            let fd = Glibc.open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            if fd >= 0 { out = fd }
        }
        if null >= 0 { _ = dup2(null, 0) }
        if out >= 0 { _ = dup2(out, 1); _ = dup2(out, 2) }
        if null > 2 { _ = Glibc.close(null) }
        if out > 2 && out != null { _ = Glibc.close(out) }
    }

    /// Writes `text` to standard error, unbuffered.
    public static func writeStandardError(_ text: String) { writeAll(2, text) }
    /// Writes `text` to standard output, unbuffered.
    public static func writeStandardOutput(_ text: String) { writeAll(1, text) }

    /// Writes raw bytes to standard output; `false` if they could not all be
    /// written (a full disk, a closed descriptor).
    @discardableResult
    public static func writeStandardOutput(bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { b in writeAll(1, b) }
    }

    private static func writeAll(_ fd: Int32, _ text: String) {
        var copy = text
        copy.withUTF8 { b in _ = writeAll(fd, UnsafeRawBufferPointer(b)) }
    }

    private static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 { if errno == EINTR { continue }; return false }
            offset += n
        }
        return true
    }

    /// Whether standard error is a terminal.
    public static var standardErrorIsTerminal: Bool { isatty(2) == 1 }

    /// Sends `signal` to `pid`.
    public static func sendSignal(_ signal: Int32, to pid: Int32) throws {
        _ = try retrying("kill") { Glibc.kill(pid, signal) }
    }

    /// Whether `pid` is alive: it exists and is not a zombie (an exited
    /// daemon whose reaper has not collected it yet counts as gone).
    public static func isRunning(_ pid: Int32) -> Bool {
        guard let fd = try? System.open("/proc/\(pid)/stat", .readOnly), let bytes = try? fd.readAll(limit: 4096) else { return false }
        // Format: "pid (comm) S ..."; comm may contain spaces and parentheses, so take the last ')'.
        guard let close = bytes.lastIndex(of: UInt8(ascii: ")")), close + 2 < bytes.count else { return false }
        let state = bytes[close + 2]
        return state != UInt8(ascii: "Z") && state != UInt8(ascii: "X")
    }

    /// Sleeps for `milliseconds`.
    public static func sleep(milliseconds: Int) { _ = usleep(UInt32(milliseconds) * 1000) }

    /// Opens /dev/fuse read-write and closes it again: whether this process may use FUSE directly.
    public static func checkFuseDevice() -> SystemCallError? {
        let fd = Glibc.open("/dev/fuse", O_RDWR | O_CLOEXEC)
        if fd < 0 { return SystemCallError("open /dev/fuse", errno: errno) }
        _ = Glibc.close(fd)
        return nil
    }

    /// Whether an executable exists at `path`.
    public static func isExecutable(_ path: String) -> Bool { access(path, X_OK) == 0 }

    /// Runs `body` on a new thread with a `stackBytes` stack and waits for it,
    /// returning its result or rethrowing its error: for recursive walks whose
    /// depth follows the input (the main thread's 8 MiB, `ulimit -s`, held
    /// about 1,000 directory levels of a debug build). The stack is reserved,
    /// not committed: only the pages a deep walk touches cost memory. Where no
    /// thread can be made, `body` runs on the calling thread.
    /// Wraps `pthread_create(3)` with `pthread_attr_setstacksize(3)`, then `pthread_join(3)`.
    public static func runOnThread<T>(stackBytes: Int, _ body: () throws -> T) throws -> T {
        return try withoutActuallyEscaping(body) { (escapable) throws -> T in
            var result: Result<T, any Error>?
            let job = ThreadJob { result = Result { try escapable() } }
            var attributes = pthread_attr_t()
            guard pthread_attr_init(&attributes) == 0 else { return try escapable() }
            defer { pthread_attr_destroy(&attributes) }
            _ = pthread_attr_setstacksize(&attributes, stackBytes)
            // This thread blocks in pthread_join until the job ends, so `body`, which
            // `job` captures, is used by one thread at a time and never after this returns.
            guard let thread = spawn(job, &attributes) else { return try escapable() }
            _ = pthread_join(thread, nil)
            guard let result else { throw SystemCallError("pthread_join", errno: EINVAL) }
            return try result.get()
        }
    }
}

extension ProcessControl {
    /// Starts `body` on a new joinable thread (a daemon's helper thread);
    /// returns the thread as an integer, for `joinThread` and
    /// `strata_signal_thread`, or nil if none could be made.
    /// Wraps `pthread_create(3)`.
    public static func startThread(_ body: @escaping @Sendable () -> Void) -> UInt? {
        spawn(ThreadJob(body), nil).map { UInt($0) }
    }

    /// Waits for a thread of `startThread` to end. Wraps `pthread_join(3)`.
    public static func joinThread(_ thread: UInt) {
        _ = pthread_join(pthread_t(thread), nil)
    }

    /// Runs `job` on a new thread, which owns one retain of it until it ends.
    fileprivate static func spawn(_ job: ThreadJob, _ attributes: UnsafePointer<pthread_attr_t>?) -> pthread_t? {
        let context = Unmanaged.passRetained(job)
        var thread = pthread_t()
        // SAFETY: the new thread takes over the retain above and releases it when `run` returns.
        let rc = pthread_create(&thread, attributes, { raw in
            Unmanaged<ThreadJob>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, context.toOpaque())
        guard rc == 0 else {
            context.release()
            return nil
        }
        return thread
    }
}

/// The work a thread of `ProcessControl.runOnThread` or `startThread` runs.
private final class ThreadJob {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
