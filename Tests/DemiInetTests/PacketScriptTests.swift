import DemiCore
import DemiInet
import Foundation
import Testing

/// Runs every `PacketScripts/*.pkt` script (format: `PacketScriptRunner.swift`) against `TCPConnection`.
@Suite struct PacketScriptTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("PacketScripts")

    /// Scripts that show a known bug: name -> reason. They run in `knownIssues`, which is disabled.
    static let knownIssues: [String: String] = [:]

    static let allScripts: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasSuffix(".pkt") }.map { String($0.dropLast(4)) }.sorted()
    }()

    static let scriptNames: [String] = allScripts.filter { knownIssues[$0] == nil }

    static func run(_ name: String) throws {
        let text = try String(contentsOf: directory.appendingPathComponent(name + ".pkt"), encoding: .utf8)
        let script = PacketScript(name: name + ".pkt", text: text)
        do {
            try script.run()
        } catch {
            Issue.record(Comment(rawValue: error.description))
        }
    }

    @Test func scriptsAreFound() {
        #expect(Self.allScripts.count >= 10)
    }

    @Test(arguments: scriptNames)
    func script(_ name: String) throws {
        try Self.run(name)
    }

    @Test(.disabled("KNOWN ISSUE scripts: see PacketScriptTests.knownIssues"), arguments: knownIssues.keys.sorted())
    func knownIssue(_ name: String) throws {
        try Self.run(name)
    }

    // MARK: - The runner itself

    static let miniHandshake = """
        config sack=off timestamps=off window_scale=0 rcvbuf=65535 delayed_ack=off
        0.000 connect
        0.000 > S 0:0(0) win 65535 <mss 1460,wscale 0>
        0.010 < S. 0:0(0) ack 1 win 65535 <mss 1460>
        0.010 > . 1:1(0) ack 1 win 65535
        """

    @Test func runnerAcceptsACorrectScript() throws {
        try PacketScript(name: "mini", text: Self.miniHandshake).run()
    }

    @Test(arguments: [
        ("0.010 > . 1:1(0) ack 2", "ack 1, expected 2"),
        ("0.010 > . 1:1(0) ack 1 win 100", "win 65535, expected 100"),
        ("0.020 > . 1:1(0) ack 1", "sent at 0.010, expected at 0.020"),
        ("0.010 > P. 1:1(0) ack 1", "flags ., expected P."),
        ("0.010 > . 1:1(0) ack 1 <sackOK>", "sackOK false, expected true"),
        ("0.010 > . 1:1(0) ack 1\n0.010 > . 1:1(0) ack 1", "nothing was sent"),
        ("0.011 state SYN-SENT", "unexpected segment sent at 0.010"),
        ("0.010 state FIN-WAIT-1", "unexpected segment"),
    ])
    func runnerReportsMismatches(_ last: String, _ message: String) {
        let lines = Self.miniHandshake.split(separator: "\n").dropLast().joined(separator: "\n") + "\n" + last
        do {
            try PacketScript(name: "mini", text: lines).run()
            Issue.record("the runner accepted a wrong script")
        } catch {
            #expect(error.description.contains(message), "\(error.description)")
        }
    }

    @Test func runnerReportsTheLine() {
        let text = Self.miniHandshake + "\n1.000 state CLOSED"
        do {
            try PacketScript(name: "mini", text: text).run()
            Issue.record("the runner accepted a wrong script")
        } catch {
            #expect(error.description.hasPrefix("mini:6: state is ESTABLISHED, expected CLOSED"), "\(error.description)")
        }
    }
}
