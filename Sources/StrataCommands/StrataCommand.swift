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
            ProcessControl.writeStandardError("strata: \(oneLine(error.message))\n")
            Self.exit(withError: ExitCode(error.exitCode))
        } catch let error as ExitCode {
            Self.exit(withError: error)
        } catch {
            exit(withError: error)
        }
    }
}

/// `message` with control characters escaped (`\n`, `\t`, `\xHH`), so that an
/// error stays one line whatever names or xattr values it quotes (a file name,
/// or a redirect xattr read from a layer, may hold a newline).
func oneLine(_ message: String) -> String {
    var out = ""
    for scalar in message.unicodeScalars {
        switch scalar.value {
        case 0x0A: out += "\\n"
        case 0x09: out += "\\t"
        case 0x0D: out += "\\r"
        case 0..<0x20, 0x7F: out += "\\x" + String(scalar.value, radix: 16).leftPadded(to: 2)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}

private extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
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
