// itb-bridged: the bridge daemon. The daemon itself arrives with its own issue; until then this
// entry point says so plainly instead of pretending to run.
import ITBProtocol

print("itb-bridged: the daemon is not built yet (protocol library only).")
print("Protocol v1, CRC-32C implementation: \(CRC32C.preferred.rawValue)")
