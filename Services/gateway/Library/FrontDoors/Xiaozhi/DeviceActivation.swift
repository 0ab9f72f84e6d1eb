import Crypto
import Foundation
import SwitchboardRuntime

/// How xiaozhi devices are bound to users before they get a token (docs/voice.md#activation).
public struct DeviceActivationSettings: Sendable {
    /// Development only: OTA hands every device a token without binding, as user `device:<id>` (the
    /// reference server's open behaviour). Off by default.
    public var openEnrollment = false
    /// How long an activation code (and its challenge) is valid.
    public var codeLifetimeSeconds = 300
    /// OTA and activate requests per second per client address, and the burst above it.
    public var otaRequestsPerSecond = 1.0
    public var otaBurst = 10
    /// Binding attempts per user in a burst (refilled at one per 10 s), so codes cannot be guessed.
    public var bindBurst = 5
    /// The fleet's HMAC key (hex) the firmware signs the challenge with; nil: the HMAC cannot be
    /// checked, so only the challenge itself is compared.
    public var hmacKey: SymmetricKey?

    public init() {}

    static func fromEnvironment(_ environment: [String: String]) throws -> Self {
        var settings = Self()
        settings.openEnrollment = try flag("DEVICES_OPEN_ENROLLMENT", environment) ?? false
        settings.codeLifetimeSeconds = try setting(
            Int?.none, environment: "DEVICES_CODE_LIFETIME_SECONDS", default: settings.codeLifetimeSeconds,
            environment: environment)
        settings.otaRequestsPerSecond = try setting(
            Double?.none, environment: "DEVICES_OTA_RATE", default: settings.otaRequestsPerSecond,
            environment: environment)
        settings.otaBurst = try setting(
            Int?.none, environment: "DEVICES_OTA_BURST", default: settings.otaBurst, environment: environment)
        settings.bindBurst = try setting(
            Int?.none, environment: "DEVICES_BIND_BURST", default: settings.bindBurst, environment: environment)
        if let hex = environment["SWITCHBOARD_DEVICES_ACTIVATION_HMAC_KEY"], !hex.isEmpty {
            guard let bytes = ActivationProof.bytes(hex: hex), bytes.count >= 16 else {
                throw ConfigurationError(
                    "SWITCHBOARD_DEVICES_ACTIVATION_HMAC_KEY must be at least 16 bytes written in hex")
            }
            settings.hmacKey = SymmetricKey(data: bytes)
        }
        guard settings.codeLifetimeSeconds >= 30, settings.otaRequestsPerSecond > 0, settings.otaBurst > 0,
            settings.bindBurst > 0
        else {
            throw ConfigurationError("device activation limits must be positive (code lifetime ≥ 30 s)")
        }
        return settings
    }

    /// `1`/`true`/`yes` or `0`/`false`/`no`; anything else stops the service.
    static func flag(_ variable: String, _ environment: [String: String]) throws -> Bool? {
        guard let raw = environment["SWITCHBOARD_\(variable)"]?.lowercased(), !raw.isEmpty else { return nil }
        switch raw {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw ConfigurationError("SWITCHBOARD_\(variable) must be 1 or 0, got \(raw)")
        }
    }
}

/// The six-digit code a device shows and speaks until a user binds it.
enum ActivationCode {
    static func generate<G: RandomNumberGenerator>(using generator: inout G) -> String {
        let value = Int.random(in: 0...999_999, using: &generator)
        let digits = String(value)
        return String(repeating: "0", count: 6 - digits.count) + digits
    }

    static func isWellFormed(_ code: String) -> Bool {
        code.utf8.count == 6 && code.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    }

    /// What the device shows and speaks (the firmware reads `message` aloud, then the code's digits).
    static func message(code: String) -> String {
        "Open the Switchboard console, go to Devices and enter the code \(code)"
    }
}

/// An activation in progress: what OTA handed the device, until it is bound or the code expires.
struct PendingActivation: Codable, Sendable, Equatable {
    var code: String
    var challenge: String
    var clientId: String
    var expiresAt: Int64  // epoch ms
}

/// A device bound to a user.
struct DeviceBinding: Codable, Sendable, Equatable {
    var deviceId: String
    var userId: String
    /// The Client-Id the device activated with: OTA hands a token only to the same client.
    var clientId: String
    var name: String
    /// Bumped on every unbind: a token minted for an older generation is refused.
    var generation: Int64
    var boundAt: Int64  // epoch ms
    /// The device proved the challenge on `/activate` (required for a token when an HMAC key is set).
    var activated: Bool
}

/// The device's own `POST <ota-url>/activate` body. The ESP32 firmware sends
/// `{"Payload": {"algorithm": "hmac-sha256", "serial_number", "challenge", "hmac"}}` (hmac: hex of
/// HMAC-SHA256(efuse key, challenge)); other clients send the fields at the top level or nothing.
struct ActivationProof: Decodable, Sendable, Equatable {
    var algorithm: String?
    var serialNumber: String?
    var challenge: String?
    var hmac: String?

    enum CodingKeys: String, CodingKey {
        case algorithm, challenge, hmac
        case serialNumber = "serial_number"
        case payload = "Payload"
    }

    init(algorithm: String? = nil, serialNumber: String? = nil, challenge: String? = nil, hmac: String? = nil) {
        self.algorithm = algorithm
        self.serialNumber = serialNumber
        self.challenge = challenge
        self.hmac = hmac
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if container.contains(.payload) {
            self = try container.decode(ActivationProof.self, forKey: .payload)
            return
        }
        algorithm = try container.decodeIfPresent(String.self, forKey: .algorithm)
        serialNumber = try container.decodeIfPresent(String.self, forKey: .serialNumber)
        challenge = try container.decodeIfPresent(String.self, forKey: .challenge)
        hmac = try container.decodeIfPresent(String.self, forKey: .hmac)
    }

    /// An empty or absent body is a proof without fields.
    static func parse(_ data: Data) throws -> Self {
        let trimmed = data.drop { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }
        if trimmed.isEmpty { return Self() }
        return try JSONDecoder().decode(Self.self, from: Data(trimmed))
    }

    static func mac(challenge: String, key: SymmetricKey) -> String {
        HMAC<SHA256>.authenticationCode(for: Data(challenge.utf8), using: key).map { String(format: "%02x", $0) }
            .joined()
    }

    /// Constant time over the MAC bytes.
    func hmacMatches(_ challenge: String, key: SymmetricKey) -> Bool {
        guard let hmac, let given = Self.bytes(hex: hmac) else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(given, authenticating: Data(challenge.utf8), using: key)
    }

    static func bytes(hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    private static func nibble(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// What `/activate` answers, decided without I/O.
enum ActivationOutcome: Equatable, Sendable {
    /// Bound (and the proof, if one is required, checked): 200.
    case activated
    /// Not bound yet: 202, the device asks again.
    case pending
    /// No code in progress and not bound: the device must ask OTA for a new code.
    case expired
    /// A wrong challenge or HMAC.
    case rejected(String)

    static func decide(
        binding: DeviceBinding?, pending: PendingActivation?, proof: ActivationProof, hmacKey: SymmetricKey?, now: Int64
    ) -> Self {
        let live = pending.flatMap { $0.expiresAt > now ? $0 : nil }
        guard binding != nil || live != nil else { return .expired }
        if let challenge = proof.challenge, let live, challenge != live.challenge {
            return .rejected("the challenge is not the one OTA issued")
        }
        if let hmacKey {
            // The proof is over the challenge this server issued, never one the device chose.
            guard let live else { return binding?.activated == true ? .activated : .expired }
            guard proof.hmacMatches(live.challenge, key: hmacKey) else {
                return .rejected("the HMAC of the challenge is missing or wrong")
            }
        }
        return binding == nil ? .pending : .activated
    }
}

/// The token of a bound device: who owns it, for which device and client, of which binding
/// generation. `sbd1~<base64url JSON>~<base64url HMAC>`: neither a JWT (two dots) nor the reference
/// server's HMAC token (one dot), so the gateway tells them apart by their shape.
struct DeviceGrant: Codable, Sendable, Equatable {
    var user: String
    var device: String
    var client: String
    var generation: Int64
    var issuedAt: Int64  // epoch s
    var expiresAt: Int64  // epoch s

    static let prefix = "sbd1~"
    static let lifetimeSeconds: Int64 = 30 * 24 * 3600

    static func looksLikeGrant(_ token: String) -> Bool { token.hasPrefix(prefix) }

    /// A key of its own, derived from the device-token secret (SWITCHBOARD_DEVICE_TOKEN_SECRET, else
    /// the JWT secret), so a grant can never pass as anything else.
    static func key(secret: String) -> SymmetricKey {
        derivedKey(secret: secret, label: "switchboard device grant v1")
    }

    /// The key of the reference server's device tokens (open enrollment), derived the same way under
    /// its own label: never the JWT key itself.
    static func openEnrollmentKey(secret: String) -> SymmetricKey {
        derivedKey(secret: secret, label: "switchboard xiaozhi device token v1")
    }

    private static func derivedKey(secret: String, label: String) -> SymmetricKey {
        SymmetricKey(
            data: HMAC<SHA256>.authenticationCode(for: Data(label.utf8), using: SymmetricKey(data: Data(secret.utf8))))
    }

    func mint(key: SymmetricKey) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        // Encoding five plain fields cannot fail.
        let payload = Self.base64URL((try? encoder.encode(self)) ?? Data())
        let signed = Self.prefix + payload
        return signed + "~" + Self.base64URL(Data(HMAC<SHA256>.authenticationCode(for: Data(signed.utf8), using: key)))
    }

    static func verify(_ token: String, key: SymmetricKey, now: Int64) -> Self? {
        guard looksLikeGrant(token), token.utf8.count <= 2048 else { return nil }
        let parts = token.dropFirst(prefix.count).split(separator: "~", omittingEmptySubsequences: false)
        guard parts.count == 2, let mac = data(base64URL: String(parts[1])),
            HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Data((prefix + parts[0]).utf8), using: key),
            let json = data(base64URL: String(parts[0])), let grant = try? JSONDecoder().decode(Self.self, from: json)
        else { return nil }
        guard grant.expiresAt > now, grant.issuedAt <= now + 300 else { return nil }
        return grant
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func data(base64URL text: String) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        return Data(base64Encoded: base64)
    }
}

extension DeviceIdentity {
    /// A bound device's conversation is its owner's: one per device and user, so a device bound to
    /// someone else later never reaches the first owner's history (the conversation id would be
    /// claimed by them, and the new owner gets a fresh one).
    static func conversation(ofDevice id: String, user: String) -> String {
        let digest = SHA256.hash(data: Data(user.utf8)).prefix(6).map { String(format: "%02x", $0) }.joined()
        return conversation(ofDevice: id) + "-" + digest
    }
}

/// The OTA answer (docs/voice.md). `websocket.token` only for a device that may connect; an unbound
/// device gets `activation` instead.
struct OTAAnswer: Encodable, Sendable {
    struct ServerTime: Encodable, Sendable {
        var timestamp: Int64
        var timezone_offset = 0
    }

    struct Firmware: Encodable, Sendable {
        var version = ""
        var url = ""
    }

    struct WebSocket: Encodable, Sendable {
        var url: String
        var token: String?
    }

    struct Activation: Encodable, Sendable, Equatable {
        var code: String
        var message: String
        var challenge: String
        var timeout_ms: Int64
    }

    var server_time: ServerTime
    var firmware = Firmware()
    var websocket: WebSocket
    var activation: Activation?
}
