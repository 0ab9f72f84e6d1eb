import Crypto
import Foundation

/// JWTs built by hand, for the auth negatives: any header and claims, signed HS256 with a secret
/// (whatever `alg` the header claims), or not signed at all.
public enum ForgedTokens {
    public static func token(header: [String: Any], claims: [String: Any], secret: String?) -> String {
        let signingInput = part(header) + "." + part(claims)
        guard let secret else { return signingInput + "." }
        let mac = HMAC<SHA256>.authenticationCode(
            for: Data(signingInput.utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return signingInput + "." + base64URL(Data(mac))
    }

    /// Claims of a user token valid for `lifetime` seconds from now, with `extra` added.
    public static func claims(user: String, lifetime: TimeInterval = 3600, _ extra: [String: Any] = [:]) -> [String:
        Any]
    {
        let now = Date().timeIntervalSince1970
        return ["sub": user, "exp": Int(now + lifetime), "iat": Int(now)].merging(extra) { $1 }
    }

    static func part(_ object: [String: Any]) -> String {
        base64URL((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data())
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
