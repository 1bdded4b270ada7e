import Foundation
import Glibc
import LayerSystem
import OverlayCore

/// A fresh directory under `$TMPDIR` (default /tmp), removed by `remove()`.
/// Every fixture lives in one, so a run leaves nothing behind.
public final class ScratchDirectory: @unchecked Sendable {
    public let path: String

    public init(prefix: String) throws {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/\(prefix).XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw FixtureError("mkdtemp in \(base) failed: errno \(errno)")
        }
        path = String(cString: made)
    }

    /// `path/name`, created (with parents).
    public func directory(_ name: String) throws -> String {
        let p = "\(path)/\(name)"
        try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}

public struct FixtureError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Writes layer contents through LayerSystem (relative to directory descriptors,
/// as the overlay reads them). All content is fixed: the same fixture every run.
public struct TreeWriter {
    public let root: Descriptor

    public init(path: String) throws { root = try System.open(path, [.directory]) }
    init(_ root: Descriptor) { self.root = root }

    /// Opens (creating as needed) the directory `components` below the root.
    public func directory(_ components: [String]) throws -> TreeWriter {
        var current = root
        for component in components {
            let name = FileName(component)
            if try current.attributesIfPresent(of: name) == nil { try current.makeDirectory(name, mode: 0o755) }
            current = try current.open(name, [.directory])
        }
        return TreeWriter(current)
    }

    /// A regular file holding `size` bytes of a fixed non-zero pattern (no holes).
    public func file(_ name: String, size: Int = 0) throws {
        let file = try root.open(FileName(name), [.writeOnly, .create, .truncate], mode: 0o644)
        guard size > 0 else { return }
        let chunk = min(size, 1 << 20)
        let pattern = (0..<chunk).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) | 1 }
        var offset = 0
        while offset < size {
            let n = min(chunk, size - offset)
            let written = try pattern.withUnsafeBytes { try file.write(UnsafeRawBufferPointer(rebasing: $0[0..<n]), at: Int64(offset)) }
            offset += written
        }
    }

    /// A whiteout for `name`: character device 0/0 (kernel overlayfs format),
    /// or `.wh.NAME` where mknod is not permitted. Returns the format used.
    @discardableResult
    public func whiteout(_ name: String) throws -> String {
        do {
            try root.makeNode(FileName(name), mode: 0o020000, device: 0)
            return "char 0/0"
        } catch let error as SystemCallError where error.errno == EPERM {
            _ = try root.open(OverlayMarkers.ociWhiteoutName(for: FileName(name)), [.writeOnly, .create], mode: 0o644)
            return ".wh. files"
        }
    }
}

/// Layers for the lookup suite: `layers` lower layers over which every
/// directory below merges, so a name not found in a layer is looked for in
/// all of them, as in a container image with many layers.
///
/// Every layer `i` (0 = bottom) has:
/// - `warm/`: `own-i-0` … `own-i-15`; the bottom layer also has `target`;
/// - `cold/`: `own-i-0` … `own-i-15` (absent names are looked up here);
/// - `deep/d1/…/d8/`, and the bottom layer has `deep/d1/…/d8/leaf`.
public struct LookupStack {
    /// The 10-component path resolved by the deep-path benchmark.
    public static let deepPath: [FileName] = ["deep"] + (1...8).map { FileName("d\($0)") } + ["leaf"]

    public let scratch: ScratchDirectory
    /// Lower layers, top first (overlayfs `lowerdir=` order).
    public let lowerPaths: [String]

    public init(layers: Int) throws {
        scratch = try ScratchDirectory(prefix: "strata-bench-lookup-\(layers)")
        var paths: [String] = []
        for i in 0..<layers {
            let writer = try TreeWriter(path: try scratch.directory("layer\(i)"))
            let warm = try writer.directory(["warm"])
            let cold = try writer.directory(["cold"])
            for k in 0..<16 {
                try warm.file("own-\(i)-\(k)", size: 16)
                try cold.file("own-\(i)-\(k)", size: 16)
            }
            let deep = try writer.directory(Self.deepPath.dropLast().map(\.description))
            if i == 0 {
                try warm.file("target", size: 64)
                try deep.file("leaf", size: 64)
            }
            paths.append("\(scratch.path)/layer\(i)")
        }
        lowerPaths = paths.reversed()
    }

    /// A read-only overlay of the stack, with nothing cached yet.
    public func overlay() throws -> OverlayFileSystem {
        try OverlayFileSystem(stack: LayerStack(lowerPaths: lowerPaths))
    }
}

/// Three layers whose directory `big` merges to `visibleEntries` names:
///
/// - bottom: `b0` … `b4999` (5000 files);
/// - middle: 1000 whiteouts of `b0` … `b999`, 500 files overriding `b1000` …
///   `b1499`, and new `m0` … `m3499` (5000 entries);
/// - top: 500 files overriding `m0` … `m499` and new `t0` … `t2499` (3000 entries).
///
/// Visible: 4000 `b*` + 3500 `m*` + 2500 `t*` = 10 000; 13 000 entries are read.
public struct ReaddirStack {
    public static let visibleEntries = 10_000
    public static let whiteouts = 1_000

    public let scratch: ScratchDirectory
    public let lowerPaths: [String]
    /// How the whiteouts were written ("char 0/0", or ".wh. files" without CAP_MKNOD).
    public let whiteoutFormat: String

    public init() throws {
        scratch = try ScratchDirectory(prefix: "strata-bench-readdir")
        let bottom = try TreeWriter(path: try scratch.directory("bottom")).directory(["big"])
        let middle = try TreeWriter(path: try scratch.directory("middle")).directory(["big"])
        let top = try TreeWriter(path: try scratch.directory("top")).directory(["big"])
        for k in 0..<5000 { try bottom.file("b\(k)") }
        var format = ""
        for k in 0..<Self.whiteouts { format = try middle.whiteout("b\(k)") }
        for k in 1000..<1500 { try middle.file("b\(k)") }
        for k in 0..<3500 { try middle.file("m\(k)") }
        for k in 0..<500 { try top.file("m\(k)") }
        for k in 0..<2500 { try top.file("t\(k)") }
        whiteoutFormat = format
        let base = scratch.path
        lowerPaths = ["top", "middle", "bottom"].map { "\(base)/\($0)" }
    }

    public func overlay() throws -> OverlayFileSystem {
        try OverlayFileSystem(stack: LayerStack(lowerPaths: lowerPaths))
    }
}

/// One lower layer with `small` (4 KiB) and `large` (64 MiB) files, and
/// fresh upper/work directories for every copy-up.
public struct CopyUpSource {
    public static let smallSize = 4 << 10
    public static let largeSize = 64 << 20

    public let scratch: ScratchDirectory
    public let lowerPath: String

    public init() throws {
        scratch = try ScratchDirectory(prefix: "strata-bench-copyup")
        lowerPath = try scratch.directory("lower")
        let lower = try TreeWriter(path: lowerPath)
        try lower.file("small", size: Self.smallSize)
        try lower.file("large", size: Self.largeSize)
        // On the disk before the first copy-up, so no iteration pays for writing the lower.
        try System.open(lowerPath, [.directory]).synchronize()
        sync()
    }

    /// A writable overlay over the lower layer with a new, empty upper and
    /// work directory (`run` names them); `discard` removes them again.
    public func freshOverlay(run: Int, synchronous: Bool) throws -> (fs: OverlayFileSystem, directory: String) {
        let directory = try scratch.directory("run\(run)")
        let upper = try scratch.directory("run\(run)/upper")
        let work = try scratch.directory("run\(run)/work")
        var options = OverlayOptions()
        options.synchronousCopyUp = synchronous
        let stack = try LayerStack(lowerPaths: [lowerPath], upperPath: upper, workPath: work)
        return (try OverlayFileSystem(stack: stack, options: options), directory)
    }

    public func discard(_ directory: String) { try? FileManager.default.removeItem(atPath: directory) }
}
