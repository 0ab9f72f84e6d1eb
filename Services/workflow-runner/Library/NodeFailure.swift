import SwitchboardContracts
import SwitchboardWorkflow

struct NodeFailure: Error, Sendable {
    var message: String
}
