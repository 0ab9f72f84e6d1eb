import ArgumentParser
import WorkflowRunner
import SwitchboardRuntime

@main
struct WorkflowRunnerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "workflow-runner", abstract: "Runs workflows and applies their controls.")

    @OptionGroup var options: CommonOptions

    func run() async throws {
        try await WorkflowRunner.run(configuration: options.resolve(service: .workflowRunner))
    }
}
