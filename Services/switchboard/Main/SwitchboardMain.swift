import ArgumentParser
import SwitchboardCLI

#if canImport(Glibc)
    @preconcurrency import Glibc
#endif

@main
struct SwitchboardMain {
    static func main() async {
        // Line by line even into a pipe: `make bench` and `tail` are read as they run.
        setvbuf(stdout, nil, _IOLBF, 0)
        await SwitchboardCommand.main()
    }
}
