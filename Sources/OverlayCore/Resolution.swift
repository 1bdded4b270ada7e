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
    public var attributes: FileAttributes
    /// For a directory: the layers merged into it, topmost first (stops at an
    /// opaque directory or a non-directory). For anything else: the one layer
    /// holding the winning object.
    public var layers: [Int]

    /// The winning object's own inode number in its layer (not the exposed
    /// one): with the layer, it names the object on disk.
    public var objectInode: UInt64

    public var kind: FileKind { attributes.kind ?? .regular }
    public var isDirectory: Bool { attributes.kind == .directory }
    /// The layer holding the winning object.
    public var topLayer: Int { layers[0] }
    /// `objectInode` defaults to `attributes.inode` (for attributes not yet exposed).
    public init(attributes: FileAttributes, layers: [Int], objectInode: UInt64? = nil) {
        self.attributes = attributes
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
        for (position, parent) in parents.enumerated() {
            let found = try system("cannot look up \(name) in layer \(stack.layers[parent.layer].path)") {
                try parent.descriptor.attributesIfPresent(of: name)
            }
            guard let attributes = found else {
                if try hasOCIWhiteout(for: name, in: parent, stack: stack) { break }
                continue
            }
            if OverlayMarkers.isWhiteoutDevice(attributes) { break }
            guard attributes.kind == .directory else {
                if winner == nil {
                    winner = attributes
                    layers = [parent.layer]
                }
                break
            }
            let directory = try system("cannot open directory \(name) in layer \(stack.layers[parent.layer].path)") {
                try parent.descriptor.open(name, [.directory])
            }
            if winner == nil { winner = attributes }
            layers.append(parent.layer)
            directories.append(LayerDirectory(layer: parent.layer, descriptor: directory))
            let isLast = position == parents.count - 1
            if isLast { break }
            if OverlayMarkers.isOpaque(directory) { break }
            if try hasOCIWhiteout(for: name, in: parent, stack: stack) { break }
        }
        guard var attributes = winner else { return nil }
        let objectInode = attributes.inode
        attributes.inode = stack.exposedInode(attributes.inode, layer: layers[0])
        if attributes.kind == .directory && layers.count > 1 { attributes.linkCount = 1 }
        return (Resolution(attributes: attributes, layers: layers, objectInode: objectInode), directories)
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
