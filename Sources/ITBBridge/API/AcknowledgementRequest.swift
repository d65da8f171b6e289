import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The optional body of `POST /v1/alarms/{alarm}/acknowledge`: `{"note": "called patient"}`.
///
/// Who acknowledged is never taken from the body: it is the socket peer's uid (`SO_PEERCRED`),
/// which the kernel vouches for. So a `by` member is refused (400 `bad_body`) rather than
/// silently ignored, and so is any other member, so that a misspelt `note` is not lost.
struct AcknowledgementRequest: Equatable, Sendable {
    /// The longest note kept, in Unicode scalars (JSON Schema's `maxLength` counts the same).
    static let maximumNoteLength = 1000

    /// The note, nil when none was given (an empty or blank note counts as none).
    var note: String?

    /// Parses `body`: empty, or a JSON object with at most a string `note`.
    init(body: [UInt8]) throws(APIError) {
        guard body.contains(where: { !($0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09) }) else { return }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
            throw APIError(.badRequest, "bad_body", "the body must be empty or a JSON object such as {\"note\": \"called patient\"}")
        }
        for key in object.keys.sorted() where key != "note" {
            if key == "by" {
                throw APIError(.badRequest, "bad_body", "`by` cannot be given: the acknowledging user is the caller's uid, "
                               + "which the kernel tells the bridge; the body takes only `note`")
            }
            throw APIError(.badRequest, "bad_body", "unknown member `\(key)`; the body takes only `note` (a string)")
        }
        guard let value = object["note"] else { return }
        if value is NSNull { return }
        guard let text = value as? String else {
            throw APIError(.badRequest, "bad_body", "`note` must be a string")
        }
        guard text.unicodeScalars.count <= Self.maximumNoteLength else {
            throw APIError(.badRequest, "bad_body", "`note` is \(text.unicodeScalars.count) characters long; at most \(Self.maximumNoteLength) are kept")
        }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        note = trimmed.isEmpty ? nil : trimmed
    }
}

/// User names from the system's user database (NSS: `/etc/passwd`, LDAP, …).
enum UserNames {
    /// The name `uid` has now (`getpwuid_r`), nil when it has no account.
    static func name(uid: UInt32) -> String? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        while true {
            let status = getpwuid_r(uid, &entry, &buffer, buffer.count, &result)
            if status == ERANGE, buffer.count < 1 << 20 {
                buffer = [CChar](repeating: 0, count: buffer.count * 4)
                continue
            }
            guard status == 0, result != nil, let name = entry.pw_name else { return nil }
            return String(cString: name)
        }
    }
}
