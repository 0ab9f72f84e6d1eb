import AgentWorker
import ArgumentParser
import SwitchboardRuntime

@main
struct AgentWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent-worker", abstract: "Runs AI roles: consumes agent tasks and streams replies.")

    @OptionGroup var options: CommonOptions
    @OptionGroup var agent: AgentWorker.Options

    func run() async throws {
        try await AgentWorker.run(
            configuration: options.resolve(service: .agentWorker),
            engine: OfflineEngine(settings: agent.engineSettings()),
            tasksPerPartition: agent.tasksPerPartition(), allowList: agent.providerAllowList())
    }
}
