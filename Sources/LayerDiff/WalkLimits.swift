/// Bounds of a walk's recursion: both walkers descend one call level per
/// directory of nesting, so a hostile tree thousands of directories deep must
/// end in an error, never in a stack overflow (at about 1,000 levels the main
/// thread's 8 MiB stack overflowed in a debug build: SIGSEGV).
enum WalkLimits {
    /// Directory nesting a walk follows before it stops with an error. Past
    /// 2,048 levels no path fits PATH_MAX even with 1-byte names, so docker,
    /// which walks by path, fails much earlier.
    static let maximumDepth = 10_000
    /// Stack of the thread a walk runs on: about 26 KiB per level at the
    /// maximum depth, three times what a debug build uses. Reserved, not
    /// committed: a shallow walk touches a few pages of it.
    static let stackBytes = 256 << 20

    /// The error for a tree nested deeper than `maximumDepth` (the path, tens
    /// of kilobytes long there, is cut after its first 64 bytes).
    static func tooDeep(_ path: [UInt8]) -> DiffError {
        let shown = path.count > 64 ? displayPath(Array(path.prefix(64))) + "…" : displayPath(path)
        return DiffError(.unsupported, "directories are nested more than \(maximumDepth) levels deep (at \(shown)); the diff stops there")
    }
}
