import CRDKafka

// Committed offsets and watermarks, for consumer lag. Every call blocks: call from a dedicated thread.
extension RDKafkaClient {
    /// The committed offset of `group` on each of `partitions`, `nil` where the group never committed.
    /// Any client may ask for any group: the admin API names the group, the client need not belong to it.
    func committedOffsets(
        group: String, partitions: [TopicPartition], timeoutMilliseconds: Int32
    ) throws(KafkaError) -> [TopicPartition: Int64?] {
        // librdkafka refuses an empty list (it would mean "every partition"): the topics do not exist yet.
        guard !partitions.isEmpty else { return [:] }
        let request: OpaquePointer = Self.withPartitionList(partitions) { list in
            rd_kafka_ListConsumerGroupOffsets_new(group, list)!
        }
        defer { rd_kafka_ListConsumerGroupOffsets_destroy(request) }
        var requests: [OpaquePointer?] = [request]
        let event = try adminRequest(
            "ListConsumerGroupOffsets(\(group))", RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
            timeoutMilliseconds: timeoutMilliseconds
        ) { pointer, options, resultQueue in
            requests.withUnsafeMutableBufferPointer { buffer in
                rd_kafka_ListConsumerGroupOffsets(pointer, buffer.baseAddress, buffer.count, options, resultQueue)
            }
        }
        defer { rd_kafka_event_destroy(event) }
        var offsets: [TopicPartition: Int64?] = [:]
        guard let result = rd_kafka_event_ListConsumerGroupOffsets_result(event) else { return offsets }
        var count = 0
        guard let groups = rd_kafka_ListConsumerGroupOffsets_result_groups(result, &count) else { return offsets }
        for index in 0..<count {
            if let error = rd_kafka_group_result_error(groups[index]) {
                throw KafkaError(
                    rdError: rd_kafka_error_code(error),
                    detail: "\(group): \(String(cString: rd_kafka_error_string(error)))")
            }
            guard let list = rd_kafka_group_result_partitions(groups[index]) else { continue }
            for element in UnsafeBufferPointer(start: list.pointee.elems, count: Int(list.pointee.cnt)) {
                let partition = TopicPartition(topic: String(cString: element.topic), partition: element.partition)
                // A negative offset is librdkafka's "none committed" (RD_KAFKA_OFFSET_INVALID).
                let committed: Int64? =
                    element.err == RD_KAFKA_RESP_ERR_NO_ERROR && element.offset >= 0 ? element.offset : nil
                offsets[partition] = .some(committed)
            }
        }
        return offsets
    }

    /// The partition's low and high watermarks (the first offset kept, the next offset to be written).
    func watermarks(of partition: TopicPartition, timeoutMilliseconds: Int32) throws(KafkaError) -> (
        low: Int64, high: Int64
    ) {
        var low: Int64 = 0
        var high: Int64 = 0
        let code = rd_kafka_query_watermark_offsets(
            pointer, partition.topic, partition.partition, &low, &high, Int32(timeoutMilliseconds))
        guard code == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(rdError: code, detail: partition.description) }
        return (low, high)
    }
}
