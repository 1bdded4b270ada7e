import LayerSystem

/// What the lower layers of one merged directory hold, gathered in one pass
/// per layer: one `getdents64` scan each, plus a stat only for character
/// devices (to tell whiteouts from devices). Whiteouts and `.wh.` markers are
/// folded in during the same pass, so answering "which layer holds NAME, and
/// which lower directories merge with it" afterwards costs no syscall at all,
/// however deep the stack.
///
/// Immutable, and valid for as long as the directory merges exactly `layers`:
/// lower layers never change while mounted (the overlayfs rule), and the
/// write path changes the upper layer only. A directory that stops merging
/// lowers (copied up whole, replaced) gets a new resolution, and callers
/// compare `layers` before trusting an index (`OverlayFileSystem.lowerIndex`).
///
/// Ordering contract: `entries` holds each visible name once, at the place
/// where the topmost layer holding it returned it, layers read topmost first:
/// the order `MergedDirectory` lists the lower part of a directory in.
///
/// Not indexed: whether a lower *subdirectory* is opaque. That fact lives in
/// the subdirectory itself (an xattr, or a `.wh..wh..opq` inside it) and is
/// checked when the subdirectory is looked up.
public final class LowerDirectoryIndex: Sendable {
    public struct Entry: Sendable {
        public let name: FileName
        /// Type of the topmost object with this name.
        public let kind: FileKind
        /// Its inode number in its own layer (not the exposed one).
        public let inode: UInt64
        /// The topmost lower layer holding the name.
        public let layer: Int
        /// For a directory: the layers whose same-named directories may merge into
        /// it, topmost first, starting with `layer`. The chain ends where a layer
        /// holds a whiteout or a non-directory of the name, or a `.wh.NAME` marker
        /// beside its directory. Empty for anything but a directory.
        public internal(set) var directoryLayers: [Int]
    }

    /// The lower layers covered, topmost first.
    public let layers: [Int]
    /// Visible names, in the ordering contract's order.
    public let entries: [Entry]
    private let positions: [FileName: Int]

    init(layers: [Int], entries: [Entry], positions: [FileName: Int]) {
        self.layers = layers
        self.entries = entries
        self.positions = positions
    }

    /// The visible lower object named `name`, if any.
    public func entry(named name: FileName) -> Entry? {
        positions[name].map { entries[$0] }
    }

    /// Number of visible names.
    public var count: Int { entries.count }

    /// Reads `directories` (the lower directories of one merged directory,
    /// topmost first) once each and indexes them.
    public static func build(_ directories: [LayerDirectory], stack: LayerStack) throws(OverlayError) -> LowerDirectoryIndex {
        var entries: [Entry] = []
        var positions: [FileName: Int] = [:]
        var chainOpen: Set<FileName> = []   // directories a layer below may still merge into
        var hidden: Set<FileName> = []      // whited out above every layer holding them
        for directory in directories {
            let layer = directory.layer
            let contents = try LayerContents.read(directory, stack: stack)
            for object in contents.objects {
                if let position = positions[object.name] {
                    // Shown from a layer above: a directory there may merge this one.
                    guard chainOpen.contains(object.name) else { continue }
                    if object.kind == .directory {
                        entries[position].directoryLayers.append(layer)
                    } else {
                        chainOpen.remove(object.name)
                    }
                    continue
                }
                if hidden.contains(object.name) { continue }
                positions[object.name] = entries.count
                let isDirectory = object.kind == .directory
                entries.append(Entry(name: object.name, kind: object.kind, inode: object.inode, layer: layer,
                                     directoryLayers: isDirectory ? [layer] : []))
                if isDirectory { chainOpen.insert(object.name) }
            }
            // A whiteout ends a chain (also a `.wh.NAME` beside directory NAME in
            // this layer: it hides the layers below) and hides the name below.
            for name in contents.whiteouts {
                if positions[name] == nil { hidden.insert(name) } else { chainOpen.remove(name) }
            }
        }
        return LowerDirectoryIndex(layers: directories.map(\.layer), entries: entries, positions: positions)
    }
}
