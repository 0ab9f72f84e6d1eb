import Foundation

/// The image `make images` builds (deploy/scripts/images.sh), for tests that run the services as
/// containers with podman: host network, so they reach the test servers on loopback as the processes
/// do; read-only root filesystem, as compose and Kubernetes run them.
public struct ContainerImage: Sendable {
    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String
    }

    /// The image's name in podman's store.
    public let name: String
    /// The podman executable.
    public let podman: String
    /// podman's own environment: the project's containers.conf (runc, no ulimits the sandbox refuses).
    public let podmanEnvironment: [String: String]

    /// SWITCHBOARD_TEST_IMAGE (test.sh sets it), else localhost/switchboard:latest. Throws, so the test
    /// fails rather than skips, when podman or the image is missing.
    public static func require() throws -> ContainerImage {
        let environment = ProcessInfo.processInfo.environment
        let name = environment["SWITCHBOARD_TEST_IMAGE"] ?? "localhost/switchboard:latest"
        let path = (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map(String.init)
        guard
            let podman = (path + ["/usr/bin"]).map({ "\($0)/podman" }).first(where: {
                FileManager.default.isExecutableFile(atPath: $0)
            })
        else {
            throw Unavailable(
                description:
                    "podman is missing: `make deps` (deploy/scripts/install-deps.sh) installs Debian's podman and runc")
        }
        var podmanEnvironment = environment
        if podmanEnvironment["CONTAINERS_CONF"] == nil {
            podmanEnvironment["CONTAINERS_CONF"] =
                LocalServers.repositoryRoot.appendingPathComponent("deploy/podman/containers.conf").path
        }
        let image = ContainerImage(name: name, podman: podman, podmanEnvironment: podmanEnvironment)
        let exists = try image.podman(["image", "exists", name])
        guard exists.status == 0 else {
            throw Unavailable(
                description:
                    "the image \(name) is not built: `make images` (test.sh builds it before the container tests)")
        }
        return image
    }

    /// `podman run` in the foreground for one service: its output is the service's, SIGTERM to it
    /// reaches the service (podman proxies signals) and its exit status is the service's.
    /// The settings go through podman's environment (`--env NAME`), not its command line.
    func runArguments(name: String, environment settings: [String: String]) -> (
        arguments: [String], environment: [String: String]
    ) {
        var arguments = [
            "run", "--rm", "--replace", "--pull=never", "--name", name, "--network", "host", "--read-only",
            "--stop-timeout", "50",
        ]
        for key in settings.keys.sorted() { arguments += ["--env", key] }
        arguments.append(self.name)
        return (arguments, podmanEnvironment.merging(settings) { $1 })
    }

    /// Runs podman to its end; its exit status and what it printed (stdout and stderr).
    @discardableResult
    public func podman(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: podman)
        process.arguments = arguments
        process.environment = podmanEnvironment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (
            process.terminationStatus,
            String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        )
    }
}
