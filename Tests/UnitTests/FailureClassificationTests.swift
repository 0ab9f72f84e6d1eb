import Foundation
import SwitchboardContracts
@testable import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

/// Which failures wait for a dependency, which are retried and which are dead-lettered at once.
struct FailureClassificationTests {
    @Test func redisUnreachableOrNotServingIsAnOutageAndOtherErrorRepliesAreNot() {
        #expect(FailureClassifier.kind(of: RedisError(.connection, "connection refused")) == .dependencyUnavailable)
        #expect(FailureClassifier.kind(of: RedisError(.closed, "the connection closed")) == .dependencyUnavailable)
        #expect(
            FailureClassifier.kind(of: RedisError(.server, "LOADING Redis is loading the dataset in memory"))
                == .dependencyUnavailable)
        #expect(
            FailureClassifier.kind(of: RedisError(.server, "OOM command not allowed when used memory > 'maxmemory'"))
                == .dependencyUnavailable)
        #expect(
            FailureClassifier.kind(
                of: RedisError(.server, "WRONGTYPE Operation against a key holding the wrong kind of value"))
                == .transient)
        #expect(FailureClassifier.kind(of: RedisError(.noScript, "NOSCRIPT")) == .transient)
    }

    @Test func aBrokerThatCannotBeReachedIsAnOutage() {
        #expect(FailureClassifier.kind(of: KafkaError(.timedOut, "Local: Message timed out")) == .dependencyUnavailable)
        #expect(
            FailureClassifier.kind(of: KafkaError(.queueFull, "Local: Queue full", isRetriable: true))
                == .dependencyUnavailable)
        #expect(FailureClassifier.kind(of: KafkaError(.broker, "MSG_SIZE_TOO_LARGE")) == .transient)
    }

    @Test func undecodableAndUnhandledMessagesArePoison() {
        struct Shape: Decodable { var id: Int }
        let decoding = Result { try JSONDecoder().decode(Shape.self, from: Data("{}".utf8)) }
        if case .failure(let error) = decoding { #expect(FailureClassifier.kind(of: error) == .poison) }
        #expect(FailureClassifier.kind(of: UnhandledEventError(type: "x.y", service: "notifier")) == .poison)
        struct Unknown: Error {}
        #expect(FailureClassifier.kind(of: Unknown()) == .transient)
    }

    @Test func aDeadLetterCarriesWhyAndWhereFromAndNamesItsOrigin() {
        let message = KafkaConsumerMessage(
            topic: "sb.client.events", partition: 3, offset: 42, key: Array("user:u".utf8), value: Array("{}".utf8),
            headers: [
                KafkaHeader(name: "sb-type", string: "client.event"),
                KafkaHeader(name: DeadLetter.errorHeader, string: "old"),
            ],
            timestampMilliseconds: nil)
        let parked = DeadLetter.message(
            for: message, error: UnhandledEventError(type: "client.event", service: "notifier"), attempts: 1)
        #expect(parked.topic == Topics.clientEvents.deadLetter.name)
        #expect(parked.key == message.key)
        let headers = Dictionary(parked.headers.map { ($0.name, $0.stringValue) }, uniquingKeysWith: { $1 })
        #expect(headers[DeadLetter.originHeader] == "sb.client.events/3/42")
        #expect(headers[DeadLetter.kindHeader] == "poison")
        #expect(headers[DeadLetter.errorHeader]?.contains("does not handle") == true)
        #expect(parked.headers.filter { $0.name == DeadLetter.errorHeader }.count == 1)
        #expect(TopicSpec.origin(ofDeadLetter: parked.topic) == "sb.client.events")
        #expect(TopicSpec.origin(ofDeadLetter: "sb.client.events") == nil)
    }
}

/// The router hands each event type to its handler; a type nobody routes is poison.
struct EventRouterTests {
    func message<P: EventPayload>(_ payload: P) throws -> KafkaConsumerMessage {
        let envelope = Envelope(routingKey: "k", source: EventSource(service: "test", instance: "t"), payload: payload)
        return KafkaConsumerMessage(
            topic: "sb.test", partition: 0, offset: 7, key: Array("k".utf8), value: try EnvelopeCodec.encode(envelope),
            headers: [],
            timestampMilliseconds: nil)
    }

    @Test func eachTypeGoesToItsHandlerAndAnUnroutedTypeIsPoison() async throws {
        let seen = Locked<[String]>([])
        var router = EventRouter(service: "tester")
        router.on(ChatInterruptRequested.self) { envelope in
            seen.withLock { $0.append("interrupt \(envelope.payload.requestId)") }
        }
        router.onCompletingLater(ChatRoleFocusRequested.self) { _ in
            LaterCompletion(abandon: {}) {
                seen.withLock { $0.append("focus, later") }
                return true
            }
        }
        let interrupt = ChatInterruptRequested(conversationId: "c", userId: "u", requestId: "r1", gateway: "g")
        guard case .done = try await router.route(try message(interrupt)) else {
            Issue.record("a plain handler's message is done when it returns")
            return
        }
        let focus = ChatRoleFocusRequested(
            conversationId: "c", userId: "u", role: "critic", requestId: "r2", gateway: "g")
        guard case .later(let completion) = try await router.route(try message(focus)) else {
            Issue.record("a handler completing later hands its work back")
            return
        }
        #expect(seen.withLock { $0 } == ["interrupt r1"])
        #expect(await completion.work())
        #expect(seen.withLock { $0 } == ["interrupt r1", "focus, later"])

        let unrouted = ChatMessageSubmitted(
            messageId: "m", clientMessageId: "c", conversationId: "c", userId: "u", content: "x", gateway: "g")
        do {
            _ = try await router.route(try message(unrouted))
            Issue.record("an unrouted type must not count as handled")
        } catch {
            #expect(error is UnhandledEventError)
            #expect(FailureClassifier.kind(of: error) == .poison)
            #expect("\(error)" == "tester does not handle events of type chat.message.submitted")
        }
    }
}
