import Foundation

/// Where the `strata` executable under test is: `$STRATA_BIN`, else the
/// package's `.build/debug/strata` (the Makefile builds it before `swift test`).
public enum StrataBinary {
    public static var packageRoot: String {
        // .../Sources/StrataTestSupport/StrataBinary.swift → package root
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }

    public static var path: String {
        if let p = ProcessInfo.processInfo.environment["STRATA_BIN"], !p.isEmpty { return p }
        for candidate in ["\(packageRoot)/.build/debug/strata", "\(packageRoot)/.build/release/strata"]
        where FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        return "\(packageRoot)/.build/debug/strata"
    }

    /// Runs `strata ARGS`.
    @discardableResult
    public static func run(_ arguments: [String], timeout: Double = 120) throws -> Shell.Result {
        try Shell.run([path] + arguments, timeout: timeout)
    }
}
