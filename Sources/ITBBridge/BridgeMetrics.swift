public import CoreMetrics
import Prometheus

/// The bridge's metrics, through swift-metrics with the Prometheus backend, on a registry of
/// the bridge's own (no global bootstrap, so several bridges can live in one test process).
public final class BridgeMetrics: Sendable {
    private let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory

    /// Frames accepted (both CRCs good).
    let framesAccepted: CoreMetrics.Counter
    /// Frames skipped for a bad payload CRC.
    let payloadCRCErrors: CoreMetrics.Counter
    /// Headers rejected (false syncs and resynchronisations).
    let headerRejects: CoreMetrics.Counter
    /// Bytes discarded while resynchronising.
    let bytesDiscarded: CoreMetrics.Counter
    /// Sequence gaps seen.
    let sequenceGaps: CoreMetrics.Counter
    /// Live SSE subscribers.
    let subscribers: CoreMetrics.Gauge
    /// Duration of journal transactions.
    let journalWrite: CoreMetrics.Timer
    /// Journal transactions that failed.
    let journalFailures: CoreMetrics.Counter

    /// Creates the metrics on a fresh registry.
    public init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(500), .seconds(1),
        ]
        self.factory = factory
        framesAccepted = CoreMetrics.Counter(label: "itb_frames_accepted_total", factory: factory)
        payloadCRCErrors = CoreMetrics.Counter(label: "itb_payload_crc_errors_total", factory: factory)
        headerRejects = CoreMetrics.Counter(label: "itb_header_rejects_total", factory: factory)
        bytesDiscarded = CoreMetrics.Counter(label: "itb_bytes_discarded_total", factory: factory)
        sequenceGaps = CoreMetrics.Counter(label: "itb_sequence_gaps_total", factory: factory)
        subscribers = CoreMetrics.Gauge(label: "itb_event_subscribers", factory: factory)
        journalWrite = CoreMetrics.Timer(label: "itb_journal_write_seconds", factory: factory)
        journalFailures = CoreMetrics.Counter(label: "itb_journal_write_failures_total", factory: factory)
    }

    /// Counts one alarm transition stored, by code and source.
    func alarmStored(code: String, source: String) {
        CoreMetrics.Counter(label: "itb_alarms_total", dimensions: [("code", code), ("source", source)], factory: factory).increment()
    }

    /// The metrics in Prometheus text format.
    public func render() -> [UInt8] {
        registry.emitToBuffer()
    }
}
