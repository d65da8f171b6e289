/// Which USB-serial devices are programmers: by vendor and product id, optionally narrowed by
/// serial number and product string. Anything else (a GPS, a modem, another adapter) is left alone.
public struct USBMatchRule: Hashable, Sendable, CustomStringConvertible {
    /// USB vendor id, 4 lower-case hex digits (`0403`).
    public var vendorID: String
    /// USB product id, 4 lower-case hex digits (`6001`).
    public var productID: String
    /// When set, only the device with this USB serial number.
    public var serial: String?
    /// When set, only devices whose USB product string is this.
    public var product: String?

    /// Creates a rule; ids are normalised to 4 lower-case hex digits.
    public init(vendorID: String, productID: String, serial: String? = nil, product: String? = nil) {
        self.vendorID = Self.normalise(vendorID)
        self.productID = Self.normalise(productID)
        self.serial = serial
        self.product = product
    }

    /// Parses `VVVV:PPPP[:SERIAL]`, the form the config file and `--match` use.
    public init?(parsing text: String) {
        let parts = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 2, Self.isHexID(parts[0]), Self.isHexID(parts[1]) else { return nil }
        self.init(vendorID: parts[0], productID: parts[1], serial: parts.count == 3 && !parts[2].isEmpty ? parts[2] : nil)
    }

    /// The default rule shipped for the programmer's USB-serial adapter: FTDI FT232R, 0403:6001.
    /// This is the value to edit for another adapter (config file `match`, or `--match`).
    public static let defaultProgrammerAdapter = USBMatchRule(vendorID: "0403", productID: "6001")

    public var description: String {
        "\(vendorID):\(productID)" + (serial.map { ":\($0)" } ?? "") + (product.map { " product \"\($0)\"" } ?? "")
    }

    /// True when the udev device is a tty of a USB device this rule names.
    public func matches(_ device: UdevDeviceInfo) -> Bool {
        guard device.subsystem == "tty", device.devnode != nil,
              Self.normalise(device.vendorID ?? "") == vendorID,
              Self.normalise(device.productID ?? "") == productID
        else { return false }
        if let serial, device.serialShort != serial { return false }
        if let product, device.product != product { return false }
        return true
    }

    static func normalise(_ id: String) -> String {
        let lower = id.lowercased()
        return lower.count < 4 ? String(repeating: "0", count: 4 - lower.count) + lower : lower
    }

    static func isHexID(_ text: String) -> Bool {
        !text.isEmpty && text.count <= 4 && text.allSatisfy(\.isHexDigit)
    }
}

/// What udev says about a device: its node, subsystem and properties. Built from libudev, or
/// from recorded property sets in tests (`udevadm info --query=property` output).
public struct UdevDeviceInfo: Hashable, Sendable {
    /// `/dev/ttyUSB0`, nil for devices without a node.
    public var devnode: String?
    /// `tty`, `usb`, …
    public var subsystem: String?
    /// udev properties (`ID_VENDOR_ID`, `ID_SERIAL_SHORT`, `DEVLINKS`, …).
    public var properties: [String: String]

    /// Creates a record.
    public init(devnode: String?, subsystem: String?, properties: [String: String]) {
        self.devnode = devnode
        self.subsystem = subsystem
        self.properties = properties
    }

    /// Parses `udevadm info --query=property` output (`KEY=value` lines).
    public init(udevadmProperties text: String) {
        var properties: [String: String] = [:]
        for line in text.split(whereSeparator: \.isNewline) {
            guard let eq = line.firstIndex(of: "=") else { continue }
            properties[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        self.init(devnode: properties["DEVNAME"], subsystem: properties["SUBSYSTEM"], properties: properties)
    }

    // systemd ≥ 252 also sets ID_USB_* for USB interfaces; older versions only ID_*.
    /// USB vendor id.
    public var vendorID: String? { properties["ID_USB_VENDOR_ID"] ?? properties["ID_VENDOR_ID"] }
    /// USB product id.
    public var productID: String? { properties["ID_USB_MODEL_ID"] ?? properties["ID_MODEL_ID"] }
    /// USB serial number (the short form, as the device reports it).
    public var serialShort: String? { properties["ID_USB_SERIAL_SHORT"] ?? properties["ID_SERIAL_SHORT"] }
    /// USB product string (udev's encoding decoded where it was escaped).
    public var product: String? {
        if let encoded = properties["ID_USB_MODEL_ENC"] ?? properties["ID_MODEL_ENC"] { return Self.decodeUdevEscapes(encoded) }
        return properties["ID_USB_MODEL"] ?? properties["ID_MODEL"]
    }
    /// The stable `/dev/serial/by-id/…` link, when udev made one.
    public var byIDPath: String? {
        properties["DEVLINKS"]?.split(separator: " ").map(String.init).first { $0.hasPrefix("/dev/serial/by-id/") }
    }

    /// udev encodes unsafe bytes as `\xNN`.
    static func decodeUdevEscapes(_ text: String) -> String {
        var out: [UInt8] = []
        let bytes = Array(text.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\\"), i + 3 < bytes.count, bytes[i + 1] == UInt8(ascii: "x"),
               let value = UInt8(String(decoding: bytes[(i + 2)...(i + 3)], as: UTF8.self), radix: 16) {
                out.append(value)
                i += 4
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self).trimmingTrailingSpaces()
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var s = Substring(self)
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}

/// A programmer found by discovery.
public struct DiscoveredDevice: Hashable, Sendable, CustomStringConvertible {
    /// The kernel node (`/dev/ttyUSB0`).
    public var devnode: String
    /// The stable by-id link, preferred for opening and in logs.
    public var byIDPath: String?
    /// USB serial number.
    public var serial: String?
    /// The rule that matched.
    public var rule: USBMatchRule

    /// The path to open: the by-id link when there is one.
    public var path: String { byIDPath ?? devnode }

    public var description: String { "\(path) (serial \(serial ?? "unknown"), \(rule))" }
}

extension Array where Element == USBMatchRule {
    /// The discovered device for `info` under the first matching rule, or nil.
    public func match(_ info: UdevDeviceInfo) -> DiscoveredDevice? {
        guard let rule = first(where: { $0.matches(info) }), let devnode = info.devnode else { return nil }
        return DiscoveredDevice(devnode: devnode, byIDPath: info.byIDPath, serial: info.serialShort, rule: rule)
    }
}
