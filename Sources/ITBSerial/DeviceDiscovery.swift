import CUdev
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Finds programmers through libudev: enumerates tty devices at start and follows the udev
/// monitor for add and remove events, reporting only devices a ``USBMatchRule`` names.
///
/// Where udev has nothing to give (a container, a machine without udevd), discovery says so once
/// through ``Event/unavailable(reason:)`` and the bridge carries on with explicit device paths.
/// The monitor's descriptor is polled on a dedicated thread and drained with
/// `udev_monitor_receive_device` until it returns nil; it is never handed to an event loop,
/// which would consume the datagrams libudev needs.
public final class DeviceDiscovery: Sendable {
    /// What discovery reports.
    public enum Event: Hashable, Sendable {
        /// A matching programmer is present (at start, or plugged in).
        case added(DiscoveredDevice)
        /// The device at this node went away.
        case removed(devnode: String)
        /// udev cannot be followed here; only explicit paths will work. Reported once.
        case unavailable(reason: String)
    }

    /// The rules a device must match.
    public let rules: [USBMatchRule]
    private let wake = WakeEvent()
    private let thread = Mutex<BlockingThread?>(nil)

    /// Creates discovery for `rules`; nothing runs until ``start(_:)``.
    public init(rules: [USBMatchRule]) {
        self.rules = rules
    }

    deinit {
        stop()
        wake.close()
    }

    /// Every tty device udev knows now, matching or not (for diagnostics and tests). Throws when
    /// libudev cannot be used at all.
    public static func enumerateTTYs() throws(DiscoveryError) -> [UdevDeviceInfo] {
        guard let udev = udev_new() else { throw .udevUnavailable("udev_new failed") }
        defer { udev_unref(udev) }
        guard let enumerate = udev_enumerate_new(udev) else { throw .udevUnavailable("udev_enumerate_new failed") }
        defer { udev_enumerate_unref(enumerate) }
        udev_enumerate_add_match_subsystem(enumerate, "tty")
        let rc = udev_enumerate_scan_devices(enumerate)
        guard rc >= 0 else { throw .udevUnavailable("udev_enumerate_scan_devices failed: \(String(cString: strerror(-rc)))") }
        var devices: [UdevDeviceInfo] = []
        var entry = udev_enumerate_get_list_entry(enumerate)
        while let current = entry {
            if let syspath = udev_list_entry_get_name(current), let device = udev_device_new_from_syspath(udev, syspath) {
                devices.append(Self.info(from: device))
                udev_device_unref(device)
            }
            entry = udev_list_entry_get_next(current)
        }
        return devices
    }

    /// The matching programmers present now.
    public func enumerateMatches() throws(DiscoveryError) -> [DiscoveredDevice] {
        try Self.enumerateTTYs().compactMap { rules.match($0) }
    }

    /// Starts following udev: the monitor listens first, then present devices are enumerated,
    /// so nothing plugged in between is missed (a device may be reported twice; consumers key
    /// by devnode). `handler` runs on the discovery thread.
    public func start(_ handler: @escaping @Sendable (Event) -> Void) {
        let rules = self.rules
        let wake = self.wake
        let started = BlockingThread(name: "itb-udev") {
            guard let udev = udev_new() else {
                handler(.unavailable(reason: "libudev could not be initialised"))
                return
            }
            defer { udev_unref(udev) }
            guard let monitor = udev_monitor_new_from_netlink(udev, "udev") else {
                handler(.unavailable(reason: "the udev monitor cannot be opened (no netlink access, or no udevd): only explicit --device paths will be used"))
                Self.reportPresent(rules: rules, handler)
                return
            }
            defer { udev_monitor_unref(monitor) }
            udev_monitor_filter_add_match_subsystem_devtype(monitor, "tty", nil)
            guard udev_monitor_enable_receiving(monitor) >= 0 else {
                handler(.unavailable(reason: "the udev monitor cannot receive events (no udevd here): only explicit --device paths will be used"))
                Self.reportPresent(rules: rules, handler)
                return
            }
            if access("/run/udev/control", F_OK) != 0 {
                // The monitor opened, but without udevd no events will ever come.
                handler(.unavailable(reason: "udevd is not running (no /run/udev/control): hotplug will not be seen; explicit --device paths still work"))
            }
            Self.reportPresent(rules: rules, handler)
            let monitorFD = udev_monitor_get_fd(monitor)
            while true {
                var fds = (pollfd(fd: monitorFD, events: Int16(POLLIN), revents: 0), pollfd(fd: wake.fd, events: Int16(POLLIN), revents: 0))
                let ready = withUnsafeMutableBytes(of: &fds) { poll($0.baseAddress!.assumingMemoryBound(to: pollfd.self), 2, -1) }
                if ready < 0 && errno == EINTR { continue }
                if ready < 0 || fds.1.revents != 0 { return }
                while let device = udev_monitor_receive_device(monitor) {
                    let info = Self.info(from: device)
                    let action = udev_device_get_action(device).map { String(cString: $0) }
                    udev_device_unref(device)
                    switch action {
                    case "add", "change":
                        if let found = rules.match(info) { handler(.added(found)) }
                    case "remove":
                        if let node = info.devnode { handler(.removed(devnode: node)) }
                    default: break
                    }
                }
            }
        }
        thread.withLock { $0 = started }
    }

    /// Stops the discovery thread and waits for it. Idempotent.
    public func stop() {
        let running = thread.withLock { t -> BlockingThread? in
            defer { t = nil }
            return t
        }
        guard let running else { return }
        wake.signal()
        running.join()
    }

    private static func reportPresent(rules: [USBMatchRule], _ handler: (Event) -> Void) {
        do {
            for device in try enumerateTTYs() {
                if let found = rules.match(device) { handler(.added(found)) }
            }
        } catch {
            handler(.unavailable(reason: error.description))
        }
    }

    private static func info(from device: OpaquePointer) -> UdevDeviceInfo {
        var properties: [String: String] = [:]
        var entry = udev_device_get_properties_list_entry(device)
        while let current = entry {
            if let name = udev_list_entry_get_name(current) {
                properties[String(cString: name)] = udev_list_entry_get_value(current).map { String(cString: $0) } ?? ""
            }
            entry = udev_list_entry_get_next(current)
        }
        return UdevDeviceInfo(
            devnode: udev_device_get_devnode(device).map { String(cString: $0) },
            subsystem: udev_device_get_subsystem(device).map { String(cString: $0) },
            properties: properties)
    }
}

/// libudev could not be used.
public enum DiscoveryError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The library failed in a way that means udev is not available here.
    case udevUnavailable(String)

    public var description: String {
        switch self {
        case .udevUnavailable(let why): "udev is not available (\(why)): only explicit device paths can be used"
        }
    }
}
