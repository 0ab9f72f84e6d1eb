import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// A WebSocket client on a raw socket that, after its handshake and a few frames, stops reading:
/// what a phone in a tunnel or a frozen tab looks like to the server. Its receive buffer is kept
/// tiny so the server's side backs up quickly.
public final class StalledWebSocket: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    private let socket: Int32

    /// Connects to `127.0.0.1:port`, upgrades `path` with `token`, and returns once the server agreed.
    public convenience init(port: Int, path: String = "/ws", token: String) throws {
        try self.init(port: port)
        try upgrade(port: port, path: path, token: token)
    }

    /// Only connects: the socket has said nothing yet.
    public init(port: Int) throws {
        socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw Failure(description: "socket() failed") }
        var small: Int32 = 4096
        setsockopt(socket, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            Glibc.close(socket)
            throw Failure(description: "connect to port \(port) failed (errno \(errno))")
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends raw bytes: a partial request, garbage, anything.
    public func sendRaw(_ text: String) throws {
        try write(Array(text.utf8))
    }

    private func upgrade(port: Int, path: String, token: String) throws {
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        try write(
            Array(
                """
                GET \(path) HTTP/1.1\r
                Host: 127.0.0.1:\(port)\r
                Upgrade: websocket\r
                Connection: Upgrade\r
                Sec-WebSocket-Key: \(key)\r
                Sec-WebSocket-Version: 13\r
                Authorization: Bearer \(token)\r
                \r

                """.utf8))
        // Read the response head byte by byte, so no frame after it is consumed.
        var head: [UInt8] = []
        var byte: UInt8 = 0
        while !head.ends(with: Array("\r\n\r\n".utf8)) {
            guard Glibc.read(socket, &byte, 1) == 1 else { throw Failure(description: "no upgrade response") }
            head.append(byte)
        }
        let status = String(decoding: head, as: UTF8.self)
        guard status.hasPrefix("HTTP/1.1 101") else { throw Failure(description: "upgrade refused: \(status)") }
    }

    deinit { Glibc.close(socket) }

    /// Sends one masked text frame (clients must mask).
    public func sendText(_ text: String) throws {
        let payload = Array(text.utf8)
        var frame: [UInt8] = [0x81]
        switch payload.count {
        case ..<126: frame.append(0x80 | UInt8(payload.count))
        case ..<65536: frame += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        default: frame += [0x80 | 127] + (0..<8).reversed().map { UInt8((payload.count >> ($0 * 8)) & 0xFF) }
        }
        let mask = (0..<4).map { _ in UInt8.random(in: 0...255) }
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        try write(frame)
    }

    /// Reads everything the server sent until it closes the connection (or `timeout` passes), and
    /// returns the bytes and whether the connection really ended.
    public func drain(timeout: Duration) -> (bytes: [UInt8], closed: Bool) {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while ContinuousClock.now < deadline {
            let count = Glibc.read(socket, &buffer, buffer.count)
            if count == 0 { return (bytes, true) }
            if count < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                return (bytes, true)  // reset by the server
            }
            bytes += buffer[0..<count]
        }
        return (bytes, false)
    }

    /// The close code of the last close frame in `bytes` (server frames are unmasked), if any.
    public static func closeCode(in bytes: [UInt8]) -> UInt16? {
        var index = 0
        var code: UInt16?
        while index + 2 <= bytes.count {
            let opcode = bytes[index] & 0x0F
            var length = Int(bytes[index + 1] & 0x7F)
            var header = 2
            if length == 126, index + 4 <= bytes.count {
                length = Int(bytes[index + 2]) << 8 | Int(bytes[index + 3])
                header = 4
            } else if length == 127, index + 10 <= bytes.count {
                length = (2..<10).reduce(0) { $0 << 8 | Int(bytes[index + $1]) }
                header = 10
            }
            let start = index + header
            guard start + length <= bytes.count else { break }
            if opcode == 0x8, length >= 2 { code = UInt16(bytes[start]) << 8 | UInt16(bytes[start + 1]) }
            index = start + length
        }
        return code
    }

    private func write(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Glibc.write(socket, $0.baseAddress, $0.count) }
            guard count > 0 else { throw Failure(description: "write failed (errno \(errno))") }
            sent += count
        }
    }
}

extension Array where Element: Equatable {
    fileprivate func ends(with suffix: [Element]) -> Bool {
        count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix
    }
}
