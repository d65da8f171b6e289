public import ITBProtocol

/// A pump's identity: its manufacturer code and serial. Its ``id`` names it in the API's paths
/// (`/v1/pumps/{id}`): URL-safe, stable, and unique across manufacturers.
public struct PumpIdentity: Hashable, Sendable {
    /// `PUMP_SESSION.manufacturer_code`.
    public var manufacturerCode: UInt16
    /// `PUMP_SESSION.pump_serial` (protocol text: one code point per byte).
    public var serial: String

    /// The identity a `PUMP_SESSION` names.
    public init(_ session: PumpSession) {
        self.init(manufacturerCode: session.manufacturerCode, serial: session.pumpSerial)
    }

    /// Creates an identity.
    public init(manufacturerCode: UInt16, serial: String) {
        self.manufacturerCode = manufacturerCode
        self.serial = serial
    }

    /// `<manufacturer code>-<serial>`, with every serial byte outside `A–Z a–z 0–9 - . _` written
    /// `~XX` (hex), so the id needs no percent-encoding in a URL path and two identities never
    /// share an id: `1-NGP104857H`, `2-PR~2F0042` for serial `PR/0042` of manufacturer 2.
    public var id: String {
        var text = String(manufacturerCode) + "-"
        for byte in serial.protocolBytes {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"):
                text.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = String(byte, radix: 16, uppercase: true)
                text += "~" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return text
    }
}

/// The pump a programmer is interrogating now: from its `PUMP_SESSION begin` until the context
/// closes (its end, a begin for another pump, a lost link, a programmer restart). Every pump
/// message in between belongs to this pump; nothing is ever attributed to a previous one.
public struct PumpContext: Hashable, Sendable {
    /// Who the pump is.
    public var identity: PumpIdentity
    /// The latest `PUMP_SESSION begin` (repeated begins of the same pump continue the context).
    public var session: Stamped<PumpSession>
    /// When the context opened (host ms).
    public var beganAtMs: Int64

    /// The pump's API id.
    public var id: String { identity.id }
}

/// Why a pump context closed (`pump_session.end_cause`).
public enum PumpContextEnd: String, Hashable, Sendable {
    /// `PUMP_SESSION end` for this pump.
    case ended
    /// A `PUMP_SESSION begin` for another pump came first.
    case anotherPump = "another_pump"
    /// The programmer's link went down.
    case linkLost = "link_lost"
    /// The programmer restarted (a new boot id).
    case programmerRestarted = "programmer_restarted"
    /// The bridge stopped following the programmer (shutdown, or the path went away).
    case stopped
}
