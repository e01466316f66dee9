import Demikernel
import Foundation
import Testing

@Suite struct ConfigurationTests {
    @Test func libOSNamesAcceptCodenamesAndDescriptiveNames() throws {
        for spelling in ["catnap", "CATNAP", "kernel-sockets", " Kernel "] {
            #expect(try LibOSName(parsing: spelling) == .kernelSockets)
        }
        do {
            _ = try LibOSName(parsing: "catfish")
            Issue.record("accepted an unknown libOS")
        } catch {
            #expect(error.description.contains("catfish"))
            #expect(error.description.contains("catnap"), "the error lists what is available")
        }
    }

    @Test func defaultsNeedNoFile() throws {
        let c = try Configuration.fromEnvironment([:])
        #expect(c.noDelay && c.mtu == 1500 && c.pollMode == .auto)
        #expect(c.localIPv4Address == nil)
    }

    @Test func upstreamYAMLSchema() throws {
        var c = Configuration()
        try c.apply(yaml: """
            demikernel:
              local_ipv4_addr: 198.18.0.1
              local_link_addr: "02:00:00:00:00:01"
            raw_socket:
              linux_interface_name: veth-demi0
            dpdk:
              eal_init: ["", "--no-huge", "--no-pci"]
            tcp_socket_options:
              keepalive: { enabled: true, time_millis: 0, interval: 0 }
              linger: { enabled: true, time_seconds: 3 }
              nodelay: false
            inetstack_config:
              mtu: 9000
              mss: 8960
              enable_jumbo_frames: true
              udp_checksum_offload: true
              arp_request_retries: 4
              arp_request_timeout: 2
              arp_cache_ttl: 15
              arp_table:
                "02:00:00:00:00:02": 198.18.0.2
            catnap:
              poll_mode: busy
            unknown_section: { whatever: 1 }
            """)
        #expect(c.localIPv4Address == IPv4Address(198, 18, 0, 1))
        #expect(c.localLinkAddress == MACAddress(2, 0, 0, 0, 0, 1))
        #expect(c.interfaceName == "veth-demi0")
        #expect(c.ealArguments == ["", "--no-huge", "--no-pci"])
        #expect(c.keepAlive && c.linger == 3 && !c.noDelay)
        #expect(c.mtu == 9000 && c.mss == 8960 && c.enableJumboFrames && c.udpChecksumOffload)
        #expect(c.arpRequestRetries == 4 && c.arpRequestTimeoutSeconds == 2 && c.arpCacheTTLSeconds == 15)
        #expect(c.arpTable[MACAddress(2, 0, 0, 0, 0, 2)] == IPv4Address(198, 18, 0, 2))
        #expect(c.pollMode == .busy)
        #expect(c.kernelSocketOptions.pollMode == .busy && c.kernelSocketOptions.linger == 3)
    }

    @Test func catnipZeroCopyKey() throws {
        var c = Configuration()
        #expect(c.dpdkZeroCopy)
        try c.apply(yaml: "dpdk:\n  eal_init: [\"\", \"--no-huge\"]\n  zero_copy: false\n")
        #expect(!c.dpdkZeroCopy && c.ealArguments == ["", "--no-huge"])
        try c.apply(environment: ["DPDK_ZERO_COPY": "on"])
        #expect(c.dpdkZeroCopy)
        #expect(throws: ConfigurationError.self) { try c.apply(environment: ["DPDK_ZERO_COPY": "maybe"]) }
    }

    @Test func environmentOverridesTheFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("demi-config-\(getpid()).yaml").path
        try "inetstack_config:\n  mtu: 1400\ndemikernel:\n  local_ipv4_addr: 198.18.0.5\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let c = try Configuration.fromEnvironment(["CONFIG_PATH": path, "MTU": "1280", "NODELAY": "false"])
        #expect(c.mtu == 1280 && !c.noDelay)
        #expect(c.localIPv4Address == IPv4Address(198, 18, 0, 5))
    }

    @Test func badValuesAreClearErrors() {
        var c = Configuration()
        #expect(throws: ConfigurationError.self) { try c.apply(yaml: "inetstack_config:\n  mtu: 12\n") }
        #expect(throws: ConfigurationError.self) { try c.apply(yaml: "demikernel:\n  local_ipv4_addr: 0.0.0.0\n") }
        #expect(throws: ConfigurationError.self) { try c.apply(yaml: "[unclosed") }
        #expect(throws: ConfigurationError.self) { try c.apply(yaml: "- a list\n- not a mapping\n") }
        #expect(throws: ConfigurationError.self) { try Configuration.fromEnvironment(["CONFIG_PATH": "/nonexistent/x.yaml"]) }
        #expect(throws: ConfigurationError.self) { try Configuration.fromEnvironment(["POLL_MODE": "sometimes"]) }
        #expect(throws: ConfigurationError.self) { try Configuration.fromEnvironment(["MSS": "100"]) }
    }

    @Test func everyPollModeRunsAnEcho() throws {
        for mode in KernelPollMode.allCases {
            var c = Configuration()
            c.pollMode = mode
            let os = try LibOS(.kernelSockets, configuration: c)
            let a = try os.socket(.inet, .datagram)
            try os.bind(a, to: SocketAddressV4(.loopback, 0))
            let b = try os.socket(.inet, .datagram)
            try os.bind(b, to: SocketAddressV4(.loopback, 0))
            // Pops first, so they block and must be woken by the chosen mechanism.
            let pops = try (0..<20).map { _ in try os.pop(a) }
            for i in 0..<20 {
                let sga = try os.sgaalloc(copying: [UInt8(i)])
                _ = try os.pushTo(b, sga, to: try os.localAddress(a))
                try os.sgafree(sga)
            }
            for (i, qt) in pops.enumerated() {
                let r = try os.wait(qt, timeout: .seconds(10))
                #expect(r.sga?.bytes == [UInt8(i)], "\(mode)")
                try os.sgafree(r.sga!)
            }
        }
    }
}
