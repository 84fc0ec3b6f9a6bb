// `bench instructions`: instruction counts under callgrind (AllocBench/Instructions).
import AllocBench
import ArgumentParser

struct InstructionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "instructions",
        abstract: "Count instructions per op under callgrind (not yet built).")

    func run() throws {
        throw ValidationError("bench instructions: not built yet")
    }
}
