#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import LayerSystem
import Glibc

/// The layers of an overlay: lowers top-first, and the upper (nil for a
/// read-only overlay, which has no changes).
public struct OverlayLayers: Sendable, Equatable {
    public var lowers: [String]
    public var upper: String?
    public init(lowers: [String], upper: String?) {
        self.lowers = lowers
        self.upper = upper
    }
}

/// Splits an overlayfs layer list, `TOP:…:BOTTOM`, where `\:` is a literal
/// colon and `\\` a literal backslash (overlayfs's own escaping). Empty
/// entries are kept so callers can reject them.
func splitLayerList(_ list: String) -> [String] {
    var parts: [String] = []
    var current: [UInt8] = []
    var escaped = false
    for byte in list.utf8 {
        if escaped {
            current.append(byte)
            escaped = false
        } else if byte == 0x5C {
            escaped = true
        } else if byte == 0x3A {
            parts.append(String(decoding: current, as: UTF8.self))
            current = []
        } else {
            current.append(byte)
        }
    }
    if escaped { current.append(0x5C) }
    parts.append(String(decoding: current, as: UTF8.self))
    return parts
}

/// A Docker overlay2 (or containers-storage overlay) layer directory, read in
/// place: `DIR/diff` is the upper; `DIR/lower` (absent for a base layer)
/// holds `l/SHORTID` entries, colon-separated, top-first, relative to the
/// store's layer root (the parent of DIR); each `l/SHORTID` is a symlink to
/// `../ID/diff`.
public enum DockerLayerDirectory {
    public static func layers(of directory: String) throws(DiffError) -> OverlayLayers {
        let root: String
        do { root = try System.canonicalPath(directory) } catch {
            throw DiffError(.badLayerDirectory, "docker layer directory \(directory) does not exist")
        }
        let diff = root + "/diff"
        guard (try? System.attributes(diff))?.isDirectory == true else {
            throw DiffError(.badLayerDirectory, "docker layer directory \(directory) has no diff/ directory")
        }
        let store = String(root[..<(root.lastIndex(of: "/") ?? root.startIndex)])
        let lowerFile: Descriptor
        do {
            lowerFile = try System.open(root + "/lower", .readOnly)
        } catch let error as SystemCallError where error.errno == ENOENT {
            return OverlayLayers(lowers: [], upper: diff)   // a base layer: no lowers
        } catch {
            throw DiffError(.badLayerDirectory, "docker layer directory \(directory): cannot open its lower file: \(error)")
        }
        let bytes: [UInt8]
        do { bytes = try lowerFile.readAll(limit: 1 << 20) } catch {
            throw DiffError(.badLayerDirectory, "docker layer directory \(directory): cannot read its lower file: \(error)")
        }
        var text = String(decoding: bytes, as: UTF8.self)
        while text.last == "\n" || text.last == " " { text.removeLast() }
        guard !text.isEmpty else {
            throw DiffError(.badLayerDirectory, "docker layer directory \(directory): its lower file is empty")
        }
        var lowers: [String] = []
        for entry in text.split(separator: ":", omittingEmptySubsequences: false) {
            let components = entry.split(separator: "/", omittingEmptySubsequences: false)
            guard !entry.isEmpty, !entry.hasPrefix("/"), !components.contains(".."), !components.contains("") else {
                throw DiffError(.badLayerDirectory, "docker layer directory \(directory): malformed entry '\(entry)' in its lower file")
            }
            let link = store + "/" + entry
            let target: String
            do { target = try System.canonicalPath(link) } catch {
                throw DiffError(.badLayerDirectory, "docker layer directory \(directory): lower entry '\(entry)' does not resolve (\(link))")
            }
            guard (try? System.attributes(target))?.isDirectory == true else {
                throw DiffError(.badLayerDirectory, "docker layer directory \(directory): lower entry '\(entry)' is not a directory (\(target))")
            }
            lowers.append(target)
        }
        return OverlayLayers(lowers: lowers, upper: diff)
    }
}

/// Finds the layers of a live mount from its mountpoint alone.
///
/// - A Strata mount (`fuse.strata` in /proc/self/mountinfo): the daemon's state
///   file `/run/strata/mounts/MAJOR:MINOR.json` (the mount's device number),
///   `{"lowers":[…],"upper":"…","work":"…","mountpoint":"…","pid":N}`.
/// - A kernel overlayfs mount: `lowerdir=` / `lowerdir+=` and `upperdir=` from
///   its mount options.
public enum LiveMount {
    /// Where the Strata daemon records its mounts.
    public static let stateDirectory = "/run/strata/mounts"

    struct StateFile: Decodable {
        var lowers: [String]
        var upper: String?
    }

    public static func layers(of mountpoint: String, stateDirectory: String = LiveMount.stateDirectory) throws(DiffError) -> OverlayLayers {
        let canonical: String
        do { canonical = try System.canonicalPath(mountpoint) } catch {
            throw DiffError(.badInput, "\(mountpoint) does not exist")
        }
        guard let mount = MountTable.mount(at: canonical) else {
            throw DiffError(.notAMount, "\(mountpoint) is not a mountpoint (give --lower and --upper, or two trees)")
        }
        switch mount.fileSystemType {
        case "fuse.strata":
            let path = "\(stateDirectory)/\(mount.device).json"
            let bytes: [UInt8]
            do { bytes = try System.open(path, .readOnly).readAll(limit: 1 << 20) } catch {
                throw DiffError(.notAMount, "\(mountpoint) is a Strata mount but its state file \(path) cannot be read (\(error)); give --lower and --upper instead")
            }
            guard let state = try? JSONDecoder().decode(StateFile.self, from: Data(bytes)), !state.lowers.isEmpty else {
                throw DiffError(.notAMount, "\(mountpoint): state file \(path) is malformed")
            }
            return OverlayLayers(lowers: state.lowers, upper: state.upper)
        case "overlay":
            return try overlayLayers(options: mount.superOptions, mountpoint: mountpoint)
        default:
            throw DiffError(.notAMount, "\(mountpoint) is a \(mount.fileSystemType) mount, not a Strata or overlay mount")
        }
    }

    /// Parses kernel overlayfs options as /proc/self/mountinfo shows them:
    /// fields split on `,` (commas inside values appear as `\054`), octal
    /// escapes undone, then overlayfs's own `\:`/`\,` escapes in layer lists.
    static func overlayLayers(options: String, mountpoint: String) throws(DiffError) -> OverlayLayers {
        var lowers: [String] = []
        var upper: String?
        for field in options.split(separator: ",") {
            let option = unescapeOctal(field)
            if option.hasPrefix("lowerdir=") {
                lowers += splitLayerList(String(option.dropFirst("lowerdir=".count)))
            } else if option.hasPrefix("lowerdir+=") {
                lowers.append(unescapeBackslashes(String(option.dropFirst("lowerdir+=".count))))
            } else if option.hasPrefix("upperdir=") {
                upper = unescapeBackslashes(String(option.dropFirst("upperdir=".count)))
            } else if option.hasPrefix("datadir+=") || option.hasPrefix("lowerdir=::") {
                throw DiffError(.unsupported, "\(mountpoint) uses overlayfs data-only layers, which the diff does not read")
            }
        }
        guard !lowers.isEmpty, !lowers.contains("") else {
            throw DiffError(.notAMount, "\(mountpoint): cannot read the lower layers from its mount options")
        }
        return OverlayLayers(lowers: lowers, upper: upper)
    }

    static func unescapeOctal(_ field: Substring) -> String {
        var out: [UInt8] = []
        let bytes = Array(field.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x5C, i + 4 <= bytes.count, bytes[(i + 1)..<(i + 4)].allSatisfy({ (0x30...0x37).contains($0) }) {
                let high = Int(bytes[i + 1] - 0x30), middle = Int(bytes[i + 2] - 0x30), low = Int(bytes[i + 3] - 0x30)
                out.append(UInt8(truncatingIfNeeded: high * 64 + middle * 8 + low))
                i += 4
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func unescapeBackslashes(_ text: String) -> String {
        var out: [UInt8] = []
        var escaped = false
        for byte in text.utf8 {
            if escaped { out.append(byte); escaped = false } else if byte == 0x5C { escaped = true } else { out.append(byte) }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
