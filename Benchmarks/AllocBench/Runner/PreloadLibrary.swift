// Any allocator as a peer: `--allocators preload:/path/libfoo.so` (or `...=name` to name it in the
// reports) runs the cells with that library in LD_PRELOAD, in a child of its own, like the
// built-in peers.
//
// 1. Checked before the run
// -------------------------
//   The path (made absolute against the working directory) must name a readable regular file
//   that is a 64-bit ELF shared object (the header's class and e_type); a missing file, a folder,
//   a text file or an executable are refused with a message saying which, and the bench exits
//   with status 2 before any cell runs. The library is never loaded into the parent: its
//   constructors run only in the children.
//
// 2. Checked in every cell
// ------------------------
//   A shared library can load and still not serve malloc (it defines none, or LD_PRELOAD did not
//   reach the child): the child asks the dynamic linker which object defines the malloc it calls
//   and fails the cell, naming that object, unless it is the library given
//   (ChildCell.checkPreload).
//
// 3. Its version
// --------------
//   The child reads the known version entry points (a library given by path may well be
//   jemalloc, mimalloc or tcmalloc); the parent also asks dpkg which Debian package owns the
//   file, and records that package's version in the machine block.
#if canImport(Glibc)
import Glibc
#endif
import Foundation

public enum PreloadLibrary {
    /// The syntax, for help texts and error messages.
    public static let syntax = "preload:PATH[=NAME]"

    /// Parses and checks one `preload:` item of `--allocators`.
    public static func allocator(_ text: String) throws -> AllocatorID {
        var body = String(text.dropFirst(PreloadSpec.prefix.count))
        var name: String? = nil
        if let eq = body.lastIndex(of: "="), !body[eq...].contains("/") {
            name = String(body[body.index(after: eq)...])
            body = String(body[..<eq])
        }
        guard !body.isEmpty else {
            throw InvalidValueError(description: "'\(text)': \(syntax) needs the library's path, for example preload:/usr/lib/x86_64-linux-gnu/libjemalloc.so.2=je")
        }
        if let name {
            guard PreloadSpec.isValidName(name) else {
                throw InvalidValueError(description: "'\(text)': the name '\(name)' must be one word of printable characters, without ',' or '='")
            }
            guard !AllocatorID.builtIn.contains(where: { $0.rawValue == name }) else {
                throw InvalidValueError(description: "'\(text)': '\(name)' is a built-in allocator's name; give the library another")
            }
        }
        let path = body.hasPrefix("/") ? body : FileManager.default.currentDirectoryPath + "/" + body
        if let problem = problem(path) { throw InvalidValueError(description: "'\(text)': \(problem)") }
        guard let id = AllocatorID(rawValue: PreloadSpec(path: path, name: name).rawValue) else {
            throw InvalidValueError(description: "'\(text)': not a valid \(syntax)")
        }
        // Unnamed, the reports show the file's name: a file called like a built-in allocator
        // would be mistaken for it (in latest.csv, which holds names only, for good).
        if name == nil, AllocatorID.builtIn.contains(where: { $0.rawValue == id.name }) {
            throw InvalidValueError(description: "'\(text)': the file's name '\(id.name)' is a built-in allocator's name; name the library with =NAME")
        }
        return id
    }

    /// Why `path` cannot be preloaded as a 64-bit shared library, or nil when it can.
    static func problem(_ path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            let code = errno
            return code == ENOENT || code == ENOTDIR ? "\(path): no such file" : "\(path): \(String(cString: strerror(code)))"
        }
        guard info.st_mode & S_IFMT == S_IFREG else { return "\(path) is not a file (a shared library is one)" }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "\(path) cannot be read: \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        // e_ident (16 bytes), then e_type (2 bytes, little-endian on x86-64).
        var header = [UInt8](repeating: 0, count: 18)
        let n = header.withUnsafeMutableBytes { read(fd, $0.baseAddress, 18) }
        guard n == 18, header[0...3] == [0x7F, 0x45, 0x4C, 0x46] else {
            return "\(path) is not a shared library (not an ELF file)"
        }
        guard header[4] == 2 else { return "\(path) is a 32-bit ELF file; the bench is a 64-bit program" }
        let type = Int(header[16]) | Int(header[17]) << 8
        switch type {
        case 3: return nil   // ET_DYN: a shared object (or a position-independent executable, whose cells then fail the malloc check)
        case 2: return "\(path) is an executable, not a shared library"
        case 1: return "\(path) is an object file (.o), not a shared library"
        case 4: return "\(path) is a core dump, not a shared library"
        default: return "\(path) is not a shared library (ELF type \(type))"
        }
    }

    /// The Debian package owning `path` and its version, e.g. "libjemalloc2 5.3.0-1"; nil when
    /// dpkg does not know the file.
    public static func debianVersion(of path: String) -> String? {
        for candidate in [path, AllocatorVersion.realPath(path)] {
            // "libjemalloc2:amd64: /usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
            guard let out = Machine.capture(["dpkg-query", "-S", candidate]),
                  let line = out.split(separator: "\n").first,
                  let package = line.split(separator: ":").first.map(String.init), !package.contains(" ") else { continue }
            if let version = PeerLibraries.debianVersion(package) { return "\(package) \(version)" }
        }
        return nil
    }
}
