import Testing

@testable import CofferBench

/// The command line's values: mixes, sizes, durations, URLs, and the settings a run refuses.
@Suite struct ParsingTests {
    @Test func mixWeightsAndPick() throws {
        let mix = try OperationMix(parsing: "get=90,put=10")
        #expect(mix.weight(of: .get) == 90)
        #expect(mix.weight(of: .put) == 10)
        #expect(mix.weight(of: .delete) == 0)
        #expect(mix.total == 100)
        #expect(mix.pick(0) == .get)
        #expect(mix.pick(89) == .get)
        #expect(mix.pick(90) == .put)
        #expect(mix.pick(99) == .put)
        #expect(mix.description == "get=90,put=10")

        let all = try OperationMix(parsing: "delete=1,post=2,GET=3,put=4")
        #expect(BenchOperation.allCases.map { all.weight(of: $0) } == [3, 4, 2, 1])
        // Every roll lands on the operation whose share it falls in.
        let picks = (0..<all.total).map { all.pick($0) }
        for operation in BenchOperation.allCases {
            #expect(picks.filter { $0 == operation }.count == all.weight(of: operation))
        }
    }

    @Test(arguments: ["", "get", "get=", "get=-1", "head=5", "get=0,put=0", "get=1;put=2", "get=1,"])
    func badMixes(_ text: String) {
        #expect(throws: BenchConfigurationError.self) { try OperationMix(parsing: text) }
    }

    @Test func sizes() throws {
        #expect(try SizeRange(parsing: "1KiB") == SizeRange(1024, 1024))
        #expect(try SizeRange(parsing: "1KiB-1MiB") == SizeRange(1024, 1 << 20))
        #expect(try SizeRange(parsing: "0-100") == SizeRange(0, 100))
        #expect(try SizeRange(parsing: "64KB") == SizeRange(64_000, 64_000))
        #expect(try SizeRange(parsing: "2GiB") == SizeRange(2 << 30, 2 << 30))
        #expect(try SizeRange(parsing: "5B") == SizeRange(5, 5))
    }

    @Test(arguments: ["", "KiB", "1XiB", "-1", "1KiB-", "2KiB-1KiB", "1-2-3", "1.5KiB"])
    func badSizes(_ text: String) {
        #expect(throws: BenchConfigurationError.self) { try SizeRange(parsing: text) }
    }

    @Test func durations() throws {
        #expect(try parseBenchDuration("30s") == .seconds(30))
        #expect(try parseBenchDuration("500ms") == .milliseconds(500))
        #expect(try parseBenchDuration("2m") == .seconds(120))
        #expect(try parseBenchDuration("1h") == .seconds(3600))
        #expect(try parseBenchDuration("1.5s") == .milliseconds(1500))
        #expect(try parseBenchDuration("7") == .seconds(7))
        #expect(try parseBenchDuration("0s") == .zero)
        for bad in ["", "s", "-1s", "1d", "abc", "1e20s", "nan"] {
            #expect(throws: BenchConfigurationError.self, "\(bad)") { try parseBenchDuration(bad) }
        }
    }

    @Test func urls() throws {
        #expect(
            try BenchTarget(parsing: "http://127.0.0.1:7777/store")
                == BenchTarget(
                    host: "127.0.0.1", port: 7777, basePath: "/store"))
        #expect(
            try BenchTarget(parsing: "http://localhost/api/fileserver/")
                == BenchTarget(
                    host: "localhost", port: 80, basePath: "/api/fileserver"))
        #expect(try BenchTarget(parsing: "http://[::1]:8080") == BenchTarget(host: "::1", port: 8080, basePath: ""))
        #expect(try BenchTarget(parsing: "http://[::1]:8080/object").hostHeader == "[::1]:8080")
        for bad in ["https://h/store", "h:1/store", "http://:80/x", "http://h:0/x", "http://h:99999/x", "http://h:x/"] {
            #expect(throws: BenchConfigurationError.self, "\(bad)") { try BenchTarget(parsing: bad) }
        }
    }

    @Test func configurationLimits() throws {
        var configuration = BenchConfiguration(
            target: BenchTarget(host: "127.0.0.1", port: 1, basePath: "/object"),
            mix: try OperationMix(parsing: "get=1"))
        try configuration.validate()
        #expect(configuration.prefill)
        // Keys are letters and digits within 32 characters: valid on every route family, /object included.
        #expect(configuration.keyName(999).allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) })
        #expect(configuration.keyName(999).count <= 32)

        configuration.keys = configuration.concurrency - 1
        #expect(throws: BenchConfigurationError.self) { try configuration.validate() }
        configuration.keys = 1000
        configuration.keyPrefix = "has-dash"
        #expect(throws: BenchConfigurationError.self) { try configuration.validate() }
        configuration.keyPrefix = String(repeating: "a", count: 30)
        #expect(throws: BenchConfigurationError.self) { try configuration.validate() }
        configuration.keyPrefix = "ok"
        configuration.rate = 0
        #expect(throws: BenchConfigurationError.self) { try configuration.validate() }
        configuration.rate = nil
        configuration.duration = .zero
        #expect(throws: BenchConfigurationError.self) { try configuration.validate() }

        let puts = BenchConfiguration(
            target: BenchTarget(host: "h", port: 1, basePath: ""), mix: try OperationMix(parsing: "put=1"))
        #expect(!puts.prefill)
    }

    @Test func rampStages() throws {
        var configuration = BenchConfiguration(
            target: BenchTarget(host: "h", port: 1, basePath: ""), mix: try OperationMix(parsing: "get=1"))
        configuration.concurrency = 64
        configuration.rampStages = 4
        #expect((0..<4).map { configuration.activeConnections(stage: $0) } == [16, 32, 48, 64])
        #expect(configuration.stageRate(stage: 0) == nil)
        configuration.rate = 1000
        #expect((0..<4).map { configuration.activeConnections(stage: $0) } == [64, 64, 64, 64])
        #expect((0..<4).map { configuration.stageRate(stage: $0)! } == [250, 500, 750, 1000])
    }
}
