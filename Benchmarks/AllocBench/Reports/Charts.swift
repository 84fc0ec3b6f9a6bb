// The run's three charts. Each is written even when the run has no data for it (it then says so),
// so that a run always leaves the same set of files behind.

public enum Charts {
    public static let fileNames = ["ns_per_op_by_size.svg", "thread_scaling.svg", "sawtooth_rss.svg"]

    /// File name -> SVG text.
    public static func render(_ record: RunRecord) -> [(name: String, svg: String)] {
        let run = RunSummary(record)
        return [
            ("ns_per_op_by_size.svg", nsPerOpBySize(record, run)),
            ("thread_scaling.svg", threadScaling(record, run)),
            ("sawtooth_rss.svg", sawtoothRSS(record, run)),
        ]
    }

    static func legend(_ allocators: [AllocatorID]) -> [(String, String)] {
        allocators.map { ($0.name, SVGChart.color($0)) }
    }

    /// The workloads whose ns/op is plotted against size: the pair and the batches; failing
    /// those (a run restricted to other workloads), every one-thread workload with several sizes.
    static func sizeWorkloads(_ run: RunSummary) -> [String] {
        let multiSize = run.workloads.filter { w in Set(run.keys(of: w).filter { $0.threads == 1 }.map(\.size)).count > 1 }
        let preferred = multiSize.filter { $0 == "pair" || $0.hasPrefix("batch") }
        return preferred.isEmpty ? multiSize : preferred
    }

    static func nsPerOpBySize(_ record: RunRecord, _ run: RunSummary) -> String {
        var panels: [ChartPanel] = []
        for w in sizeWorkloads(run) {
            let keys = run.keys(of: w).filter { $0.threads == 1 }
            var series: [ChartSeries] = []
            for a in run.allocators {
                let pts = keys.compactMap { k -> (x: Double, y: Double, range: (Double, Double)?)? in
                    guard let s = run.cells[k]?[a], s.status == .ok, let ns = s.nsPerOp else { return nil }
                    return (Double(k.size), ns.median, (ns.min, ns.max))
                }
                if !pts.isEmpty { series.append(ChartSeries(name: a.name, color: SVGChart.color(a), points: pts)) }
            }
            panels.append(ChartPanel(title: w, xLabel: "object size (bytes, log scale)", yLabel: "ns per op (median)",
                                     xTicks: Set(keys.map { Double($0.size) }).sorted(), logX: true, series: series))
        }
        return SVGChart.render(title: "ns per op by object size (1 thread)",
                               subtitle: "median of the repetitions, whiskers min-max; lower is better. run \(record.runID)",
                               panels: panels, legend: legend(run.allocators))
    }

    static func threadScaling(_ record: RunRecord, _ run: RunSummary) -> String {
        var panels: [ChartPanel] = []
        for w in run.workloads {
            guard let size = run.headlineSize(of: w) else { continue }
            let keys = run.keys(of: w).filter { $0.size == size }
            guard Set(keys.map(\.threads)).count > 1 else { continue }
            var series: [ChartSeries] = []
            for a in run.allocators {
                let pts = keys.compactMap { k -> (x: Double, y: Double, range: (Double, Double)?)? in
                    guard let s = run.cells[k]?[a], s.status == .ok, let m = s.mopsPerSecond else { return nil }
                    return (Double(k.threads), m.median, (m.min, m.max))
                }
                if !pts.isEmpty { series.append(ChartSeries(name: a.name, color: SVGChart.color(a), points: pts)) }
            }
            panels.append(ChartPanel(title: "\(w), \(record.sizeLabel(w, size)) B", xLabel: "threads", yLabel: "million ops per second",
                                     xTicks: Set(keys.map { Double($0.threads) }).sorted(), logX: false, series: series))
        }
        return SVGChart.render(title: "Thread scaling: total throughput",
                               subtitle: "median Mops/s over the repetitions, whiskers min-max; higher is better. \(record.machine.cores) online CPUs",
                               panels: panels, legend: legend(run.allocators))
    }

    /// One panel per workload and size: RSS through the first repetition that recorded a series,
    /// per allocator, against the allocator calls made so far. Every allocator does the same
    /// work, so its fills, drains and release calls fall at the same x and the lines line up
    /// (seconds would give each allocator its own axis). A triangle marks the RSS just after each
    /// release call; the legend names each allocator's call, or says it had none (latest.txt says
    /// why). The workload's live bytes (the same for every allocator) dashed. Series from files
    /// that did not record call counts are drawn against seconds.
    static func sawtoothRSS(_ record: RunRecord, _ run: RunSummary) -> String {
        let mib = Double(1 << 20)
        var panels: [ChartPanel] = []
        let withSeries = record.results.filter { r in r.status == .ok && r.repetitions.contains { !($0.rssSeries ?? []).isEmpty } }
        var workloads: [String] = []
        for r in withSeries where !workloads.contains(r.parameters.workload) { workloads.append(r.parameters.workload) }
        var plotted: [AllocatorID] = []
        var releaseCalls: [AllocatorID: ReleaseCall] = [:]
        let panelsOf = workloads.flatMap { w in
            Set(withSeries.filter { $0.parameters.workload == w }.map(\.parameters.size)).sorted().map { (w, $0) }
        }
        for (w, size) in panelsOf {
            let atSize = withSeries.filter { $0.parameters.workload == w && $0.parameters.size == size }
            let threads = atSize.map(\.parameters.threads).min()!
            var chosen: [(allocator: AllocatorID, result: CellResult, points: [RSSPoint])] = []
            for a in run.allocators {
                guard let r = atSize.first(where: { $0.parameters.allocator == a && $0.parameters.threads == threads }),
                      let pts = r.repetitions.lazy.compactMap(\.rssSeries).first(where: { !$0.isEmpty }) else { continue }
                chosen.append((a, r, pts))
            }
            let byOperations = chosen.allSatisfy { $0.points.allSatisfy { $0.operations != nil } }
            func x(_ p: RSSPoint) -> Double { byOperations ? Double(p.operations!) / 1e6 : p.seconds }
            var series: [ChartSeries] = []
            var releaseXs = Set<Double>()
            for (k, (a, r, pts)) in chosen.enumerated() {
                if !plotted.contains(a) { plotted.append(a) }
                if let call = r.releaseCall { releaseCalls[a] = call }
                let what = r.releaseCall.map { $0.found ? $0.call : "no release call" } ?? "release call"
                let events = pts.filter { $0.afterRelease == true }.map { p in
                    (x: x(p), y: Double(p.rssBytes) / mib,
                     label: "\(a.name) after \(what): RSS \(TextReport.bytes(Double(p.rssBytes)))")
                }
                releaseXs.formUnion(events.map(\.x))
                // Earlier lines wider: slab and slab-nocpu, whose RSS is the same, both show.
                series.append(ChartSeries(name: a.name, color: SVGChart.color(a),
                                          points: pts.map { (x($0), Double($0.rssBytes) / mib, nil) }, markers: false,
                                          strokeWidth: 1.5 + 0.4 * Double(chosen.count - 1 - k), events: events))
            }
            if let live = chosen.first?.points {
                series.append(ChartSeries(name: "live bytes", color: "#000000",
                                          points: live.map { (x($0), Double($0.liveBytes) / mib, nil) },
                                          dashed: true, markers: false))
            }
            let maxX = chosen.flatMap { $0.points.map(x) }.max() ?? 0
            let ticks = byOperations && !releaseXs.isEmpty ? [0] + releaseXs.sorted() : (0...4).map { maxX * Double($0) / 4 }
            panels.append(ChartPanel(title: "\(w), \(size) B, \(threads) thread\(threads == 1 ? "" : "s")",
                                     xLabel: byOperations ? "allocator calls made (millions): fill, drain, release call, repeated" : "seconds",
                                     yLabel: "RSS (MiB)", xTicks: ticks, logX: false, series: series,
                                     guides: byOperations ? releaseXs.sorted() : []))
        }
        let legendAllocators = plotted.isEmpty ? run.allocators : plotted
        let entries = legendAllocators.map { a -> (String, String) in
            (releaseCalls[a].map { "\(a.name): \($0.found ? $0.call : "no release call found")" } ?? a.name, SVGChart.color(a))
        }
        return SVGChart.render(title: "RSS through the sawtooth: fill, drain, then the allocator's release call",
                               subtitle: "first repetition of each allocator, against the allocator calls made so far (the same point of the work at the same x); triangles: RSS just after each release call; dashed: bytes the workload holds live",
                               panels: panels, legend: entries + [("live bytes", "#000000")])
    }
}
