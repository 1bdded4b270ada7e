import LayerSystem
import Glibc

/// A directory of one layer that takes part in a merged directory.
public struct LayerDirectory: Sendable {
    /// Index into `LayerStack.layers`.
    public var layer: Int
    /// A readable directory descriptor in that layer.
    public var descriptor: Descriptor
    public init(layer: Int, descriptor: Descriptor) {
        self.layer = layer
        self.descriptor = descriptor
    }
}

/// What one merged name resolves to.
public struct Resolution: Sendable {
    /// The winning object's attributes as the mount shows them: exposed inode
    /// number, and `nlink` 1 for a directory merged from several layers (what
    /// kernel overlayfs reports for merge directories).
    public var attributes: FileAttributes {
        get { packedAttributes.attributes }
        set { packedAttributes = PackedAttributes(newValue) }
    }
    /// How `attributes` is stored (a resolution is kept per node and per cached name).
    private var packedAttributes: PackedAttributes
    /// For a directory: the layers merged into it, topmost first (stops at an
    /// opaque directory or a non-directory). For anything else: the one layer
    /// holding the winning object.
    public var layers: [Int]

    /// The winning object's own inode number in its layer (not the exposed
    /// one): with the layer, it names the object on disk.
    public var objectInode: UInt64

    public var kind: FileKind { FileKind(mode: packedAttributes.mode) ?? .regular }
    public var isDirectory: Bool { FileKind(mode: packedAttributes.mode) == .directory }
    /// The layer holding the winning object.
    public var topLayer: Int { layers[0] }
    /// `objectInode` defaults to `attributes.inode` (for attributes not yet exposed).
    public init(attributes: FileAttributes, layers: [Int], objectInode: UInt64? = nil) {
        self.packedAttributes = PackedAttributes(attributes)
        self.layers = layers
        self.objectInode = objectInode ?? attributes.inode
    }
}

/// Per-name resolution through a stack: the rule every overlay reader shares.
///
/// Given the directories of a merged parent (topmost first), the topmost layer
/// holding `name` wins. A non-directory hides everything below. A directory
/// merges with same-named directories below until it is opaque, carries a
/// same-layer OCI whiteout for its own name, or a lower layer holds a
/// non-directory or a whiteout for the name. A whiteout (char 0/0, or `.wh.name`
/// beside no `name` in the same layer) ends the search with "absent".
public enum NameResolver {
    /// The resolution of `name` and, for a directory, the opened directory of
    /// each merged layer (parallel to `Resolution.layers`); `nil` if absent.
    public static func resolve(_ name: FileName, in parents: [LayerDirectory], stack: LayerStack) throws(OverlayError) -> (Resolution, [LayerDirectory])? {
        var winner: FileAttributes?
        var layers: [Int] = []
        var directories: [LayerDirectory] = []
        search: for (position, parent) in parents.enumerated() {
            let isLast = position == parents.count - 1
            if winner != nil {
                // Below a directory only a directory merges: opened directly (no
                // stat); a whiteout, non-directory or symlink ends the merge.
                let directory: Descriptor
                switch try openDirectory(name, in: parent, stack: stack) {
                case .opened(let d): directory = d
                case .absent:
                    if try hasOCIWhiteout(for: name, in: parent, stack: stack) { break search }
                    continue search
                case .other: break search
                }
                layers.append(parent.layer)
                directories.append(LayerDirectory(layer: parent.layer, descriptor: directory))
                if isLast || OverlayMarkers.isOpaque(directory) { break }
                if try hasOCIWhiteout(for: name, in: parent, stack: stack) { break }
                continue
            }
            let found = try system("cannot look up \(name) in layer \(stack.layers[parent.layer].path)") {
                try parent.descriptor.attributesIfPresent(of: name)
            }
            guard let attributes = found else {
                if try hasOCIWhiteout(for: name, in: parent, stack: stack) { break }
                continue
            }
            if OverlayMarkers.isWhiteoutDevice(attributes) { break }
            if !stack.layers[parent.layer].isUpper, attributes.kind == .regular, attributes.size == 0,
               OverlayMarkers.holdsExtendedWhiteouts(parent.descriptor),
               OverlayMarkers.isExtendedWhiteout(name, attributes, in: parent.descriptor) { break }
            guard attributes.kind == .directory else {
                winner = attributes
                layers = [parent.layer]
                break
            }
            let directory = try system("cannot open directory \(name) in layer \(stack.layers[parent.layer].path)") {
                try parent.descriptor.open(name, [.directory])
            }
            winner = attributes
            layers.append(parent.layer)
            directories.append(LayerDirectory(layer: parent.layer, descriptor: directory))
            if isLast { break }
            if OverlayMarkers.isOpaque(directory) { break }
            if try hasOCIWhiteout(for: name, in: parent, stack: stack) { break }
        }
        return finish(winner, layers: layers, directories: directories, stack: stack)
    }

    /// The same rule, answered from `lowers` (the parent's lower layers, read
    /// once) instead of probing every layer: the upper directory (if the
    /// parent has one) is asked directly, then only the lower layers the index
    /// names are touched: one stat for a non-directory, and for a directory an
    /// open plus the opaque check per merged layer. `directory(layer)` gives
    /// the parent's descriptor in a lower layer.
    ///
    /// A lower layer changed behind the mount since the index was read (a
    /// name gone, a directory replaced) ends the search there, never a trap.
    public static func resolve(_ name: FileName, upper: LayerDirectory?, lowers: LowerDirectoryIndex, stack: LayerStack,
                               directory: (Int) throws(OverlayError) -> Descriptor) throws(OverlayError) -> (Resolution, [LayerDirectory])? {
        var winner: FileAttributes?
        var layers: [Int] = []
        var directories: [LayerDirectory] = []
        let entry = lowers.entry(named: name)
        if let upper {
            let found = try system("cannot look up \(name) in layer \(stack.layers[upper.layer].path)") {
                try upper.descriptor.attributesIfPresent(of: name)
            }
            if let found {
                if OverlayMarkers.isWhiteoutDevice(found) { return nil }
                guard found.kind == .directory else {
                    return finish(found, layers: [upper.layer], directories: [], stack: stack)
                }
                let opened = try system("cannot open directory \(name) in layer \(stack.layers[upper.layer].path)") {
                    try upper.descriptor.open(name, [.directory])
                }
                winner = found
                layers = [upper.layer]
                directories = [LayerDirectory(layer: upper.layer, descriptor: opened)]
                guard entry?.kind == .directory, !OverlayMarkers.isOpaque(opened),
                      try !hasOCIWhiteout(for: name, in: upper, stack: stack) else {
                    return finish(winner, layers: layers, directories: directories, stack: stack)
                }
            } else if try hasOCIWhiteout(for: name, in: upper, stack: stack) {
                return nil
            }
        }
        guard let entry else { return finish(winner, layers: layers, directories: directories, stack: stack) }
        guard entry.kind == .directory else {
            let parent = try directory(entry.layer)
            guard let found = try system("cannot look up \(name) in layer \(stack.layers[entry.layer].path)", {
                try parent.attributesIfPresent(of: name)
            }), !OverlayMarkers.isWhiteoutDevice(found) else { return nil }
            return finish(found, layers: [entry.layer], directories: [], stack: stack)
        }
        for (position, layer) in entry.directoryLayers.enumerated() {
            // Gone or replaced behind the mount since the index was read: the merge ends here.
            guard case .opened(let opened) = try openDirectory(name, in: LayerDirectory(layer: layer, descriptor: try directory(layer)),
                                                               stack: stack) else { break }
            if winner == nil { winner = try system("cannot stat \(name)") { try opened.attributes() } }
            layers.append(layer)
            directories.append(LayerDirectory(layer: layer, descriptor: opened))
            if position == entry.directoryLayers.count - 1 || OverlayMarkers.isOpaque(opened) { break }
        }
        return finish(winner, layers: layers, directories: directories, stack: stack)
    }

    enum Opened { case opened(Descriptor), absent, other }

    /// Opens directory `name` in `parent` (O_NOFOLLOW): `.absent` if there is no
    /// such name, `.other` if it is not a directory (a whiteout, a file, a symlink).
    static func openDirectory(_ name: FileName, in parent: LayerDirectory, stack: LayerStack) throws(OverlayError) -> Opened {
        do {
            return .opened(try parent.descriptor.open(name, [.directory]))
        } catch let error as SystemCallError {
            if error.errno == ENOENT { return .absent }
            if error.errno == ENOTDIR || error.errno == ELOOP { return .other }
            throw OverlayError(error, "cannot open directory \(name) in layer \(stack.layers[parent.layer].path)")
        } catch {
            throw OverlayError(.system, errno: EIO, "cannot open directory \(name) in layer \(stack.layers[parent.layer].path)")
        }
    }

    /// The resolution of a search that found `winner` in `layers[0]` (nil: absent).
    static func finish(_ winner: FileAttributes?, layers: [Int], directories: [LayerDirectory], stack: LayerStack) -> (Resolution, [LayerDirectory])? {
        guard var attributes = winner, let top = layers.first else { return nil }
        let objectInode = attributes.inode
        attributes.inode = stack.exposedInode(attributes.inode, layer: top)
        if attributes.kind == .directory && layers.count > 1 { attributes.linkCount = 1 }
        return (Resolution(attributes: attributes, layers: stack.sharedLayerList(layers), objectInode: objectInode), directories)
    }

    static func hasOCIWhiteout(for name: FileName, in parent: LayerDirectory, stack: LayerStack) throws(OverlayError) -> Bool {
        let marker = OverlayMarkers.ociWhiteoutName(for: name)
        guard marker.bytes.count <= 255 else { return false }
        return try system("cannot look up \(marker) in layer \(stack.layers[parent.layer].path)") {
            try parent.descriptor.attributesIfPresent(of: marker) != nil
        }
    }

    /// Resolution of a layer stack's root: every layer's root, merged.
    public static func root(of stack: LayerStack) throws(OverlayError) -> Resolution {
        var attributes = try system("cannot stat layer root \(stack.layers[0].path)") { try stack.layers[0].root.attributes() }
        let objectInode = attributes.inode
        attributes.inode = stack.exposedInode(attributes.inode, layer: 0)
        // The root merges every layer down to the first opaque layer root (an OCI
        // `.wh..wh..opq` at a layer's top, say), as for any other directory.
        var layers: [Int] = []
        for layer in stack.layers {
            layers.append(layer.index)
            if layer.index < stack.layers.count - 1 && OverlayMarkers.isOpaque(layer.root) { break }
        }
        if layers.count > 1 { attributes.linkCount = 1 }
        return Resolution(attributes: attributes, layers: layers, objectInode: objectInode)
    }
}
