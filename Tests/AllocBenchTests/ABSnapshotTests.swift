// `bench ab`'s one snapshot of the working tree (ABBuild.swift, section 3): the copy holds what
// git would see (tracked files as edited, untracked files it does not ignore, nothing ignored),
// and `changedFiles` names every file edited, added or deleted after it was taken, and nothing
// else.
import Foundation
import XCTest
@testable import AllocBench
import TestSupport

final class ABSnapshotTests: XCTestCase {
    /// A git repository with two committed files in two folders and an ignored build folder.
    func repository() throws -> String {
        let root = try temporaryFolder("ab-snapshot")
        let files = ["Package.swift": "// package\n", "Sources/Slab/A.swift": "let a = 1\n",
                     ".gitignore": ".build/\n", ".build/release/bench": "binary"]
        for (name, text) in files {
            let path = root + "/" + name
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
        for command in [["init", "-q"], ["add", "."],
                        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start"]] {
            let r = ABBuild.run(["git", "-C", root] + command)
            try XCTSkipIf(r.status == 127, "git is not installed")
            XCTAssertEqual(r.status, 0, "git \(command.joined(separator: " ")): \(r.output)")
        }
        return root
    }

    func test_snapshot_holdsWhatGitSees_andNothingChangedReadsEmpty() throws {
        let root = try repository()
        try "let b = 2\n".write(toFile: root + "/Sources/Slab/B.swift", atomically: true, encoding: .utf8)  // untracked
        try "let a = 3\n".write(toFile: root + "/Sources/Slab/A.swift", atomically: true, encoding: .utf8)  // edited
        let snapshot = try temporaryFolder("ab-snapshot-copy") + "/tree"
        try ABBuild.stageToday(root: root, into: snapshot)

        XCTAssertEqual(try String(contentsOfFile: snapshot + "/Sources/Slab/A.swift", encoding: .utf8), "let a = 3\n",
                       "the copy holds the edit, not the commit")
        XCTAssertTrue(FileManager.default.fileExists(atPath: snapshot + "/Sources/Slab/B.swift"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: snapshot + "/.build"), "ignored files stay out")
        XCTAssertEqual(try ABBuild.changedFiles(root: root, snapshot: snapshot), [])

        // A build writing into the ignored folder is not a change of the tree.
        try "rebuilt".write(toFile: root + "/.build/release/bench", atomically: true, encoding: .utf8)
        XCTAssertEqual(try ABBuild.changedFiles(root: root, snapshot: snapshot), [])
    }

    func test_changedFiles_namesEveryEditAdditionAndDeletion() throws {
        let root = try repository()
        let snapshot = try temporaryFolder("ab-snapshot-copy") + "/tree"
        try ABBuild.stageToday(root: root, into: snapshot)

        try "let a = 1 \n".write(toFile: root + "/Sources/Slab/A.swift", atomically: true, encoding: .utf8)
        XCTAssertEqual(try ABBuild.changedFiles(root: root, snapshot: snapshot), ["Sources/Slab/A.swift"],
                       "one byte more is a change")

        try "x".write(toFile: root + "/Sources/Slab/New.swift", atomically: true, encoding: .utf8)
        try FileManager.default.removeItem(atPath: root + "/Package.swift")
        XCTAssertEqual(try ABBuild.changedFiles(root: root, snapshot: snapshot),
                       ["Package.swift", "Sources/Slab/A.swift", "Sources/Slab/New.swift"])

        // Undone, the tree reads as copied again.
        try "let a = 1\n".write(toFile: root + "/Sources/Slab/A.swift", atomically: true, encoding: .utf8)
        try "// package\n".write(toFile: root + "/Package.swift", atomically: true, encoding: .utf8)
        try FileManager.default.removeItem(atPath: root + "/Sources/Slab/New.swift")
        XCTAssertEqual(try ABBuild.changedFiles(root: root, snapshot: snapshot), [])
    }

    func test_changedFiles_takesASymbolicLinkAsGitDoes() throws {
        let root = try repository()
        try FileManager.default.createSymbolicLink(atPath: root + "/Sources/Current", withDestinationPath: "Slab")
        let snapshot = try temporaryFolder("ab-snapshot-copy") + "/tree"
        try ABBuild.stageToday(root: root, into: snapshot)
        XCTAssertEqual(try ABBuild.changedFiles(root: root, snapshot: snapshot), [],
                       "a link to a folder is one entry in git's list and in the copy")
        try FileManager.default.removeItem(atPath: root + "/Sources/Current")
        try FileManager.default.createSymbolicLink(atPath: root + "/Sources/Current", withDestinationPath: "Other")
        XCTAssertEqual(try ABBuild.changedFiles(root: root, snapshot: snapshot), ["Sources/Current"], "a link pointed elsewhere")
    }

    func test_keepBinary_copiesIt_soARebuildDoesNotReplaceIt() throws {
        let folder = try temporaryFolder("ab-keep")
        let built = folder + "/scratch/release/bench"
        try FileManager.default.createDirectory(atPath: folder + "/scratch/release", withIntermediateDirectories: true)
        try "first".write(toFile: built, atomically: true, encoding: .utf8)
        let kept = try ABBuild.keepBinary(built, in: folder + "/head")
        try "second".write(toFile: built, atomically: false, encoding: .utf8)
        XCTAssertEqual(try String(contentsOfFile: kept, encoding: .utf8), "first")
        // Kept again over an older copy.
        XCTAssertEqual(try ABBuild.keepBinary(built, in: folder + "/head"), kept)
        XCTAssertEqual(try String(contentsOfFile: kept, encoding: .utf8), "second")
    }
}
