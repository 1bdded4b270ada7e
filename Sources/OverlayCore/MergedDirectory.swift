import LayerSystem

/// One visible name of a merged directory.
public struct ListingEntry: Sendable, Hashable {
    public var name: FileName
    /// Type of the winning object (`d_type`).
    public var kind: FileKind
    /// The inode number `stat` shows for the winning object (`d_ino`).
    public var inode: UInt64
    /// The topmost layer holding the name: no layer above it has the name or
    /// a whiteout for it, so a lookup may start its search here.
    public var layer: Int
    public init(name: FileName, kind: FileKind, inode: UInt64, layer: Int) {
        self.name = name; self.kind = kind; self.inode = inode; self.layer = layer
    }
}

/// Builds the listing of a merged directory: the upper directory (read
/// fresh: it changes) over the lower layers' index (read once per directory).
///
/// Ordering contract: layers are read topmost first and names appear in the
/// order each layer's filesystem returns them, each name once (where the
/// topmost layer holding it put it). The result is deterministic for
/// unchanged layers, so a listing rebuilt later has the same order; callers
/// cache it per directory so offsets stay valid across handles.
///
/// Hidden: `.wh.*` files and the opaque marker; names whited out (char 0/0 or
/// `.wh.NAME`) in a layer hide that name in the layers below only.
public enum MergedDirectory {
    /// The listing of `directories` (topmost first; no upper layer among them).
    public static func listing(of directories: [LayerDirectory], stack: LayerStack) throws(OverlayError) -> [ListingEntry] {
        try listing(upper: nil, lowers: try LowerDirectoryIndex.build(directories, stack: stack), stack: stack)
    }

    /// The listing of `upper` (if the directory has one) over `lowers` (if it merges any).
    public static func listing(upper: LayerDirectory?, lowers: LowerDirectoryIndex?, stack: LayerStack) throws(OverlayError) -> [ListingEntry] {
        var entries: [ListingEntry] = []
        var seen: Set<FileName> = []
        if let upper {
            let contents = try LayerContents.read(upper, stack: stack)
            // A name is listed once per directory; markers hide the layers below only.
            seen = contents.whiteouts
            for object in contents.objects {
                seen.insert(object.name)
                entries.append(ListingEntry(name: object.name, kind: object.kind,
                                            inode: stack.exposedInode(object.inode, layer: upper.layer), layer: upper.layer))
            }
        }
        for entry in lowers ?? LowerDirectoryIndex.empty where !seen.contains(entry.name) {
            entries.append(ListingEntry(name: entry.name, kind: entry.kind,
                                        inode: stack.exposedInode(entry.inode, layer: entry.layer), layer: entry.layer))
        }
        return entries
    }
}
