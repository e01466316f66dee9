import Foundation

/// Self-contained SVG charts of a report (no fonts or scripts to fetch).
enum Charts {
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }

    static func color(_ key: String) -> String {
        if key.hasPrefix("c-blocking") { return "#c7c7c7" }
        if key.hasPrefix("c-") { return "#7f7f7f" }
        if key.hasPrefix("catnap-busy") { return "#1f77b4" }
        if key.hasPrefix("catnap-auto") { return "#4c9bd6" }
        if key.hasPrefix("catnap-epoll") { return "#9ecae1" }
        if key.hasPrefix("nio") { return "#ff7f0e" }
        return "#2ca02c"
    }

    /// The echo figure, like the paper's: one horizontal bar per system (p50 round trip), grouped by protocol, with
    /// the range of per-run p50s as a whisker and the ratio to the C baseline as a label.
    static func echo(_ r: Report) -> String {
        let rows = r.echo
        let left = 250.0, right = 210.0, barH = 22.0, gap = 8.0, groupGap = 26.0, top = 58.0
        let width = 900.0
        let plotW = width - left - right
        let groups = Dictionary(grouping: rows, by: { "\($0.proto) \($0.size)" })
        let order = rows.reduce(into: [String]()) { if !$0.contains("\($1.proto) \($1.size)") { $0.append("\($1.proto) \($1.size)") } }
        let height = top + Double(rows.count) * (barH + gap) + Double(order.count) * groupGap + 50
        let maxV = (rows.map { max($0.p50.max, $0.p50.median) }.max() ?? 1) * 1.05
        // Axis ticks in µs.
        let stepUs = niceStep(maxV / 1000 / 6)
        var s = svgHeader(width, height)
        s += text(width / 2, 24, "Echo round trip, p50 (closed loop, one message in flight, 127.0.0.1)", size: 16,
                  anchor: "middle", weight: "bold")
        s += text(width / 2, 42, "\(r.machine.cpus) vCPUs, \(escape(r.machine.cpuModel)), median of \(r.settings.repetitions) runs; whisker: per-run range; label: ratio to C busy-poll",
                  size: 11, anchor: "middle", fill: "#555")
        var y = top
        for g in order {
            let list = groups[g] ?? []
            let first = list.first!
            s += text(10, y + 14, "\(first.proto.uppercased()) \(formatSize(first.size))", size: 13, weight: "bold")
            y += groupGap - 6
            for e in list {
                let w = plotW * e.p50.median / maxV
                s += text(left - 8, y + barH * 0.7, escape(e.system), size: 12, anchor: "end")
                s += "<rect x=\"\(f(left))\" y=\"\(f(y))\" width=\"\(f(max(w, 1)))\" height=\"\(f(barH))\" fill=\"\(color(e.key))\"/>\n"
                if e.p50.runs.count > 1 {
                    let x0 = left + plotW * e.p50.min / maxV, x1 = left + plotW * e.p50.max / maxV
                    let cy = y + barH / 2
                    s += "<line x1=\"\(f(x0))\" y1=\"\(f(cy))\" x2=\"\(f(x1))\" y2=\"\(f(cy))\" stroke=\"#222\" stroke-width=\"1.2\"/>\n"
                    s += "<line x1=\"\(f(x0))\" y1=\"\(f(cy - 5))\" x2=\"\(f(x0))\" y2=\"\(f(cy + 5))\" stroke=\"#222\" stroke-width=\"1.2\"/>\n"
                    s += "<line x1=\"\(f(x1))\" y1=\"\(f(cy - 5))\" x2=\"\(f(x1))\" y2=\"\(f(cy + 5))\" stroke=\"#222\" stroke-width=\"1.2\"/>\n"
                }
                let labelX = left + plotW * max(e.p50.median, e.p50.max) / maxV + 8
                var label = formatNs(e.p50.median)
                if let ratio = e.p50VsC { label += "  (\(formatRatio(ratio)))" }
                s += text(labelX, y + barH * 0.7, label, size: 12)
                y += barH + gap
            }
            y += 6
        }
        // Axis.
        let axisY = y + 4
        s += "<line x1=\"\(f(left))\" y1=\"\(f(axisY))\" x2=\"\(f(left + plotW))\" y2=\"\(f(axisY))\" stroke=\"#333\"/>\n"
        var t = 0.0
        while t * 1000 <= maxV {
            let x = left + plotW * t * 1000 / maxV
            s += "<line x1=\"\(f(x))\" y1=\"\(f(top))\" x2=\"\(f(x))\" y2=\"\(f(axisY + 4))\" stroke=\"#ddd\"/>\n"
            s += text(x, axisY + 18, t == t.rounded() ? String(format: "%.0f", t) : String(format: "%.1f", t), size: 11, anchor: "middle")
            t += stepUs
        }
        s += text(left + plotW / 2, axisY + 36, "µs", size: 12, anchor: "middle")
        return s + "</svg>\n"
    }

    /// TCP throughput by message size: grouped vertical bars, logarithmic Gbit/s axis.
    static func throughput(_ r: Report) -> String {
        let sizes = r.throughput.reduce(into: [Int]()) { if !$0.contains($1.size) { $0.append($1.size) } }
        let systems = r.throughput.reduce(into: [(String, String)]()) { acc, t in
            if !acc.contains(where: { $0.1 == t.key }) { acc.append((t.system, t.key)) }
        }
        guard !sizes.isEmpty, !systems.isEmpty else { return svgHeader(10, 10) + "</svg>\n" }
        let width = 900.0, height = 440.0, left = 70.0, right = 20.0, top = 60.0, bottom = 90.0
        let plotW = width - left - right, plotH = height - top - bottom
        let values = r.throughput.map(\.gbitPerSecond.median).filter { $0 > 0 }
        let lo = pow(10, floor(log10(values.min() ?? 0.1))), hi = pow(10, ceil(log10(values.max() ?? 10)))
        func yOf(_ v: Double) -> Double {
            top + plotH * (1 - (log10(max(v, lo)) - log10(lo)) / (log10(hi) - log10(lo)))
        }
        var s = svgHeader(width, height)
        s += text(width / 2, 24, "TCP throughput by message size (one connection, one direction, 127.0.0.1)", size: 16,
                  anchor: "middle", weight: "bold")
        s += text(width / 2, 42, "median of \(r.settings.repetitions) runs; logarithmic axis; label on catnap: ratio to C busy-poll",
                  size: 11, anchor: "middle", fill: "#555")
        var d = lo
        while d <= hi * 1.0001 {
            let y = yOf(d)
            s += "<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(left + plotW))\" y2=\"\(f(y))\" stroke=\"#ddd\"/>\n"
            s += text(left - 6, y + 4, d >= 1 ? String(format: "%.0f", d) : String(format: "%g", d), size: 11, anchor: "end")
            d *= 10
        }
        s += text(18, top + plotH / 2, "Gbit/s", size: 12, anchor: "middle", rotate: true)
        let groupW = plotW / Double(sizes.count)
        let barW = min(28, (groupW - 16) / Double(systems.count))
        for (gi, size) in sizes.enumerated() {
            let gx = left + groupW * Double(gi) + (groupW - barW * Double(systems.count)) / 2
            for (si, sys) in systems.enumerated() {
                guard let t = r.throughput.first(where: { $0.size == size && $0.key == sys.1 }) else { continue }
                let x = gx + barW * Double(si)
                let y = yOf(t.gbitPerSecond.median)
                s += "<rect x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(barW - 2))\" height=\"\(f(top + plotH - y))\" fill=\"\(color(sys.1))\"/>\n"
                if let ratio = t.vsC, !sys.1.hasPrefix("c-") {
                    s += text(x + barW / 2, y - 4, String(format: "%.2f", ratio), size: 9, anchor: "middle")
                }
            }
            s += text(left + groupW * (Double(gi) + 0.5), top + plotH + 18, formatSize(size), size: 12, anchor: "middle")
        }
        s += "<line x1=\"\(f(left))\" y1=\"\(f(top + plotH))\" x2=\"\(f(left + plotW))\" y2=\"\(f(top + plotH))\" stroke=\"#333\"/>\n"
        // Legend.
        var lx = left
        let ly = height - 40
        for sys in systems {
            s += "<rect x=\"\(f(lx))\" y=\"\(f(ly - 10))\" width=\"12\" height=\"12\" fill=\"\(color(sys.1))\"/>\n"
            s += text(lx + 16, ly, escape(sys.0), size: 12)
            lx += 30 + Double(sys.0.count) * 6.6
        }
        return s + "</svg>\n"
    }

    /// Many clients: aggregate messages per second by client count, one group of bars per protocol and count (C
    /// busy-poll and catnap side by side), with the ratio to C over each catnap bar.
    static func manyClients(_ r: Report) -> String {
        let rows = r.manyClients
        let groups = rows.reduce(into: [(String, Int)]()) { acc, m in
            if !acc.contains(where: { $0.0 == m.proto && $0.1 == m.connections }) { acc.append((m.proto, m.connections)) }
        }
        let systems = rows.reduce(into: [(String, String)]()) { acc, m in
            if !acc.contains(where: { $0.1 == m.key }) { acc.append((m.system, m.key)) }
        }
        guard !groups.isEmpty, !systems.isEmpty else { return svgHeader(10, 10) + "</svg>\n" }
        let width = 900.0, height = 420.0, left = 80.0, right = 20.0, top = 60.0, bottom = 90.0
        let plotW = width - left - right, plotH = height - top - bottom
        let maxV = (rows.map { max($0.messagesPerSecond.median, $0.messagesPerSecond.max) }.max() ?? 1) * 1.08
        let step = niceStep(maxV / 6)
        func yOf(_ v: Double) -> Double { top + plotH * (1 - v / maxV) }
        var s = svgHeader(width, height)
        s += text(width / 2, 24, "Many clients: aggregate 64 B echo messages/s, one client thread (127.0.0.1)", size: 16,
                  anchor: "middle", weight: "bold")
        s += text(width / 2, 42, "N TCP connections or N UDP sockets, one message in flight on each; median of \(r.settings.repetitions) runs; whisker: per-run range; label: ratio to C busy-poll",
                  size: 11, anchor: "middle", fill: "#555")
        var t = 0.0
        while t <= maxV {
            let y = yOf(t)
            s += "<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(left + plotW))\" y2=\"\(f(y))\" stroke=\"#ddd\"/>\n"
            s += text(left - 6, y + 4, String(format: "%.0fk", t / 1000), size: 11, anchor: "end")
            t += step
        }
        s += text(18, top + plotH / 2, "messages/s", size: 12, anchor: "middle", rotate: true)
        let groupW = plotW / Double(groups.count)
        let barW = min(36, (groupW - 16) / Double(systems.count))
        for (gi, g) in groups.enumerated() {
            let gx = left + groupW * Double(gi) + (groupW - barW * Double(systems.count)) / 2
            for (si, sys) in systems.enumerated() {
                guard let m = rows.first(where: { $0.proto == g.0 && $0.connections == g.1 && $0.key == sys.1 })
                else { continue }
                let x = gx + barW * Double(si)
                let y = yOf(m.messagesPerSecond.median)
                s += "<rect x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(barW - 2))\" height=\"\(f(top + plotH - y))\" fill=\"\(color(sys.1))\"/>\n"
                if m.messagesPerSecond.runs.count > 1 {
                    let cx = x + (barW - 2) / 2
                    let y0 = yOf(m.messagesPerSecond.min), y1 = yOf(m.messagesPerSecond.max)
                    s += "<line x1=\"\(f(cx))\" y1=\"\(f(y0))\" x2=\"\(f(cx))\" y2=\"\(f(y1))\" stroke=\"#222\" stroke-width=\"1.2\"/>\n"
                }
                if let ratio = m.rateVsC, !sys.1.hasPrefix("c-") {
                    s += text(x + barW / 2, min(y, yOf(m.messagesPerSecond.max)) - 4, String(format: "%.2f", ratio),
                              size: 10, anchor: "middle")
                }
            }
            s += text(left + groupW * (Double(gi) + 0.5), top + plotH + 18, "\(g.0.uppercased()) \(g.1)", size: 12,
                      anchor: "middle")
        }
        s += "<line x1=\"\(f(left))\" y1=\"\(f(top + plotH))\" x2=\"\(f(left + plotW))\" y2=\"\(f(top + plotH))\" stroke=\"#333\"/>\n"
        s += text(left + plotW / 2, top + plotH + 36, "protocol, clients", size: 12, anchor: "middle")
        var lx = left
        let ly = height - 30
        for sys in systems {
            s += "<rect x=\"\(f(lx))\" y=\"\(f(ly - 10))\" width=\"12\" height=\"12\" fill=\"\(color(sys.1))\"/>\n"
            s += text(lx + 16, ly, escape(sys.0), size: 12)
            lx += 30 + Double(sys.0.count) * 6.6
        }
        return s + "</svg>\n"
    }

    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0 else { return 1 }
        let p = pow(10, floor(log10(raw)))
        for m in [1.0, 2, 5, 10] where m * p >= raw { return m * p }
        return 10 * p
    }

    static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    static func svgHeader(_ w: Double, _ h: Double) -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(f(w))\" height=\"\(f(h))\" viewBox=\"0 0 \(f(w)) \(f(h))\" "
            + "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
            + "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    }

    static func text(_ x: Double, _ y: Double, _ s: String, size: Int, anchor: String = "start",
                     weight: String = "normal", fill: String = "#111", rotate: Bool = false) -> String {
        let r = rotate ? " transform=\"rotate(-90 \(f(x)) \(f(y)))\"" : ""
        return "<text x=\"\(f(x))\" y=\"\(f(y))\" font-size=\"\(size)\" text-anchor=\"\(anchor)\" font-weight=\"\(weight)\" fill=\"\(fill)\"\(r)>\(s)</text>\n"
    }
}
