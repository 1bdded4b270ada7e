#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import LayerSystem

/// What a running Strata daemon records about its mount, so that other
/// commands (`strata diff MOUNTPOINT`, `strata unmount`) can find the layers
/// and the daemon from the mountpoint alone.
///
/// Stored as JSON at `<directory>/<major>:<minor>.json`, where major:minor is
/// the mount's device as /proc/self/mountinfo shows it; written once the
/// mount is live, removed when the daemon exits. The directory is
/// `/run/strata/mounts` for root, `$XDG_RUNTIME_DIR/strata/mounts` (or
/// `/tmp/strata-UID/mounts`) for other users.
public struct MountRecord: Codable, Sendable, Equatable {
    public var mountpoint: String
    /// Lower layers, canonical paths, topmost first.
    public var lowers: [String]
    public var upper: String?
    public var work: String?
    /// The daemon's process ID.
    public var pid: Int32
}

public enum MountRegistry {
    public static var directory: String {
        if System.isInitialNamespaceRoot { return "/run/strata/mounts" }
        if let runtime = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"], !runtime.isEmpty {
            return "\(runtime)/strata/mounts"
        }
        return "/tmp/strata-\(System.effectiveUserID)/mounts"
    }

    static func file(device: String) -> String { "\(directory)/\(device).json" }

    /// Records `record` for the Strata mount at `record.mountpoint`; returns the file written.
    @discardableResult
    public static func register(_ record: MountRecord) -> String? {
        guard let entry = MountTable.mount(at: record.mountpoint) else { return nil }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
            let path = file(device: entry.device)
            try JSONEncoder().encode(record).write(to: URL(fileURLWithPath: path), options: .atomic)
            return path
        } catch { return nil }
    }

    /// The record of the Strata mount at the canonical path `mountpoint`, if any.
    public static func record(at mountpoint: String) -> MountRecord? {
        guard let entry = MountTable.mount(at: mountpoint), entry.fileSystemType == "fuse.strata",
              let data = FileManager.default.contents(atPath: file(device: entry.device)),
              let record = try? JSONDecoder().decode(MountRecord.self, from: data),
              record.mountpoint == mountpoint else { return nil }
        return record
    }

    public static func remove(_ path: String) { try? FileManager.default.removeItem(atPath: path) }
}
