import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An IPv4 or IPv6 address as its bytes (4 or 16).
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// A literal: `127.0.0.1`, `::1`, `[::1]` (inet_pton: no DNS, no blocking).
    public init?(_ text: String) {
        var literal = text
        if literal.hasPrefix("["), literal.hasSuffix("]") { literal = String(literal.dropFirst().dropLast()) }
        var v4 = in_addr()
        if inet_pton(AF_INET, literal, &v4) == 1 {
            self.bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, literal, &v6) == 1 {
            self.bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return
        }
        return nil
    }

    public var isV4: Bool { bytes.count == 4 }

    /// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible, NAT64
    /// (`64:ff9b::/96`) or 6to4 (`2002::/16`) address: those reach the IPv4 host.
    public var embeddedV4: IPAddress? {
        guard bytes.count == 16 else { return nil }
        let mapped = bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xff && bytes[11] == 0xff
        let compatible = bytes[0..<12].allSatisfy { $0 == 0 }
        if mapped || compatible { return IPAddress(bytes: Array(bytes[12..<16])) }
        if bytes[0..<12] == [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0][...] {
            return IPAddress(bytes: Array(bytes[12..<16]))
        }
        if bytes[0] == 0x20, bytes[1] == 0x02 { return IPAddress(bytes: Array(bytes[2..<6])) }
        return nil
    }

    public var description: String {
        if isV4 { return bytes.map(String.init).joined(separator: ".") }
        var copy = in6_addr()
        withUnsafeMutableBytes(of: &copy) { $0.copyBytes(from: bytes) }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &copy, &buffer, socklen_t(buffer.count)) != nil else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// An address block: `10.0.0.0/8`, `fc00::/7`, or one address.
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    public let address: IPAddress
    public let prefix: Int

    public init(_ address: IPAddress, prefix: Int) {
        self.address = address
        self.prefix = max(0, min(prefix, address.bytes.count * 8))
    }

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard let address = IPAddress(String(parts[0])) else { return nil }
        if parts.count == 2 {
            guard let prefix = Int(parts[1]), (0...address.bytes.count * 8).contains(prefix) else { return nil }
            self.init(address, prefix: prefix)
        } else {
            self.init(address, prefix: address.bytes.count * 8)
        }
    }

    public func contains(_ other: IPAddress) -> Bool {
        guard other.bytes.count == address.bytes.count else { return false }
        var remaining = prefix
        for index in 0..<address.bytes.count where remaining > 0 {
            let bits = min(8, remaining)
            let mask: UInt8 = bits == 8 ? 0xff : ~(0xff >> UInt8(bits))
            if address.bytes[index] & mask != other.bytes[index] & mask { return false }
            remaining -= bits
        }
        return true
    }

    public var description: String { "\(address)/\(prefix)" }
}

/// Where a workflow's http node may connect (docs/workflows.md#egress): never to loopback, private,
/// shared (CGNAT), link-local, metadata, unspecified, multicast or reserved addresses, unless the
/// operator's allow-list names the host or the network (optionally with a port). Checked on the
/// addresses a name resolves to, the one connected to, and again on every redirect.
public struct EgressPolicy: Sendable, Equatable {
    public struct Rule: Sendable, Equatable {
        public enum Target: Sendable, Equatable {
            case host(String)
            case network(IPNetwork)
        }
        public var target: Target
        /// nil: any port.
        public var port: Int?
    }

    public var rules: [Rule]

    public init(rules: [Rule] = []) { self.rules = rules }

    /// `SWITCHBOARD_WORKFLOW_EGRESS_ALLOW`: comma-separated `host`, `host:port`, `10.1.2.3`,
    /// `10.0.0.0/8`, `10.0.0.0/8:443`, `[::1]:8080`, `fd00::/8`.
    public init(allowList: String) throws {
        var rules: [Rule] = []
        for raw in allowList.split(separator: ",") {
            let entry = raw.trimmingCharacters(in: .whitespaces)
            guard !entry.isEmpty else { continue }
            guard let rule = Self.rule(entry) else {
                throw EgressError(
                    "the egress allow-list entry \(entry) is not a host, an address or a CIDR (optionally :port)")
            }
            rules.append(rule)
        }
        self.rules = rules
    }

    static func rule(_ entry: String) -> Rule? {
        var target = entry
        var port: Int?
        if entry.hasPrefix("[") {
            // [v6] or [v6/len] with an optional :port.
            guard let close = entry.firstIndex(of: "]") else { return nil }
            target = String(entry[entry.index(after: entry.startIndex)..<close])
            let rest = entry[entry.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let value = Int(rest.dropFirst()), (1...65535).contains(value) else {
                    return nil
                }
                port = value
            }
        } else if entry.filter({ $0 == ":" }).count == 1 {
            let parts = entry.split(separator: ":")
            guard parts.count == 2, let value = Int(parts[1]), (1...65535).contains(value) else { return nil }
            target = String(parts[0])
            port = value
        }
        if let network = IPNetwork(target) { return Rule(target: .network(network), port: port) }
        let host = target.lowercased()
        guard !host.isEmpty, !host.contains("/"),
            host.unicodeScalars.allSatisfy({
                CharacterSet.alphanumerics.contains($0) || "-._".unicodeScalars.contains($0)
            })
        else { return nil }
        return Rule(target: .host(host), port: port)
    }

    /// Why an address is never a destination by default; nil for a public address.
    public static func forbiddenReason(_ address: IPAddress) -> String? {
        for (network, reason) in address.isV4 ? v4Blocks : v6Blocks where network.contains(address) { return reason }
        if let v4 = address.embeddedV4 { return forbiddenReason(v4) }
        return nil
    }

    static let v4Blocks: [(IPNetwork, String)] = [
        ("169.254.169.254/32", "a cloud metadata address"), ("0.0.0.0/8", "an unspecified address"),
        ("127.0.0.0/8", "a loopback address"), ("10.0.0.0/8", "a private address"),
        ("172.16.0.0/12", "a private address"),
        ("192.168.0.0/16", "a private address"), ("100.64.0.0/10", "a shared (CGNAT) address"),
        ("169.254.0.0/16", "a link-local address"), ("192.0.0.0/24", "a reserved address"),
        ("198.18.0.0/15", "a reserved address"), ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
    ].map { (IPNetwork($0.0)!, $0.1) }

    static let v6Blocks: [(IPNetwork, String)] = [
        ("fd00:ec2::254/128", "a cloud metadata address"), ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        ("fc00::/7", "a private (unique local) address"), ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a reserved address"),
        ("ff00::/8", "a multicast address"), ("100::/64", "a reserved address"),
    ].map { (IPNetwork($0.0)!, $0.1) }

    /// Nil when `host:port` resolved to `address` may be connected to; else why not.
    public func refusal(host: String, port: Int, address: IPAddress) -> String? {
        let name = host.lowercased()
        for rule in rules where rule.port == nil || rule.port == port {
            switch rule.target {
            case .host(let allowed) where allowed == name: return nil
            case .network(let network)
            where network.contains(address) || address.embeddedV4.map(network.contains) == true: return nil
            default: continue
            }
        }
        guard let reason = Self.forbiddenReason(address) else { return nil }
        let shown = IPAddress(host) == nil ? "\(host) resolves to \(address), " : "\(address) is "
        return "egress refused: \(shown)\(reason) (SWITCHBOARD_WORKFLOW_EGRESS_ALLOW may open it)"
    }
}

public struct EgressError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
