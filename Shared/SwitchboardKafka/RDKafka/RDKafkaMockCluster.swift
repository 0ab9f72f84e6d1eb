import CRDKafka
import Logging

/// librdkafka's built-in mock cluster (`rdkafka_mock.h`): brokers inside this process that a test can
/// make fail as a real broker cannot be made to (every produce request refused, all brokers gone).
/// Clients reach it through `bootstrapServers`. For tests only.
public final class KafkaMockCluster: @unchecked Sendable {
    /// The errors a test can have the brokers answer with.
    public enum RequestError: Sendable {
        /// Retriable: the producer tries again until its message times out.
        case notEnoughReplicas
    }

    private let host: RDKafkaClient
    private let cluster: OpaquePointer
    public let bootstrapServers: String

    public init(brokers: Int = 1, logger: Logger) throws {
        // The cluster lives on a client handle of its own, which is never polled.
        host = try RDKafkaClient.make(
            kind: .producer, properties: ["bootstrap.servers": "", "log_level": "0"], logger: logger)
        guard let cluster = rd_kafka_mock_cluster_new(host.pointer, Int32(brokers)) else {
            host.destroy()
            throw KafkaError(.configuration, "rd_kafka_mock_cluster_new failed")
        }
        self.cluster = cluster
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    public func createTopic(_ name: String, partitions: Int) throws {
        let code = rd_kafka_mock_topic_create(cluster, name, Int32(partitions), 1)
        if code != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(rdError: code, detail: "rd_kafka_mock_topic_create") }
    }

    /// The next `count` produce requests are answered with `error`.
    public func failProduceRequests(_ count: Int, with error: RequestError) {
        let code: rd_kafka_resp_err_t =
            switch error {
            case .notEnoughReplicas: RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS
            }
        let errors = [rd_kafka_resp_err_t](repeating: code, count: count)
        // 0 is the Produce request's ApiKey (librdkafka's RD_KAFKAP_Produce is not public).
        rd_kafka_mock_push_request_errors_array(cluster, 0, errors.count, errors)
    }

    /// Every broker drops its connections and refuses new ones, or takes them again.
    public func setBrokersUp(_ up: Bool) throws {
        let code = up ? rd_kafka_mock_broker_set_up(cluster, -1) : rd_kafka_mock_broker_set_down(cluster, -1)
        if code != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(rdError: code, detail: up ? "broker up" : "broker down")
        }
    }

    /// Stops the brokers; clients still connected to them see them go away.
    public func shutdown() {
        rd_kafka_mock_cluster_destroy(cluster)
        host.destroy()
    }
}
