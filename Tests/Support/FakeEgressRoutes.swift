import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// What a workflow's http node fetches in the egress tests: an ordinary answer, a body over the
/// limit, and a redirect to wherever `?to=` says.
extension FakeOpenAI {
    func addEgressRoutes(to router: Router<BasicRequestContext>) {
        router.get("/egress/ok") { _, _ -> Response in
            self.calls.withLock { $0["egress-ok", default: 0] += 1 }
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: #"{"ok":true}"#)))
        }
        router.get("/egress/big") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "text/plain"],
                body: .init(byteBuffer: ByteBuffer(repeating: 0x61, count: 4 << 20)))
        }
        router.get("/egress/redirect") { request, _ -> Response in
            let target = request.uri.queryParameters["to"].map(String.init) ?? "/egress/ok"
            return Response(status: .found, headers: [.location: target])
        }
    }
}
