import Foundation
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

/// The image `make images` builds, run the way compose and Kubernetes run it: the six services as
/// containers (podman, host network, read-only root filesystem) against the test run's Tansu, Redis
/// and PostgreSQL. Fails, never skips, when podman or the image is missing (test.sh builds the image
/// first when this suite is selected).
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ContainerTests {
    static let services = ["gateway", "orchestrator", "agent-worker", "voice-worker", "workflow-runner", "notifier"]

    @Test func theSixServicesRunFromTheImageAnswerAChatAndStopOnSIGTERM() async throws {
        let image = try ContainerImage.require()
        // withStack waits for every container's /readyz, and at the end sends SIGTERM to each and
        // expects exit status 0 from every one within the stop window.
        try await ServiceProcesses.withStack(container: image) { stack, url, authority in
            let running = stack.launched
            #expect(Set(running.map(\.name)) == Set(Self.services))

            let token = try await authority.mint(user: "alice")
            let conversation = "container-\(UUID().uuidString.prefix(8))"
            let (frames, _) = try await ChatClient.withConnection(url: url, token: token) { client -> [ServerFrame] in
                client.send(
                    ClientCommand(
                        id: "c1", type: ClientCommandType.sendMessage,
                        data: ["conversationId": .string(conversation), "content": "hello from a container"]))
                return await client.frames.collect(idle: .seconds(30)) { $0.type == FrameType.messageStreamEnd }
            }
            let all = try #require(frames)
            let ack = try #require(all.first { $0.correlationId == "c1" })
            #expect(ack.type == "ACK" && ack.status == .success)
            let chunks = all.filter { $0.type == FrameType.messageStreamChunk }
            #expect(!chunks.isEmpty)
            let end = try #require(all.last)
            #expect(end.type == FrameType.messageStreamEnd)
            #expect(
                end.data["finalMessage"]?["content"]?.stringValue
                    == chunks.compactMap { $0.data["chunk"]?.stringValue }.joined())

            for service in running {
                let name = try #require(service.containerName, "\(service.name) is not a container")
                // The image's user, not root: numeric, as Kubernetes' runAsNonRoot wants it.
                let user = try image.podman(["exec", name, "id", "-u"])
                #expect(user.status == 0 && user.output == "10001", "\(service.name) runs as \(user.output)")
                // Nothing can be written outside the tmpfs mounts.
                let write = try image.podman(["exec", name, "touch", "/usr/local/bin/written"])
                #expect(
                    write.status != 0 && write.output.contains("Read-only file system"),
                    "\(service.name): \(write.output)")
                let readOnly = try image.podman(["inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", name])
                #expect(readOnly.output == "true")
                // The image's HEALTHCHECK finds the service's own port from its command and gets /healthz.
                let health = try image.podman(["healthcheck", "run", name])
                #expect(health.status == 0, "\(service.name)'s HEALTHCHECK: \(health.output)")
            }
        }
        // --rm: the stopped containers are gone.
        let left = try image.podman(["ps", "--all", "--filter", "name=^sb-test-", "--format", "{{.Names}}"])
        #expect(left.output.isEmpty, "containers left behind: \(left.output)")
    }
}
