import LayerSystem
import Glibc

/// One layer directory, opened once at mount time. All access to its contents
/// is relative to `root`, never through its path.
public final class Layer: Sendable {
    /// Position in the stack, 0 = topmost (the upper layer when there is one).
    public let index: Int
    /// The path the user gave (for messages only).
    public let path: String
    /// Canonical absolute path (for overlap checks and diagnostics only).
    public let canonicalPath: String
    /// Readable directory descriptor of the layer root.
    public let root: Descriptor
    /// `st_dev` of the layer root.
    public let device: UInt64
    /// Whether this is the writable upper layer.
    public let isUpper: Bool

    init(index: Int, path: String, isUpper: Bool) throws(OverlayError) {
        self.index = index
        self.path = path
        self.isUpper = isUpper
        let root: Descriptor
        do {
            root = try System.open(path, [.directory])
            canonicalPath = try System.canonicalPath(path)
            device = try root.attributes().device
        } catch let error as SystemCallError {
            switch error.errno {
            case ENOENT: throw OverlayError(.badLayer, errno: ENOENT, "layer \(path) does not exist", cause: error)
            case ENOTDIR: throw OverlayError(.badLayer, errno: ENOTDIR, "layer \(path) is not a directory", cause: error)
            default: throw OverlayError(.badLayer, errno: error.errno, "layer \(path) cannot be opened: \(error.message)", cause: error)
            }
        } catch {
            throw OverlayError(.badLayer, errno: EIO, "layer \(path) cannot be opened")
        }
        self.root = root
    }
}

/// The ordered layers of one overlay: optional upper on top, then the lowers
/// top-first (overlayfs `lowerdir=` order). Immutable after creation.
public final class LayerStack: Sendable {
    /// All layers, topmost first. `layers[0]` is the upper when `upper != nil`.
    public let layers: [Layer]
    /// The writable layer, if any.
    public let upper: Layer?
    /// The work directory (same filesystem as the upper), if any.
    public let work: Layer?
    /// Per layer: index of its device among the distinct devices, used to keep
    /// inode numbers unique when layers live on different filesystems.
    let deviceIndex: [Int]
    /// Whether all layers share one filesystem (then real inode numbers are
    /// exposed unchanged, as kernel overlayfs does on a single filesystem).
    public let sameFileSystem: Bool
    /// `[i]` for every layer i: one shared array for every resolution in one
    /// layer (a node per name would otherwise allocate its own).
    private let singleLayerLists: [[Int]]
    /// Layers a stack may have (indexes store a layer in 16 bits; kernel
    /// overlayfs stops at 500).
    public static let maximumLayers = 4096

    /// Opens every layer. Lowers are given top-first.
    public init(lowerPaths: [String], upperPath: String? = nil, workPath: String? = nil) throws(OverlayError) {
        guard !lowerPaths.isEmpty else {
            throw OverlayError(.badLayer, errno: EINVAL, "no lower layers given")
        }
        guard lowerPaths.count + (upperPath == nil ? 0 : 1) <= Self.maximumLayers else {
            throw OverlayError(.badLayer, errno: EINVAL, "too many layers: \(lowerPaths.count) lower layers given, at most \(Self.maximumLayers) in all")
        }
        var layers: [Layer] = []
        var upper: Layer?
        if let upperPath {
            let layer = try Layer(index: 0, path: upperPath, isUpper: true)
            layers.append(layer)
            upper = layer
        }
        for path in lowerPaths {
            layers.append(try Layer(index: layers.count, path: path, isUpper: false))
        }
        self.layers = layers
        self.upper = upper
        self.work = try workPath.map { (p) throws(OverlayError) in try Layer(index: -1, path: p, isUpper: false) }
        var devices: [UInt64] = []
        var indices: [Int] = []
        for layer in layers {
            if let i = devices.firstIndex(of: layer.device) { indices.append(i) } else {
                devices.append(layer.device)
                indices.append(devices.count - 1)
            }
        }
        deviceIndex = indices
        sameFileSystem = devices.count == 1
        singleLayerLists = layers.indices.map { [$0] }
    }

    /// `layers`, or the stack's shared copy of it when it names one layer.
    func sharedLayerList(_ layers: [Int]) -> [Int] {
        guard layers.count == 1, singleLayerLists.indices.contains(layers[0]) else { return layers }
        return singleLayerLists[layers[0]]
    }

    /// Lower layers only, topmost first.
    public var lowers: ArraySlice<Layer> { upper == nil ? layers[...] : layers.dropFirst() }

    /// The inode number shown for an object whose real inode is `inode` in `layer`:
    /// unchanged on a single filesystem; otherwise the device's index goes into
    /// the top 8 bits so numbers from different filesystems cannot collide.
    public func exposedInode(_ inode: UInt64, layer: Int) -> UInt64 {
        if sameFileSystem { return inode }
        return (inode & 0x00ff_ffff_ffff_ffff) | (UInt64(deviceIndex[layer]) << 56)
    }
}
