import LayerSystem
import OverlayCore
import Glibc

/// The change list of an overlay upper directory against its lower layers,
/// at the cost of the upper alone (spec §3.3, §10.3), with docker's results
/// (§2.2–§2.4: the answer `ChangesDirs(lower view, merged view)` gives).
///
/// The walk reads only upper directories (getdents64, then fstatat relative to
/// the directory descriptor) and looks each upper name up in the lower view
/// with `NameResolver`, one component at a time through directory descriptors,
/// so a lower whiteout where a directory is expected is an ordinary "absent"
/// (never ENOTDIR). Lower directories are listed only under an opaque upper
/// directory, whose hidden lower children become `D` lines.
///
/// Upper encodings understood: char 0/0 whiteouts; `.wh.NAME` whiteout files and
/// `.wh..wh..opq` (Strata's OCI-format option); opaque `y` under the
/// `trusted.overlay.`, `user.overlay.` and `user.fuseoverlayfs.` names; opaque
/// `x` with zero-size `overlay.whiteout` files (xwhiteouts); `metacopy` files.
/// A directory that exists only in the upper is new whether or not it is
/// marked opaque (kernels and fuse-overlayfs mark new directories opaque).
/// Lower-layer whiteouts (char 0/0, `.wh.`) and opaque lower directories are
/// honoured by `NameResolver`, so a re-created name is `A`, not `C`.
///
/// Not answerable from the upper: directories renamed with `redirect_dir=on`
/// (`overlay.redirect`) take their content from another lower path; the walk
/// stops with `DiffError.Code.unsupported` instead of guessing.
public final class UpperWalk: ChangeSource {
    /// The lower layers (top-first), or `nil` for an upper with no lowers
    /// (a base layer: everything is added).
    public let lowers: LayerStack?
    /// The upper directory's root.
    public let upper: Descriptor
    public let upperPath: String
    private let rules: ComparisonRules
    private let options: DiffOptions

    /// Opens the upper directory and the lowers (given top-first).
    public init(lowerPaths: [String], upperPath: String, options: DiffOptions = DiffOptions()) throws(DiffError) {
        self.upperPath = upperPath
        self.options = options
        rules = ComparisonRules(strict: options.strict)
        upper = try Self.openRoot(upperPath, what: "upper directory")
        if lowerPaths.isEmpty {
            lowers = nil
        } else {
            do { lowers = try LayerStack(lowerPaths: lowerPaths) } catch { throw DiffError(error) }
        }
    }

    static func openRoot(_ path: String, what: String) throws(DiffError) -> Descriptor {
        do {
            return try System.open(path, [.directory])
        } catch let error as SystemCallError {
            switch error.errno {
            case ENOENT: throw DiffError(.badInput, "\(what) \(path) does not exist")
            case ENOTDIR: throw DiffError(.badInput, "\(what) \(path) is not a directory")
            default: throw DiffError(.badInput, "\(what) \(path) cannot be opened", cause: error)
            }
        } catch {
            throw DiffError(.badInput, "\(what) \(path) cannot be opened: \(error)")
        }
    }

    public func forEachChange(_ body: (Change) throws -> Void) throws {
        try withoutActuallyEscaping(body) { sink in
            var walker = Walker(emitter: ChangeEmitter(sink), progress: ProgressCounter(options),
                                rules: rules, lowers: lowers, upperPath: upperPath)
            let rootMarkers = try reading("cannot read xattrs of upper directory \(upperPath)") {
                try UpperDirectoryMarkers.read(nil, in: upper)
            }
            var lowerRoots: [LayerDirectory] = []
            if let lowers {
                lowerRoots = lowers.layers.map { LayerDirectory(layer: $0.index, descriptor: $0.root) }
            }
            // The walk recurses once per directory level: on a thread with room for the deepest walk allowed.
            try ProcessControl.runOnThread(stackBytes: WalkLimits.stackBytes) {
                try walker.walk(upper, path: [], lower: lowerRoots, markers: rootMarkers)
            }
        }
    }

    /// The state of one walk.
    struct Walker {
        var emitter: ChangeEmitter
        var progress: ProgressCounter
        let rules: ComparisonRules
        let lowers: LayerStack?
        let upperPath: String
        /// Directory levels entered (bounded by `WalkLimits.maximumDepth`).
        var depth = 0

        /// One name read from an upper directory.
        struct UpperEntry {
            var name: FileName
            var kind: FileKind?
        }

        /// Walks the upper directory `directory` at `path` (empty for `/`), whose
        /// lower view is `lower` (the merged lower directories, topmost first;
        /// empty when the path is new or was not a directory below).
        ///
        /// `inheritedOpaque`: an ancestor is opaque (or was replaced through a
        /// same-layer `.wh.NAME`), so this directory shows its upper content only,
        /// whatever its own markers say.
        mutating func walk(_ directory: Descriptor, path: [UInt8], lower: [LayerDirectory],
                           markers: UpperDirectoryMarkers, inheritedOpaque: Bool = false) throws {
            depth += 1
            defer { depth -= 1 }
            guard depth <= WalkLimits.maximumDepth else { throw WalkLimits.tooDeep(path) }
            var entries: [UpperEntry] = []
            var ociWhiteouts: [FileName] = []
            var opaque = markers.opaque || inheritedOpaque
            try reading("cannot read upper directory \(displayPath(path))") {
                try directory.forEachEntry { entry in
                    if OverlayMarkers.isOCIMarker(entry.name) {
                        if entry.name == OverlayMarkers.opaqueMarkerName {
                            opaque = true
                        } else if let target = OverlayMarkers.whitedOutName(entry.name) {
                            ociWhiteouts.append(target)
                        }
                        // Other `.wh..wh.*` names are aufs bookkeeping: skipped.
                        return
                    }
                    entries.append(UpperEntry(name: entry.name, kind: entry.kind))
                }
            }
            entries.sort { $0.name < $1.name }

            var present: Set<FileName> = []
            var whiteouts: [FileName] = []
            present.reserveCapacity(lower.isEmpty ? 0 : entries.count)

            for entry in entries {
                progress.tick()
                let name = entry.name
                // A name removed since the listing (a live container writing) is not in
                // the upper any more: skipped, as the two-tree walk skips it.
                let found = try reading("cannot stat \(displayPath(childPath(path, name))) in upper directory \(upperPath)") {
                    try directory.attributesIfPresent(of: name)
                }
                guard let attributes = found else { continue }
                if OverlayMarkers.isWhiteoutDevice(attributes) {
                    whiteouts.append(name)
                    continue
                }
                if markers.hasExtendedWhiteouts, attributes.kind == .regular, attributes.size == 0,
                   try isExtendedWhiteout(name, in: directory) {
                    whiteouts.append(name)
                    continue
                }
                if !lower.isEmpty { present.insert(name) }
                try visit(name, attributes: attributes, in: directory, path: path, lower: lower,
                          parentOpaque: opaque || ociWhiteouts.contains(name))
            }

            guard !lower.isEmpty, let lowers else { return }
            // Removed children, sorted, after every surviving or new child (O3).
            var removed: [FileName]
            if opaque {
                let listing = try reading("cannot list lower directory \(displayPath(path))") {
                    try MergedDirectory.listing(of: lower, stack: lowers)
                }
                removed = listing.map(\.name).filter { !present.contains($0) }
            } else {
                removed = (whiteouts + ociWhiteouts).filter { !present.contains($0) }
            }
            removed.sort()
            var previous: FileName?
            for name in removed where name != previous {
                previous = name
                progress.tick()
                guard let (resolution, _) = try lookUp(name, in: lower) else { continue }
                try emitter.emit(Change(kind: .deleted, path: childPath(path, name), old: resolution.attributes))
            }
        }

        /// Handles one real upper entry: its own line, then its subtree.
        mutating func visit(_ name: FileName, attributes: FileAttributes, in directory: Descriptor,
                            path: [UInt8], lower: [LayerDirectory], parentOpaque: Bool) throws {
            let path = childPath(path, name)
            let old = lower.isEmpty ? nil : try lookUp(name, in: lower)
            guard let (resolution, oldDirectories) = old else {
                let change = Change(kind: .added, path: path, new: attributes)
                try emitter.emit(change)
                if attributes.isDirectory {
                    let (child, markers) = try openDirectory(name, in: directory, path: path)
                    emitter.enterRecorded(change)
                    try walk(child, path: path, lower: [], markers: markers)
                    emitter.leave()
                }
                return
            }
            let holder = lower.first { $0.layer == resolution.topLayer }!.descriptor
            let metacopy = attributes.kind == .regular && rules.strict ? try isMetacopy(name, in: directory) : false
            let changed = try rules.differs(
                old: EntryReference(directory: holder, name: name, attributes: resolution.attributes),
                new: EntryReference(directory: directory, name: name, attributes: attributes),
                newIsMetacopy: metacopy)
            var change: Change?
            if changed {
                change = Change(kind: .modified, path: path, old: resolution.attributes, new: attributes)
                try emitter.emit(change!)
            }
            guard attributes.isDirectory else { return }
            if resolution.isDirectory { try refuseRedirectedLowers(oldDirectories, path: path) }
            let (child, markers) = try openDirectory(name, in: directory, path: path)
            if let change { emitter.enterRecorded(change) } else {
                emitter.enterPending(path: path, old: resolution.attributes, new: attributes)
            }
            try walk(child, path: path, lower: resolution.isDirectory ? oldDirectories : [], markers: markers,
                     inheritedOpaque: parentOpaque)
            emitter.leave()
        }

        /// Opens an upper subdirectory and reads its markers; refuses redirects.
        func openDirectory(_ name: FileName, in directory: Descriptor, path: [UInt8]) throws -> (Descriptor, UpperDirectoryMarkers) {
            let child = try reading("cannot open upper directory \(displayPath(path))") {
                try directory.open(name, [.directory])
            }
            var markers = UpperDirectoryMarkers()
            if lowers != nil {
                markers = try reading("cannot read xattrs of upper directory \(displayPath(path))") {
                    try UpperDirectoryMarkers.read(nil, in: child)
                }
                if let redirect = markers.redirect {
                    throw DiffError(.unsupported, "upper directory \(displayPath(path)) was renamed from \(String(decoding: redirect, as: UTF8.self)) with redirect_dir=on; its content cannot be read from the upper alone (diff the two trees instead: strata diff LOWER_VIEW MERGED_VIEW)")
                }
            }
            return (child, markers)
        }

        /// The lower view's entry for `name`, or `nil` when absent there.
        ///
        /// Beyond `NameResolver`'s rules, a lower xwhiteout (a zero-size file with
        /// an `overlay.whiteout` xattr in a directory whose opaque xattr is `x`,
        /// kernel 6.7+) is absent: the kernel's lower view hides it and what lies below.
        func lookUp(_ name: FileName, in lower: [LayerDirectory]) throws -> (Resolution, [LayerDirectory])? {
            guard let lowers else { return nil }
            let result = Result { () throws(OverlayError) in try NameResolver.resolve(name, in: lower, stack: lowers) }
            switch result {
            case .success(let found):
                if let (resolution, _) = found, resolution.kind == .regular, resolution.attributes.size == 0,
                   let holder = lower.first(where: { $0.layer == resolution.topLayer }),
                   try isLowerExtendedWhiteout(name, in: holder.descriptor) {
                    return nil
                }
                return found
            case .failure(let error):
                // A lower path component that is not a directory (or vanished): absent.
                if error.errno == ENOTDIR || error.errno == ENOENT { return nil }
                throw DiffError(error)
            }
        }

        /// Whether `name` in the lower directory `directory` is an xwhiteout.
        func isLowerExtendedWhiteout(_ name: FileName, in directory: Descriptor) throws -> Bool {
            try reading("cannot read xattrs of \(name) in a lower layer") {
                let marked = try DiffMarkers.opaqueXattrs.contains { key in
                    do {
                        return try directory.extendedAttribute(String(decoding: key, as: UTF8.self)) == OverlayMarkers.holdsExtendedWhiteoutsValue
                    } catch let error as SystemCallError where error.errno == ENOTSUP {
                        return false   // a filesystem without xattrs has no xwhiteouts
                    }
                }
                guard marked else { return false }
                return try OverlayMarkers.extendedWhiteoutXattrs.contains { try directory.extendedAttribute($0, of: name) != nil }
            }
        }

        /// Refuses lower directories renamed with `redirect_dir=on`: the kernel's
        /// lower view follows the redirect (`redirect_always_follow`, on by default)
        /// into another path of the layers below, which the upper walk does not
        /// read, so its list would be wrong. The bottom layer's redirects lead
        /// nowhere and are ignored, as are the layers' own root directories.
        func refuseRedirectedLowers(_ directories: [LayerDirectory], path: [UInt8]) throws {
            guard let lowers else { return }
            for directory in directories where directory.layer != lowers.layers.count - 1 {
                let keys = try reading("cannot read xattrs of lower directory \(displayPath(path))") {
                    try directory.descriptor.extendedAttributeNames()
                }
                guard let key = keys.first(where: { DiffMarkers.redirectXattrs.contains($0) }) else { continue }
                let target = try reading("cannot read xattrs of lower directory \(displayPath(path))") {
                    try directory.descriptor.extendedAttribute(String(decoding: key, as: UTF8.self)) ?? []
                }
                throw DiffError(.unsupported, "lower directory \(displayPath(path)) in layer \(lowers.layers[directory.layer].path) was renamed from \(String(decoding: target, as: UTF8.self)) with redirect_dir=on; its old content cannot be read from the layers alone (diff the two trees instead: strata diff LOWER_VIEW MERGED_VIEW)")
            }
        }

        func isExtendedWhiteout(_ name: FileName, in directory: Descriptor) throws -> Bool {
            try reading("cannot read xattrs of \(name) in upper directory \(upperPath)") {
                for key in OverlayMarkers.extendedWhiteoutXattrs where try directory.extendedAttribute(key, of: name) != nil {
                    return true
                }
                return false
            }
        }

        func isMetacopy(_ name: FileName, in directory: Descriptor) throws -> Bool {
            try reading("cannot read xattrs of \(name) in upper directory \(upperPath)") {
                try directory.extendedAttributeNames(of: name).contains { DiffMarkers.metacopyXattrs.contains($0) }
            }
        }
    }
}
