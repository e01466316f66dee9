import CDemiBaselines
import Foundation
import NIOCore
import NIOPosix

/// SwiftNIO as a baseline: an echo server and a closed-loop client, each on its own single-threaded event loop group
/// (NIOPosix, epoll), the loop threads pinned like the other systems' threads. NIO blocks in epoll_wait when idle;
/// it does not busy-poll.
enum NIOBaseline {
    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    final class UDPEcho: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            context.writeAndFlush(data, promise: nil)
        }
    }

    final class TCPEcho: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.write(data, promise: nil) }
        func channelReadComplete(context: ChannelHandlerContext) { context.flush() }
    }

    /// The client's state: sends one message, waits for the whole echo, times it, repeats.
    final class PingState {
        let size: Int
        let total: Int
        let warmup: Int
        let finished: EventLoopPromise<[UInt64]>
        var done = 0
        var got = 0
        var started: UInt64 = 0
        var samples: [UInt64] = []
        let payload: ByteBuffer

        init(size: Int, count: Int, warmup: Int, finished: EventLoopPromise<[UInt64]>) {
            self.size = size
            total = warmup + count
            self.warmup = warmup
            self.finished = finished
            payload = ByteBuffer(repeating: 0x5a, count: size)
            samples.reserveCapacity(count)
        }

        /// Starts a round trip.
        func start() {
            got = 0
            started = NIOBaseline.now()
        }

        /// Counts `bytes` of echo; true if another message should be sent.
        func received(_ bytes: Int) -> Bool {
            got += bytes
            guard got >= size else { return false }
            let rtt = NIOBaseline.now() - started
            if done >= warmup { samples.append(rtt) }
            done += 1
            if done < total { return true }
            finished.succeed(samples)
            return false
        }
    }

    final class UDPPinger: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>
        let state: PingState
        let remote: SocketAddress

        init(_ state: PingState, remote: SocketAddress) {
            self.state = state
            self.remote = remote
        }

        func send(_ context: ChannelHandlerContext) {
            state.start()
            context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: remote, data: state.payload)),
                                  promise: nil)
        }

        func channelActive(context: ChannelHandlerContext) { send(context) }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if state.received(unwrapInboundIn(data).data.readableBytes) { send(context) }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            state.finished.fail(error)
            context.close(promise: nil)
        }
    }

    final class TCPPinger: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let state: PingState

        init(_ state: PingState) { self.state = state }

        func send(_ context: ChannelHandlerContext) {
            state.start()
            context.writeAndFlush(wrapOutboundOut(state.payload), promise: nil)
        }

        func channelActive(context: ChannelHandlerContext) { send(context) }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if state.received(unwrapInboundIn(data).readableBytes) { send(context) }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            state.finished.fail(error)
            context.close(promise: nil)
        }
    }

    static func pinnedGroup(_ cpu: Int32) throws -> MultiThreadedEventLoopGroup {
        let g = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        _ = try g.next().submit { demi_baseline_pin(cpu) }.wait()
        return g
    }

    /// One closed-loop echo run over UDP or TCP.
    static func echo(tcp: Bool, size: Int, count: Int, warmup: Int, cpus: (Int32, Int32)) throws -> RunLatency {
        let serverGroup = try pinnedGroup(cpus.0)
        let clientGroup = try pinnedGroup(cpus.1)
        defer {
            try? clientGroup.syncShutdownGracefully()
            try? serverGroup.syncShutdownGracefully()
        }
        let promise = clientGroup.next().makePromise(of: [UInt64].self)
        let server: Channel
        let client: Channel
        if tcp {
            server = try ServerBootstrap(group: serverGroup)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(TCPEcho()) }
                }
                .bind(host: "127.0.0.1", port: 0).wait()
            client = try ClientBootstrap(group: clientGroup)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try ch.pipeline.syncOperations.addHandler(
                            TCPPinger(PingState(size: size, count: count, warmup: warmup, finished: promise)))
                    }
                }
                .connect(to: server.localAddress!).wait()
        } else {
            server = try DatagramBootstrap(group: serverGroup)
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(UDPEcho()) }
                }
                .bind(host: "127.0.0.1", port: 0).wait()
            let remote = server.localAddress!
            client = try DatagramBootstrap(group: clientGroup)
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try ch.pipeline.syncOperations.addHandler(
                            UDPPinger(PingState(size: size, count: count, warmup: warmup, finished: promise),
                                      remote: remote))
                    }
                }
                .bind(host: "127.0.0.1", port: 0).wait()
        }
        // Bounded: a lost datagram or a stuck peer fails the run after 60 s instead of hanging.
        let timeout = clientGroup.next().scheduleTask(in: .seconds(60)) {
            promise.fail(ChannelError.connectTimeout(.seconds(60)))
        }
        let result = Result { try promise.futureResult.wait() }
        timeout.cancel()
        try? client.close().wait()
        try? server.close().wait()
        return RunLatency(try result.get())
    }
}
