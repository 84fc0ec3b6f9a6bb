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
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
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
