import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SwitchboardRuntime

/// The web console (docs/console.md): a handful of static files, read once at start-up and served from
/// memory at `/` (the page) and `/console/<file>` (its assets). No path from a request ever reaches the
/// file system, so there is nothing to traverse; a name that is not one of the files is 404.
/// The pages are public: every API call they make carries the user's token.
public struct ConsoleAssets: Sendable {
    struct Asset: Sendable {
        var body: ByteBuffer
        var contentType: String
        var etag: String
    }

    /// The types the console is made of; other files in the folder are not served.
    static let contentTypes: [String: String] = [
        "html": "text/html; charset=utf-8", "css": "text/css; charset=utf-8",
        "js": "text/javascript; charset=utf-8", "json": "application/json", "svg": "image/svg+xml",
        "png": "image/png", "ico": "image/x-icon",
    ]

    /// Scripts, styles and connections only from the gateway itself; no inline script, so text a model
    /// writes can never run even if it were put into the page as markup.
    static let contentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

    let assets: [String: Asset]

    /// The files of `directory` (not its subfolders) whose extension is one of `contentTypes`.
    public init(directory: URL) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        var assets: [String: Asset] = [:]
        for name in names {
            guard let type = Self.contentTypes[(name as NSString).pathExtension.lowercased()] else { continue }
            let url = directory.appendingPathComponent(name)
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder), !isFolder.boolValue else {
                continue
            }
            let data = try Data(contentsOf: url)
            assets[name] = Asset(body: ByteBuffer(bytes: data), contentType: type, etag: Self.etag(of: data))
        }
        guard assets["index.html"] != nil else {
            throw ConfigurationError("the console folder \(directory.path) has no index.html")
        }
        self.assets = assets
    }

    /// The console shipped in the gateway's resource bundle (`Console/` beside the executable), or the
    /// folder `directory` names (SWITCHBOARD_CONSOLE_DIR: edit the files without rebuilding).
    public static func load(directory: String?) throws -> ConsoleAssets {
        if let directory { return try ConsoleAssets(directory: URL(fileURLWithPath: directory)) }
        guard let url = Bundle.module.url(forResource: "Console", withExtension: nil) else {
            throw ConfigurationError("the gateway's resource bundle has no Console folder")
        }
        return try ConsoleAssets(directory: url)
    }

    func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.get("/") { request, _ in response(for: "index.html", request: request) }
        router.get("/console/:file") { request, context in
            response(for: context.parameters.get("file") ?? "", request: request)
        }
    }

    /// The file `name`, or 404; 304 when the client's copy (`If-None-Match`) is current.
    func response(for name: String, request: Request) -> Response {
        guard let asset = assets[name] else {
            return Response(
                status: .notFound, headers: [.contentType: "text/plain; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: "not found")))
        }
        // no-cache: files without content hashes in their names must be revalidated, or a browser
        // would pair a new page with an old script after a deploy; the ETag makes that a 304.
        var headers: HTTPFields = [
            .contentType: asset.contentType, .eTag: asset.etag, .cacheControl: "no-cache",
            HTTPField.Name("X-Content-Type-Options")!: "nosniff",
            // The page may be opened with ?token=… in its address: never send it on as a referrer.
            HTTPField.Name("Referrer-Policy")!: "no-referrer",
        ]
        if asset.contentType.hasPrefix("text/html") {
            headers[HTTPField.Name("Content-Security-Policy")!] = Self.contentSecurityPolicy
        }
        if request.headers[.ifNoneMatch]?.split(separator: ",").contains(where: {
            $0.trimmingCharacters(in: .whitespaces) == asset.etag
        })
            == true
        {
            return Response(status: .notModified, headers: headers)
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: asset.body))
    }

    /// A strong validator from the content (FNV-1a, 64 bits): stable across restarts and instances.
    static func etag(of data: Data) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in data {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        return "\"\(String(hash, radix: 16))\""
    }
}
