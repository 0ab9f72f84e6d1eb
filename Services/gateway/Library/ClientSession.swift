import Foundation
import Logging
import Metrics
import Synchronization
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime

/// The gateway's state for one WebSocket client: who it is, what it follows, and its outbound queue.
/// Frames reach the socket through one writer task, in the order they were queued.
final class ClientSession: Sendable {
    let id: String
    let userID: String
    private let outbound: AsyncStream<String>.Continuation
    let frames: AsyncStream<String>
    private let subscriptions = Mutex<[String: RedisSubscriptionToken]>([:])

    init(userID: String) {
        self.id = UUID().uuidString.lowercased()
        self.userID = userID
        (frames, outbound) = AsyncStream.makeStream(of: String.self)
    }

    func send(_ frame: ServerFrame) {
        guard let json = try? FrameEncoding.json(frame) else { return }
        outbound.yield(json)
    }

    func send(json: String) {
        outbound.yield(json)
    }

    func finish() { outbound.finish() }

    func isSubscribed(to channel: Channel) -> Bool {
        subscriptions.withLock { $0[channel.description] != nil }
    }

    /// Follows a channel's live events; a second call for the same channel is a no-op.
    func subscribe(to channel: Channel, using subscriber: RedisSubscriber) async throws {
        guard !isSubscribed(to: channel) else { return }
        let token = try await subscriber.subscribe(ChannelWire.liveChannel(channel)) { [weak self] message in
            guard let self, let (offset, epoch, frameJSON) = ChannelWire.decode(message) else { return }
            self.send(json: ChannelWire.stamp(frameJSON: frameJSON, offset: offset, epoch: epoch))
        }
        let duplicate = subscriptions.withLock { subscriptions -> RedisSubscriptionToken? in
            if subscriptions[channel.description] != nil { return token }
            subscriptions[channel.description] = token
            return nil
        }
        if let duplicate { await subscriber.unsubscribe(duplicate) }
    }

    func unsubscribe(from channel: Channel, using subscriber: RedisSubscriber) async {
        if let token = subscriptions.withLock({ $0.removeValue(forKey: channel.description) }) {
            await subscriber.unsubscribe(token)
        }
    }

    func unsubscribeAll(using subscriber: RedisSubscriber) async {
        let tokens = subscriptions.withLock { subscriptions in
            defer { subscriptions = [:] }
            return Array(subscriptions.values)
        }
        for token in tokens { await subscriber.unsubscribe(token) }
    }
}
