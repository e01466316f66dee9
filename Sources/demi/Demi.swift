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
            libOS); its configuration from CONFIG_PATH and environment overrides (see docs/ARCHITECTURE.md).
            """,
        subcommands: [Bench.self, Echo.self, Ping.self, SharedMemoryEcho.self],
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


let logger = Logger(label: "demi")
