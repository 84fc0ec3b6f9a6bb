import AllocBench
import ArgumentParser

struct BaselineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "baseline")
    func run() throws { throw ValidationError("not built yet") }
}
