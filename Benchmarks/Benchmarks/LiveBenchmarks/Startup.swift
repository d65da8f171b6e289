// (5) Start-up: exec → READY=1 on the notify socket, no device, a fresh state directory each
// time; and the way down, SIGTERM → exit (what `systemctl stop` and a restart wait for).

func runStartup(_ context: BenchContext, count: Int) throws {
    var startups: [Double] = []
    var stops: [Double] = []
    for i in 0..<count {
        let daemon = try DaemonUnderTest(context, device: nil, name: "startup\(i)")
        startups.append(daemon.startupMs)
        daemon.stop()
        if let ms = daemon.stopMs { stops.append(ms) }
    }
    startups.sort()
    stops.sort()
    let p50 = percentile(startups, 50), max = startups.last ?? .nan
    let stopP50 = percentile(stops, 50), stopMax = stops.last ?? .nan
    Report.line("startup_to_ready_ms: n=\(startups.count) p50=\(fmt(p50, 1)) max=\(fmt(max, 1))")
    Report.line("sigterm_to_exit_ms: n=\(stops.count) p50=\(fmt(stopP50, 1)) max=\(fmt(stopMax, 1)) (each daemon stopped right after READY=1)")
    Report.figure("startup", ["starts": startups.count, "p50_ms": fmt(p50, 1), "max_ms": fmt(max, 1),
                              "stop_p50_ms": fmt(stopP50, 1), "stop_max_ms": fmt(stopMax, 1)])
}
