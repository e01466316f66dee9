// SwiftNIO's UDP echo round trip, next to the plain C busy-poll baseline measured in the same run.
//
// Server and client each get their own single-threaded event loop group. The client sends a 64-byte datagram, waits
// for the echo, and repeats (closed loop, one message in flight), timing each round trip.
import CDemiBaselines
import Foundation
import NIOCore
import NIOPosix

final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }
}

final class PingHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>
    let remote: SocketAddress
    let total: Int
    let warmup: Int
    var done = 0
    var started: UInt64 = 0
    var samples: [UInt64] = []
    let finished: EventLoopPromise<[UInt64]>
    var payload: ByteBuffer

    init(remote: SocketAddress, total: Int, warmup: Int, finished: EventLoopPromise<[UInt64]>) {
        self.remote = remote
        self.total = total
        self.warmup = warmup
        self.finished = finished
        payload = ByteBuffer(repeating: 7, count: 64)
        samples.reserveCapacity(total)
    }

    func send(_ context: ChannelHandlerContext) {
        started = DispatchTime.now().uptimeNanoseconds
        context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: remote, data: payload)), promise: nil)
    }

    func channelActive(context: ChannelHandlerContext) { send(context) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let rtt = DispatchTime.now().uptimeNanoseconds - started
        if done >= warmup { samples.append(rtt) }
        done += 1
        if done < total { send(context) } else { finished.succeed(samples) }
    }
}

func percentile(_ s: [UInt64], _ p: Double) -> Double {
    let v = s.sorted()
    return Double(v[min(v.count - 1, Int(Double(v.count) * p))])
}

let count = Int(CommandLine.arguments.dropFirst().first ?? "") ?? 10_000
let warmup = 1000
let reps = 3
var cP50: [Double] = []
var nioP50: [Double] = []
var nioP99: [Double] = []
for _ in 0..<reps {
    var c = [UInt64](repeating: 0, count: count)
    let rc = c.withUnsafeMutableBufferPointer { demi_baseline_pingpong(0, 64, Int32(warmup), Int32(count), 1, 0, $0.baseAddress) }
    precondition(rc == 0, "C baseline failed: \(rc)")
    cP50.append(percentile(c, 0.5))

    let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let server = try DatagramBootstrap(group: serverGroup)
        .channelInitializer { $0.pipeline.addHandler(EchoHandler()) }
        .bind(host: "127.0.0.1", port: 0).wait()
    let promise = clientGroup.next().makePromise(of: [UInt64].self)
    let remote = server.localAddress!
    let client = try DatagramBootstrap(group: clientGroup)
        .channelInitializer { $0.pipeline.addHandler(PingHandler(remote: remote, total: warmup + count, warmup: warmup, finished: promise)) }
        .bind(host: "127.0.0.1", port: 0).wait()
    let samples = try promise.futureResult.wait()
    nioP50.append(percentile(samples, 0.5))
    nioP99.append(percentile(samples, 0.99))
    try client.close().wait()
    try server.close().wait()
    try clientGroup.syncShutdownGracefully()
    try serverGroup.syncShutdownGracefully()
}
func med(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
let c = med(cP50)
let n = med(nioP50)
print(String(format: "| C busy-poll sockets | udp | 64 | %.2f µs | | 1.00x |", c / 1000))
print(String(format: "| SwiftNIO 2.101 (NIOPosix, event loops) | udp | 64 | %.2f µs | p99 %.2f µs | %.2fx |", n / 1000, med(nioP99) / 1000, n / c))
