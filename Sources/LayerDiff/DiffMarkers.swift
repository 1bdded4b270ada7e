import LayerSystem
import OverlayCore

/// Overlay metadata an upper-directory reader needs beyond what
/// `OverlayMarkers` (the mount's shared table) defines: spec §3.3 / §10.3.
/// Kept here so the mount's reader is unchanged; candidates to move into
/// `OverlayMarkers` once the mount honours them too.
enum DiffMarkers {
    /// The one xattr docker compares (§2.2).
    static let capability = "security.capability"
    /// fuse-overlayfs's opaque xattr.
    static let fuseOverlayOpaque = "user.fuseoverlayfs.opaque"
    /// `redirect_dir=on`: a renamed directory names its old path here.
    static let redirectXattrs: [[UInt8]] = [Array("trusted.overlay.redirect".utf8), Array("user.overlay.redirect".utf8)]
    /// `metacopy=on`: the upper file holds metadata only; data is in the lower file.
    static let metacopyXattrs: [[UInt8]] = [Array("trusted.overlay.metacopy".utf8), Array("user.overlay.metacopy".utf8)]
    /// The opaque xattrs of every overlay flavour, in the order they are checked.
    static let opaqueXattrs: [[UInt8]] = [Array(OverlayMarkers.trustedOpaque.utf8), Array(OverlayMarkers.userOpaque.utf8),
                                          Array(fuseOverlayOpaque.utf8)]
    /// Overlay-private xattr prefixes: bookkeeping, never a change.
    static let privatePrefixes: [[UInt8]] = OverlayMarkers.privateXattrPrefixes + [Array("user.fuseoverlayfs.".utf8)]

    static func isPrivateXattr(_ name: [UInt8]) -> Bool {
        privatePrefixes.contains { name.starts(with: $0) }
    }
}

/// The overlay markers on one upper directory, read with one `listxattr` and a
/// `getxattr` only for the marker names present.
struct UpperDirectoryMarkers {
    /// Opaque (`y` under any prefix, or a `.wh..wh..opq` file, which the caller adds).
    var opaque = false
    /// Opaque value `x`: zero-size files with a whiteout xattr are whiteouts.
    var hasExtendedWhiteouts = false
    /// The directory was renamed with `redirect_dir=on`.
    var redirect: [UInt8]?

    /// Reads the markers of `name` in `parent` (or of `parent` itself when `name` is nil).
    static func read(_ name: FileName?, in parent: Descriptor) throws -> UpperDirectoryMarkers {
        let keys = try name.map { try parent.extendedAttributeNames(of: $0) } ?? parent.extendedAttributeNames()
        var markers = UpperDirectoryMarkers()
        if keys.isEmpty { return markers }
        func value(_ key: [UInt8]) throws -> [UInt8]? {
            let k = String(decoding: key, as: UTF8.self)
            return try name.map { try parent.extendedAttribute(k, of: $0) } ?? parent.extendedAttribute(k)
        }
        for key in keys {
            if DiffMarkers.opaqueXattrs.contains(key) {
                let v = try value(key)
                if v == OverlayMarkers.opaqueValue { markers.opaque = true }
                if v == OverlayMarkers.holdsExtendedWhiteoutsValue { markers.hasExtendedWhiteouts = true }
            } else if DiffMarkers.redirectXattrs.contains(key) {
                markers.redirect = try value(key) ?? []
            }
        }
        return markers
    }
}
