// Reading any result file the bench writes, and saying exactly why a file cannot be read.
//
// Every file carries `kind` ("run": latest.json and the A/B runs; "instructions":
// instructions.json) and `schemaVersion`. A reader that meets a kind or a version it does not
// know refuses the file by name instead of guessing, because a comparison of misread files is
// worse than none.
import Foundation

/// One result file, decoded.
public enum BenchFile: Sendable {
    case run(RunRecord)
    case instructions(InstructionRecord)

    public var kind: String {
        switch self {
        case .run: return RunRecord.kind
        case .instructions: return InstructionRecord.kind
        }
    }

    /// The versions this bench reads, per kind.
    public static let readable: [String: Int] = [RunRecord.kind: RunRecord.schemaVersion,
                                                  InstructionRecord.kind: InstructionRecord.schemaVersion]

    /// Reads and decodes `path`; every failure names the file and the cause.
    public static func load(_ path: String) throws -> BenchFile {
        try decode(read(path), path: path)
    }

    /// The bytes of `path`; a failure says whether it does not exist or cannot be read, and why.
    public static func read(_ path: String) throws -> Data {
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read (\(cause(of: error)))" : "does not exist"
            throw BenchFileError(path: path, reason: reason)
        }
    }

    public static func decode(_ data: Data, path: String) throws -> BenchFile {
        if data.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            throw BenchFileError(path: path, reason: "is empty")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data), let top = object as? [String: Any] else {
            throw BenchFileError(path: path, reason: "is not a bench result file (not a JSON object)")
        }
        guard let kind = top["kind"] as? String, let version = top["schemaVersion"] as? Int else {
            let hint = top["runID"] != nil && top["results"] != nil
                ? "was written by an older bench, before result files had a schema version; run the suite again"
                : "is not a bench result file (no \"kind\" and \"schemaVersion\")"
            throw BenchFileError(path: path, reason: hint)
        }
        guard let known = readable[kind] else {
            throw BenchFileError(path: path, reason: "has kind \"\(kind)\", which this bench does not read (it reads \(readable.keys.sorted().joined(separator: ", ")))")
        }
        guard version == known else {
            throw BenchFileError(path: path, reason: "has \(kind) schema version \(version); this bench reads version \(known)")
        }
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do {
            switch kind {
            case RunRecord.kind: return .run(try decoder.decode(RunRecord.self, from: data))
            default: return .instructions(try decoder.decode(InstructionRecord.self, from: data))
            }
        } catch {
            throw BenchFileError(path: path, reason: "is a \(kind) file that does not decode: \(describe(error))")
        }
    }

    static func cause(of error: Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return ns.localizedDescription
    }

    static func describe(_ error: Error) -> String {
        guard let e = error as? DecodingError else { return "\(error)" }
        func path(_ c: DecodingError.Context) -> String {
            c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch e {
        case let .keyNotFound(key, c): return "missing field \"\(key.stringValue)\" at \(path(c).isEmpty ? "top level" : path(c))"
        case let .typeMismatch(_, c), let .valueNotFound(_, c), let .dataCorrupted(c):
            return "\(c.debugDescription) at \(path(c).isEmpty ? "top level" : path(c))"
        @unknown default: return "\(error)"
        }
    }
}

/// A result file that cannot be used: `bench compare` exits 2 with this message.
public struct BenchFileError: Error, CustomStringConvertible, Equatable {
    public var path: String
    public var reason: String
    public var description: String { "\(path) \(reason)" }
}
