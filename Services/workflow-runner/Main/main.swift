import ArgumentParser
import WorkflowRunner
import SwitchboardRuntime

@main
struct WorkflowRunnerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workflow-runner", abstract: "Runs workflows and applies their controls.")

    @OptionGroup var options: CommonOptions
    @OptionGroup var runner: WorkflowRunnerSettings.Options

    func run() async throws {
        try await WorkflowRunner.run(
            configuration: options.resolve(service: .workflowRunner), settings: runner.settings())
    }
}
