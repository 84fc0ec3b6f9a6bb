// Atomic writes: the new contents go to a temporary file in the same directory, are flushed to
// disk, and replace the old file with one rename(2). A reader (or a crash, or Ctrl-C) sees the old
// file or the new one, never a mix; a writer that fails midway leaves the old file untouched.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Harness

public enum AtomicFile {
    public struct WriteError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Writes `text` to `path` atomically.
    public static func write(_ text: String, to path: String) throws {
        try write(to: path) { emit in try emit(Array(text.utf8)) }
    }

    /// Writes what `body` emits to `path` atomically. `body` may emit in pieces and may throw:
    /// then the temporary file is removed and the error rethrown, and `path` is unchanged.
    public static func write(to path: String, _ body: (_ emit: ([UInt8]) throws -> Void) throws -> Void) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let base = (path as NSString).lastPathComponent
        var template = Array(((dir.isEmpty ? "." : dir) + "/." + base + ".tmp.XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw WriteError(description: "cannot create a temporary file beside \(path): \(errnoText())") }
        let tmp = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        var closed = false
        do {
            try body { bytes in
                if let failure = writeAll(bytes, to: fd) {
                    throw WriteError(description: "writing \(tmp): \(String(cString: strerror(failure)))")
                }
            }
            guard fsync(fd) == 0 else { throw WriteError(description: "fsync \(tmp): \(errnoText())") }
            fchmod(fd, 0o644)
            closed = true
            guard close(fd) == 0 else { throw WriteError(description: "close \(tmp): \(errnoText())") }
            guard rename(tmp, path) == 0 else { throw WriteError(description: "rename \(tmp) to \(path): \(errnoText())") }
        } catch {
            if !closed { close(fd) }
            unlink(tmp)
            throw error
        }
    }
}

/// Writes a run's reports into a folder: latest.{json,csv,txt} and the SVG charts, each atomically.
/// An interrupted run writes `interrupted.{json,csv,txt}` instead and leaves the latest.* files alone.
public enum ReportWriter {
    /// Returns the paths written.
    @discardableResult
    public static func write(_ record: RunRecord, to directory: String) throws -> [String] {
        let stem = record.interrupted ? "interrupted" : "latest"
        var files: [(String, String)] = [
            ("\(stem).json", try json(record)),
            ("\(stem).csv", CSVReport.render(record)),
            ("\(stem).txt", TextReport.render(record)),
        ]
        if !record.interrupted { files += Charts.render(record).map { ($0.name, $0.svg) } }
        return try write(files, to: directory)
    }

    /// Writes each (file name, contents) into `directory`, atomically, creating the folder if
    /// needed; returns the paths written.
    static func write(_ files: [(String, String)], to directory: String) throws -> [String] {
        try OutputFolder.make(directory)
        return try files.map { name, contents in
            let path = (directory as NSString).appendingPathComponent(name)
            try AtomicFile.write(contents, to: path)
            return path
        }
    }

    /// Every JSON file the bench writes: pretty, keys sorted (so files diff well), non-finite
    /// numbers as strings (JSON has none; the readers decode them back).
    public static func json<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return String(decoding: try encoder.encode(value), as: UTF8.self) + "\n"
    }
}

/// The folder a command writes its results into. `prepare` runs before any measuring: a run that
/// took minutes must not find at its end that it cannot write what it measured. If writing fails
/// anyway (the disk filled, the folder went away), `write` puts the files in a folder of their own
/// under the temporary directory and says where, so that nothing measured is lost.
public enum OutputFolder {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Creates `path` with any missing parents (as `mkdir -p`) and checks that a file can be made
    /// in it, by making one and removing it. `option` names the flag in the message.
    public static func prepare(_ path: String, option: String = "--output") throws {
        do {
            try make(path)
        } catch {
            throw Failure(description: "\(option) \(path): \(error)")
        }
        var template = Array(((path as NSString).appendingPathComponent(".bench-write-check.XXXXXX")).utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw Failure(description: "\(option) \(path): cannot write in this folder (\(errnoText()))")
        }
        close(fd)
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
    }

    /// `mkdir -p`: every missing folder of `path`; a message naming the part that failed and why.
    public static func make(_ path: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            if isDirectory.boolValue { return }
            throw Failure(description: "\(path) is a file, not a folder")
        }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != path { try make(parent) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw Failure(description: "cannot create the folder \(path) (\(errnoText()))")
        }
    }

    /// `make` for the folder that holds the file at `path` (nothing for a bare file name).
    public static func makeParent(of path: String) throws {
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty { try make(folder) }
    }

    /// Runs `write` on `directory`; if it throws, runs it again on a new folder under the temporary
    /// directory and throws a message naming both (or, if that fails too, both failures).
    public static func write(_ what: String, to directory: String, _ write: (String) throws -> [String]) throws -> [String] {
        do {
            return try write(directory)
        } catch let first {
            let rescue = (NSTemporaryDirectory() as NSString).appendingPathComponent("bench-unsaved-\(getpid())-\(Int(Date().timeIntervalSince1970))")
            let written: [String]
            do {
                written = try write(rescue)
            } catch let second {
                throw Failure(description: "could not write \(what) into \(directory) (\(first)), nor into \(rescue) (\(second))")
            }
            throw Failure(description: "could not write \(what) into \(directory) (\(first)); they are in \(rescue) instead: \(written.joined(separator: ", "))")
        }
    }
}
