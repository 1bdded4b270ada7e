import Foundation
import LayerSystem

/// A fresh directory under /tmp (short paths keep overlayfs option strings small),
/// removed with everything in it when the object goes away. Unmounts nothing:
/// callers unmount what they mounted first.
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String

    public init(prefix: String = "st") {
        var template = Array("/tmp/\(prefix).XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(p != nil, "mkdtemp failed")
        path = String(cString: p!)
    }

    /// `path/name`, created as a directory.
    @discardableResult
    public func makeDirectory(_ name: String) -> String {
        let p = "\(path)/\(name)"
        try? FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    public func sub(_ name: String) -> String { "\(path)/\(name)" }

    deinit {
        // Never delete through a live mount: skip anything still mounted below us.
        let mounted = MountTable.entries().contains { $0.mountPoint.hasPrefix(path + "/") || $0.mountPoint == path }
        if !mounted { _ = try? Shell.run(["rm", "-rf", "--one-file-system", path]) }
    }
}
