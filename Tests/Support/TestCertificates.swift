import Foundation

/// A throwaway certificate authority and a server certificate it signed, for `localhost` and
/// 127.0.0.1, made with the openssl command line: `ca.pem`, `server.pem`, `server.key` in a folder.
public enum TestCertificates {
    public static func make(in folder: String) async throws {
        try await openssl(
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
                "-subj", "/CN=switchboard-test-ca",
            ], in: folder)
        try await openssl(
            [
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
                "-subj", "/CN=localhost",
            ], in: folder)
        try "subjectAltName=DNS:localhost,IP:127.0.0.1".write(
            toFile: "\(folder)/server.ext", atomically: true, encoding: .utf8)
        try await openssl(
            [
                "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", "server.pem", "-days", "1", "-extfile", "server.ext",
            ], in: folder)
    }

    private static func openssl(_ arguments: [String], in folder: String) async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Polled: waitUntilExit has been seen never to return in these tests.
        while process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        guard process.terminationStatus == 0 else {
            throw LocalServers.Failure(
                description: "openssl \(arguments.prefix(2).joined(separator: " ")) exited \(process.terminationStatus)"
            )
        }
    }
}
