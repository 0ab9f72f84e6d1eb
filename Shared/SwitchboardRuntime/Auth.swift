import Foundation
import JWTKit

/// The claims of a Switchboard token: `sub` is the user id, `exp` is required.
public struct SwitchboardClaims: JWTPayload, Equatable {
    public var sub: SubjectClaim
    public var exp: ExpirationClaim
    public var iat: IssuedAtClaim?
    /// "admin" and "service" may broadcast and notify; plain users may not.
    public var roles: [String]?

    public init(user: String, expiresAt: Date, roles: [String]? = nil) {
        self.sub = SubjectClaim(value: user)
        self.exp = ExpirationClaim(value: expiresAt)
        self.iat = IssuedAtClaim(value: Date())
        self.roles = roles
    }

    public func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        guard !sub.value.isEmpty else { throw JWTError.claimVerificationFailure(failedClaim: sub, reason: "empty subject") }
    }

    public var userID: String { sub.value }
    public var isPrivileged: Bool { roles?.contains(where: { $0 == "admin" || $0 == "service" }) ?? false }
}

public struct AuthError: Error, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Signs and verifies HS256 tokens with the shared secret.
public struct TokenAuthority: Sendable {
    private let keys: JWTKeyCollection
    /// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
    public static let minimumSecretBytes = 32

    public init(secret: String) async throws(AuthError) {
        guard secret.utf8.count >= Self.minimumSecretBytes else {
            throw AuthError("the JWT secret must be at least \(Self.minimumSecretBytes) bytes")
        }
        keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
    }

    public func mint(user: String, lifetime: Duration = .seconds(24 * 3600), roles: [String]? = nil) async throws -> String {
        let expiry = Date().addingTimeInterval(TimeInterval(lifetime.components.seconds))
        return try await keys.sign(SwitchboardClaims(user: user, expiresAt: expiry, roles: roles))
    }

    /// The claims of a valid token; a missing, expired, forged or malformed one throws `AuthError`.
    public func verify(_ token: String) async throws(AuthError) -> SwitchboardClaims {
        do {
            return try await keys.verify(token, as: SwitchboardClaims.self)
        } catch let error as JWTError {
            switch error.errorType {
            case .claimVerificationFailure: throw AuthError("token expired or its claims are invalid")
            case .signatureVerificationFailed: throw AuthError("token signature is invalid")
            default: throw AuthError("token is malformed")
            }
        } catch {
            throw AuthError("token is malformed")
        }
    }
}
