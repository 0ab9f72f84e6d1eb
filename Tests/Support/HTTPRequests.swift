import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A JSON POST as the end-to-end tests' plain HTTP clients send it: a bearer token, a body, an answer.
public enum HTTPRequests {
    public struct Answer: Sendable {
        public var status: Int
        public var body: Data
        /// The answer's headers, names in lower case.
        public var headers: [String: String]
    }

    public static func post(
        _ url: String, token: String?, body: String, headers: [String: String] = [:], timeout: TimeInterval = 60
    ) async throws -> Answer {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = "POST"
        request.timeoutInterval = timeout
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.httpBody = Data(body.utf8)
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as? HTTPURLResponse
        var answerHeaders: [String: String] = [:]
        for (name, value) in http?.allHeaderFields ?? [:] {
            if let name = name as? String, let value = value as? String { answerHeaders[name.lowercased()] = value }
        }
        return Answer(status: http?.statusCode ?? 0, body: data, headers: answerHeaders)
    }
}
