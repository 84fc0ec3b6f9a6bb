import AllocBench
import ArgumentParser

struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "compare")
    func run() throws { throw ValidationError("not built yet") }
}
