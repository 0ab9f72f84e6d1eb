import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SwitchboardWorkflow

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An http node's request under the egress rules (docs/workflows.md#egress). The runner resolves the
/// name itself, vets every address, and has AsyncHTTPClient connect to the vetted address (its
/// `dnsOverride`; TLS still checks the certificate against the name), so a name that resolves
/// differently a moment later (DNS rebinding) cannot take the request elsewhere. Redirects are
/// followed by the runner, not the client, each hop vetted again.
struct EgressClient: Sendable {
    let policy: EgressPolicy
    /// Redirects followed per request; 0: a 3xx is the node's answer.
    let maximumRedirects: Int
    let maximumResponseBytes: Int

    struct Answer: Sendable {
        var status: Int
        var body: ByteBuffer
        var url: String
    }

    func execute(_ request: HTTPClientRequest, deadline: NIODeadline) async throws -> Answer {
        var request = request
        var redirects = 0
        while true {
            let (client, target) = try await connect(to: request.url)
            do {
                let response = try await client.execute(request, deadline: deadline)
                let status = Int(response.status.code)
                if (301...308).contains(status), status != 304, redirects < maximumRedirects,
                    let location = response.headers.first(name: "location"),
                    let next = URL(string: location, relativeTo: target)?.absoluteURL
                {
                    // The body of a redirect is not wanted; drain at most a little of it.
                    _ = try? await response.body.collect(upTo: 64 * 1024)
                    try await client.shutdown()
                    redirects += 1
                    request.url = next.absoluteString
                    if status == 303 || ((status == 301 || status == 302) && request.method == .POST) {
                        request.method = .GET
                        request.body = nil
                        request.headers.remove(name: "content-type")
                        request.headers.remove(name: "content-length")
                    }
                    continue
                }
                let body: ByteBuffer
                do {
                    body = try await response.body.collect(upTo: maximumResponseBytes)
                } catch is NIOTooManyBytesError {
                    throw EgressError(
                        "the response of \(request.url) is over the \(maximumResponseBytes)-byte limit (SWITCHBOARD_WORKFLOW_HTTP_MAX_RESPONSE_BYTES)"
                    )
                }
                try await client.shutdown()
                return Answer(status: status, body: body, url: request.url)
            } catch {
                try? await client.shutdown()
                throw error
            }
        }
    }

    /// A client bound to the vetted address of `url`'s host.
    func connect(to text: String) async throws -> (HTTPClient, URL) {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = url.host, !host.isEmpty
        else { throw EgressError("only http and https URLs are allowed: \(text)") }
        let port = url.port ?? (scheme == "https" ? 443 : 80)
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow, connectionPool: .init())
        if let literal = IPAddress(host) {
            if let refusal = policy.refusal(host: host, port: port, address: literal) { throw EgressError(refusal) }
        } else {
            let addresses = try await Self.resolve(host)
            guard !addresses.isEmpty else { throw EgressError("\(host) does not resolve") }
            // Every address the name has must be acceptable: a name with one private address among
            // public ones points inside as well.
            for address in addresses {
                if let refusal = policy.refusal(host: host, port: port, address: address) { throw EgressError(refusal) }
            }
            configuration.dnsOverride = [host: addresses[0].description]
        }
        return (HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration), url)
    }

    /// getaddrinfo blocks: it runs on NIO's thread pool, never on Swift's cooperative pool.
    static func resolve(_ host: String) async throws -> [IPAddress] {
        try await NIOThreadPool.singleton.runIfActive {
            var hints = addrinfo()
            hints.ai_family = AF_UNSPEC
            #if canImport(Glibc)
                hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            #else
                hints.ai_socktype = SOCK_STREAM
            #endif
            var list: UnsafeMutablePointer<addrinfo>?
            let status = getaddrinfo(host, nil, &hints, &list)
            guard status == 0, let first = list else {
                throw EgressError("\(host) does not resolve: \(String(cString: gai_strerror(status)))")
            }
            defer { freeaddrinfo(first) }
            var addresses: [IPAddress] = []
            var cursor: UnsafeMutablePointer<addrinfo>? = first
            while let entry = cursor {
                if let socketAddress = entry.pointee.ai_addr {
                    switch Int32(entry.pointee.ai_family) {
                    case AF_INET:
                        let bytes = socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                            withUnsafeBytes(of: pointer.pointee.sin_addr) { Array($0) }
                        }
                        if let address = IPAddress(bytes: bytes), !addresses.contains(address) {
                            addresses.append(address)
                        }
                    case AF_INET6:
                        let bytes = socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                            withUnsafeBytes(of: pointer.pointee.sin6_addr) { Array($0) }
                        }
                        if let address = IPAddress(bytes: bytes), !addresses.contains(address) {
                            addresses.append(address)
                        }
                    default:
                        break
                    }
                }
                cursor = entry.pointee.ai_next
            }
            return addresses
        }
    }
}
