// Every file of this suite sees the shared test helpers: the generic ones (ITBTestSupport) and
// the bridge's (ITBBridgeTestSupport: TestDaemon, DaemonProcess, ProgrammerDriver, CoreBench,
// TestExecutables, the daemon's JSON).

@_exported import ITBBridgeTestSupport
@_exported import ITBTestSupport
