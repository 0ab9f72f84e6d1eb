import ArgumentParser
import Notifier
import SwitchboardRuntime

@main
struct NotifierCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notifier", abstract: "Fans client events out from Kafka to the gateways through Redis.")

    @OptionGroup var options: CommonOptions

    func run() async throws {
        try await Notifier.run(configuration: options.resolve(service: .notifier))
    }
}
