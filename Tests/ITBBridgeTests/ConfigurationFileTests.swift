import ITBBridge
import ITBSerial
import Testing

/// The daemon's config file: every key, comments and blank lines, and errors that name their line.
@Suite("Configuration file")
struct ConfigurationFileTests {
    /// The error `text` produces, or nil when it parses.
    private func configurationError(_ text: String, base: BridgeConfiguration = .init()) -> ConfigurationFile.ParseError? {
        do {
            _ = try ConfigurationFile.parse(text, base: base)
            return nil
        } catch {
            return error
        }
    }

    // MARK: every key

    @Test("every documented key is parsed into its setting")
    func everyKeyParses() throws {
        let text = """
            device = /dev/ttyUSB0
            discovery = no
            match = 10C4:EA60:PRG-0042
            baud_rate = 230400
            flow_control = rts-cts
            socket = /run/test/api.sock
            socket_mode = 0640
            socket_group = itb
            state_dir = /var/lib/itb-test
            log_level = debug
            stale_after_s = 2.5
            heartbeat_interval_s = 0.5
            refill_margin_days = 3
            stability_limit_days = 150
            refill_due_soon_days = 10
            stability_warning_days = 21
            refill_discrepancy_bound = 0.15
            clock_drift_bound_s = 60
            retention_days = 30
            subscriber_buffer_events = 128
            max_request_body_bytes = 4096
            capture_dir = /var/tmp/itb-captures
            capture_rotate_bytes = 1048576
            """
        let config = try ConfigurationFile.parse(text)
        #expect(config.devices == ["/dev/ttyUSB0"])
        #expect(config.discovery == false)
        #expect(config.matchRules == [USBMatchRule(vendorID: "10c4", productID: "ea60", serial: "PRG-0042")])
        #expect(config.serial.baudRate == 230_400)
        #expect(config.serial.flowControl == .rtsCts)
        #expect(config.socketPath == "/run/test/api.sock")
        #expect(config.socketMode == 0o640)
        #expect(config.socketGroup == "itb")
        #expect(config.stateDirectory == "/var/lib/itb-test")
        #expect(config.logLevel == "debug")
        #expect(config.staleAfter == .milliseconds(2500))
        #expect(config.heartbeatInterval == .milliseconds(500))
        #expect(config.refillMarginDays == 3)
        #expect(config.stabilityLimitDays == 150)
        #expect(config.refillDueSoonDays == 10)
        #expect(config.stabilityWarningDays == 21)
        #expect(config.refillDiscrepancyBound == 0.15)
        #expect(config.clockDriftBound == .seconds(60))
        #expect(config.retentionDays == 30)
        #expect(config.subscriberBufferEvents == 128)
        #expect(config.maxRequestBodyBytes == 4096)
        #expect(config.captureDirectory == "/var/tmp/itb-captures")
        #expect(config.captureRotateBytes == 1_048_576)
    }

    @Test("an empty file keeps every setting of the base")
    func emptyFileKeepsBase() throws {
        var base = BridgeConfiguration()
        base.devices = ["/dev/ttyACM7"]
        base.retentionDays = 12
        #expect(try ConfigurationFile.parse("", base: base) == base)
        #expect(try ConfigurationFile.parse("\n\n# nothing here\n", base: base) == base)
    }

    @Test("device is repeatable and the file's list replaces the base's devices")
    func devicesRepeatAndReplaceDefaults() throws {
        var base = BridgeConfiguration()
        base.devices = ["/dev/ttyS0"]
        let config = try ConfigurationFile.parse("""
            device = /dev/ttyUSB0
            log_level = info
            device = /dev/serial/by-id/usb-FTDI_FT232R-if00-port0
            """, base: base)
        #expect(config.devices == ["/dev/ttyUSB0", "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0"])
    }

    @Test("without a device line the base's devices are kept")
    func noDeviceKeepsBase() throws {
        var base = BridgeConfiguration()
        base.devices = ["/dev/ttyS0"]
        #expect(try ConfigurationFile.parse("discovery = yes", base: base).devices == ["/dev/ttyS0"])
    }

    @Test("match is repeatable, replaces the default adapter rule, and takes an optional serial")
    func matchRulesRepeatAndReplaceDefault() throws {
        #expect(BridgeConfiguration().matchRules == [.defaultProgrammerAdapter])
        let config = try ConfigurationFile.parse("""
            match = 0403:6015
            match = 10C4:EA60:PRG-0042
            """)
        #expect(config.matchRules == [
            USBMatchRule(vendorID: "0403", productID: "6015"),
            USBMatchRule(vendorID: "10c4", productID: "ea60", serial: "PRG-0042"),
        ])
        #expect(try ConfigurationFile.parse("discovery = yes").matchRules == [.defaultProgrammerAdapter])
    }

    @Test("a match rule that is not hex USB ids is an error")
    func badMatchRule() {
        let error = configurationError("match = FTDI:6001")
        #expect(error?.line == 1)
        #expect(error?.message.hasPrefix("match:") == true)
        #expect(error?.message.contains("VVVV:PPPP") == true)
    }

    @Test("every supported baud rate is accepted", arguments: SerialConfiguration.supportedBaudRates)
    func supportedBaudRates(rate: Int) throws {
        #expect(try ConfigurationFile.parse("baud_rate = \(rate)").serial.baudRate == rate)
    }

    @Test("a baud rate the serial line cannot use is rejected with its value", arguments: [12_345, 0, 115_201])
    func unsupportedBaudRates(rate: Int) {
        let error = configurationError("baud_rate = \(rate)")
        #expect(error?.line == 1)
        #expect(error?.message == "baud_rate: unsupported baud rate \(rate)")
    }

    @Test("socket_mode is read as octal, with or without a leading zero")
    func socketModeIsOctal() throws {
        #expect(try ConfigurationFile.parse("socket_mode = 0660").socketMode == 0o660)
        #expect(try ConfigurationFile.parse("socket_mode = 0600").socketMode == 384)
        #expect(try ConfigurationFile.parse("socket_mode = 640").socketMode == 0o640)
        #expect(try ConfigurationFile.parse("socket_mode = 0777").socketMode == 0o777)
    }

    @Test("socket_mode that is not an octal permission mode is rejected", arguments: ["0680", "rw-rw----", "1777", "0x1b0", ""])
    func badSocketMode(value: String) {
        let error = configurationError("socket_mode = \(value)")
        #expect(error?.line == 1)
        #expect(error?.message.hasPrefix("socket_mode:") == true)
        #expect(error?.message.contains("octal") == true)
    }

    @Test("durations are given in seconds, fractions allowed")
    func durationsInSeconds() throws {
        let config = try ConfigurationFile.parse("""
            stale_after_s = 10
            heartbeat_interval_s = 0.25
            clock_drift_bound_s = 1.5
            """)
        #expect(config.staleAfter == .seconds(10))
        #expect(config.heartbeatInterval == .milliseconds(250))
        #expect(config.clockDriftBound == .milliseconds(1500))
    }

    @Test("discovery accepts yes/no and its synonyms", arguments: [
        ("yes", true), ("true", true), ("on", true), ("no", false), ("false", false), ("off", false),
    ])
    func discoveryYesNo(value: String, expected: Bool) throws {
        var base = BridgeConfiguration()
        base.discovery = !expected
        #expect(try ConfigurationFile.parse("discovery = \(value)", base: base).discovery == expected)
    }

    @Test("discovery with anything else is an error")
    func discoveryOther() {
        let error = configurationError("discovery = maybe")
        #expect(error?.line == 1)
        #expect(error?.message == "discovery: expected yes or no")
    }

    @Test("an empty socket_group or capture_dir unsets it")
    func emptyOptionalValuesUnset() throws {
        var base = BridgeConfiguration()
        base.socketGroup = "dialout"
        base.captureDirectory = "/tmp/cap"
        let config = try ConfigurationFile.parse("socket_group =\ncapture_dir = ", base: base)
        #expect(config.socketGroup == nil)
        #expect(config.captureDirectory == nil)
    }

    @Test("log_level accepts only swift-log's level names")
    func logLevels() throws {
        for level in ["trace", "debug", "info", "notice", "warning", "error", "critical"] {
            #expect(try ConfigurationFile.parse("log_level = \(level)").logLevel == level)
        }
        let error = configurationError("log_level = verbose")
        #expect(error?.line == 1)
        #expect(error?.message.hasPrefix("log_level: expected trace, debug") == true)
    }

    @Test("flow_control accepts none and rts-cts only")
    func flowControl() throws {
        #expect(try ConfigurationFile.parse("flow_control = none").serial.flowControl == SerialConfiguration.FlowControl.none)
        #expect(try ConfigurationFile.parse("flow_control = rts-cts").serial.flowControl == .rtsCts)
        #expect(configurationError("flow_control = xon-xoff")?.message == "flow_control: expected none or rts-cts")
    }

    @Test("subscriber_buffer_events below 16 is rejected")
    func subscriberBufferMinimum() throws {
        #expect(try ConfigurationFile.parse("subscriber_buffer_events = 16").subscriberBufferEvents == 16)
        let error = configurationError("subscriber_buffer_events = 15")
        #expect(error?.line == 1)
        #expect(error?.message == "subscriber_buffer_events: must be at least 16")
    }

    // MARK: comments and blank lines

    @Test("comments, trailing comments, blank lines and surrounding whitespace are ignored")
    func commentsAndBlankLines() throws {
        let text = "# itb-bridged configuration\n"
            + "\n"
            + "   \t  \n"
            + "    # an indented comment\n"
            + "\tlog_level\t=\tnotice   # the daemon's verbosity\n"
            + "retention_days=90#no spaces at all\n"
            + "\n"
        let config = try ConfigurationFile.parse(text)
        #expect(config.logLevel == "notice")
        #expect(config.retentionDays == 90)
        var expected = BridgeConfiguration()
        expected.logLevel = "notice"
        expected.retentionDays = 90
        #expect(config == expected)
    }

    @Test("a file with CRLF line endings reads line by line, like one with LF")
    func crlfLineEndings() throws {
        let config = try ConfigurationFile.parse("device = /dev/ttyUSB0\r\ndevice = /dev/ttyUSB1\r\n# comment\r\ndiscovery = no\r\n")
        #expect(config.devices == ["/dev/ttyUSB0", "/dev/ttyUSB1"])
        #expect(config.discovery == false)
        let error = configurationError("log_level = info\r\n\r\nbogus = 1\r\n")
        #expect(error?.line == 3)
        #expect(error?.message == "unknown setting `bogus`")
    }

    // MARK: errors and their line numbers

    @Test("an unknown key is an error on its line, naming the key")
    func unknownKey() {
        let error = configurationError("""
            # header

            log_level = debug
            retention_dayz = 30
            device = /dev/ttyUSB0
            """)
        #expect(error?.line == 4)
        #expect(error?.message == "unknown setting `retention_dayz`")
        #expect(error?.description == "config line 4: unknown setting `retention_dayz`")
    }

    @Test("a line without `=` is an error on its line, quoting the line")
    func missingEquals() {
        let error = configurationError("""
            discovery = yes
            device /dev/ttyUSB0   # forgot the equals sign
            """)
        #expect(error?.line == 2)
        #expect(error?.message == "expected `key = value`, found `device /dev/ttyUSB0`")
    }

    @Test("a bad whole number is an error on its line, with the key and the value")
    func badWholeNumber() {
        let error = configurationError("""
            log_level = info

            retention_days = forty
            """)
        #expect(error?.line == 3)
        #expect(error?.message == "retention_days: expected a non-negative whole number, found `forty`")
    }

    @Test("a bad or negative number is an error on its line", arguments: [
        ("refill_margin_days = -2", "refill_margin_days: expected a non-negative number, found `-2`"),
        ("refill_discrepancy_bound = ten percent", "refill_discrepancy_bound: expected a non-negative number, found `ten percent`"),
        ("stale_after_s = 5s", "stale_after_s: expected a non-negative number, found `5s`"),
        ("stability_limit_days = inf", "stability_limit_days: expected a non-negative number, found `inf`"),
        ("clock_drift_bound_s = nan", "clock_drift_bound_s: expected a non-negative number, found `nan`"),
        ("capture_rotate_bytes = 1.5", "capture_rotate_bytes: expected a non-negative whole number, found `1.5`"),
        ("max_request_body_bytes = -1", "max_request_body_bytes: expected a non-negative whole number, found `-1`"),
    ])
    func badNumber(line: String, message: String) {
        let error = configurationError("# numbers\n" + line + "\n")
        #expect(error?.line == 2)
        #expect(error?.message == message)
    }

    @Test("a relative device path is an error on its line")
    func relativeDevicePath() {
        let error = configurationError("""
            device = /dev/ttyUSB0
            device = ttyUSB1
            """)
        #expect(error?.line == 2)
        #expect(error?.message == "device: expected an absolute device path")
    }

    @Test("a bad baud rate is an error on its line")
    func badBaudRateLine() {
        let error = configurationError("""
            # serial line
            flow_control = none

            baud_rate = 115000
            """)
        #expect(error?.line == 4)
        #expect(error?.message == "baud_rate: unsupported baud rate 115000")
        #expect(error?.description == "config line 4: baud_rate: unsupported baud rate 115000")
        let notNumber = configurationError("baud_rate = fast")
        #expect(notNumber?.message == "baud_rate: expected a non-negative whole number, found `fast`")
    }

    @Test("the first error stops the parse, even when later lines are also wrong")
    func firstErrorWins() {
        let error = configurationError("""
            log_level = info
            baud_rate = 7
            nonsense
            """)
        #expect(error?.line == 2)
    }

    @Test("check reads the whole file and returns every problem in line order, keeping the lines that are right")
    func checkReportsEveryProblem() {
        let (configuration, problems) = ConfigurationFile.check("""
            log_level = debug
            baud_rate = 7
            nonsense
            retention_days = 30
            match = zz:yy
            """)
        #expect(problems.map(\.line) == [2, 3, 5])
        #expect(problems.first?.message == "baud_rate: unsupported baud rate 7")
        #expect(configuration.logLevel == "debug")
        #expect(configuration.retentionDays == 30)
        #expect(ConfigurationFile.check("log_level = info\n").1.isEmpty)
    }
}
