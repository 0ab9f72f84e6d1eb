import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import SwitchboardWorkflow
import Testing

@testable import Gateway

/// The gateway's static files for the web console: what is served, with which headers, and what is not.
@Suite struct ConsoleAssetsTests {
    /// A console folder with a page, a script, a file of a type not served and a subfolder.
    static func withConsole(_ body: (ConsoleAssets, URL) async throws -> Void) async throws {
        let folder = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent(
            "console-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(
            at: folder.appendingPathComponent("private"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data("<!doctype html><title>x</title>".utf8).write(to: folder.appendingPathComponent("index.html"))
        try Data("console.log(1)".utf8).write(to: folder.appendingPathComponent("console.js"))
        try Data("body{}".utf8).write(to: folder.appendingPathComponent("console.css"))
        try Data("secret".utf8).write(to: folder.appendingPathComponent("notes.txt"))
        try Data("{}".utf8).write(to: folder.appendingPathComponent("private/data.json"))
        try await body(try ConsoleAssets(directory: folder), folder)
    }

    static func testing(
        _ console: ConsoleAssets, _ test: @escaping @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        let router = Router()
        console.addRoutes(to: router)
        try await Application(router: router).test(.router, test)
    }

    @Test func servesThePageAtTheRootAndItsAssetsUnderConsole() async throws {
        try await Self.withConsole { console, _ in
            try await Self.testing(console) { client in
                try await client.execute(uri: "/", method: .get) { response in
                    #expect(response.status == .ok)
                    #expect(response.headers[.contentType] == "text/html; charset=utf-8")
                    #expect(response.headers[.cacheControl] == "no-cache")
                    #expect(
                        response.headers[HTTPField.Name("Content-Security-Policy")!]?.contains("script-src 'self'")
                            == true)
                    #expect(response.headers[HTTPField.Name("Referrer-Policy")!] == "no-referrer")
                    #expect(String(buffer: response.body).hasPrefix("<!doctype html>"))
                }
                try await client.execute(uri: "/console/console.js", method: .get) { response in
                    #expect(response.status == .ok)
                    #expect(response.headers[.contentType] == "text/javascript; charset=utf-8")
                    #expect(response.headers[HTTPField.Name("X-Content-Type-Options")!] == "nosniff")
                    #expect(String(buffer: response.body) == "console.log(1)")
                }
                try await client.execute(uri: "/console/console.css", method: .get) { response in
                    #expect(response.headers[.contentType] == "text/css; charset=utf-8")
                }
            }
        }
    }

    @Test func unknownNamesOtherTypesAndTraversalAre404() async throws {
        try await Self.withConsole { console, _ in
            try await Self.testing(console) { client in
                for uri in [
                    "/console/missing.js", "/console/notes.txt", "/console/private", "/console/private/data.json",
                    "/console/..%2FPackage.swift", "/console/../../etc/passwd", "/console/%2e%2e%2fnotes.txt",
                    "/console/",
                ] {
                    try await client.execute(uri: uri, method: .get) { response in
                        #expect(response.status == .notFound, "\(uri)")
                        #expect(!String(buffer: response.body).contains("secret"), "\(uri)")
                    }
                }
            }
        }
    }

    @Test func aCurrentCopyIsAnswered304() async throws {
        try await Self.withConsole { console, _ in
            try await Self.testing(console) { client in
                let etag = try await client.execute(uri: "/console/console.js", method: .get) { $0.headers[.eTag] }
                let tag = try #require(etag)
                try await client.execute(uri: "/console/console.js", method: .get, headers: [.ifNoneMatch: tag]) {
                    response in
                    #expect(response.status == .notModified)
                    #expect(response.body.readableBytes == 0)
                }
                try await client.execute(uri: "/console/console.js", method: .get, headers: [.ifNoneMatch: "\"stale\""])
                { response in
                    #expect(response.status == .ok)
                }
            }
        }
    }

    @Test func aFolderWithoutAPageIsRefused() throws {
        let folder = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent(
            "empty-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(throws: (any Error).self) { try ConsoleAssets(directory: folder) }
    }

    /// The copy shipped in the gateway's resource bundle is complete, and its sample workflow is one the
    /// gateway accepts, with a human_input node to answer.
    @Test func theBundledConsoleIsCompleteAndItsSampleWorkflowValid() throws {
        let console = try ConsoleAssets.load(directory: nil)
        for name in ["index.html", "console.js", "console.css", "sample-workflow.json"] {
            #expect(console.assets[name] != nil, "\(name) is missing from the bundle")
        }
        let sample = try #require(console.assets["sample-workflow.json"])
        let definition = try JSONDecoder().decode(WorkflowDefinition.self, from: Data(sample.body.readableBytesView))
        #expect(throws: Never.self) { try WorkflowValidator.validate(definition).get() }
        #expect(definition.nodes.contains { $0.type == "human_input" })
    }
}
