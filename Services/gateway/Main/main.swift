import ArgumentParser
import Gateway
import SwitchboardRuntime

@main
struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway", abstract: "Holds client connections: WebSocket, SSE and REST.")

    @OptionGroup var options: CommonOptions
    @OptionGroup var gateway: GatewaySettings.Options

    func run() async throws {
        try await Gateway.run(configuration: options.resolve(service: .gateway), settings: gateway.settings())
    }
}
