public import ITBSerial

/// Reads the daemon's config file: `key = value` lines, `#` comments, repeatable keys for lists.
///
/// A small format on purpose: operators edit it by hand, and every mistake must be reported with
/// its line number rather than guessed around. Unknown keys are errors (a misspelt key silently
/// ignored is a setting silently lost).
public enum ConfigurationFile {
    /// A problem in the file, with where it is.
    public struct ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        /// 1-based line number.
        public var line: Int
        /// What is wrong, in words an operator can act on.
        public var message: String
        public var description: String { "config line \(line): \(message)" }
    }

    /// Applies the settings in `text` on top of `base`; throws the first problem.
    public static func parse(_ text: String, base: BridgeConfiguration = .init()) throws(ParseError) -> BridgeConfiguration {
        let (config, problems) = check(text, base: base)
        if let first = problems.first { throw first }
        return config
    }

    /// Reads the whole of `text` and returns every problem in it, each with its line number, in
    /// line order (`itb-bridged --check-config`), and the settings of the lines that are right.
    public static func check(_ text: String, base: BridgeConfiguration = .init()) -> (BridgeConfiguration, [ParseError]) {
        var config = base
        var devicesSeen = false
        var matchSeen = false
        var problems: [ParseError] = []
        // Split on any line break: in a String "\r\n" is one Character, so splitting on "\n" alone would
        // read a CRLF file as a single line (and a device path with the rest of the file in it).
        for (index, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            do throws(ParseError) {
                try apply(line: rawLine, number: index + 1, to: &config, devicesSeen: &devicesSeen, matchSeen: &matchSeen)
            } catch {
                problems.append(error)
            }
        }
        return (config, problems)
    }

    /// Applies one line (a setting, a comment or a blank line).
    private static func apply(line rawLine: Substring, number lineNumber: Int, to config: inout BridgeConfiguration,
                              devicesSeen: inout Bool, matchSeen: inout Bool) throws(ParseError) {
        var line = Substring(rawLine)
        if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
        let trimmed = line.trimmingWhitespace()
        if trimmed.isEmpty { return }
        guard let eq = trimmed.firstIndex(of: "=") else {
            throw ParseError(line: lineNumber, message: "expected `key = value`, found `\(trimmed)`")
        }
        let key = trimmed[..<eq].trimmingWhitespace()
        let value = trimmed[trimmed.index(after: eq)...].trimmingWhitespace()
        func fail(_ message: String) -> ParseError { ParseError(line: lineNumber, message: "\(key): \(message)") }
        func number() throws(ParseError) -> Double {
            guard let n = Double(value), n.isFinite, n >= 0 else { throw fail("expected a non-negative number, found `\(value)`") }
            return n
        }
        func integer() throws(ParseError) -> Int {
            guard let n = Int(value), n >= 0 else { throw fail("expected a non-negative whole number, found `\(value)`") }
            return n
        }
        func seconds() throws(ParseError) -> Duration {
            let n = try number()
            return .milliseconds(Int64((n * 1000).rounded()))
        }
        switch key {
        case "device":
            if !devicesSeen { config.devices = []; devicesSeen = true }
            guard value.hasPrefix("/") else { throw fail("expected an absolute device path") }
            config.devices.append(value)
        case "discovery":
            switch value {
            case "yes", "true", "on": config.discovery = true
            case "no", "false", "off": config.discovery = false
            default: throw fail("expected yes or no")
            }
        case "match":
            if !matchSeen { config.matchRules = []; matchSeen = true }
            guard let rule = USBMatchRule(parsing: value) else { throw fail("expected VVVV:PPPP or VVVV:PPPP:SERIAL (hex USB ids)") }
            config.matchRules.append(rule)
        case "baud_rate":
            let rate = try integer()
            guard SerialConfiguration.supportedBaudRates.contains(rate) else { throw fail("unsupported baud rate \(rate)") }
            config.serial.baudRate = rate
        case "flow_control":
            guard let flow = SerialConfiguration.FlowControl(rawValue: value) else { throw fail("expected none or rts-cts") }
            config.serial.flowControl = flow
        case "socket": config.socketPath = value
        case "socket_mode":
            guard let mode = UInt32(value, radix: 8), mode <= 0o777 else { throw fail("expected an octal mode such as 0660") }
            config.socketMode = mode
        case "socket_group": config.socketGroup = value.isEmpty ? nil : value
        case "state_dir": config.stateDirectory = value
        case "log_level":
            guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(value) else {
                throw fail("expected trace, debug, info, notice, warning, error or critical")
            }
            config.logLevel = value
        case "stale_after_s": config.staleAfter = try seconds()
        case "heartbeat_interval_s": config.heartbeatInterval = try seconds()
        case "refill_margin_days": config.refillMarginDays = try number()
        case "stability_limit_days": config.stabilityLimitDays = try number()
        case "refill_due_soon_days": config.refillDueSoonDays = try number()
        case "stability_warning_days": config.stabilityWarningDays = try number()
        case "refill_discrepancy_bound": config.refillDiscrepancyBound = try number()
        case "refill_discrepancy_ul_small_pump": config.refillDiscrepancyBoundSmallPumpUL = Int64(try integer())
        case "refill_discrepancy_ul_large_pump": config.refillDiscrepancyBoundLargePumpUL = Int64(try integer())
        case "clock_drift_bound_s": config.clockDriftBound = try seconds()
        case "alarm_mask_grace_s": config.alarmMaskGrace = try seconds()
        case "retention_days": config.retentionDays = try integer()
        case "subscriber_buffer_events":
            let n = try integer()
            guard n >= 16 else { throw fail("must be at least 16") }
            config.subscriberBufferEvents = n
        case "max_request_body_bytes": config.maxRequestBodyBytes = try integer()
        case "capture_dir": config.captureDirectory = value.isEmpty ? nil : value
        case "capture_rotate_bytes": config.captureRotateBytes = try integer()
        case "capture_max_total_bytes": config.captureMaxTotalBytes = try integer()
        default:
            throw ParseError(line: lineNumber, message: "unknown setting `\(key)`")
        }
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let first = s.first, first.isWhitespace { s = s.dropFirst() }
        while let last = s.last, last.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
