import CRDKafka
import Foundation
import Logging

// Every call into librdkafka lives in this folder. The rest of the module sees Swift values only.

/// A librdkafka handle. librdkafka documents `rd_kafka_t` as thread-safe; the queue is polled by exactly
/// one dedicated thread (never the cooperative pool), so sharing the box across tasks is sound.
final class RDKafkaClient: @unchecked Sendable {
    enum Kind { case producer, consumer }

    let pointer: OpaquePointer
    let queue: OpaquePointer
    /// librdkafka's log lines, on a queue of their own: librdkafka may log while it holds the lock of the
    /// event queue (destroying an outdated fetch op of a partition whose topic is gone, with `debug`
    /// on), and a log bound for that same queue then waits on that lock for ever, with the poll thread
    /// and librdkafka's main thread behind it (seen in a broker-restart test: the consumer went silent).
    let logQueue: OpaquePointer
    let kind: Kind
    let logger: Logger

    private init(pointer: OpaquePointer, queue: OpaquePointer, logQueue: OpaquePointer, kind: Kind, logger: Logger) {
        self.pointer = pointer
        self.queue = queue
        self.logQueue = logQueue
        self.kind = kind
        self.logger = logger
    }

    /// Creates a client whose events (delivery reports, rebalances, messages, errors) arrive on one queue
    /// and its logs on another, both read with `poll`.
    static func make(kind: Kind, properties: [String: String], logger: Logger) throws -> RDKafkaClient {
        guard let conf = rd_kafka_conf_new() else { throw KafkaError(.configuration, "rd_kafka_conf_new failed") }
        var errorBuffer = [CChar](repeating: 0, count: 512)
        var properties = properties
        properties["log.queue"] = "true"
        for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
            if rd_kafka_conf_set(conf, key, value, &errorBuffer, errorBuffer.count) != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                throw KafkaError(.configuration, "\(key)=\(value): \(errorBuffer.nulTerminatedString)")
            }
        }
        var events = RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG
        switch kind {
        case .producer: events |= RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_STATS
        case .consumer: events |= RD_KAFKA_EVENT_REBALANCE | RD_KAFKA_EVENT_FETCH | RD_KAFKA_EVENT_OFFSET_COMMIT
        }
        rd_kafka_conf_set_events(conf, Int32(events))

        // rd_kafka_new takes ownership of conf on success only.
        guard
            let handle = rd_kafka_new(
                kind == .producer ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER, conf, &errorBuffer, errorBuffer.count)
        else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(.configuration, errorBuffer.nulTerminatedString)
        }
        let queue: OpaquePointer
        switch kind {
        case .producer:
            queue = rd_kafka_queue_get_main(handle)
        case .consumer:
            let redirected = rd_kafka_poll_set_consumer(handle)
            guard redirected == RD_KAFKA_RESP_ERR_NO_ERROR, let consumerQueue = rd_kafka_queue_get_consumer(handle)
            else {
                rd_kafka_destroy(handle)
                throw KafkaError(rdError: redirected, detail: "rd_kafka_poll_set_consumer")
            }
            queue = consumerQueue
        }
        let logQueue = rd_kafka_queue_new(handle)!
        let logged = rd_kafka_set_log_queue(handle, logQueue)
        guard logged == RD_KAFKA_RESP_ERR_NO_ERROR else {
            rd_kafka_queue_destroy(logQueue)
            rd_kafka_queue_destroy(queue)
            rd_kafka_destroy(handle)
            throw KafkaError(rdError: logged, detail: "rd_kafka_set_log_queue")
        }
        return RDKafkaClient(pointer: handle, queue: queue, logQueue: logQueue, kind: kind, logger: logger)
    }

    /// Releases the handle. Call once, from the polling thread, after the last poll.
    func destroy() {
        rd_kafka_queue_destroy(logQueue)
        rd_kafka_queue_destroy(queue)
        rd_kafka_destroy(pointer)
    }

    // MARK: Events

    enum Event {
        case deliveryReports([DeliveryOutcome])
        case messages([KafkaConsumerMessage])
        case fetchError(KafkaError)
        case assign([TopicPartition])
        case revoke([TopicPartition])
        case error(KafkaError, fatal: Bool)
        case log(level: Int32, facility: String, message: String)
        case offsetCommit(error: String?)
        /// librdkafka's statistics JSON (`statistics.interval.ms`).
        case statistics(Data)
    }

    struct DeliveryOutcome {
        var token: UInt
        var result: Result<DeliveryReport, KafkaError>
    }

    /// Waits up to `timeoutMilliseconds` for the next event, a waiting log line first. Blocks: call from
    /// the polling thread only.
    func poll(timeoutMilliseconds: Int32) -> Event? {
        guard let event = rd_kafka_queue_poll(logQueue, 0) ?? rd_kafka_queue_poll(queue, timeoutMilliseconds)
        else { return nil }
        defer { rd_kafka_event_destroy(event) }
        switch Int32(rd_kafka_event_type(event)) {
        case RD_KAFKA_EVENT_DR:
            var outcomes: [DeliveryOutcome] = []
            while let message = rd_kafka_event_message_next(event) {
                let token = UInt(bitPattern: message.pointee._private)
                if message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR {
                    let topic = String(cString: rd_kafka_topic_name(message.pointee.rkt))
                    outcomes.append(
                        .init(
                            token: token,
                            result: .success(
                                DeliveryReport(
                                    topic: topic, partition: message.pointee.partition, offset: message.pointee.offset))
                        ))
                } else {
                    outcomes.append(.init(token: token, result: .failure(KafkaError(rdError: message.pointee.err))))
                }
            }
            return .deliveryReports(outcomes)
        case RD_KAFKA_EVENT_FETCH:
            var messages: [KafkaConsumerMessage] = []
            while let message = rd_kafka_event_message_next(event) {
                if message.pointee.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    if message.pointee.err == RD_KAFKA_RESP_ERR__PARTITION_EOF { continue }
                    return .fetchError(KafkaError(rdError: message.pointee.err))
                }
                messages.append(Self.copy(message))
            }
            return .messages(messages)
        case RD_KAFKA_EVENT_REBALANCE:
            let partitions = Self.partitions(rd_kafka_event_topic_partition_list(event))
            if rd_kafka_event_error(event) == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
                return .assign(partitions)
            }
            return .revoke(partitions)
        case RD_KAFKA_EVENT_ERROR:
            let code = rd_kafka_event_error(event)
            let text = rd_kafka_event_error_string(event).map { String(cString: $0) } ?? ""
            return .error(KafkaError(rdError: code, detail: text), fatal: rd_kafka_event_error_is_fatal(event) != 0)
        case RD_KAFKA_EVENT_LOG:
            var facility: UnsafePointer<CChar>?
            var text: UnsafePointer<CChar>?
            var level: Int32 = 0
            rd_kafka_event_log(event, &facility, &text, &level)
            return .log(
                level: level, facility: facility.map { String(cString: $0) } ?? "",
                message: text.map { String(cString: $0) } ?? "")
        case RD_KAFKA_EVENT_STATS:
            guard let json = rd_kafka_event_stats(event) else { return nil }
            return .statistics(Data(bytes: json, count: strlen(json)))
        case RD_KAFKA_EVENT_OFFSET_COMMIT:
            let code = rd_kafka_event_error(event)
            return .offsetCommit(
                error: code == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : String(cString: rd_kafka_err2str(code)))
        default:
            return nil
        }
    }

    private static func copy(_ message: UnsafePointer<rd_kafka_message_t>) -> KafkaConsumerMessage {
        let raw = message.pointee
        let topic = String(cString: rd_kafka_topic_name(raw.rkt))
        let key = raw.key.map { Array(UnsafeRawBufferPointer(start: $0, count: raw.key_len)) }
        let value = raw.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: raw.len)) } ?? []
        var headers: [KafkaHeader] = []
        var headerList: OpaquePointer?
        if rd_kafka_message_headers(message, &headerList) == RD_KAFKA_RESP_ERR_NO_ERROR, let headerList {
            var index = 0
            var name: UnsafePointer<CChar>?
            var headerValue: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(headerList, index, &name, &headerValue, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                let bytes = headerValue.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
                headers.append(KafkaHeader(name: name.map { String(cString: $0) } ?? "", value: bytes))
                index += 1
            }
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(message, &timestampType)
        return KafkaConsumerMessage(
            topic: topic, partition: raw.partition, offset: raw.offset, key: key, value: value, headers: headers,
            timestampMilliseconds: timestamp >= 0 ? timestamp : nil)
    }

    private static func partitions(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) -> [TopicPartition] {
        guard let list else { return [] }
        return (0..<Int(list.pointee.cnt)).map { index in
            let element = list.pointee.elems[index]
            return TopicPartition(topic: String(cString: element.topic), partition: element.partition)
        }
    }

    static func withPartitionList<T, Failure: Error>(
        _ partitions: [TopicPartition], offsets: [Int64]? = nil,
        _ body: (UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) throws(Failure) -> T
    ) throws(Failure) -> T {
        let list = rd_kafka_topic_partition_list_new(Int32(max(partitions.count, 1)))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for (index, partition) in partitions.enumerated() {
            let element = rd_kafka_topic_partition_list_add(list, partition.topic, partition.partition)!
            if let offsets { element.pointee.offset = offsets[index] }
        }
        return try body(list)
    }

    // MARK: Producer

    /// Queues a message; its delivery report arrives as an event carrying `token`. Never blocks.
    func produce(
        topic: String, key: [UInt8]?, value: [UInt8], headers: [KafkaHeader], token: UInt
    ) throws(KafkaError) {
        // The C strings and buffers must outlive rd_kafka_produceva, which copies them (MSG_F_COPY).
        let topicC = strdup(topic)!
        let names = headers.map { strdup($0.name)! }
        defer {
            free(topicC)
            names.forEach { free($0) }
        }
        // One contiguous buffer holds the value, the key and every header value, pinned for the call.
        var blob = value
        let keyRange = key.map { key -> Range<Int> in
            defer { blob += key }
            return blob.count..<(blob.count + key.count)
        }
        var headerRanges: [Range<Int>] = []
        for header in headers {
            headerRanges.append(blob.count..<(blob.count + header.value.count))
            blob += header.value
        }
        let error: OpaquePointer? = blob.withUnsafeMutableBytes { bytes in
            func address(_ range: Range<Int>) -> UnsafeMutableRawPointer? {
                range.isEmpty ? nil : bytes.baseAddress.map { $0 + range.lowerBound }
            }
            var fields: [rd_kafka_vu_t] = []
            fields.reserveCapacity(5 + headers.count)
            var field = rd_kafka_vu_t()
            field.vtype = RD_KAFKA_VTYPE_TOPIC
            field.u.cstr = UnsafePointer(topicC)
            fields.append(field)
            field = rd_kafka_vu_t()
            field.vtype = RD_KAFKA_VTYPE_VALUE
            field.u.mem.ptr = address(0..<value.count)
            field.u.mem.size = value.count
            fields.append(field)
            if let keyRange {
                field = rd_kafka_vu_t()
                field.vtype = RD_KAFKA_VTYPE_KEY
                field.u.mem.ptr = address(keyRange)
                field.u.mem.size = keyRange.count
                fields.append(field)
            }
            field = rd_kafka_vu_t()
            field.vtype = RD_KAFKA_VTYPE_MSGFLAGS
            field.u.i = RD_KAFKA_MSG_F_COPY
            fields.append(field)
            field = rd_kafka_vu_t()
            field.vtype = RD_KAFKA_VTYPE_OPAQUE
            field.u.ptr = UnsafeMutableRawPointer(bitPattern: token)
            fields.append(field)
            for (index, name) in names.enumerated() {
                field = rd_kafka_vu_t()
                field.vtype = RD_KAFKA_VTYPE_HEADER
                field.u.header.name = UnsafePointer(name)
                field.u.header.val = UnsafeRawPointer(address(headerRanges[index]))
                field.u.header.size = headerRanges[index].count
                fields.append(field)
            }
            return rd_kafka_produceva(pointer, fields, fields.count)
        }
        if let error {
            defer { rd_kafka_error_destroy(error) }
            throw KafkaError(rdError: rd_kafka_error_code(error), detail: String(cString: rd_kafka_error_string(error)))
        }
    }

    /// Waits until every queued message is delivered or failed. Blocks.
    func flush(timeoutMilliseconds: Int32) -> Bool {
        rd_kafka_flush(pointer, timeoutMilliseconds) == RD_KAFKA_RESP_ERR_NO_ERROR
    }

    func outstandingMessages() -> Int { Int(rd_kafka_outq_len(pointer)) }

    // MARK: Consumer

    func subscribe(topics: [String]) throws(KafkaError) {
        let list = rd_kafka_topic_partition_list_new(Int32(topics.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for topic in topics { rd_kafka_topic_partition_list_add(list, topic, RD_KAFKA_PARTITION_UA) }
        let code = rd_kafka_subscribe(pointer, list)
        if code != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(rdError: code) }
    }

    func unsubscribe() throws(KafkaError) {
        let code = rd_kafka_unsubscribe(pointer)
        if code != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(rdError: code, detail: "rd_kafka_unsubscribe") }
    }

    /// Whether the revocation being handled is a lost assignment (the group forgot this member), not a
    /// rebalance the member took part in.
    var assignmentLost: Bool { rd_kafka_assignment_lost(pointer) != 0 }

    var usesCooperativeRebalancing: Bool {
        String(cString: rd_kafka_rebalance_protocol(pointer)) == "COOPERATIVE"
    }

    /// Applies a rebalance. Call from the polling thread.
    func assign(_ partitions: [TopicPartition]) throws(KafkaError) {
        if usesCooperativeRebalancing {
            try Self.check(Self.withPartitionList(partitions) { rd_kafka_incremental_assign(pointer, $0) })
        } else {
            try Self.check(Self.withPartitionList(partitions) { rd_kafka_assign(pointer, $0) }, "rd_kafka_assign")
        }
    }

    func unassign(_ partitions: [TopicPartition]) throws(KafkaError) {
        if usesCooperativeRebalancing {
            try Self.check(Self.withPartitionList(partitions) { rd_kafka_incremental_unassign(pointer, $0) })
        } else {
            try Self.check(rd_kafka_assign(pointer, nil), "rd_kafka_assign")
        }
    }

    /// Throws the error object a call returned (and releases it).
    private static func check(_ error: OpaquePointer?) throws(KafkaError) {
        guard let error else { return }
        defer { rd_kafka_error_destroy(error) }
        throw KafkaError(rdError: rd_kafka_error_code(error), detail: String(cString: rd_kafka_error_string(error)))
    }

    private static func check(_ code: rd_kafka_resp_err_t, _ call: String) throws(KafkaError) {
        if code != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(rdError: code, detail: call) }
    }

    /// Marks `offset` as the next one to read on a partition; the auto-committer commits it.
    /// Fails for a partition this consumer no longer owns (its new owner reads the message again).
    func storeOffset(_ partition: TopicPartition, nextOffset: Int64) throws(KafkaError) {
        let code = Self.withPartitionList([partition], offsets: [nextOffset]) { list in
            rd_kafka_offsets_store(pointer, list)
        }
        if code != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(rdError: code) }
    }

    /// Commits the stored offsets synchronously. Blocks.
    func commitStoredOffsets() -> KafkaError? {
        let code = rd_kafka_commit(pointer, nil, 0)
        // _NO_OFFSET: nothing new was stored since the last commit.
        if code == RD_KAFKA_RESP_ERR_NO_ERROR || code == RD_KAFKA_RESP_ERR__NO_OFFSET { return nil }
        return KafkaError(rdError: code)
    }

    /// Stops fetching `partitions`. Synchronous in librdkafka 2.x (it waits for the partitions'
    /// threads): call from the polling thread only, never the cooperative pool.
    func pause(_ partitions: [TopicPartition]) throws(KafkaError) {
        try Self.withPartitionList(partitions) { list throws(KafkaError) in
            try Self.check(rd_kafka_pause_partitions(pointer, list), "rd_kafka_pause_partitions")
            try Self.checkElements(list, "rd_kafka_pause_partitions")
        }
    }

    /// Fetches `partitions` again. Like `pause`, from the polling thread only.
    func resume(_ partitions: [TopicPartition]) throws(KafkaError) {
        try Self.withPartitionList(partitions) { list throws(KafkaError) in
            try Self.check(rd_kafka_resume_partitions(pointer, list), "rd_kafka_resume_partitions")
            try Self.checkElements(list, "rd_kafka_resume_partitions")
        }
    }

    /// A call on a partition list reports each partition's own outcome in its element.
    private static func checkElements(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>, _ call: String)
        throws(KafkaError)
    {
        for element in UnsafeBufferPointer(start: list.pointee.elems, count: Int(list.pointee.cnt))
        where element.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(
                rdError: element.err, detail: "\(call) \(String(cString: element.topic))/\(element.partition)")
        }
    }

    /// Starts leaving the group; keep polling until `isClosed`.
    func beginClose() throws(KafkaError) {
        try Self.check(rd_kafka_consumer_close_queue(pointer, queue))
    }

    var isClosed: Bool { rd_kafka_consumer_closed(pointer) != 0 }

    // MARK: Admin

    /// Creates the topics that do not exist yet. Blocks up to `timeoutMilliseconds`.
    func createTopics(
        _ topics: [(name: String, partitions: Int)], timeoutMilliseconds: Int32
    ) throws(KafkaError) {
        var errorBuffer = [CChar](repeating: 0, count: 512)
        var newTopics: [OpaquePointer?] = []
        defer { newTopics.forEach { rd_kafka_NewTopic_destroy($0) } }
        for topic in topics {
            guard
                let newTopic = rd_kafka_NewTopic_new(
                    topic.name, Int32(topic.partitions), -1, &errorBuffer, errorBuffer.count)
            else { throw KafkaError(.configuration, errorBuffer.nulTerminatedString) }
            newTopics.append(newTopic)
        }
        let event = try adminRequest(
            "CreateTopics", RD_KAFKA_ADMIN_OP_CREATETOPICS, timeoutMilliseconds: timeoutMilliseconds
        ) {
            pointer, options, resultQueue in
            newTopics.withUnsafeMutableBufferPointer { buffer in
                rd_kafka_CreateTopics(pointer, buffer.baseAddress, buffer.count, options, resultQueue)
            }
        }
        defer { rd_kafka_event_destroy(event) }
        guard let result = rd_kafka_event_CreateTopics_result(event) else { return }
        var count = 0
        guard let results = rd_kafka_CreateTopics_result_topics(result, &count) else { return }
        for index in 0..<count {
            let code = rd_kafka_topic_result_error(results[index])
            if code != RD_KAFKA_RESP_ERR_NO_ERROR && code != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS {
                let name = String(cString: rd_kafka_topic_result_name(results[index]))
                let message = rd_kafka_topic_result_error_string(results[index]).map { String(cString: $0) } ?? ""
                throw KafkaError(rdError: code, detail: "\(name): \(message)")
            }
        }
    }

    /// Submits one admin request (`submit` gets the client, the options and the queue to answer on) and
    /// waits for its result event, which the caller destroys. Throws the request's own error.
    func adminRequest(
        _ name: String, _ operation: rd_kafka_admin_op_t, timeoutMilliseconds: Int32,
        submit: (_ client: OpaquePointer, _ options: OpaquePointer?, _ resultQueue: OpaquePointer) -> Void
    ) throws(KafkaError) -> OpaquePointer {
        var errorBuffer = [CChar](repeating: 0, count: 512)
        let resultQueue = rd_kafka_queue_new(pointer)!
        defer { rd_kafka_queue_destroy(resultQueue) }
        let options = rd_kafka_AdminOptions_new(pointer, operation)
        defer { rd_kafka_AdminOptions_destroy(options) }
        if operation == RD_KAFKA_ADMIN_OP_CREATETOPICS,
            rd_kafka_AdminOptions_set_operation_timeout(options, timeoutMilliseconds, &errorBuffer, errorBuffer.count)
                != RD_KAFKA_RESP_ERR_NO_ERROR
        {
            throw KafkaError(.configuration, "\(name): operation timeout: \(errorBuffer.nulTerminatedString)")
        }
        if rd_kafka_AdminOptions_set_request_timeout(options, timeoutMilliseconds, &errorBuffer, errorBuffer.count)
            != RD_KAFKA_RESP_ERR_NO_ERROR
        {
            throw KafkaError(.configuration, "\(name): request timeout: \(errorBuffer.nulTerminatedString)")
        }
        submit(pointer, options, resultQueue)
        guard let event = rd_kafka_queue_poll(resultQueue, timeoutMilliseconds + 1000) else {
            throw KafkaError(.timedOut, "\(name) did not answer")
        }
        if rd_kafka_event_error(event) != RD_KAFKA_RESP_ERR_NO_ERROR {
            defer { rd_kafka_event_destroy(event) }
            throw KafkaError(
                rdError: rd_kafka_event_error(event),
                detail: rd_kafka_event_error_string(event).map { String(cString: $0) } ?? name)
        }
        return event
    }

    /// The number of partitions of each existing topic among `topics`. Blocks.
    func partitionCounts(of topics: [String], timeoutMilliseconds: Int32) throws(KafkaError) -> [String: Int] {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let code = rd_kafka_metadata(pointer, 1, nil, &metadata, timeoutMilliseconds)
        guard code == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { throw KafkaError(rdError: code) }
        defer { rd_kafka_metadata_destroy(metadata) }
        var counts: [String: Int] = [:]
        let wanted = Set(topics)
        for index in 0..<Int(metadata.pointee.topic_cnt) {
            let topic = metadata.pointee.topics[index]
            let name = String(cString: topic.topic)
            if wanted.contains(name), topic.err == RD_KAFKA_RESP_ERR_NO_ERROR {
                counts[name] = Int(topic.partition_cnt)
            }
        }
        return counts
    }
}

extension KafkaError {
    init(rdError: rd_kafka_resp_err_t, detail: String = "") {
        let name = String(cString: rd_kafka_err2name(rdError))
        let text = String(cString: rd_kafka_err2str(rdError))
        let code: Code
        switch rdError {
        case RD_KAFKA_RESP_ERR__QUEUE_FULL: code = .queueFull
        case RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT: code = .timedOut
        case RD_KAFKA_RESP_ERR__STATE, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION: code = .notAssigned
        case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN: code = .allBrokersDown
        default: code = .broker
        }
        self.init(code, detail.isEmpty ? "\(name): \(text)" : "\(name): \(text) (\(detail))")
        self.isRetriable =
            rdError == RD_KAFKA_RESP_ERR__QUEUE_FULL || rdError == RD_KAFKA_RESP_ERR__TRANSPORT
            || rdError == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT || rdError == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION
            || rdError == RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT || rdError == RD_KAFKA_RESP_ERR__TIMED_OUT
            // Failed by a producer that `KafkaProducer.renew` replaces: to send again through the new one.
            || rdError == RD_KAFKA_RESP_ERR__FATAL || rdError == RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID
            || rdError == RD_KAFKA_RESP_ERR__PURGE_QUEUE || rdError == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT
    }
}

/// The librdkafka version this process linked, e.g. "2.8.0".
public var librdkafkaVersion: String { String(cString: rd_kafka_version_str()) }

extension [CChar] {
    fileprivate var nulTerminatedString: String {
        String(decoding: prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
