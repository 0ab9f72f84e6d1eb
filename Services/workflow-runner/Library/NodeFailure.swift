import SwitchboardContracts
import SwitchboardWorkflow

struct NodeFailure: Error, Sendable, CustomStringConvertible {
    var message: String

    var description: String { message }
}
