import ArgumentParser
import Orchestrator
import SwitchboardRuntime

@main
struct OrchestratorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "orchestrator", abstract: "Runs the AI team's collaboration for each user message.")

    @OptionGroup var options: CommonOptions
    @OptionGroup var orchestrator: Orchestrator.Options

    func run() async throws {
        try await Orchestrator.run(configuration: options.resolve(service: .orchestrator), team: orchestrator.team())
    }
}
