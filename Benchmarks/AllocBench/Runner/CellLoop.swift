// The parent's loop over cells, shared by `bench run` (SuiteRunner) and `bench instructions`
// (InstructionCounter): the peers' libraries found once before the first cell (a missing one
// skips its cells, with one note saying which package installs it), one measurement per cell,
// a progress line per cell with the time it took, the time so far and an estimate of the rest,
// and a stop at Ctrl-C that leaves the cell in flight out.
import Harness

struct CellLoop {
    let cells: [CellParameters]
    let interrupt: Interrupt?
    let log: @Sendable (String) -> Void
    /// When the run started (monotonicSeconds()): each progress line says how long it has run.
    let start: Double
    /// The library of each preloaded peer that is installed.
    let libraries: [AllocatorID: String]
    /// The preloaded peers whose library is not installed: their cells are skipped.
    let missing: Set<AllocatorID>

    /// Finds the libraries of the preloaded peers among `allocators`, noting each missing one.
    init(cells: [CellParameters], allocators: [AllocatorID], interrupt: Interrupt?, start: Double,
         log: @escaping @Sendable (String) -> Void) {
        var libraries: [AllocatorID: String] = [:]
        var missing = Set<AllocatorID>()
        for a in allocators where a.isPreloaded {
            if let path = PeerLibraries.locate(a) { libraries[a] = path } else {
                missing.insert(a)
                log(PeerLibraries.missingNote(a) + "\n")
            }
        }
        self.cells = cells
        self.interrupt = interrupt
        self.log = log
        self.start = start
        self.libraries = libraries
        self.missing = missing
    }

    /// The cells that will be measured (the others are skipped).
    var launched: Int { cells.filter { !missing.contains($0.allocator) }.count }

    /// Measures the cells in order and returns their results, and whether Ctrl-C stopped the
    /// loop. `measure` gets the cell's peer library (nil for the allocators that need none); a
    /// skipped cell's result is `skipped(cell, why)`. `label` names a cell (by its index in
    /// `cells`) in its progress line, `summary` says how its measurement went.
    func run<Result>(label: (Int, CellParameters) -> String,
                     skipped: (CellParameters, _ why: String) -> Result,
                     measure: (CellParameters, _ library: String?) -> Result,
                     summary: (Result) -> String) -> (results: [Result], interrupted: Bool) {
        let launched = self.launched
        var results: [Result] = []
        var done = 0
        var spent = 0.0
        for (index, cell) in cells.enumerated() {
            if interrupt?.isRequested == true { return (results, true) }
            if missing.contains(cell.allocator) {
                let p = cell.allocator.preload!
                results.append(skipped(cell, "\(p.library) not installed (apt-get install \(p.debianPackage))"))
                continue
            }
            done += 1
            log("[\(done)/\(launched)] \(label(index, cell)) ... ")
            let t0 = monotonicSeconds()
            let result = measure(cell, libraries[cell.allocator])
            let dt = monotonicSeconds() - t0
            spent += dt
            if interrupt?.isRequested == true {
                log("interrupted\n")
                return (results, true)
            }
            results.append(result)
            let eta = spent / Double(done) * Double(launched - done)
            var status = summary(result)
            if status.count > 200 { status = String(status.prefix(200)) + "..." }
            log("\(status)  (\(TextReport.duration(dt)); elapsed \(TextReport.duration(monotonicSeconds() - start)), ETA \(TextReport.duration(eta)))\n")
        }
        return (results, false)
    }
}
