import Foundation
import SwitchboardContracts
import SwitchboardWorkflow
import Testing

@testable import Gateway

/// The frames the gateway writes itself on seed 003's socket, byte for byte, and what subscriptions let through.
@Suite struct BlueVFrameTests {
    private func json(_ frame: some Encodable) throws -> String {
        String(decoding: try GatewayJSON.encoder.encode(frame), as: UTF8.self)
    }

    @Test func theSeedsFramesKeepTheSeedsFieldsWithSwitchboardsBeside() throws {
        #expect(
            try json(
                BlueVFrame.ControlResponse(
                    workflow_id: "workflow_123", action: "pause", run_id: "r1", request_id: "q", timestamp: "t"))
                == #"{"action":"pause","request_id":"q","run_id":"r1","status":"acknowledged","timestamp":"t","type":"workflow_control_response","workflow_id":"workflow_123"}"#
        )
        #expect(
            try json(
                BlueVFrame.ExecutionError(
                    error: "taken", code: "duplicate_workflow_id", workflow_id: "w", request_id: nil, timestamp: "t"))
                == #"{"code":"duplicate_workflow_id","error":"taken","timestamp":"t","type":"workflow_execution_error","workflow_id":"w"}"#
        )
        #expect(
            try json(
                BlueVFrame.Failure(
                    message: "Unknown message type: x", code: "UNKNOWN_TYPE", request_id: nil, timestamp: "t"))
                == #"{"code":"UNKNOWN_TYPE","message":"Unknown message type: x","timestamp":"t","type":"error"}"#)
        #expect(
            try json(
                BlueVFrame.Subscription(
                    type: WorkflowFrame.subscriptionUpdated, subscriptions: ["mine"], request_id: nil))
                == #"{"subscriptions":["mine"],"type":"subscription_updated"}"#)
    }

    @Test func subscriptionsNarrowProgressButNeverARunsEndsOrAnswers() {
        let passes = WorkflowConnection.passes
        // Nothing, or only names Switchboard does not know: everything passes.
        #expect(passes(WorkflowFrame.nodeStatus, []))
        #expect(passes(WorkflowFrame.nodeStatus, ["my_own_events"]))
        // A known name narrows the rest.
        #expect(!passes(WorkflowFrame.nodeStatus, ["workflow_status"]))
        #expect(passes(WorkflowFrame.nodeProgress, ["node_status", "my_own_events"]))
        // Ends and answers always.
        for frame in [
            WorkflowFrame.completed, WorkflowFrame.failed, WorkflowFrame.stopped, WorkflowFrame.controlResponse,
            WorkflowFrame.controlResult, WorkflowFrame.executionStarted,
        ] {
            #expect(passes(frame, ["node_status"]), "\(frame)")
        }
    }
}
