import ArgumentParser

/// `strata diff` — placeholder until the diff engine lands (issue 4).
public struct DiffCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(commandName: "diff", abstract: "Print docker-style A/C/D changes.")
    public init() {}
    public func run() throws { throw CommandFailure("diff is not available yet") }
}
