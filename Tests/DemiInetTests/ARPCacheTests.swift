import DemiCore
import DemiInet
import DemiWire
import Testing

let me = IPv4Address(198, 18, 0, 1)
let myMAC = MACAddress(2, 0, 0, 0, 0, 1)
let peer = IPv4Address(198, 18, 0, 2)
let peerMAC = MACAddress(2, 0, 0, 0, 0, 2)

func t(_ ms: Int64) -> Instant { Instant(nanoseconds: ms * 1_000_000) }

@Suite struct ARPCacheTests {
    @Test func resolveSendsOneRequestAndLearnsTheReply() {
        var arp = ARPCache(localIP: me, localMAC: myMAC)
        guard case .send(let req) = arp.resolve(peer, now: t(0)) else { Issue.record("no request"); return }
        #expect(req.operation == .request && req.targetIP == peer && req.senderIP == me)
        #expect(arp.resolve(peer, now: t(1)) == .waiting, "concurrent resolvers share one request")
        let reply = ARPPacket(operation: .reply, senderMAC: peerMAC, senderIP: peer, targetMAC: myMAC, targetIP: me)
        #expect(arp.receive(reply, now: t(2)) == nil)
        #expect(arp.resolve(peer, now: t(3)) == .resolved(peerMAC))
        #expect(arp.nextDeadline == nil)
    }

    @Test func retriesThenFails() {
        var c = ARPConfiguration()
        c.retries = 2
        c.requestTimeout = .milliseconds(100)
        var arp = ARPCache(localIP: me, localMAC: myMAC, configuration: c)
        _ = arp.resolve(peer, now: t(0))
        #expect(arp.poll(now: t(99)).isEmpty)
        #expect(arp.poll(now: t(100)).count == 1)  // retry 1
        #expect(arp.poll(now: t(200)).count == 1)  // retry 2
        #expect(arp.poll(now: t(300)) == [.failed(peer)])
        #expect(arp.nextDeadline == nil)
    }

    @Test func ttlIsEnforcedAndStaticEntriesNeverExpire() {
        var c = ARPConfiguration()
        c.cacheTTL = .seconds(10)
        let router = IPv4Address(198, 18, 0, 254)
        var arp = ARPCache(localIP: me, localMAC: myMAC, configuration: c, staticEntries: [MACAddress(2, 0, 0, 0, 0, 9): router])
        arp.insert(peer, peerMAC, now: t(0))
        #expect(arp.lookup(peer, now: t(9_999)) == peerMAC)
        #expect(arp.lookup(peer, now: t(10_000)) == nil, "expired")
        #expect(arp.lookup(router, now: t(1_000_000)) == MACAddress(2, 0, 0, 0, 0, 9))
        arp.insert(router, peerMAC, now: t(0))
        #expect(arp.lookup(router, now: t(0)) == MACAddress(2, 0, 0, 0, 0, 9), "static entries are not overwritten")
        #expect(arp.lookup(.broadcast, now: t(0)) == .broadcast)
    }

    @Test func answersRequestsForOurAddressOnly() {
        var arp = ARPCache(localIP: me, localMAC: myMAC)
        let ask = ARPPacket(operation: .request, senderMAC: peerMAC, senderIP: peer, targetMAC: .zero, targetIP: me)
        let reply = arp.receive(ask, now: t(0))
        #expect(reply == ARPPacket(operation: .reply, senderMAC: myMAC, senderIP: me, targetMAC: peerMAC, targetIP: peer))
        #expect(arp.lookup(peer, now: t(1)) == peerMAC, "the asker is learned")
        let other = ARPPacket(operation: .request, senderMAC: MACAddress(2, 0, 0, 0, 0, 7),
                              senderIP: IPv4Address(198, 18, 0, 7), targetMAC: .zero, targetIP: IPv4Address(198, 18, 0, 8))
        #expect(arp.receive(other, now: t(0)) == nil)
        #expect(arp.lookup(IPv4Address(198, 18, 0, 7), now: t(1)) == nil, "strangers talking to others are not learned")
        #expect(arp.announcement.senderIP == me && arp.announcement.targetIP == me)
    }
}
