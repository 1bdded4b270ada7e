import LayerSystem

/// Every on-disk encoding of overlay metadata, in one place.
///
/// Two formats are read, both as kernel overlayfs and OCI image layers define them:
/// - overlay: a whiteout is a character device 0/0; an opaque directory has the
///   xattr `trusted.overlay.opaque=y` (or `user.overlay.opaque=y` for unprivileged
///   overlays). Value `x` is *not* opaque: it says the directory holds
///   xwhiteouts (kernel 6.7+), zero-size regular files with the xattr
///   `trusted.overlay.whiteout` (or `user.overlay.whiteout`), which are
///   whiteouts too, in lower layers only (the kernel ignores them in the upper).
/// - OCI/AUFS (layer tars extracted naively): a file `.wh.NAME` deletes `NAME`
///   from the layers below; a file `.wh..wh..opq` makes its directory opaque.
///   Both hide only what lies *below* their own layer.
///
/// Markers never appear in the merged view, and overlay-private xattrs are
/// never shown, copied up or counted as changes.
public enum OverlayMarkers {
    /// Prefix of an OCI whiteout file name.
    public static let whiteoutPrefix: FileName = ".wh."
    /// Name of the OCI opaque-directory marker file.
    public static let opaqueMarkerName: FileName = ".wh..wh..opq"
    /// Opaque xattr written by privileged overlays (and by Strata as root).
    public static let trustedOpaque = "trusted.overlay.opaque"
    /// Opaque xattr of unprivileged (`userxattr`) overlays.
    public static let userOpaque = "user.overlay.opaque"
    /// The value that marks a directory opaque.
    public static let opaqueValue: [UInt8] = Array("y".utf8)
    /// The opaque value that marks a (lower) directory as holding xwhiteouts.
    public static let holdsExtendedWhiteoutsValue: [UInt8] = Array("x".utf8)
    /// Xattrs that make a zero-size regular file an xwhiteout.
    public static let extendedWhiteoutXattrs = ["trusted.overlay.whiteout", "user.overlay.whiteout"]
    /// Prefixes of overlay-private xattrs: hidden from readers, never copied up.
    public static let privateXattrPrefixes: [[UInt8]] = [Array("trusted.overlay.".utf8), Array("user.overlay.".utf8)]

    /// Whether `attributes` describe an overlay whiteout (character device 0/0).
    public static func isWhiteoutDevice(_ attributes: FileAttributes) -> Bool {
        attributes.kind == .characterDevice && attributes.specialDevice == 0
    }

    /// Whether `name` is a marker in OCI format (`.wh.*`), never shown.
    public static func isOCIMarker(_ name: FileName) -> Bool { name.hasPrefix(whiteoutPrefix) }

    /// The name an OCI whiteout file deletes, or `nil` if `name` is not one
    /// (the opaque marker is not a whiteout).
    public static func whitedOutName(_ name: FileName) -> FileName? {
        guard name.hasPrefix(whiteoutPrefix), name != opaqueMarkerName else { return nil }
        let target = name.dropFirst(whiteoutPrefix.bytes.count)
        return target.isValidComponent ? target : nil
    }

    /// The OCI whiteout file name for `name`.
    public static func ociWhiteoutName(for name: FileName) -> FileName { whiteoutPrefix + name }

    /// Whether an xattr name is overlay-private.
    public static func isPrivateXattr(_ name: [UInt8]) -> Bool {
        privateXattrPrefixes.contains { name.starts(with: $0) }
    }

    /// Whether the lower directory open (for reading) at `directory` may hold
    /// xwhiteouts (its opaque xattr is `x`): one `flistxattr`, a `getxattr`
    /// only when an opaque xattr is present.
    public static func holdsExtendedWhiteouts(_ directory: Descriptor) -> Bool {
        opaqueXattrValues(directory).contains(holdsExtendedWhiteoutsValue)
    }

    /// Whether `name` (with `attributes`) in a directory that holds
    /// xwhiteouts is one: a zero-size regular file with a whiteout xattr.
    public static func isExtendedWhiteout(_ name: FileName, _ attributes: FileAttributes, in directory: Descriptor) -> Bool {
        guard attributes.kind == .regular, attributes.size == 0 else { return false }
        let names = (try? directory.extendedAttributeNames(of: name)) ?? []
        return extendedWhiteoutXattrs.contains { key in names.contains { $0.elementsEqual(key.utf8) } }
    }

    /// The values of the directory's opaque xattrs (either namespace).
    private static func opaqueXattrValues(_ directory: Descriptor) -> [[UInt8]] {
        let names = (try? directory.openFileExtendedAttributeNames()) ?? []
        return [trustedOpaque, userOpaque].compactMap { key in
            guard names.contains(where: { $0.elementsEqual(key.utf8) }) else { return nil }
            return try? directory.extendedAttribute(key)
        }
    }

    /// Whether the directory open (for reading) at `directory` is opaque in
    /// either format. Two syscalls (the xattr names, the marker file), a third
    /// only when an opaque xattr is present; callers ask only when a lower
    /// layer would otherwise be merged.
    public static func isOpaque(_ directory: Descriptor) -> Bool {
        if opaqueXattrValues(directory).contains(opaqueValue) { return true }
        return (try? directory.attributesIfPresent(of: opaqueMarkerName)) != nil
    }
}
