import Foundation
import Glibc
import LayerDiff
import LayerSystem
import StrataTestSupport
import Testing

/// Lines of a change source, as docker prints them.
func lines(_ source: some ChangeSource) throws -> [String] {
    try source.changes().map(\.description)
}

func upperWalkLines(_ s: DiffScenario, strict: Bool = false) throws -> [String] {
    try lines(UpperWalk(lowerPaths: s.lowers, upperPath: s.upper, options: DiffOptions(strict: strict)))
}

func treeWalkLines(_ s: DiffScenario, strict: Bool = false) throws -> [String] {
    try lines(TreeWalk(oldPath: s.lowerView, newPath: s.merged, options: DiffOptions(strict: strict)))
}

let kernelOverlay = Testing.ConditionTrait.enabled(
    if: TestEnvironment.hasKernelOverlay,
    "kernel overlayfs cannot be mounted here (needs root and the overlay module): diff scenarios skipped")

let rootOnly = Testing.ConditionTrait.enabled(
    if: TestEnvironment.isRoot, "needs root (trusted.* xattrs and whiteout device nodes)")

/// Creates a listening Unix socket at `path` and closes it (the node stays).
func makeSocket(at path: String) throws {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw SystemCallError("socket", errno: errno) }
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    precondition(bytes.count < MemoryLayout.size(ofValue: address.sun_path))
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (i, b) in bytes.enumerated() { raw[i] = b }
        raw[bytes.count] = 0
    }
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard rc == 0 else { throw SystemCallError("bind", errno: errno) }
}

struct TestFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
