import ArgumentParser
import SwitchboardCLI

@main
struct SwitchboardMain {
    static func main() async {
        await SwitchboardCommand.main()
    }
}
