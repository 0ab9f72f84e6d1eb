import Foundation
#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardTestSupport
import SwitchboardVoice
import Testing

/// Devices are bound to a user before they get a token (docs/voice.md#activation), driven the way the
/// xiaozhi firmware does it: OTA → activation code → a user binds it over REST → `/activate` says 200 →
/// OTA now hands out a token → the WebSocket works; unbinding closes the socket and revokes the token.
@Suite(.serialized, .timeLimit(.minutes(6)))
struct DeviceActivationFlowTests {
    struct HTTPAnswer {
        var status: Int
        var body: Data
        var headers: [String: String]
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:] }
        var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    }

    static func call(
        _ method: String, _ url: String, headers: [String: String] = [:], body: String? = nil
    ) async throws -> HTTPAnswer {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = try #require(response as? HTTPURLResponse)
        var fields: [String: String] = [:]
        for (name, value) in http.allHeaderFields {
            fields[String(describing: name).lowercased()] = String(describing: value)
        }
        return HTTPAnswer(status: http.statusCode, body: data, headers: fields)
    }

    /// What the firmware sends to the OTA URL.
    static func ota(_ base: String, deviceID: String, clientID: String) async throws -> HTTPAnswer {
        try await call(
            "POST", "\(base)/xiaozhi/ota/",
            headers: ["Device-Id": deviceID, "Client-Id": clientID, "Activation-Version": "2"],
            body: #"{"application":{"version":"1.6.0"},"mac_address":"\#(deviceID)"}"#)
    }

    static func activate(_ base: String, deviceID: String, clientID: String, challenge: String?) async throws
        -> HTTPAnswer
    {
        let payload = challenge.map {
            #"{"Payload":{"algorithm":"hmac-sha256","serial_number":"SN-TEST","challenge":"\#($0)"}}"#
        }
        return try await call(
            "POST", "\(base)/xiaozhi/ota/activate", headers: ["Device-Id": deviceID, "Client-Id": clientID],
            body: payload ?? "")
    }

    /// The whole flow for one device: returns the WebSocket URL and token OTA hands out once bound.
    static func bind(
        _ base: String, deviceID: String, clientID: String, user token: String
    ) async throws -> (url: String, token: String) {
        let first = try await ota(base, deviceID: deviceID, clientID: clientID)
        #expect(first.status == 200)
        let activation = try #require(
            first.json["activation"] as? [String: Any], "\(String(decoding: first.body, as: UTF8.self))")
        let code = try #require(activation["code"] as? String)
        let challenge = try #require(activation["challenge"] as? String)
        #expect(code.count == 6 && code.allSatisfy(\.isNumber))
        #expect((activation["message"] as? String)?.contains(code) == true)
        #expect(((activation["timeout_ms"] as? Int) ?? 0) > 200_000)
        // Unbound: no token, and /activate keeps the device waiting.
        #expect((first.json["websocket"] as? [String: Any])?["token"] == nil)
        #expect(try await activate(base, deviceID: deviceID, clientID: clientID, challenge: challenge).status == 202)
        let bound = try await call(
            "POST", "\(base)/api/v1/devices/bind", headers: ["Authorization": "Bearer \(token)"],
            body: #"{"code":"\#(code)"}"#)
        #expect(bound.status == 201, "\(String(decoding: bound.body, as: UTF8.self))")
        #expect(bound.json["id"] as? String == deviceID)
        #expect(try await activate(base, deviceID: deviceID, clientID: clientID, challenge: challenge).status == 200)
        let second = try await ota(base, deviceID: deviceID, clientID: clientID)
        #expect(second.status == 200)
        #expect(second.json["activation"] == nil)
        let websocket = try #require(second.json["websocket"] as? [String: Any])
        return (try #require(websocket["url"] as? String), try #require(websocket["token"] as? String))
    }

    static let gatewayEnvironment = ["SWITCHBOARD_DEVICES_OTA_RATE": "5", "SWITCHBOARD_DEVICES_OTA_BURST": "20"]

    @Test func aDeviceIsBoundUsedListedRenamedAndUnbound() async throws {
        try await VoiceFlowTests.withVoiceStack(gatewayEnvironment: Self.gatewayEnvironment) { stack in
            let base = stack.httpBase
            let user = "dev-owner-\(UUID().uuidString.prefix(8))"
            let userToken = try await stack.authority.mint(user: user)
            let auth = ["Authorization": "Bearer \(userToken)"]
            let deviceID = VoiceFlowTests.deviceID()
            let clientID = UUID().uuidString
            let (url, token) = try await Self.bind(base, deviceID: deviceID, clientID: clientID, user: userToken)
            #expect(url == stack.webSocketURL)

            // The device talks as its owner, in the owner's conversation for it.
            let (hello, _) = try await DeviceSimulator.connect(
                url: url, token: token, deviceID: deviceID, clientID: clientID
            ) { device in
                try await VoiceFlowTests.hello(device)
            }
            #expect(hello != nil)
            let listed = try await Self.call("GET", "\(base)/api/v1/devices", headers: auth)
            #expect(listed.status == 200)
            let devices = try #require(listed.json["devices"] as? [[String: Any]])
            #expect(devices.count == 1)
            #expect(devices.first?["id"] as? String == deviceID)
            #expect((devices.first?["conversationId"] as? String)?.hasPrefix("voice-") == true)

            // Renamed; another user cannot see, rename or unbind it.
            let renamed = try await Self.call(
                "PATCH", "\(base)/api/v1/devices/\(deviceID)", headers: auth, body: #"{"name":"Kitchen"}"#)
            #expect(renamed.status == 200)
            #expect(renamed.json["name"] as? String == "Kitchen")
            let stranger = [
                "Authorization":
                    "Bearer \(try await stack.authority.mint(user: "stranger-\(UUID().uuidString.prefix(6))"))"
            ]
            #expect(
                try await Self.call(
                    "PATCH", "\(base)/api/v1/devices/\(deviceID)", headers: stranger, body: #"{"name":"Mine"}"#
                ).status == 404)
            #expect(
                try await Self.call("DELETE", "\(base)/api/v1/devices/\(deviceID)", headers: stranger).status == 404)
            #expect(
                (try await Self.call("GET", "\(base)/api/v1/devices", headers: stranger).json["devices"] as? [Any])?
                    .isEmpty == true)
            // The same device's OTA with another Client-Id gets no token.
            let impostor = try await Self.ota(base, deviceID: deviceID, clientID: UUID().uuidString)
            #expect(impostor.status == 403)
            #expect(impostor.errorCode == "PERMISSION_DENIED")

            // Online while connected; unbinding closes the live socket and revokes the token.
            let (online, closeCode) = try await DeviceSimulator.connect(
                url: url, token: token, deviceID: deviceID, clientID: clientID
            ) {
                device -> Bool in
                _ = try await VoiceFlowTests.hello(device)
                let view = try await Self.call("GET", "\(base)/api/v1/devices", headers: auth)
                let isOnline = (view.json["devices"] as? [[String: Any]])?.first?["online"] as? Bool ?? false
                let unbound = try await Self.call("DELETE", "\(base)/api/v1/devices/\(deviceID)", headers: auth)
                #expect(unbound.status == 204)
                _ = await device.collect(idle: .seconds(10)) { _ in false }
                return isOnline
            }
            #expect(online == true)
            #expect(closeCode == CloseCode.unauthorized.rawValue)
            await #expect(throws: (any Error).self) {
                _ = try await DeviceSimulator.connect(url: url, token: token, deviceID: deviceID, clientID: clientID) {
                    _ in ()
                }
            }
            #expect(
                (try await Self.call("GET", "\(base)/api/v1/devices", headers: auth).json["devices"] as? [Any])?.isEmpty
                    == true)
            // Unbound again: OTA hands out a new code, not a token.
            let again = try await Self.ota(base, deviceID: deviceID, clientID: clientID)
            #expect(again.json["activation"] != nil)
            #expect((again.json["websocket"] as? [String: Any])?["token"] == nil)
        }
    }

    @Test func badCodesStrangersAndFloodsGetErrorsWithCodes() async throws {
        try await VoiceFlowTests.withVoiceStack(gatewayEnvironment: Self.gatewayEnvironment) { stack in
            let base = stack.httpBase
            let token = try await stack.authority.mint(user: "binder-\(UUID().uuidString.prefix(8))")
            let auth = ["Authorization": "Bearer \(token)"]
            // Without a token, with a malformed body, a malformed or an unknown code.
            let anonymous = try await Self.call("POST", "\(base)/api/v1/devices/bind", body: #"{"code":"123456"}"#)
            #expect(anonymous.status == 401)
            #expect(anonymous.errorCode == "UNAUTHORIZED")
            let malformed = try await Self.call(
                "POST", "\(base)/api/v1/devices/bind", headers: auth, body: #"{"cod":1}"#)
            #expect(malformed.status == 400)
            #expect(malformed.errorCode == "BAD_FRAME")
            let short = try await Self.call(
                "POST", "\(base)/api/v1/devices/bind", headers: auth, body: #"{"code":"12"}"#)
            #expect(short.status == 400)
            #expect(short.errorCode == "INVALID_ARGUMENT")
            // A code no device waits with (a fresh device's code, mangled).
            let deviceID = VoiceFlowTests.deviceID()
            let first = try await Self.ota(base, deviceID: deviceID, clientID: "c")
            let code = try #require((first.json["activation"] as? [String: Any])?["code"] as? String)
            let wrong = String(code.map { $0 == "9" ? "0" : Character(String(($0.wholeNumberValue ?? 0) + 1)) })
            let unknown = try await Self.call(
                "POST", "\(base)/api/v1/devices/bind", headers: auth, body: #"{"code":"\#(wrong)"}"#)
            #expect(unknown.status == 404)
            #expect(unknown.errorCode == "CODE_NOT_FOUND")
            // OTA again before binding: the same code, not a new one.
            let repeated = try await Self.ota(base, deviceID: deviceID, clientID: "c")
            #expect((repeated.json["activation"] as? [String: Any])?["code"] as? String == code)
            // A wrong challenge on /activate; a device with nothing in progress.
            let forged = try await Self.activate(base, deviceID: deviceID, clientID: "c", challenge: "not-the-one")
            #expect(forged.status == 403)
            let stranger = try await Self.activate(
                base, deviceID: VoiceFlowTests.deviceID(), clientID: "c", challenge: nil)
            #expect(stranger.status == 404)
            #expect(stranger.errorCode == "ACTIVATION_EXPIRED")
            // A bound code cannot be used twice.
            #expect(
                try await Self.call("POST", "\(base)/api/v1/devices/bind", headers: auth, body: #"{"code":"\#(code)"}"#)
                    .status == 201)
            let twice = try await Self.call(
                "POST", "\(base)/api/v1/devices/bind", headers: auth, body: #"{"code":"\#(code)"}"#)
            #expect(twice.status == 404)
            // The old open-enrollment token format is refused while enrollment is closed.
            let legacy = Xiaozhi.DeviceToken(secret: stack.processes.jwtSecret).mint(
                clientId: "c", deviceId: deviceID, at: Clock.epochMilliseconds() / 1000)
            await #expect(throws: (any Error).self) {
                _ = try await DeviceSimulator.connect(
                    url: stack.webSocketURL, token: legacy, deviceID: deviceID, clientID: "c"
                ) { _ in () }
            }
            // A flood of OTA requests from one address: 429 with Retry-After.
            let answers = try await withThrowingTaskGroup(of: HTTPAnswer.self) { group in
                for _ in 0..<40 {
                    group.addTask { try await Self.ota(base, deviceID: VoiceFlowTests.deviceID(), clientID: "flood") }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let limited = answers.filter { $0.status == 429 }
            #expect(!limited.isEmpty)
            #expect(limited.allSatisfy { $0.errorCode == "RATE_LIMITED" && $0.headers["retry-after"] != nil })
            // The bucket refills.
            try await Task.sleep(for: .seconds(2))
            #expect(try await Self.ota(base, deviceID: VoiceFlowTests.deviceID(), clientID: "later").status == 200)
        }
    }
}
