// The daemon's JSON answers as the bridge and itbctl tests read them. (JSON values that compare
// the way JSON means them, for the protocol and JSON suites, stay in ITBTestSupport.)

import Foundation
public import ITBClient
public import ITBSimulator
import ITBTestSupport

/// Parsing the daemon's JSON answers.
public enum JSONObject {
    /// A JSON object from bytes, or a `HarnessError` saying what came instead.
    public static func parse(_ bytes: [UInt8]) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw HarnessError("not a JSON object: \(String(decoding: bytes, as: UTF8.self))")
        }
        return object
    }
}

/// A JSON object from text.
public func parseObject(_ text: String) throws -> [String: Any] {
    try JSONObject.parse(Array(text.utf8))
}

// MARK: - Waiting on a running bridge

/// Polls `GET path` until it answers 200 with a JSON object for which `predicate` holds, and
/// returns that object; throws with the last answer after `timeout`.
public func waitForJSON(_ client: UnixHTTPClient, _ path: String, timeout: Duration = .seconds(10),
                        _ predicate: @escaping ([String: Any]) -> Bool) async throws -> [String: Any] {
    let deadline = ContinuousClock.now + timeout
    var last = ""
    while ContinuousClock.now < deadline {
        if let response = try? await blocking({ try client.get(path) }) {
            if response.status == 200, let object = try? JSONObject.parse(response.body), predicate(object) { return object }
            last = response.text
        }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw HarnessError("timed out waiting on \(path); last answer: \(last)")
}

/// Services `programmer` until the bridge behind `client` reports it connected. The programmer
/// announces itself when it reads the bridge's HOST_HEARTBEAT, which may come after stale frames
/// of an earlier daemon, so it is serviced the whole time.
public func waitUntilIdentified(_ programmer: ProgrammerEndpoint, client: UnixHTTPClient, timeout: Duration = .seconds(20)) async throws {
    let path = "/v1/devices/\(programmer.info.programmerSerial)"
    let connected = try await blocking {
        try programmer.service(until: { _ in
            guard let response = try? client.get(path), response.status == 200,
                  let object = try? JSONObject.parse(response.body) else { return false }
            return object["link_state"] as? String == "connected"
        }, timeout: timeout)
    }
    guard connected else { throw HarnessError("the bridge never identified the programmer") }
}
