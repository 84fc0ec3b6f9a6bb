// Writing to file descriptors without the C `stdio` globals (which Swift 6 treats as shared
// mutable state) and without buffering (the process may be about to stop): standard error, a
// child's result pipe, a file being written atomically.
#if canImport(Glibc)
import Glibc
#endif

/// Writes all of `bytes` to `fd`, retrying after a signal interrupts a write. Returns the errno
/// of the write that failed, nil when everything was written.
@discardableResult
public func writeAll(_ bytes: [UInt8], to fd: Int32) -> Int32? {
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, bytes.count - done) }
        if n < 0 {
            if errno == EINTR { continue }
            return errno
        }
        done += n
    }
    return nil
}

/// Writes `text` to standard error (file descriptor 2) at once. Progress, notes and errors of
/// the bench, and the markers the tests' children print before they stop.
public func writeStandardError(_ text: String) {
    writeAll(Array(text.utf8), to: 2)
}

/// strerror(errno): the text of the last error of this thread.
public func errnoText() -> String { String(cString: strerror(errno)) }
