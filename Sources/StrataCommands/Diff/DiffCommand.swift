import ArgumentParser
import LayerDiff
import LayerSystem

/// `strata diff`: docker's A/C/D change list, from an overlay upper directory
/// (at the cost of the upper alone), from two whole trees, from a live mount,
/// or from a Docker overlay2 layer directory.
public struct DiffCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Print docker-style A/C/D changes of a layer (same results as docker diff, in a deterministic order).",
        discussion: """
        Sources (exactly one):
          strata diff --lower TOP:…:BOTTOM --upper DIR   an overlay upper directory against its lowers
          strata diff OLD_ROOT NEW_ROOT                  two whole trees (parallel walk)
          strata diff MOUNTPOINT                         a live Strata (or kernel overlayfs) mount
          strata diff --docker-layer DIR                 a Docker overlay2 / containers-storage layer dir

        Output is one line per change, `A|C|D /path`, in moby-canonical order: parents
        before children, siblings by name bytes, deletions after the other children of
        their directory. Exit status: 0, or 1 with --exit-code when there are changes;
        2 on error (nothing printed is then a complete list).
        """
    )

    @Option(name: .long, help: ArgumentHelp("Lower layers, topmost first, colon-separated (\\: for a literal colon).", valueName: "TOP:…:BOTTOM"))
    var lower: String?

    @Option(name: .long, help: "The overlay upper directory to diff against --lower.")
    var upper: String?

    @Option(name: .customLong("docker-layer"), help: ArgumentHelp("A Docker overlay2 layer directory (holding diff/ and lower).", valueName: "DIR"))
    var dockerLayer: String?

    @Option(name: .long, help: "Output format: text (docker's lines) or json (one object per line).")
    var format: String = "text"

    @Flag(name: .long, help: "Add the old and new type, mode, owner, size and mtime of each change.")
    var verbose = false

    @Flag(name: .long, help: "Also report what docker misses: symlink retargets, xattr changes, content hidden by a restored mtime, directory mtimes.")
    var strict = false

    @Flag(name: .customLong("exit-code"), help: "Exit with status 1 when there are changes.")
    var exitCode = false

    @Argument(help: ArgumentHelp("OLD_ROOT NEW_ROOT, or MOUNTPOINT.", valueName: "path"))
    var paths: [String] = []

    public init() {}

    /// Failures of the diff itself exit with 2, so `--exit-code`'s 1 stays unambiguous.
    static let failureStatus: Int32 = 2

    public func run() throws {
        guard let format = ChangeFormat(rawValue: format) else {
            throw CommandFailure("--format \(self.format): expected text or json", exitCode: Self.failureStatus)
        }
        let renderer = ChangeRenderer(format: format, verbose: verbose)
        let output = DiffOutput(renderer: renderer)
        let progress = DiffProgress(output: output)
        let options = DiffOptions(strict: strict, progress: progress.map { p in { p.update(examined: $0) } })
        do {
            let source = try makeSource(options: options)
            try source?.forEachChange { output.write($0) }
        } catch let error as DiffError {
            progress?.finish()
            throw CommandFailure(error.description + (output.flushedAny ? " (the list above is incomplete)" : ""),
                                 exitCode: Self.failureStatus)
        }
        progress?.finish()
        output.finish()
        if output.failed {
            throw CommandFailure("cannot write the change list to standard output: the list is incomplete", exitCode: Self.failureStatus)
        }
        if exitCode && output.count > 0 { throw ExitCode(1) }
    }

    /// The engine for the given arguments; `nil` for a mount with no upper (no changes).
    func makeSource(options: DiffOptions) throws -> (any ChangeSource)? {
        let modes = [lower != nil || upper != nil, dockerLayer != nil, !paths.isEmpty].filter { $0 }.count
        guard modes == 1 else {
            throw CommandFailure(modes == 0
                ? "nothing to diff: give --lower and --upper, --docker-layer DIR, OLD_ROOT NEW_ROOT, or MOUNTPOINT (see strata diff --help)"
                : "give only one of --lower/--upper, --docker-layer, or paths", exitCode: Self.failureStatus)
        }
        if let dockerLayer {
            let layers = try DockerLayerDirectory.layers(of: dockerLayer)
            return try UpperWalk(lowerPaths: layers.lowers, upperPath: layers.upper!, options: options)
        }
        if lower != nil || upper != nil {
            guard let upper else { throw CommandFailure("--lower needs --upper (the directory whose changes to list)", exitCode: Self.failureStatus) }
            guard let lower else { throw CommandFailure("--upper needs --lower (the layers below it, topmost first)", exitCode: Self.failureStatus) }
            let lowers = LayerList.layers(lower)
            guard !lowers.contains("") else {
                throw CommandFailure("--lower \(lower): empty layer path", exitCode: Self.failureStatus)
            }
            return try UpperWalk(lowerPaths: lowers, upperPath: upper, options: options)
        }
        switch paths.count {
        case 1:
            let layers = try LiveMount.layers(of: paths[0], stateDirectory: MountRegistry.directory)
            guard let upper = layers.upper else { return nil }
            return try UpperWalk(lowerPaths: layers.lowers, upperPath: upper, options: options)
        case 2:
            return try TreeWalk(oldPath: paths[0], newPath: paths[1], options: options)
        default:
            throw CommandFailure("expected OLD_ROOT NEW_ROOT or one MOUNTPOINT, got \(paths.count) paths", exitCode: Self.failureStatus)
        }
    }
}
