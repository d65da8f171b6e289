import Synchronization
import ITBSerial
import Testing

/// Property sets recorded with `udevadm info --query=property --name=…` on Debian 12.
enum RecordedUdev {
    static let ftdiProgrammer = """
        DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/ttyUSB0/tty/ttyUSB0
        DEVNAME=/dev/ttyUSB0
        MAJOR=188
        MINOR=0
        SUBSYSTEM=tty
        ID_BUS=usb
        ID_VENDOR_ID=0403
        ID_MODEL_ID=6001
        ID_USB_VENDOR_ID=0403
        ID_USB_MODEL_ID=6001
        ID_USB_MODEL=FT232R_USB_UART
        ID_USB_MODEL_ENC=FT232R\\x20USB\\x20UART
        ID_USB_SERIAL=FTDI_FT232R_USB_UART_A10KQ3ZP
        ID_USB_SERIAL_SHORT=A10KQ3ZP
        ID_SERIAL_SHORT=A10KQ3ZP
        ID_PATH=pci-0000:00:14.0-usb-0:2:1.0
        DEVLINKS=/dev/serial/by-path/pci-0000:00:14.0-usb-0:2:1.0-port0 /dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10KQ3ZP-if00-port0
        TAGS=:systemd:
        """

    static let gpsCP210x = """
        DEVNAME=/dev/ttyUSB1
        SUBSYSTEM=tty
        ID_VENDOR_ID=10c4
        ID_MODEL_ID=ea60
        ID_SERIAL_SHORT=0001
        ID_MODEL=CP2102_USB_to_UART_Bridge_Controller
        DEVLINKS=/dev/serial/by-id/usb-Silicon_Labs_CP2102_USB_to_UART_Bridge_Controller_0001-if00-port0
        """

    /// An older udev: only ID_* (no ID_USB_*), upper-case hex, no by-id link.
    static let olderUdevSecondProgrammer = """
        DEVNAME=/dev/ttyUSB2
        SUBSYSTEM=tty
        ID_VENDOR_ID=0403
        ID_MODEL_ID=6001
        ID_SERIAL_SHORT=B77XQ2
        ID_MODEL=ITB_Programmer
        """

    /// The USB interface itself (not a tty): must never match.
    static let usbInterface = """
        DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0
        SUBSYSTEM=usb
        ID_VENDOR_ID=0403
        ID_MODEL_ID=6001
        """
}

@Suite("USB matching over recorded udev property sets")
struct USBMatchRuleTests {
    let ftdi = UdevDeviceInfo(udevadmProperties: RecordedUdev.ftdiProgrammer)
    let gps = UdevDeviceInfo(udevadmProperties: RecordedUdev.gpsCP210x)
    let older = UdevDeviceInfo(udevadmProperties: RecordedUdev.olderUdevSecondProgrammer)
    let interface = UdevDeviceInfo(udevadmProperties: RecordedUdev.usbInterface)

    @Test("the programmer adapter matches by vendor and product; an unrelated GPS adapter never does")
    func vendorProduct() {
        let rule = USBMatchRule.defaultProgrammerAdapter
        #expect(rule.matches(ftdi))
        #expect(rule.matches(older))
        #expect(!rule.matches(gps))
        #expect(!rule.matches(interface), "only tty nodes are programmers")
    }

    @Test("a serial number narrows the match to one programmer")
    func serial() {
        let rule = USBMatchRule(vendorID: "0403", productID: "6001", serial: "A10KQ3ZP")
        #expect(rule.matches(ftdi))
        #expect(!rule.matches(older))
    }

    @Test("a product string narrows the match; udev's \\x20 escapes are decoded")
    func product() {
        #expect(USBMatchRule(vendorID: "0403", productID: "6001", product: "FT232R USB UART").matches(ftdi))
        #expect(!USBMatchRule(vendorID: "0403", productID: "6001", product: "FT232R USB UART").matches(older))
        #expect(USBMatchRule(vendorID: "0403", productID: "6001", product: "ITB_Programmer").matches(older))
    }

    @Test("a match reports the stable by-id path and the USB serial; without a by-id link, the node")
    func discoveredDevice() {
        let found = [USBMatchRule.defaultProgrammerAdapter].match(ftdi)
        #expect(found?.byIDPath == "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10KQ3ZP-if00-port0")
        #expect(found?.path == "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10KQ3ZP-if00-port0")
        #expect(found?.serial == "A10KQ3ZP")
        #expect(found?.devnode == "/dev/ttyUSB0")
        let second = [USBMatchRule.defaultProgrammerAdapter].match(older)
        #expect(second?.path == "/dev/ttyUSB2")
        #expect([USBMatchRule.defaultProgrammerAdapter].match(gps) == nil)
    }

    @Test("rules parse from VVVV:PPPP[:SERIAL], ids normalised, bad text refused")
    func parsing() {
        #expect(USBMatchRule(parsing: "0403:6001") == USBMatchRule(vendorID: "0403", productID: "6001"))
        #expect(USBMatchRule(parsing: "10C4:EA60:0001") == USBMatchRule(vendorID: "10c4", productID: "ea60", serial: "0001"))
        #expect(USBMatchRule(parsing: "403:6001")?.vendorID == "0403")
        #expect(USBMatchRule(parsing: "0403") == nil)
        #expect(USBMatchRule(parsing: "zzzz:6001") == nil)
        #expect(USBMatchRule(parsing: "04030:6001") == nil)
    }
}

@Suite("libudev on this machine")
struct UdevEnumerationTests {
    @Test("enumerating tty devices through the real libudev runs without error")
    func enumerate() throws {
        let devices = try DeviceDiscovery.enumerateTTYs()
        // Whatever this machine has, every record is a tty with a subsystem.
        for device in devices { #expect(device.subsystem == "tty") }
        _ = try DeviceDiscovery(rules: [.defaultProgrammerAdapter]).enumerateMatches()
    }

    @Test("starting discovery reports present devices or says once that udev is unavailable, and stops cleanly")
    func startStop() async throws {
        let events = LinkRecorderEvents()
        let discovery = DeviceDiscovery(rules: [.defaultProgrammerAdapter])
        discovery.start { events.append($0) }
        try await Task.sleep(for: .milliseconds(300))
        discovery.stop()
        let seen = events.all
        let unavailable = seen.filter { if case .unavailable = $0 { true } else { false } }
        #expect(unavailable.count <= 1)
    }
}

final class LinkRecorderEvents: Sendable {
    private let events = Synchronization.Mutex<[DeviceDiscovery.Event]>([])
    func append(_ event: DeviceDiscovery.Event) { events.withLock { $0.append(event) } }
    var all: [DeviceDiscovery.Event] { events.withLock { $0 } }
}
