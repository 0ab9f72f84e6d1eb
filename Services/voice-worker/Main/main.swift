import ArgumentParser
import VoiceWorker
import SwitchboardRuntime

@main
struct VoiceWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "voice-worker", abstract: "Runs the voice pipeline for devices (audio in, speech out).")

    @OptionGroup var options: CommonOptions
    @OptionGroup var voice: VoiceSettings.Options

    func run() async throws {
        try await VoiceWorker.run(configuration: options.resolve(service: .voiceWorker), settings: voice.settings())
    }
}
