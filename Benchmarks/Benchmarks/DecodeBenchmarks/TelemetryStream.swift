import ITBProtocol

/// A large in-memory stream of realistic programmer telemetry, built once per benchmark run.
///
/// The mix follows what a programmer sends during a pump session: per second a `PUMP_STATUS`,
/// a `RESERVOIR` and a `HEARTBEAT`; every 60 s a `DOSE_PROGRAM` (flex, 4 steps); every 300 s a
/// `PROGRAMMER_INFO`; every 600 s an `ALARM` with a short detail; every 3600 s a `REFILL`.
struct TelemetryStream: Sendable {
    /// The encoded frames back to back.
    let bytes: [UInt8]
    /// The byte ranges of each frame's header-CRC region and payload, for the CRC-only floor.
    let frameCount: Int

    init(targetBytes: Int) {
        var encoder = FrameEncoder(firstSequence: 1)
        var out: [UInt8] = []
        out.reserveCapacity(targetBytes + 2048)
        var second: Int64 = 0
        let start: Int64 = 1_795_514_400_000
        var volume: UInt32 = 380_000
        var frames = 0
        var alarmID: UInt32 = 1
        while out.count < targetBytes {
            let now = start + second * 1000
            var batch: [Message] = [
                .pumpStatus(.init(deviceTimeMs: now, dailyDoseUgX10: 4000, concentrationUgPerML: 2000, activeAlarmMask: 0,
                                  pumpState: .infusing, dosingMode: .simpleContinuous, linkQualityPct: 92)),
                .reservoir(.init(deviceTimeMs: now, lastRefillTimeMs: start - 86_400_000, volumeULX10: volume, capacityUL: 40_000,
                                 lowReservoirThresholdUL: 2000, deliveredSinceRefillULX10: 400_000 - volume, volumeSource: .calculated)),
                .heartbeat(.init(bootID: 0xDEAD_BEEF_0042, uptimeS: UInt32(second), highestAlarmID: alarmID, unackedAlarmCount: 0)),
            ]
            if second % 60 == 0 {
                batch.append(.doseProgram(.init(
                    deviceTimeMs: now, dailyDoseUgX10: 4000, patientBolusDoseUgX10: 250, patientBolusLockoutMin: 120,
                    patientBolusMaxPerDay: 4, mode: .flex,
                    flexSteps: [.init(startMinute: 0, rateUgPerDayX10: 3000), .init(startMinute: 360, rateUgPerDayX10: 5000),
                                .init(startMinute: 720, rateUgPerDayX10: 4000), .init(startMinute: 1080, rateUgPerDayX10: 4000)],
                    periodicBoluses: [])))
            }
            if second % 300 == 0 {
                batch.append(.programmerInfo(.init(bootID: 0xDEAD_BEEF_0042, firmwareVersion: 0x020401, protocolMinor: 0,
                                                   programmerSerial: "PGM-000123", hardwareModel: "ITB-CP 8840")))
            }
            if second % 600 == 599 {
                alarmID += 1
                batch.append(.alarm(.init(onsetTimeMs: now, alarmID: alarmID, code: .lowReservoir, priority: .medium,
                                          transition: .raised, detail: "reservoir below threshold")))
            }
            if second % 3600 == 3599 {
                batch.append(.refill(.init(refillTimeMs: now, concentrationUgPerML: 2000, volumeFilledUL: 38_000,
                                           expectedResidualUL: 2100, measuredResidualUL: 1900, drugLot: "LOT-7731A")))
            }
            for message in batch {
                out.append(contentsOf: encoder.encode(message))
                frames += 1
            }
            second += 1
            volume = volume > 3 ? volume - 3 : 380_000
        }
        bytes = out
        frameCount = frames
    }
}
