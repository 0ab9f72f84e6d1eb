import ArgumentParser
import Orchestrator
import SwitchboardRuntime

@main
struct OrchestratorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "orchestrator", abstract: "Plans the AI roles' work for each user message.")

    @OptionGroup var options: CommonOptions

    func run() async throws {
        try await Orchestrator.run(configuration: options.resolve(service: .orchestrator))
    }
}
