// Line charts as hand-written SVG (no dependencies): small multiples, one panel per workload,
// one line per allocator, min-max whiskers where the spread is known. The three charts of a run
// (ns/op by size, thread scaling, sawtooth RSS) are built from this one renderer in Charts.swift.
import Foundation

struct ChartSeries {
    var name: String
    var color: String
    /// (x, y, optional (min, max) whisker), in data units.
    var points: [(x: Double, y: Double, range: (Double, Double)?)]
    var dashed = false
    var markers = true
}

struct ChartPanel {
    var title: String
    var xLabel: String
    var yLabel: String
    /// Tick positions on x (data units); labels are the numbers themselves.
    var xTicks: [Double]
    var logX: Bool
    var series: [ChartSeries]
    /// Labels for `xTicks` (same count) when the numbers themselves mean nothing (commits).
    var xTickLabels: [String]? = nil
}

enum SVGChart {
    static let panelWidth = 460.0
    static let panelHeight = 300.0
    static let columns = 2
    static let margin = (left: 64.0, right: 16.0, top: 34.0, bottom: 46.0)

    /// The colour of each allocator, the same in every chart.
    static func color(_ a: AllocatorID) -> String {
        switch a {
        case .glibc: return "#7f7f7f"
        case .jemalloc: return "#1f77b4"
        case .mimalloc: return "#2ca02c"
        case .tcmalloc: return "#9467bd"
        case .slab: return "#d62728"
        case .slabNoCPU: return "#ff7f0e"
        case .slabFallback: return "#8c564b"
        case .kmalloc: return "#17becf"
        default:
            // A `preload:` peer: one of the palette's remaining colours, chosen by its name so it
            // keeps its colour from chart to chart.
            let spare = ["#e377c2", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39"]
            return spare[a.rawValue.utf8.reduce(0) { ($0 &* 31 &+ Int($1)) & 0xFFFF } % spare.count]
        }
    }

    static func render(title: String, subtitle: String, panels: [ChartPanel], legend: [(String, String)]) -> String {
        let cols = panels.isEmpty ? 1 : min(columns, panels.count)
        let rows = max(1, (panels.count + cols - 1) / cols)
        let header = 64.0
        let width = Double(cols) * panelWidth
        let height = header + Double(rows) * panelHeight + 10
        var s = """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(n(width))" height="\(n(height))" \
        viewBox="0 0 \(n(width)) \(n(height))" font-family="sans-serif" font-size="11">
        <rect x="0" y="0" width="\(n(width))" height="\(n(height))" fill="white"/>
        <text x="10" y="20" font-size="15" font-weight="bold">\(escape(title))</text>
        <text x="10" y="37" fill="#555">\(escape(subtitle))</text>

        """
        // Legend on one line under the subtitle.
        var lx = 10.0
        for (name, color) in legend {
            s += "<rect x=\"\(n(lx))\" y=\"46\" width=\"12\" height=\"12\" fill=\"\(color)\"/>"
            s += "<text x=\"\(n(lx + 16))\" y=\"56\">\(escape(name))</text>\n"
            lx += 24 + Double(name.count) * 7
        }
        if panels.isEmpty {
            s += "<text x=\"10\" y=\"\(n(header + 30))\" fill=\"#555\">no data in this run</text>\n"
        }
        for (i, panel) in panels.enumerated() {
            let ox = Double(i % cols) * panelWidth
            let oy = header + Double(i / cols) * panelHeight
            s += renderPanel(panel, x: ox, y: oy)
        }
        s += "</svg>\n"
        return s
    }

    static func renderPanel(_ p: ChartPanel, x ox: Double, y oy: Double) -> String {
        let plotX = ox + margin.left
        let plotY = oy + margin.top
        let plotW = panelWidth - margin.left - margin.right
        let plotH = panelHeight - margin.top - margin.bottom
        let allPoints = p.series.flatMap(\.points)
        let tx: (Double) -> Double = { p.logX ? log2(max($0, 1e-9)) : $0 }
        let xs = (allPoints.map(\.x) + p.xTicks).map(tx)
        var xMin = xs.min() ?? 0
        var xMax = xs.max() ?? 1
        if xMin == xMax { xMin -= 1; xMax += 1 }
        let yTop = niceCeiling(allPoints.map { max($0.y, $0.range?.1 ?? $0.y) }.filter(\.isFinite).max() ?? 1)
        func px(_ x: Double) -> Double { plotX + (tx(x) - xMin) / (xMax - xMin) * plotW }
        func py(_ y: Double) -> Double { plotY + plotH - min(max(y / yTop, 0), 1) * plotH }

        var s = "<g>\n"
        s += "<text x=\"\(n(ox + margin.left))\" y=\"\(n(oy + 20))\" font-size=\"13\" font-weight=\"bold\">\(escape(p.title))</text>\n"
        s += "<rect x=\"\(n(plotX))\" y=\"\(n(plotY))\" width=\"\(n(plotW))\" height=\"\(n(plotH))\" fill=\"none\" stroke=\"#bbb\"/>\n"
        // y grid: 5 steps from 0 to the nice top.
        for k in 0...5 {
            let v = yTop * Double(k) / 5
            let y = py(v)
            s += "<line x1=\"\(n(plotX))\" y1=\"\(n(y))\" x2=\"\(n(plotX + plotW))\" y2=\"\(n(y))\" stroke=\"#eee\"/>"
            s += "<text x=\"\(n(plotX - 6))\" y=\"\(n(y + 4))\" text-anchor=\"end\">\(escape(tick(v)))</text>\n"
        }
        for (i, t) in p.xTicks.enumerated() {
            let x = px(t)
            let label = p.xTickLabels.map { i < $0.count ? $0[i] : "" } ?? tick(t)
            s += "<line x1=\"\(n(x))\" y1=\"\(n(plotY + plotH))\" x2=\"\(n(x))\" y2=\"\(n(plotY + plotH + 4))\" stroke=\"#888\"/>"
            s += "<text x=\"\(n(x))\" y=\"\(n(plotY + plotH + 16))\" text-anchor=\"middle\">\(escape(label))</text>\n"
        }
        s += "<text x=\"\(n(plotX + plotW / 2))\" y=\"\(n(oy + panelHeight - 8))\" text-anchor=\"middle\" fill=\"#555\">\(escape(p.xLabel))</text>\n"
        let ly = plotY + plotH / 2
        s += "<text x=\"\(n(ox + 14))\" y=\"\(n(ly))\" text-anchor=\"middle\" fill=\"#555\" transform=\"rotate(-90 \(n(ox + 14)) \(n(ly)))\">\(escape(p.yLabel))</text>\n"
        for series in p.series {
            let pts = series.points.filter { $0.y.isFinite }.sorted { $0.x < $1.x }
            guard !pts.isEmpty else { continue }
            let path = pts.map { "\(n(px($0.x))),\(n(py($0.y)))" }.joined(separator: " ")
            let dash = series.dashed ? " stroke-dasharray=\"5,4\"" : ""
            s += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(series.color)\" stroke-width=\"1.8\"\(dash)><title>\(escape(series.name))</title></polyline>\n"
            for pt in pts {
                if let (lo, hi) = pt.range, lo.isFinite, hi.isFinite {
                    let x = px(pt.x)
                    s += "<line x1=\"\(n(x))\" y1=\"\(n(py(lo)))\" x2=\"\(n(x))\" y2=\"\(n(py(hi)))\" stroke=\"\(series.color)\" stroke-opacity=\"0.6\"/>"
                }
                if series.markers {
                    s += "<circle cx=\"\(n(px(pt.x)))\" cy=\"\(n(py(pt.y)))\" r=\"2.6\" fill=\"\(series.color)\"><title>\(escape(series.name)): \(escape(tick(pt.y)))</title></circle>"
                }
            }
            s += "\n"
        }
        s += "</g>\n"
        return s
    }

    /// 1, 2 or 5 times a power of ten, at or above `x`.
    static func niceCeiling(_ x: Double) -> Double {
        guard x.isFinite, x > 0 else { return 1 }
        let p = pow(10, floor(log10(x)))
        for m in [1.0, 2.0, 2.5, 5.0, 10.0] where m * p >= x { return m * p }
        return 10 * p
    }

    static func tick(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e9 { return String(Int(v)) }
        return abs(v) < 10 ? String(format: "%.2f", v) : String(format: "%.1f", v)
    }

    static func n(_ v: Double) -> String { String(format: "%.1f", v) }

    static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(c)
            }
        }
        return out
    }
}
