import Crypto
import Foundation
@testable import Gateway
import Testing

/// The pure side of device activation: codes, the device's proof, the decision `/activate` answers
/// and the bound device's token.
struct DeviceActivationTests {
    @Test func codesAreSixDigitsWithLeadingZeros() {
        var generator = SystemRandomNumberGenerator()
        let codes = (0..<5000).map { _ in ActivationCode.generate(using: &generator) }
        #expect(codes.allSatisfy(ActivationCode.isWellFormed))
        // One in ten starts with a zero: padded, never five digits.
        #expect(codes.contains { $0.hasPrefix("0") })
        #expect(Set(codes).count > 4900)
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６", " 12345"] {
            #expect(!ActivationCode.isWellFormed(bad), "\(bad)")
        }
        #expect(ActivationCode.message(code: "042042").contains("042042"))
    }

    @Test func theFirmwaresPayloadParsesWrappedFlatOrEmpty() throws {
        let wrapped = try ActivationProof.parse(
            Data(#"{"Payload":{"algorithm":"hmac-sha256","serial_number":"SN1","challenge":"c1","hmac":"ab"}}"#.utf8))
        #expect(wrapped == ActivationProof(algorithm: "hmac-sha256", serialNumber: "SN1", challenge: "c1", hmac: "ab"))
        let flat = try ActivationProof.parse(Data(#"{"challenge":"c2"}"#.utf8))
        #expect(flat.challenge == "c2" && flat.hmac == nil)
        #expect(try ActivationProof.parse(Data()) == ActivationProof())
        #expect(try ActivationProof.parse(Data("  \n".utf8)) == ActivationProof())
        #expect(throws: (any Error).self) { try ActivationProof.parse(Data("not json".utf8)) }
    }

    static let now: Int64 = 1_000_000
    static let pending = PendingActivation(
        code: "123456", challenge: "chal", clientId: "client", expiresAt: now + 60_000)
    static func binding(activated: Bool = false) -> DeviceBinding {
        DeviceBinding(
            deviceId: "aa:bb", userId: "u", clientId: "client", name: "n", generation: 0, boundAt: now,
            activated: activated)
    }

    @Test func activateIsPendingUntilBoundThenActivated() {
        let none = ActivationProof()
        #expect(
            ActivationOutcome.decide(binding: nil, pending: Self.pending, proof: none, hmacKey: nil, now: Self.now)
                == .pending)
        #expect(
            ActivationOutcome.decide(
                binding: Self.binding(), pending: Self.pending, proof: none, hmacKey: nil, now: Self.now) == .activated)
        // Nothing in progress, nothing bound: the device must ask OTA again.
        #expect(
            ActivationOutcome.decide(binding: nil, pending: nil, proof: none, hmacKey: nil, now: Self.now) == .expired)
        var old = Self.pending
        old.expiresAt = Self.now - 1
        #expect(
            ActivationOutcome.decide(binding: nil, pending: old, proof: none, hmacKey: nil, now: Self.now) == .expired)
        // A challenge other than the one issued is refused.
        let wrong = ActivationProof(challenge: "other")
        guard
            case .rejected = ActivationOutcome.decide(
                binding: Self.binding(), pending: Self.pending, proof: wrong, hmacKey: nil, now: Self.now)
        else { Issue.record("a wrong challenge passed"); return }
    }

    @Test func withAnHMACKeyTheProofIsRequiredAndChecked() {
        let key = SymmetricKey(data: Data(repeating: 7, count: 32))
        let good = ActivationProof(challenge: "chal", hmac: ActivationProof.mac(challenge: "chal", key: key))
        #expect(
            ActivationOutcome.decide(
                binding: Self.binding(), pending: Self.pending, proof: good, hmacKey: key, now: Self.now) == .activated)
        #expect(
            ActivationOutcome.decide(binding: nil, pending: Self.pending, proof: good, hmacKey: key, now: Self.now)
                == .pending)
        let otherKey = SymmetricKey(data: Data(repeating: 8, count: 32))
        for proof in [
            ActivationProof(challenge: "chal"), ActivationProof(challenge: "chal", hmac: "zz"),
            ActivationProof(challenge: "chal", hmac: ActivationProof.mac(challenge: "chal", key: otherKey)),
            ActivationProof(hmac: ActivationProof.mac(challenge: "mine", key: key)),
        ] {
            let outcome = ActivationOutcome.decide(
                binding: Self.binding(), pending: Self.pending, proof: proof, hmacKey: key, now: Self.now)
            guard case .rejected = outcome else {
                Issue.record("\(proof) gave \(outcome)")
                continue
            }
        }
    }

    @Test func aGrantVerifiesOnlyUnchangedAndUnexpired() throws {
        let key = DeviceGrant.key(secret: "a-secret-of-at-least-thirty-two-bytes!!")
        let grant = DeviceGrant(
            user: "alice", device: "aa:bb", client: "c", generation: 3, issuedAt: 100, expiresAt: 200)
        let token = grant.mint(key: key)
        #expect(DeviceGrant.looksLikeGrant(token))
        // Neither a JWT (two dots) nor the reference server's token (one dot).
        #expect(!token.contains("."))
        #expect(DeviceGrant.verify(token, key: key, now: 150) == grant)
        #expect(DeviceGrant.verify(token, key: key, now: 200) == nil)
        #expect(
            DeviceGrant.verify(token, key: DeviceGrant.key(secret: "another-secret-of-at-least-32-bytes!!"), now: 150)
                == nil)
        // A changed payload (another user) with the old MAC is refused.
        let parts = token.dropFirst(DeviceGrant.prefix.count).split(separator: "~")
        var forged = grant
        forged.user = "mallory"
        let forgedPayload = DeviceGrant.base64URL(try JSONEncoder().encode(forged))
        #expect(DeviceGrant.verify(DeviceGrant.prefix + forgedPayload + "~" + parts[1], key: key, now: 150) == nil)
        #expect(DeviceGrant.verify("sbd1~garbage", key: key, now: 150) == nil)
    }

    @Test func aBoundDevicesConversationIsPerOwner() {
        let alice = DeviceIdentity.conversation(ofDevice: "aa:bb:cc", user: "alice")
        let bob = DeviceIdentity.conversation(ofDevice: "aa:bb:cc", user: "bob")
        #expect(alice.hasPrefix("voice-aa-bb-cc-"))
        #expect(alice != bob)
        #expect(alice == DeviceIdentity.conversation(ofDevice: "aa:bb:cc", user: "alice"))
    }

    @Test func settingsAreClosedByDefaultAndCheckedAtStart() throws {
        let defaults = try DeviceActivationSettings.fromEnvironment([:])
        #expect(!defaults.openEnrollment)
        #expect(defaults.hmacKey == nil)
        #expect(defaults.codeLifetimeSeconds == 300)
        #expect(
            try DeviceActivationSettings.fromEnvironment(["SWITCHBOARD_DEVICES_OPEN_ENROLLMENT": "1"]).openEnrollment)
        #expect(throws: (any Error).self) {
            try DeviceActivationSettings.fromEnvironment(["SWITCHBOARD_DEVICES_OPEN_ENROLLMENT": "maybe"])
        }
        #expect(throws: (any Error).self) {
            try DeviceActivationSettings.fromEnvironment(["SWITCHBOARD_DEVICES_ACTIVATION_HMAC_KEY": "xyz"])
        }
        #expect(throws: (any Error).self) {
            try DeviceActivationSettings.fromEnvironment(["SWITCHBOARD_DEVICES_OTA_RATE": "0"])
        }
        let keyed = try DeviceActivationSettings.fromEnvironment([
            "SWITCHBOARD_DEVICES_ACTIVATION_HMAC_KEY": String(repeating: "ab", count: 32)
        ])
        #expect(keyed.hmacKey != nil)
    }
}
