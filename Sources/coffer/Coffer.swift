import ArgumentParser

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

@main
struct Coffer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coffer",
        abstract: "Coffer: a durable blob store.",
        discussion: """
            `coffer serve` runs one storage node: an HTTP/1.1 API over a crash-safe log engine.
            Run as `challenge-executable`, the binary serves with its defaults.
            """,
        subcommands: [Serve.self, Gateway.self, Compact.self, Verify.self, Bench.self]
    )

    /// Installed as `challenge/bin/challenge-executable`, the binary serves with its defaults when given no command.
    static func main() async {
        var arguments = Array(CommandLine.arguments.dropFirst())
        let name = CommandLine.arguments.first.map { $0.split(separator: "/").last.map(String.init) ?? $0 } ?? ""
        if name == "challenge-executable" && (arguments.first.map { $0.hasPrefix("-") } ?? true) {
            arguments.insert("serve", at: 0)
        }
        do {
            var command = try parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
