import SwitchboardTracing
import Testing

/// The `traceparent` between processes keeps the root's sampling decision (its flags), so a
/// parent-based sampler downstream (OTEL_TRACES_SAMPLER) decides as the root did.
struct SpanContextTests {
    @Test func theSampledFlagTravelsBothWays() throws {
        let sampled = try #require(SpanContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
        #expect(sampled.sampled && sampled.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(sampled.traceparent == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        let dropped = try #require(SpanContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"))
        #expect(!dropped.sampled)
        #expect(dropped.traceparent.hasSuffix("-00"))
    }

    @Test(arguments: [
        "", "-", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
    ])
    func malformedTraceparentsAreRejected(_ text: String) {
        #expect(SpanContext(traceparent: text) == nil)
    }
}
