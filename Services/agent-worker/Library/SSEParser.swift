import Foundation
import SwitchboardContracts

/// Server-Sent Events from bytes: lines end at LF (CRLF tolerated), `data:` lines accumulate and a blank
/// line dispatches them. Lines are cut at the LF byte, which never occurs inside a multi-byte UTF-8
/// sequence, so a character split across network reads is decoded whole.
public struct SSEParser: Sendable {
    private var line: [UInt8] = []
    private var data: [String] = []

    public init() {}

    /// The `data` of every event completed by these bytes.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [String] {
        var events: [String] = []
        for byte in bytes {
            guard byte == UInt8(ascii: "\n") else {
                line.append(byte)
                continue
            }
            if line.last == UInt8(ascii: "\r") { line.removeLast() }
            let text = String(decoding: line, as: UTF8.self)
            line.removeAll(keepingCapacity: true)
            if text.isEmpty {
                if !data.isEmpty { events.append(data.joined(separator: "\n")) }
                data.removeAll()
            } else if text.hasPrefix("data:") {
                var value = text.dropFirst(5)
                if value.first == " " { value = value.dropFirst() }
                data.append(String(value))
            }
            // Comments (`:`), `event:`, `id:` and `retry:` carry nothing a chat completion needs.
        }
        return events
    }
}
