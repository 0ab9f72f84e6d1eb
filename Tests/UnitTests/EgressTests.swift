import Foundation
import SwitchboardContracts
import SwitchboardWorkflow
import Testing

/// Where a workflow's http node may connect, and the bounds on what a node may produce.
struct EgressTests {
    @Test(arguments: [
        "127.0.0.1", "127.9.9.9", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "100.64.0.1",
        "100.127.255.254",
        "169.254.169.254", "169.254.1.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fc00::1",
        "fd00:ec2::254",
        "fe80::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::",
    ])
    func internalAddressesAreRefused(_ text: String) throws {
        let address = try #require(IPAddress(text))
        #expect(EgressPolicy.forbiddenReason(address) != nil, "\(text)")
        let refusal = try #require(EgressPolicy().refusal(host: text, port: 80, address: address))
        #expect(refusal.hasPrefix("egress refused: "))
    }

    @Test(arguments: [
        "8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "192.169.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8",
    ])
    func publicAddressesPass(_ text: String) throws {
        let address = try #require(IPAddress(text))
        #expect(EgressPolicy.forbiddenReason(address) == nil, "\(text)")
        #expect(EgressPolicy().refusal(host: "example.com", port: 443, address: address) == nil)
    }

    @Test func theReasonNamesTheHostAndWhatItResolvedTo() throws {
        let refusal = try #require(
            EgressPolicy().refusal(host: "localhost", port: 80, address: IPAddress("127.0.0.1")!))
        #expect(refusal.contains("localhost resolves to 127.0.0.1"))
        #expect(refusal.contains("loopback"))
        let metadata = try #require(
            EgressPolicy().refusal(host: "169.254.169.254", port: 80, address: IPAddress("169.254.169.254")!))
        #expect(metadata.contains("metadata"))
    }

    @Test func theAllowListOpensHostsNetworksAndPorts() throws {
        let policy = try EgressPolicy(
            allowList: "127.0.0.1:8099, 10.0.0.0/8, internal.example, [::1]:9000, [fd00::/8]:443")
        let loopback = IPAddress("127.0.0.1")!
        #expect(policy.refusal(host: "127.0.0.1", port: 8099, address: loopback) == nil)
        #expect(policy.refusal(host: "127.0.0.1", port: 8084, address: loopback) != nil)
        #expect(policy.refusal(host: "10.9.9.9", port: 1, address: IPAddress("10.9.9.9")!) == nil)
        #expect(policy.refusal(host: "Internal.Example", port: 80, address: IPAddress("192.168.0.5")!) == nil)
        #expect(policy.refusal(host: "other.example", port: 80, address: IPAddress("192.168.0.5")!) != nil)
        #expect(policy.refusal(host: "::1", port: 9000, address: IPAddress("::1")!) == nil)
        #expect(policy.refusal(host: "::1", port: 9001, address: IPAddress("::1")!) != nil)
        #expect(policy.refusal(host: "x", port: 443, address: IPAddress("fd12::1")!) == nil)
        for bad in ["10.0.0.0/33", "host:0", "a/b", "http://x", "[::1", "1.2.3.4:99999"] {
            #expect(throws: EgressError.self, "\(bad)") { try EgressPolicy(allowList: bad) }
        }
        #expect(try EgressPolicy(allowList: "").rules.isEmpty)
    }

    @Test func networksContainWhatTheirPrefixSays() throws {
        let network = try #require(IPNetwork("172.16.0.0/12"))
        #expect(network.contains(IPAddress("172.20.1.1")!))
        #expect(!network.contains(IPAddress("172.32.0.0")!))
        #expect(!network.contains(IPAddress("::1")!))
        #expect(IPNetwork("::/0")!.contains(IPAddress("2001:db8::1")!))
        #expect(IPAddress("::ffff:127.0.0.1")?.embeddedV4 == IPAddress("127.0.0.1"))
        #expect(IPAddress("fd00:ec2::254")?.description == "fd00:ec2::254")
    }

    // MARK: output bounds

    @Test func aTemplateBombIsRefusedBeforeItRenders() throws {
        let list = JSONValue.array((0..<1000).map { .number(Double($0)) })
        let bomb = "{{#a}}{{#a}}{{#a}}xxxxxxxxxx{{/a}}{{/a}}{{/a}}"
        let started = ContinuousClock.now
        #expect(throws: OutputLimitError.self) { try OutputLimits.render(bomb, with: ["a": list], limit: 256 * 1024) }
        // Refused by counting, not by rendering a gigabyte.
        #expect(ContinuousClock.now - started < .seconds(2))
        // Nested empty sections cost iterations even with no output.
        #expect(throws: OutputLimitError.self) {
            try OutputLimits.render("{{#a}}{{#a}}{{#a}}{{/a}}{{/a}}{{/a}}", with: ["a": list], limit: 1 << 20)
        }
        #expect(throws: OutputLimitError.self) { try OutputLimits.render("{{=<% %>=}}", with: [:], limit: 1024) }
    }

    @Test func ordinaryTemplatesRenderAsBefore() throws {
        let items = JSONValue.array((0..<100).map { ["name": .string("item \($0)")] })
        let text = try OutputLimits.render(
            "Hello {{name}}: {{#items}}{{name}}, {{/items}}{{^missing}}none{{/missing}}",
            with: ["name": "Ada", "items": items], limit: 256 * 1024)
        #expect(text.hasPrefix("Hello Ada: item 0, item 1, "))
        #expect(text.hasSuffix("item 99, none"))
        #expect(try OutputLimits.render("{{{raw}}} {{&raw}}", with: ["raw": "<b>"], limit: 1024) == "<b> <b>")
    }

    @Test func theBoundIsAnUpperBound() throws {
        let inputs: [String: JSONValue] = [
            "rows": .array((0..<20).map { ["cell": .string(String(repeating: "<&>", count: $0))] }),
            "title": "a \"quoted\" title",
        ]
        for template in [
            "{{title}}", "{{#rows}}[{{cell}}]{{/rows}}", "{{#rows}}{{#rows}}{{cell}}{{/rows}}{{/rows}}",
            "{{{title}}}{{.}}",
        ] {
            let bound = try OutputLimits.upperBound(of: template, inputs: inputs, limit: 1 << 30)
            let rendered = try TemplateRenderer.render(template, with: inputs)
            #expect(rendered.utf8.count <= bound, "\(template): \(rendered.utf8.count) > \(bound)")
        }
    }

    @Test func outputsOverTheLimitAreRefused() throws {
        try OutputLimits.check(outputs: ["text": "small"], limit: 1024)
        #expect(throws: OutputLimitError.self) {
            try OutputLimits.check(
                outputs: ["body": .string(String(repeating: "x", count: 300 * 1024))], limit: 256 * 1024)
        }
    }
}
