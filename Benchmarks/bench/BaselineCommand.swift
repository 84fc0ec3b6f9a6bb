// `bench baseline update|show`: the committed baseline under results/baseline (AllocBench/Regression).
import AllocBench
import ArgumentParser
import Foundation
import Harness

struct BaselineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baseline",
        abstract: "Show or rewrite the committed baseline (results/baseline).",
        subcommands: [Update.self, Show.self])

    struct Update: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "update",
            abstract: "Make the latest full run and instruction counts the baseline.",
            discussion: """
            Reads latest.json and instructions.json from --from (made by `swift run -c release bench` \
            and `swift run -c release bench instructions` at this commit), prints how they compare with \
            the current baseline (the delta you accept), and writes run.json, instructions.json and \
            manifest.json into --baseline. Commit the result with the change that caused it.
            """)

        @Option(help: ArgumentHelp("Folder holding latest.json and instructions.json.", valueName: "dir"))
        var from: String = "results"

        @Option(help: ArgumentHelp("The baseline folder.", valueName: "dir"))
        var baseline: String = Baseline.defaultDirectory

        @Option(help: "Why the baseline changes (recorded in the manifest), e.g. \"intended: red zones cost 2 instructions\".")
        var reason: String

        @Flag(help: "Take files from a quick or interrupted run, another commit or mismatched machines anyway.")
        var force = false

        func run() throws {
            let (head, _) = Machine.gitCommit()
            do {
                let u = try Baseline.update(from: from, to: baseline, reason: reason,
                                            head: head == "unknown" ? nil : head, force: force)
                if u.acceptedReport.isEmpty {
                    print("No previous baseline: nothing to compare with.")
                } else {
                    print("Accepted changes against the previous baseline:\n")
                    print(u.acceptedReport, terminator: "")
                }
                print("baseline: commit \(u.manifest.commit), \(u.manifest.cpuModel); wrote \(u.written.joined(separator: ", "))")
            } catch {
                writeStandardError("bench baseline update: error: \(error)\n")
                throw ExitCode(2)
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Print the baseline's manifest.")

        @Option(help: ArgumentHelp("The baseline folder.", valueName: "dir"))
        var baseline: String = Baseline.defaultDirectory

        func run() throws {
            do {
                let m = try Baseline.manifest(in: baseline)
                print("""
                commit     \(m.commit) (run \(m.runID), instructions \(m.instructionsRunID))
                date       \(m.date)
                machine    \(m.cpuModel), \(m.cores) CPUs; \(m.kernel)
                software   glibc \(m.glibc); \(m.swift); \(m.valgrind)
                allocators \(m.allocatorVersions.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "; "))
                reason     \(m.reason)
                accepted   \(m.accepted.isEmpty ? "(first baseline)" : m.accepted.joined(separator: "; "))
                """)
            } catch {
                writeStandardError("bench baseline show: error: \(error)\n")
                throw ExitCode(2)
            }
        }
    }
}
