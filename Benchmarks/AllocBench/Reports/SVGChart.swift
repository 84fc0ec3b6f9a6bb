// Line charts as hand-written SVG (no dependencies): small multiples, one panel per workload,
// one line per allocator, min-max whiskers where the spread is known. The three charts of a run
// (ns/op by size, thread scaling, sawtooth RSS) are built from this one renderer in Charts.swift.
//
// Text must fit: no SVG renderer wraps text, so the subtitle and the legend are laid out here,
// with a width estimate that errs wide (0.64 em a character; DejaVu Sans, what rsvg and most
// Linux browsers fall back to for sans-serif, averages under 0.6 em on these labels). The
// legend flows onto as many rows as it needs, and a chart of one panel spans both columns.
import Foundation

struct ChartSeries {
    var name: String
    var color: String
    /// (x, y, optional (min, max) whisker), in data units. Points with equal x keep their order
    /// (a vertical step: the sawtooth's drop at a release call).
    var points: [(x: Double, y: Double, range: (Double, Double)?)]
    var dashed = false
    var markers = true
    /// Line width in px. A wider line drawn under a narrower one of the same path stays visible
    /// as a coloured edge, so series that coincide (two allocators with the same RSS) both show.
    var strokeWidth = 1.8
    /// Points to mark with a triangle pointing at them (the sawtooth's release calls), each with
    /// the tooltip that says what happened there.
    var events: [(x: Double, y: Double, label: String)] = []
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
    /// x positions (data units) to draw a faint vertical line through, e.g. where every series
    /// has an event.
    var guides: [Double] = []
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
        case .slabBare: return "#f7b6d2"
        default:
            // A `preload:` peer: one of the palette's remaining colours, chosen by its name so it
            // keeps its colour from chart to chart.
            let spare = ["#e377c2", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39"]
            return spare[a.rawValue.utf8.reduce(0) { ($0 &* 31 &+ Int($1)) & 0xFFFF } % spare.count]
        }
    }

    /// Estimated width of `text` at `fontSize` px: 0.64 em a character, wider than the labels
    /// really are (see the top of the file).
    static func textWidth(_ text: String, fontSize: Double = 11) -> Double { Double(text.count) * fontSize * 0.64 }

    /// `text` broken at spaces into lines of at most `width` px (a word longer than that gets a
    /// line of its own).
    static func wrap(_ text: String, width: Double, fontSize: Double = 11) -> [String] {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ", omittingEmptySubsequences: false) {
            let candidate = line.isEmpty ? String(word) : line + " " + word
            if !line.isEmpty && textWidth(candidate, fontSize: fontSize) > width {
                lines.append(line)
                line = String(word)
            } else {
                line = candidate
            }
        }
        lines.append(line)
        return lines
    }

    /// `text`, shortened with an ellipsis when it is wider than `width` px.
    static func truncate(_ text: String, width: Double, fontSize: Double = 11) -> String {
        guard textWidth(text, fontSize: fontSize) > width else { return text }
        let fits = max(Int(width / (fontSize * 0.64)) - 1, 0)
        return String(text.prefix(fits)) + "…"
    }

    /// The legend's entries flowed into rows (an entry wider than a row is shortened) across `width`: each entry's swatch position, and
    /// the number of rows.
    static func legendLayout(_ legend: [(String, String)], width: Double, top: Double)
        -> (entries: [(name: String, color: String, x: Double, y: Double)], rows: Int) {
        let left = 10.0, right = width - 10, rowHeight = 16.0
        var entries: [(name: String, color: String, x: Double, y: Double)] = []
        var x = left, row = 0
        for (full, color) in legend {
            let name = truncate(full, width: right - left - 16)
            let entryWidth = 16 + textWidth(name)
            if x > left && x + entryWidth > right {
                row += 1
                x = left
            }
            entries.append((name, color, x, top + Double(row) * rowHeight))
            x += entryWidth + 12
        }
        return (entries, legend.isEmpty ? 0 : row + 1)
    }

    static func render(title: String, subtitle: String, panels: [ChartPanel], legend: [(String, String)]) -> String {
        let cols = panels.isEmpty ? 1 : min(columns, panels.count)
        let rows = max(1, (panels.count + cols - 1) / cols)
        // One panel spans both columns: the chart is never too narrow for its own legend.
        let panelW = cols == 1 ? Double(columns) * panelWidth : panelWidth
        let width = Double(cols) * panelW
        let subtitleLines = wrap(subtitle, width: width - 20)
        let legendTop = 37 + Double(subtitleLines.count - 1) * 14 + 9
        let layout = legendLayout(legend, width: width, top: legendTop)
        let header = legendTop + Double(max(layout.rows, 1)) * 16 + 2
        let height = header + Double(rows) * panelHeight + 10
        var s = """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(n(width))" height="\(n(height))" \
        viewBox="0 0 \(n(width)) \(n(height))" font-family="sans-serif" font-size="11">
        <rect x="0" y="0" width="\(n(width))" height="\(n(height))" fill="white"/>
        <text x="10" y="20" font-size="15" font-weight="bold">\(escape(title))</text>

        """
        for (k, line) in subtitleLines.enumerated() {
            s += "<text x=\"10\" y=\"\(n(37 + Double(k) * 14))\" fill=\"#555\" class=\"subtitle\">\(escape(line))</text>\n"
        }
        for e in layout.entries {
            s += "<rect x=\"\(n(e.x))\" y=\"\(n(e.y))\" width=\"12\" height=\"12\" fill=\"\(e.color)\"/>"
            s += "<text x=\"\(n(e.x + 16))\" y=\"\(n(e.y + 10))\" class=\"legend\">\(escape(e.name))</text>\n"
        }
        if panels.isEmpty {
            s += "<text x=\"10\" y=\"\(n(header + 30))\" fill=\"#555\">no data in this run</text>\n"
        }
        for (i, panel) in panels.enumerated() {
            let ox = Double(i % cols) * panelW
            let oy = header + Double(i / cols) * panelHeight
            s += renderPanel(panel, x: ox, y: oy, width: panelW)
        }
        s += "</svg>\n"
        return s
    }

    static func renderPanel(_ p: ChartPanel, x ox: Double, y oy: Double, width panelWidth: Double = panelWidth) -> String {
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
        for g in p.guides {
            s += "<line x1=\"\(n(px(g)))\" y1=\"\(n(plotY))\" x2=\"\(n(px(g)))\" y2=\"\(n(plotY + plotH))\" stroke=\"#ccc\" stroke-dasharray=\"2,3\"/>\n"
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
            // Sorted by x, points of equal x in their given order.
            let pts = series.points.enumerated().filter { $0.element.y.isFinite }
                .sorted { ($0.element.x, $0.offset) < ($1.element.x, $1.offset) }.map(\.element)
            guard !pts.isEmpty else { continue }
            let path = pts.map { "\(n(px($0.x))),\(n(py($0.y)))" }.joined(separator: " ")
            let dash = series.dashed ? " stroke-dasharray=\"5,4\"" : ""
            s += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(series.color)\" stroke-width=\"\(n(series.strokeWidth))\"\(dash)><title>\(escape(series.name))</title></polyline>\n"
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
        // Event markers last, over every line: a triangle above the point, pointing down at it.
        for series in p.series {
            for e in series.events where e.y.isFinite {
                let x = px(e.x), y = py(e.y)
                s += "<path class=\"event\" d=\"M\(n(x - 4.5)),\(n(y - 10)) L\(n(x + 4.5)),\(n(y - 10)) L\(n(x)),\(n(y - 2)) Z\" fill=\"\(series.color)\" stroke=\"white\" stroke-width=\"0.6\"><title>\(escape(e.label))</title></path>\n"
            }
        }
        s += "</g>\n"
        return s
    }

    /// 1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten, at or above `x`: the top of the y
    /// axis, whose five grid steps then fall on round numbers, with at most a third of the
    /// plot left empty above the highest point.
    static func niceCeiling(_ x: Double) -> Double {
        guard x.isFinite, x > 0 else { return 1 }
        let p = pow(10, floor(log10(x)))
        for m in [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0] where m * p >= x { return m * p }
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
