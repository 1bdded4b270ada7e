import Glibc

/// A value behind a mutual-exclusion lock, on a pthread mutex.
///
/// Used instead of the toolchain's `Synchronization.Mutex` because
/// ThreadSanitizer intercepts pthread mutexes but cannot see the futex inside
/// `Mutex` (its module is not instrumented), so under `-sanitize=thread` every
/// access made under a `Mutex` reads as a race and real races drown.
///
/// Contract: `withLock` runs `body` with exclusive access to the value; the
/// lock is not recursive (calling `withLock` on the same lock inside `body`
/// deadlocks), and `body` must not let the `inout` value escape.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        self.value = value
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with the value, holding the lock.
    @inline(__always)
    public func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}

/// A lock guarding no value, only a stretch of work. (A `Locked<Void>` would
/// make ThreadSanitizer track an access to a zero-sized value outside the
/// lock, so this wraps a `Locked` of one byte that nothing reads.)
public final class ExclusiveLock: Sendable {
    private let lock = Locked<UInt8>(0)

    public init() {}

    /// Runs `body` holding the lock (the `inout ()` keeps `Locked`'s call shape).
    @inline(__always)
    public func withLock<Result, Failure: Error>(_ body: (inout ()) throws(Failure) -> Result) throws(Failure) -> Result {
        try lock.withLock { (_) throws(Failure) -> Result in
            var unit: () = ()
            return try body(&unit)
        }
    }
}
