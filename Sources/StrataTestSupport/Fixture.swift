import Foundation
import LayerSystem
import OverlayCore

/// A declarative tree: what a test layer contains, built in a real directory.
public indirect enum Fixture: Sendable {
    case dir(String, mode: UInt32 = 0o755, [Fixture])
    case file(String, String = "", mode: UInt32 = 0o644)
    case symlink(String, to: String)
    case hardlink(String, to: String)      // `to` is relative to the layer root
    case fifo(String)
    case device(String, major: UInt32, minor: UInt32)
    /// Overlay whiteout: character device 0/0.
    case whiteout(String)
    /// OCI whiteout file `.wh.NAME`.
    case ociWhiteout(String)
    /// Marks the enclosing directory opaque with `trusted.overlay.opaque=y`.
    case opaque
    /// Marks the enclosing directory opaque with the OCI `.wh..wh..opq` file.
    case ociOpaque
    /// Sets an xattr on the enclosing directory's entry named `on`.
    case xattr(on: String, name: String, value: String)
    /// Sets mode and owner of the named entry (after creation).
    case owner(String, uid: UInt32, gid: UInt32)
    /// Sets the mtime (seconds since the epoch) of the named entry.
    case mtime(String, seconds: Int64)

    /// Builds `entries` inside the existing directory `root`.
    public static func build(_ entries: [Fixture], at root: String) throws {
        let directory = try System.open(root, [.directory])
        try build(entries, in: directory, layerRoot: root, relative: "")
    }

    static func build(_ entries: [Fixture], in directory: Descriptor, layerRoot: String, relative: String) throws {
        for entry in entries {
            switch entry {
            case .dir(let name, let mode, let children):
                if try directory.attributesIfPresent(of: FileName(name)) == nil {
                    try directory.makeDirectory(FileName(name), mode: 0o755)
                }
                let child = try directory.open(FileName(name), [.directory])
                try build(children, in: child, layerRoot: layerRoot, relative: relative + name + "/")
                try child.setMode(mode)
            case .file(let name, let contents, let mode):
                let f = try directory.open(FileName(name), [.writeOnly, .create, .truncate], mode: mode)
                _ = try Array(contents.utf8).withUnsafeBytes { try f.write($0, at: 0) }
                try f.setMode(mode)
            case .symlink(let name, let target):
                try directory.makeSymlink(FileName(name), target: Array(target.utf8))
            case .hardlink(let name, let target):
                let root = try System.open(layerRoot, [.directory])
                let parts = target.split(separator: "/").map(String.init)
                var d = root
                for part in parts.dropLast() { d = try d.open(FileName(part), [.directory]) }
                try d.link(FileName(parts.last!), to: directory, as: FileName(name))
            case .fifo(let name):
                try directory.makeNode(FileName(name), mode: 0o010644, device: 0)
            case .device(let name, let major, let minor):
                try directory.makeNode(FileName(name), mode: 0o020644,
                                       device: FileAttributes.makeDevice(major: major, minor: minor))
            case .whiteout(let name):
                try directory.makeNode(FileName(name), mode: 0o020000, device: 0)
            case .ociWhiteout(let name):
                _ = try directory.open(OverlayMarkers.ociWhiteoutName(for: FileName(name)), [.writeOnly, .create], mode: 0o644)
            case .opaque:
                try directory.setExtendedAttribute(OverlayMarkers.trustedOpaque, OverlayMarkers.opaqueValue)
            case .ociOpaque:
                _ = try directory.open(OverlayMarkers.opaqueMarkerName, [.writeOnly, .create], mode: 0o644)
            case .xattr(let on, let name, let value):
                let target = on.isEmpty ? directory : try directory.open(FileName(on), [.path])
                try target.setExtendedAttribute(name, Array(value.utf8))
            case .owner(let name, let uid, let gid):
                try directory.open(FileName(name), [.path]).setOwner(user: uid, group: gid)
            case .mtime(let name, let seconds):
                try Shell.run(["touch", "-h", "-d", "@\(seconds)", "\(layerRoot)/\(relative)\(name)"])
            }
        }
    }
}
