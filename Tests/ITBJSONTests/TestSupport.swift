// Helpers of the ITBJSON test suite. The seeded generator and JSON values come from
// ITBTestSupport, shared by every test target.

import Foundation
import ITBJSON
@_exported import ITBTestSupport

/// The text a writer produced, for comparing exact output.
extension JSONWriter {
    var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// Writes one value with a fresh writer and returns the writer.
func written(_ write: (inout JSONWriter) -> Void) -> JSONWriter {
    var json = JSONWriter()
    write(&json)
    return json
}
