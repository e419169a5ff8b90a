import ArgumentParser
import CofferHTTP
import NIOCore

/// The options every server command shares (`coffer serve`, `coffer gateway`), parsed once into typed values.
struct ServerOptions: ParsableArguments {
    @Option(
        name: [.customShort("s"), .long],
        help: "Address to listen on, HOST:PORT (default 0.0.0.0:7777 for serve, 0.0.0.0:3000 for gateway).",
        transform: { try ListenAddress($0) })
    var listen: ListenAddress?

    @Flag(name: [.customShort("D"), .long], help: "Log at debug level.")
    var debug = false

    @Option(help: "Largest blob accepted (bytes, or with a unit: 64MiB, 5GiB).")
    var maxBlobSize: ByteSize = ByteSize(bytes: 5 << 30)

    @Option(help: "Close connections idle for this many seconds.")
    var idleTimeout: Int64 = 60

    func validate() throws {
        guard maxBlobSize.bytes > 0 else { throw ValidationError("--max-blob-size must be positive") }
        guard idleTimeout > 0 else { throw ValidationError("--idle-timeout must be positive") }
    }

    /// The HTTP server's configuration, listening on `--listen` or else on `defaultListen`.
    func httpConfiguration(defaultListen: ListenAddress) -> HTTPServerConfiguration {
        let address = listen ?? defaultListen
        return HTTPServerConfiguration(
            host: address.host, port: address.port, maxBlobSize: maxBlobSize.bytes, idleTimeout: .seconds(idleTimeout))
    }
}
