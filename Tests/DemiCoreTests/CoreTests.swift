import DemiCore
import Testing

@Suite struct AddressTests {
    @Test func parsesAndPrintsIPv4() {
        #expect(IPv4Address("198.18.0.1") == IPv4Address(198, 18, 0, 1))
        #expect(IPv4Address("198.18.0.1")?.description == "198.18.0.1")
        for bad in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "a.b.c.d", "1..2.3", "1.2.3.4 "] {
            #expect(IPv4Address(bad) == nil, "\(bad)")
        }
        #expect(IPv4Address.loopback.isLoopback)
        #expect(IPv4Address(224, 0, 0, 1).isMulticast)
        #expect(IPv4Address.broadcast.isBroadcast)
        #expect(IPv4Address.any.isUnspecified)
    }

    @Test func parsesSocketAddresses() {
        #expect(SocketAddressV4("127.0.0.1:8080") == SocketAddressV4(.loopback, 8080))
        #expect(SocketAddressV4("127.0.0.1:70000") == nil)
        #expect(SocketAddressV4("127.0.0.1") == nil)
        #expect(SocketAddressV4(.loopback, 1).description == "127.0.0.1:1")
    }

    @Test func parsesMACAddresses() {
        let m = MACAddress("02:00:00:aB:cd:ef")
        #expect(m == MACAddress(0x02, 0, 0, 0xAB, 0xCD, 0xEF))
        #expect(m?.description == "02:00:00:ab:cd:ef")
        #expect(MACAddress("02:00:00:ab:cd") == nil)
        #expect(MACAddress("02:00:00:ab:cd:xg") == nil)
        #expect(MACAddress.broadcast.isMulticast)
    }
}

@Suite struct ErrnoAndTimeTests {
    @Test func errnoNamesMatchLinux() {
        #expect(Errno.invalidArgument.rawValue == 22)
        #expect(Errno.badDescriptor.name == "EBADF")
        #expect(Errno.notSupported.name == "ENOTSUP")
        #expect(Errno(rawValue: 4242).name == "E4242")
        #expect(Errno.timedOut.description.hasPrefix("ETIMEDOUT"))
    }

    @Test func instantArithmeticSaturates() {
        let t = Instant(nanoseconds: 5)
        #expect((t + .nanoseconds(10)).rawValue == 15)
        #expect(Instant.distantFuture.adding(nanoseconds: 1) == .distantFuture)
        #expect(Duration.seconds(2).nanoseconds == 2_000_000_000)
        #expect(Duration.seconds(Int64.max).nanoseconds == .max)
        let a = Instant.now()
        let b = Instant.now()
        #expect(b >= a)
    }
}

@Suite struct DurationNanosecondsTests {
    @Test func fastAndSlowPathsAgree() {
        for d: Duration in [.zero, .nanoseconds(1), .nanoseconds(-1), .milliseconds(200), .seconds(-1), .seconds(9),
                            .seconds(10), .seconds(60), .seconds(-60), .nanoseconds(Int64.max), .nanoseconds(Int64.min)] {
            let (s, a) = d.components
            let expected = s * 1_000_000_000 + a / 1_000_000_000
            #expect(d.nanoseconds == expected, "\(d)")
        }
    }
}
