import ArgumentParser
import Foundation
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardTestSupport
import SwitchboardVoice
import Testing

@testable import AgentWorker
@testable import Gateway
@testable import VoiceWorker

/// Issue 14 item 3: secrets are refused where anyone can read them, outside development mode.
@Suite struct SecretSettingsTests {
    let secret = "unit-test-secret-0123456789abcdef-xyz"

    @Test func aMissingSecretIsRefusedUnlessInDevelopmentMode() throws {
        #expect {
            try CommonOptions.parse([]).resolve(service: .gateway, environment: [:])
        } throws: { ($0 as? ConfigurationError)?.description.contains("SWITCHBOARD_JWT_SECRET is required") == true }
        let development = try CommonOptions.parse([]).resolve(
            service: .gateway, environment: ["SWITCHBOARD_DEVELOPMENT_MODE": "1"])
        #expect(development.jwtSecret == SwitchboardConfiguration.developmentSecret)
    }

    @Test(arguments: Array(SwitchboardConfiguration.publishedSecrets))
    func publishedSecretsAreRefusedOutsideDevelopmentMode(_ published: String) throws {
        for variable in ["SWITCHBOARD_JWT_SECRET", "SWITCHBOARD_DEVICE_TOKEN_SECRET"] {
            let environment = ["SWITCHBOARD_JWT_SECRET": secret].merging([variable: published]) { $1 }
            #expect(throws: ConfigurationError.self) {
                try CommonOptions.parse([]).resolve(service: .gateway, environment: environment)
            }
        }
        // The compose default was 30 bytes: refused for its length whatever the mode.
        let development = ["SWITCHBOARD_JWT_SECRET": published, "SWITCHBOARD_DEVELOPMENT_MODE": "1"]
        if published.utf8.count >= TokenAuthority.minimumSecretBytes {
            #expect(
                try CommonOptions.parse([]).resolve(service: .gateway, environment: development).jwtSecret == published)
        } else {
            #expect(throws: ConfigurationError.self) {
                try CommonOptions.parse([]).resolve(service: .gateway, environment: development)
            }
        }
    }

    @Test func deviceTokensHaveAKeyApartFromTheJWTKey() throws {
        let shared = try CommonOptions.parse([]).resolve(
            service: .gateway, environment: ["SWITCHBOARD_JWT_SECRET": secret])
        #expect(shared.deviceKeySecret == secret)
        let own = try CommonOptions.parse([]).resolve(
            service: .gateway,
            environment: [
                "SWITCHBOARD_JWT_SECRET": secret,
                "SWITCHBOARD_DEVICE_TOKEN_SECRET": "device-secret-0123456789abcdef-0123",
            ])
        #expect(own.deviceKeySecret == "device-secret-0123456789abcdef-0123")
        // Derived under labels of their own: a grant verifies only with the grant key; the open-enrollment
        // format signed with the JWT secret itself does not pass for one signed with its derived key.
        let grant = DeviceGrant(user: "u", device: "d", client: "c", generation: 1, issuedAt: 100, expiresAt: 200)
            .mint(key: DeviceGrant.key(secret: secret))
        #expect(DeviceGrant.verify(grant, key: DeviceGrant.key(secret: secret), now: 150) != nil)
        #expect(DeviceGrant.verify(grant, key: DeviceGrant.openEnrollmentKey(secret: secret), now: 150) == nil)
        let withJWTKey = Xiaozhi.DeviceToken(secret: secret).mint(clientId: "c", deviceId: "d", at: 100)
        let derived = Xiaozhi.DeviceToken(key: DeviceGrant.openEnrollmentKey(secret: secret))
        #expect(!derived.verify(withJWTKey, clientId: "c", deviceId: "d", now: 100))
        #expect(
            derived.verify(derived.mint(clientId: "c", deviceId: "d", at: 100), clientId: "c", deviceId: "d", now: 100))
        #expect(
            !derived.verify(
                derived.mint(clientId: "c", deviceId: "d", at: 100), clientId: "c", deviceId: "other", now: 100))
    }

    @Test func tokenPolicyAndAdminPortComeFromTheEnvironment() throws {
        let configuration = try CommonOptions.parse([]).resolve(
            service: .orchestrator,
            environment: [
                "SWITCHBOARD_JWT_SECRET": secret, "SWITCHBOARD_JWT_ISSUER": "https://auth.example",
                "SWITCHBOARD_JWT_AUDIENCE": "switchboard",
                "SWITCHBOARD_JWT_MAX_LIFETIME_SECONDS": "3600", "SWITCHBOARD_ADMIN_PORT": "0",
                "SWITCHBOARD_ADMIN_HOST": "0.0.0.0",
            ])
        #expect(
            configuration.tokenPolicy
                == TokenPolicy(issuer: "https://auth.example", audience: "switchboard", maxLifetimeSeconds: 3600))
        #expect(configuration.adminPort == 0 && configuration.adminHost == "0.0.0.0")
        #expect(ServiceKind.allCases.map(\.defaultAdminPort) == [9080, 9081, 9082, 9083, 9084, 9085])
    }
}

/// Issue 14 item 3: what a token must be beyond a valid signature.
@Suite struct TokenPolicyTests {
    let secret = "unit-test-secret-0123456789abcdef-xyz"

    func refusal(_ token: String, policy: TokenPolicy = TokenPolicy()) async throws -> String? {
        let authority = try await TokenAuthority(secret: secret, policy: policy)
        do {
            _ = try await authority.verify(token)
            return nil
        } catch {
            return error.reason
        }
    }

    @Test func algNoneAndRS256AreRefusedEvenWhenOtherwiseValid() async throws {
        let claims = ForgedTokens.claims(user: "mallory")
        let unsigned = ForgedTokens.token(header: ["alg": "none", "typ": "JWT"], claims: claims, secret: nil)
        #expect(try await refusal(unsigned)?.contains("algorithm") == true)
        // Signed with the real secret, but its header says RS256: JWTKit alone would accept it.
        let confused = ForgedTokens.token(header: ["alg": "RS256", "typ": "JWT"], claims: claims, secret: secret)
        #expect(try await refusal(confused)?.contains("algorithm") == true)
        let genuine = ForgedTokens.token(header: ["alg": "HS256", "typ": "JWT"], claims: claims, secret: secret)
        #expect(try await refusal(genuine) == nil)
    }

    @Test func lifetimeNotBeforeIssuerAndAudienceAreChecked() async throws {
        let header: [String: Any] = ["alg": "HS256", "typ": "JWT"]
        func token(_ claims: [String: Any]) -> String {
            ForgedTokens.token(header: header, claims: claims, secret: secret)
        }
        let farFuture = token(ForgedTokens.claims(user: "u", lifetime: 365 * 24 * 3600))
        #expect(try await refusal(farFuture)?.contains("lifetime") == true)
        #expect(try await refusal(token(ForgedTokens.claims(user: "u", lifetime: 6 * 24 * 3600))) == nil)
        let early = token(ForgedTokens.claims(user: "u", ["nbf": Int(Date().timeIntervalSince1970) + 600]))
        #expect(try await refusal(early)?.contains("nbf") == true)
        #expect(
            try await refusal(token(ForgedTokens.claims(user: "u", ["nbf": Int(Date().timeIntervalSince1970) - 10])))
                == nil)

        let policy = TokenPolicy(issuer: "https://auth.example", audience: "switchboard")
        let right = token(
            ForgedTokens.claims(user: "u", ["iss": "https://auth.example", "aud": ["other", "switchboard"]]))
        #expect(try await refusal(right, policy: policy) == nil)
        let wrongAudience = token(ForgedTokens.claims(user: "u", ["iss": "https://auth.example", "aud": "other"]))
        #expect(try await refusal(wrongAudience, policy: policy)?.contains("aud") == true)
        let noAudience = token(ForgedTokens.claims(user: "u", ["iss": "https://auth.example"]))
        #expect(try await refusal(noAudience, policy: policy)?.contains("aud") == true)
        let wrongIssuer = token(ForgedTokens.claims(user: "u", ["iss": "https://evil.example", "aud": "switchboard"]))
        #expect(try await refusal(wrongIssuer, policy: policy)?.contains("iss") == true)
        // What the authority mints carries its policy's claims and passes it.
        let authority = try await TokenAuthority(secret: secret, policy: policy)
        let claims = try await authority.verify(try await authority.mint(user: "u"))
        #expect(claims.issuer == "https://auth.example" && claims.audiences == ["switchboard"])
    }

    /// A token verified once is not parsed again, but its expiry still ends it, and a token whose
    /// payload or signature differs by one character is verified (and refused) on its own.
    @Test func aRememberedTokenStillExpiresAndATamperedOneIsNotRemembered() async throws {
        let authority = try await TokenAuthority(secret: secret)
        let token = try await authority.mint(user: "u", lifetime: .seconds(60))
        #expect(try await authority.verify(token).userID == "u")
        #expect(try await authority.verify(token).userID == "u")
        await #expect(throws: AuthError.self) { try await authority.verify(token, now: Date().addingTimeInterval(120)) }
        var tampered = Array(token)
        tampered[tampered.count - 2] = tampered[tampered.count - 2] == "A" ? "B" : "A"
        await #expect(throws: AuthError.self) { try await authority.verify(String(tampered)) }
    }
}

/// Issue 14 item 3: the agent-worker calls only the servers it lists, with the keys it names.
@Suite struct ProviderAllowListTests {
    @Test func entriesNameABaseURLAndOptionallyTheVariableOfItsKey() throws {
        let list = try ProviderAllowList(
            parsing: "https://api.openai.com/v1/=OPENAI_API_KEY, http://127.0.0.1:11434/v1")
        #expect(list.entry(for: "https://api.openai.com/v1")?.keyVariable == "OPENAI_API_KEY")
        #expect(list.entry(for: "https://api.openai.com/v1/")?.keyVariable == "OPENAI_API_KEY")
        #expect(list.entry(for: "http://127.0.0.1:11434/v1") != nil)
        #expect(list.entry(for: "http://127.0.0.1:11434/v1")?.keyVariable == nil)
        #expect(list.entry(for: "https://attacker.example/v1") == nil)
        #expect(list.entry(for: "https://api.openai.com/v1.attacker.example") == nil)
        #expect(list.entry(for: nil) == nil)
        #expect(try ProviderAllowList(parsing: "").entries.isEmpty)
        for bad in ["ftp://x/v1", "not a url", "https://x/v1=", "https://x/v1=$(rm)"] {
            #expect(throws: ProviderAllowListError.self) { try ProviderAllowList(parsing: bad) }
        }
    }

    @Test func aRefusedProviderFailsAtOnceWithoutRetry() async throws {
        let refused = RefusedProvider(baseURL: "https://attacker.example/v1")
        await #expect {
            try await refused.stream(ProviderRequest(role: "Alex", userMessage: "hi")) { _ in }
        } throws: { error in
            guard let error = error as? ProviderError else { return false }
            return error.code == .notAllowed && !error.isRetryable
                && error.message.contains("SWITCHBOARD_AGENT_PROVIDERS")
        }
    }
}

/// Issue 14 item 11: the bounds' pure parts.
@Suite struct ClientBoundsTests {
    @Test func clientIDsAreOneTo128Characters() {
        #expect(!GatewayLimits.isValidClientID(""))
        #expect(GatewayLimits.isValidClientID("c"))
        #expect(GatewayLimits.isValidClientID(String(repeating: "é", count: 128)))
        #expect(!GatewayLimits.isValidClientID(String(repeating: "x", count: 129)))
    }

    @Test func theServersFailuresDoNotCountAsTheClients() {
        #expect(CommandHandler.isClientError(.error("c", code: .invalidArgument, message: "bad")))
        #expect(CommandHandler.isClientError(.error("c", code: .limitExceeded, message: "too many")))
        for code in [ErrorCode.unavailable, .internalError, .rateLimited] {
            #expect(!CommandHandler.isClientError(.error("c", code: code, message: "not yours")))
        }
        #expect(!CommandHandler.isClientError(.ack("c")))
        #expect(!CommandHandler.isClientError(nil))
    }

    @Test func uplinkPacketsAreRateLimitedWithABurst() {
        var rate = PacketRate(rate: 50, burst: 100)
        let start = ContinuousClock.now
        // A burst of 100 at once passes; the 101st does not.
        var passed = 0
        for _ in 0..<101 where rate.allow(at: start) { passed += 1 }
        #expect(passed == 100)
        // 100 ms later, 5 more.
        let later = start.advanced(by: .milliseconds(100))
        passed = 0
        for _ in 0..<6 where rate.allow(at: later) { passed += 1 }
        #expect(passed == 5)
        // A device at the real pace (one packet per 60 ms) is never refused.
        var steady = PacketRate(
            rate: GatewayLimits.deviceUplinkPacketsPerSecond, burst: GatewayLimits.deviceUplinkBurst)
        var refused = 0
        for index in 0..<2000 where !steady.allow(at: start.advanced(by: .milliseconds(60 * index))) { refused += 1 }
        #expect(refused == 0)
    }

    @Test func aDeviceTooFarBehindIsClosedInsteadOfQueuedWithoutEnd() throws {
        let identity = DeviceIdentity(
            deviceID: "d", clientID: "c", protocolVersion: 1, userID: "u", conversationID: "voice-d")
        let connection = DeviceConnection(
            sessionID: "s", identity: identity, framing: try Xiaozhi.BinaryProtocol(version: 1), burstFrames: 5)
        for _ in 0..<GatewayLimits.deviceOutboundItems { connection.enqueue(.audio([1, 2, 3], turn: 1)) }
        #expect(connection.queuedItems == GatewayLimits.deviceOutboundItems)
        connection.enqueue(.audio([1, 2, 3], turn: 1))
        // Everything queued went; only the close with its reason is left, and nothing more is taken.
        #expect(connection.queuedItems == 1)
        connection.enqueue(.text("{}", turn: nil))
        #expect(connection.queuedItems == 1)
    }

    @Test func aManualRecordingStopsAt30Seconds() {
        var recording = ManualRecording()
        let frame = [Int16](repeating: 1, count: 960)  // 60 ms at 16 kHz
        var accepted = 0
        while recording.append(frame) { accepted += 1 }
        #expect(accepted == ManualRecording.maxSamples / 960)
        #expect(recording.samples.count <= ManualRecording.maxSamples)
        #expect(recording.samples.count == accepted * 960)
        recording.removeAll()
        let appended = recording.append(frame)
        #expect(appended && recording.samples.count == 960)
    }
}
