import LayerSystem

/// What one layer directory holds, read in one `getdents64` pass: its objects
/// in the order the filesystem returns them, and the names its whiteouts
/// delete (character devices 0/0, told apart from other devices by one stat
/// each, and `.wh.NAME` files; in a lower directory marked as holding
/// xwhiteouts, also zero-size regular files with a whiteout xattr, a stat and
/// an xattr listing each). Markers themselves are never objects.
/// The one reader of layer directories for merging (`LowerDirectoryIndex`
/// for lowers, `MergedDirectory` for the upper).
struct LayerContents {
    struct Object {
        var name: FileName
        var kind: FileKind
        /// Inode number in the layer (not the exposed one).
        var inode: UInt64
    }

    var objects: [Object] = []
    /// Names whited out in this layer (they hide the layers below only).
    var whiteouts: Set<FileName> = []

    static func read(_ directory: LayerDirectory, stack: LayerStack) throws(OverlayError) -> LayerContents {
        var contents = LayerContents()
        // One flistxattr per lower directory (the kernel reads the same xattr).
        let extendedWhiteouts = !stack.layers[directory.layer].isUpper && OverlayMarkers.holdsExtendedWhiteouts(directory.descriptor)
        try system("cannot read directory in layer \(stack.layers[directory.layer].path)") {
            try directory.descriptor.forEachEntry { entry in
                if OverlayMarkers.isOCIMarker(entry.name) {
                    if let target = OverlayMarkers.whitedOutName(entry.name) { contents.whiteouts.insert(target) }
                    return
                }
                var kind = entry.kind
                var inode = entry.inode
                // One stat where the type alone cannot tell a whiteout from an object.
                if kind == nil || kind == .characterDevice || (extendedWhiteouts && kind == .regular) {
                    // Vanished since the scan: as if never listed.
                    guard let attributes = try directory.descriptor.attributesIfPresent(of: entry.name) else { return }
                    if OverlayMarkers.isWhiteoutDevice(attributes)
                        || (extendedWhiteouts && OverlayMarkers.isExtendedWhiteout(entry.name, attributes, in: directory.descriptor)) {
                        contents.whiteouts.insert(entry.name)
                        return
                    }
                    kind = attributes.kind
                    inode = attributes.inode
                }
                guard let kind else { return }
                contents.objects.append(Object(name: entry.name, kind: kind, inode: inode))
            }
        }
        return contents
    }
}
