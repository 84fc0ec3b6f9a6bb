// ProcFile: what the two readers of this target (ProcSlabInfo for /proc/slabinfo, ProcBuddyInfo
// for /proc/buddyinfo) share: reading a file to its end, the error that names why it could not be
// read, the error that names a line not in the format, the splitting of text into lines and
// fields, and C's printf for figures that must round as procps rounds them.
//
// The SlabTop target as a whole reads those files (the kernel's, a saved copy, or the text this
// library writes for its own caches and page allocators) into the row models of the Slab library,
// SlabInfoRow and BuddyZone, and shows them as `slabtop -o` does and as the buddyinfo view does.
// The Slab library only writes; the `slabinfo` executable uses both.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public enum ProcFile {
    /// Why a /proc file (or a saved copy of one) could not be read.
    public enum ReadError: Error, Equatable, Sendable, CustomStringConvertible {
        /// EACCES or EPERM: /proc/slabinfo is mode 0400, root only.
        case permissionDenied(path: String)
        /// ENOENT: no such file.
        case missing(path: String)
        /// Any other errno from open or read.
        case failed(path: String, errno: Int32, operation: String)

        /// The error for `errno` from `operation` ("open" or "read") on `path`.
        public init(errno code: Int32, path: String, operation: String) {
            switch code {
            case EACCES, EPERM: self = .permissionDenied(path: path)
            case ENOENT: self = .missing(path: path)
            default: self = .failed(path: path, errno: code, operation: operation)
            }
        }

        public var description: String {
            switch self {
            case let .permissionDenied(path):
                let why = path == ProcSlabInfo.defaultPath
                    ? "the kernel lets only root read it; run as root (for example with sudo)"
                    : "reading it needs more privileges (for /proc/slabinfo: root)"
                return "cannot read \(path): permission denied: \(why)"
            case let .missing(path):
                let why = path == ProcSlabInfo.defaultPath
                    ? "this kernel has no slabinfo (not Linux, /proc not mounted, or a kernel built without CONFIG_SLUB_DEBUG)"
                    : path == ProcBuddyInfo.defaultPath ? "this system has no buddyinfo (not Linux, or /proc not mounted)"
                    : "no such file"
                return "cannot read \(path): it does not exist: \(why)"
            case let .failed(path, code, operation):
                return "cannot read \(path): \(operation) failed: \(String(cString: strerror(code))) (errno \(code))"
            }
        }
    }

    /// A line of a file's text that is not in the file's format: its 1-based number and the
    /// problem, one of the format's own (`ProcSlabInfo.ParseProblem`, `ProcBuddyInfo.ParseProblem`).
    public struct ParseError<Format: ProcFileProblem>: Error, Equatable, Sendable, CustomStringConvertible {
        public typealias Problem = Format

        /// 1-based line number of the offending line.
        public var line: Int
        public var problem: Problem
        /// The file the text came from, when known (set by `read(path:)`).
        public var source: String?

        public init(line: Int, problem: Problem, source: String? = nil) {
            self.line = line
            self.problem = problem
            self.source = source
        }

        /// "<file, or the format's name> line <n>: <what is wrong>".
        public var description: String { "\(source ?? Problem.formatName) line \(line): \(problem.message)" }
    }

    /// The raw text of a file. /proc files report size 0, so this reads until EOF.
    public static func readText(path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ReadError(errno: errno, path: path, operation: "open") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        let chunk = 64 * 1024
        while true {
            let start = bytes.count
            bytes.append(contentsOf: repeatElement(0, count: chunk))
            let n = bytes.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress! + start, chunk) }
            if n < 0 {
                let code = errno
                bytes.removeLast(chunk)
                if code == EINTR { continue }
                throw ReadError(errno: code, path: path, operation: "read")
            }
            bytes.removeLast(chunk - n)
            if n == 0 { break }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Reads `path` and parses its text with `parse`; a parse error then names the file. Throws
    /// `ReadError` when the file cannot be read.
    static func read<Value, Format: ProcFileProblem>(path: String, as _: Format.Type,
                                                     _ parse: (String) throws -> Value) throws -> Value {
        let text = try readText(path: path)
        do {
            return try parse(text)
        } catch var error as ParseError<Format> {
            error.source = path
            throw error
        }
    }

    /// The lines of a file's text, the newline after the last one optional.
    static func lines(_ text: String) -> [Substring] {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        return lines
    }

    /// The fields of a line: runs of blanks and tabs separate them.
    static func fields(_ line: Substring) -> [Substring] {
        line.split(whereSeparator: { $0 == " " || $0 == "\t" })
    }

    /// A field of decimal digits only (no sign, no blanks); nil for anything else, and for values
    /// too large for an Int.
    static func decimal(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(text)
    }
}

/// A format's ways for a line to be wrong, with the words that explain each.
public protocol ProcFileProblem: Equatable, Sendable {
    /// What a parse error calls the text when no file name is known ("slabinfo", "buddyinfo").
    static var formatName: String { get }
    /// What is wrong, for the message after "<file> line <n>: ".
    var message: String { get }
}

/// read(2), named apart from the readers' `read(path:)`.
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.read(fd, buffer, count)
    #else
    return Musl.read(fd, buffer, count)
    #endif
}

/// printf through the C library, so figures round exactly as slabtop's do. Numbers only (a Swift
/// String is not a C vararg without Foundation): Int for %ld/%lu (long on LP64), Double for %f.
func cFormat(_ format: String, _ arguments: CVarArg...) -> String {
    var capacity = 128
    while true {
        var buffer = [CChar](repeating: 0, count: capacity)
        let n = withVaList(arguments) { list in
            buffer.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress, $0.count, format, list) }
        }
        precondition(n >= 0, "vsnprintf failed for format \(format)")
        if Int(n) < capacity {
            return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        }
        capacity = Int(n) + 1
    }
}
