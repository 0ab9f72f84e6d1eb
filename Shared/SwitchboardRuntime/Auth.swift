import Foundation
import Synchronization
import JWTKit

/// The claims of a Switchboard token: `sub` is the user id, `exp` is required; `nbf`, `iss` and `aud`
/// are checked when present (and `iss` / `aud` required when the deployment names them, see `TokenPolicy`).
public struct SwitchboardClaims: JWTPayload, Equatable {
    public var sub: SubjectClaim
    public var exp: ExpirationClaim
    public var iat: IssuedAtClaim?
    public var nbf: NotBeforeClaim?
    public var iss: IssuerClaim?
    public var aud: AudienceClaim?
    /// "admin" and "service" may broadcast and notify; plain users may not.
    public var roles: [String]?

    public init(user: String, expiresAt: Date, roles: [String]? = nil, issuer: String? = nil, audience: String? = nil) {
        self.sub = SubjectClaim(value: user)
        self.exp = ExpirationClaim(value: expiresAt)
        self.iat = IssuedAtClaim(value: Date())
        self.roles = roles
        self.iss = issuer.map { IssuerClaim(value: $0) }
        self.aud = audience.map { AudienceClaim(value: [$0]) }
    }

    public func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        guard !sub.value.isEmpty else {
            throw JWTError.claimVerificationFailure(failedClaim: sub, reason: "empty subject")
        }
    }

    public var userID: String { sub.value }
    public var expiresAt: Date { exp.value }
    public var issuer: String? { iss?.value }
    public var audiences: [String] { aud?.value ?? [] }
    public var isPrivileged: Bool { roles?.contains(where: { $0 == "admin" || $0 == "service" }) ?? false }
}

public struct AuthError: Error, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// What a valid token must also satisfy beyond its signature and `exp` (docs/configuration.md).
public struct TokenPolicy: Sendable, Equatable {
    /// SWITCHBOARD_JWT_ISSUER: when set, `iss` must equal it (and minted tokens carry it).
    public var issuer: String?
    /// SWITCHBOARD_JWT_AUDIENCE: when set, `aud` must contain it (and minted tokens carry it).
    public var audience: String?
    /// SWITCHBOARD_JWT_MAX_LIFETIME_SECONDS: a token whose `exp` is further away than this is refused,
    /// so a leaked far-future token cannot outlive a rotation window.
    public var maxLifetimeSeconds = 7 * 24 * 3600
    /// Clock skew tolerated on `nbf` and the lifetime check.
    public static let leewaySeconds: TimeInterval = 30

    public init(issuer: String? = nil, audience: String? = nil, maxLifetimeSeconds: Int = 7 * 24 * 3600) {
        self.issuer = issuer
        self.audience = audience
        self.maxLifetimeSeconds = maxLifetimeSeconds
    }

    /// Why `claims` are not acceptable at `now`, or nil. Signature and `exp` are checked before.
    public func violation(of claims: SwitchboardClaims, now: Date = Date()) -> String? {
        if let notBefore = claims.nbf?.value, notBefore.timeIntervalSince(now) > Self.leewaySeconds {
            return "token is not valid yet (nbf)"
        }
        if claims.exp.value.timeIntervalSince(now) > TimeInterval(maxLifetimeSeconds) + Self.leewaySeconds {
            return "token lifetime exceeds the maximum of \(maxLifetimeSeconds) s"
        }
        if let issuer, claims.iss?.value != issuer { return "token issuer (iss) is not accepted" }
        if let audience, !(claims.aud?.value.contains(audience) ?? false) {
            return "token audience (aud) is not accepted"
        }
        return nil
    }
}

/// Signs and verifies HS256 tokens with the shared secret.
public struct TokenAuthority: Sendable {
    private let keys: JWTKeyCollection
    public let policy: TokenPolicy
    private let verified = VerifiedTokens()
    /// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
    public static let minimumSecretBytes = 32
    /// The only algorithm accepted: JWTKit verifies with the key it has whatever the header says, so
    /// the header is checked here (no `none`, no RS256/HS256 confusion).
    public static let algorithm = "HS256"

    public init(secret: String, policy: TokenPolicy = TokenPolicy()) async throws(AuthError) {
        guard secret.utf8.count >= Self.minimumSecretBytes else {
            throw AuthError("the JWT secret must be at least \(Self.minimumSecretBytes) bytes")
        }
        keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        self.policy = policy
    }

    /// The authority of a service: its secret and policy.
    public init(configuration: SwitchboardConfiguration) async throws(AuthError) {
        try await self.init(secret: configuration.jwtSecret, policy: configuration.tokenPolicy)
    }

    public func mint(user: String, lifetime: Duration = .seconds(24 * 3600), roles: [String]? = nil) async throws
        -> String
    {
        let expiry = Date().addingTimeInterval(TimeInterval(lifetime.components.seconds))
        return try await keys.sign(
            SwitchboardClaims(
                user: user, expiresAt: expiry, roles: roles, issuer: policy.issuer, audience: policy.audience))
    }

    /// The claims of a valid token; a missing, expired, forged or malformed one throws `AuthError`.
    public func verify(_ token: String, now: Date = Date()) async throws(AuthError) -> SwitchboardClaims {
        if let claims = verified.claims(of: token) {
            guard claims.expiresAt > now else { throw AuthError("token expired or its claims are invalid") }
            if let violation = policy.violation(of: claims, now: now) { throw AuthError(violation) }
            return claims
        }
        guard Self.headerAlgorithm(of: token) == Self.algorithm else {
            throw AuthError("token algorithm must be \(Self.algorithm)")
        }
        let claims: SwitchboardClaims
        do {
            claims = try await keys.verify(token, as: SwitchboardClaims.self)
        } catch let error as JWTError {
            switch error.errorType {
            case .claimVerificationFailure: throw AuthError("token expired or its claims are invalid")
            case .signatureVerificationFailed: throw AuthError("token signature is invalid")
            default: throw AuthError("token is malformed")
            }
        } catch {
            throw AuthError("token is malformed")
        }
        if let violation = policy.violation(of: claims, now: now) { throw AuthError(violation) }
        verified.remember(token, claims)
        return claims
    }

    /// The `alg` of a compact JWT's header, or nil when it has none or is not a JWT.
    static func headerAlgorithm(of token: String) -> String? {
        guard let header = token.split(separator: ".", omittingEmptySubsequences: false).first else { return nil }
        var base64 = header.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard let data = Data(base64Encoded: base64),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        return object["alg"] as? String
    }
}

/// Tokens whose signature was verified, with their claims: a client that sends the same token with
/// every request (REST, the notifications API, reconnects) costs one parse of its header, payload and
/// signature, not one per request. Keyed by the whole token, signature included, so only the exact
/// bytes verified before are found; expiry and the policy are still checked on every use. Bounded:
/// emptied when full.
final class VerifiedTokens: Sendable {
    static let capacity = 4096
    private let entries = Mutex<[String: SwitchboardClaims]>([:])

    func claims(of token: String) -> SwitchboardClaims? {
        entries.withLock { $0[token] }
    }

    func remember(_ token: String, _ claims: SwitchboardClaims) {
        entries.withLock { entries in
            if entries.count >= Self.capacity { entries.removeAll(keepingCapacity: true) }
            entries[token] = claims
        }
    }
}
