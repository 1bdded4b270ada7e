import ArgumentParser
import LayerSystem

/// `strata`: the root command. Subcommands live in noun folders, one verb per file.
public struct StrataCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "strata",
        abstract: "A union filesystem and layer-diff toolkit for container image layers.",
        discussion: """
        Layers are given top-first and colon-separated, as in overlayfs (a literal
        colon in a path is written \\:).
        """,
        version: "0.1.0",
        subcommands: [MountCommand.self, UnmountCommand.self, DiffCommand.self]
    )

    public init() {}

    /// The arguments after the program name; invoked as `strata-mount` (the
    /// name containers-storage's `mount_program` can point at), `mount` is implied,
    /// so `strata-mount -o lowerdir=…,upperdir=…,workdir=… DIR` works as fuse-overlayfs's does.
    public static func commandLineArguments() -> [String] {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if CommandLine.arguments.first?.split(separator: "/").last == "strata-mount" { arguments.insert("mount", at: 0) }
        return arguments
    }

    /// Entry point: parses, runs, and reports any error as one line on stderr
    /// (the cause chain with `--verbose`) and a non-zero exit status.
    public static func runMain(_ arguments: [String] = commandLineArguments()) -> Never {
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            exit(withError: nil)
        } catch let error as CommandFailure {
            ProcessControl.writeStandardError("strata: \(error.message)\n")
            Self.exit(withError: ExitCode(error.exitCode))
        } catch let error as ExitCode {
            Self.exit(withError: error)
        } catch {
            exit(withError: error)
        }
    }
}

/// A command's failure: printed as `strata: MESSAGE` on one line, exit status `exitCode`.
public struct CommandFailure: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var exitCode: Int32
    public init(_ message: String, exitCode: Int32 = 1) {
        self.message = message
        self.exitCode = exitCode
    }
    public var description: String { message }
}
