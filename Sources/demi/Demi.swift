import ArgumentParser
import Demikernel
import Foundation
import Logging

@main
struct Demi: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demi",
        abstract: "Demikernel for Swift: echo servers, clients and benchmarks over any libOS.",
        discussion: """
            The libOS comes from --libos or the LIBOS environment variable (default: catnap, the kernel-socket \
            libOS); its configuration from CONFIG_PATH and environment overrides (see docs/ARCHITECTURE.md). \
            Errors name the errno (for example ECONNREFUSED). Logs go to standard error (--log-level).

            Examples:
              demi                                   quick loopback benchmark (same as: demi bench)
              demi echo --proto tcp --addr 127.0.0.1:12345 --cpu 1
              demi ping --proto tcp --addr 127.0.0.1:12345 --size 1024 --connections 4 --cpu 0
              LIBOS=catnap demi ping --poll-mode busy --count 100000
            The full harness (with SwiftNIO, throughput by size and SVG charts) is Benchmarks/ (demi-benchmarks); \
            scripts/benchmarks.sh regenerates docs/BENCHMARKS.md.
            """,
        subcommands: [Bench.self, Echo.self, Ping.self, SharedMemoryEcho.self, Goodput.self, FramePingPongCommand.self]
            + optionalSubcommands,
        defaultSubcommand: Bench.self
    )
}

/// Options shared by the commands that open a libOS.
struct LibOSOptions: ParsableArguments {
    @Option(help: "The libOS: catnap (kernel-sockets) or catmem (shared-memory). Default: $LIBOS, else catnap.")
    var libos: String?

    @Option(help: "How catnap polls blocked operations: busy, epoll or auto.")
    var pollMode: String?

    func make() throws -> LibOS {
        var config = try Configuration.fromEnvironment()
        if let p = pollMode {
            try config.set("poll_mode", p)
        }
        let name = try libos.map { try LibOSName(parsing: $0) }
            ?? (ProcessInfo.processInfo.environment["LIBOS"].map { try LibOSName(parsing: $0) } ?? .default)
        return try LibOS(name, configuration: config)
    }
}

enum TransportProtocol: String, ExpressibleByArgument, CaseIterable, Sendable {
    case udp, tcp
}

extension SocketAddressV4: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}


/// The tool's logger; `configureLogging` must run first for its level to apply.
nonisolated(unsafe) var logger = Logger(label: "demi")

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Options shared by the commands that log.
struct LoggingOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    /// Sends log records to standard error at the chosen level.
    func configure() {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        logger = Logger(label: "demi")
        logger.logLevel = level
    }
}

/// An error with what was being done when it happened (the errno's name stays in the message).
struct CommandError: Error, CustomStringConvertible {
    var description: String
}

/// Runs `body`, adding `what` to any error it throws: "connect to 127.0.0.1:9: ECONNREFUSED (Connection refused)".
func doing<T>(_ what: @autoclosure () -> String, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as CommandError { throw e } catch {
        throw CommandError(description: "\(what()): \(error)")
    }
}
