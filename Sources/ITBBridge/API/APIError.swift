public import Hummingbird
import ITBJSON
import Logging
public import NIOCore
import NIOHTTP1

/// An API error: a stable machine-readable `error` code, a message a person can act on, and the
/// HTTP status. Rendered as `{"error": "…", "message": "…"}`.
public struct APIError: HTTPResponseError, Sendable {
    public var status: HTTPResponse.Status
    /// Stable code clients may branch on (`not_found`, `bad_request`, …).
    public var code: String
    /// Human-readable explanation.
    public var message: String
    /// The methods the path does serve, sent as `Allow` with a 405.
    public var allow: [String] = []

    /// Creates an error.
    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var json = JSONWriter(capacity: 256)
        json.beginObject()
        json.key("error"); json.string(code)
        json.key("message"); json.string(message)
        json.key("status"); json.int(Int(status.code))
        json.endObject()
        var headers: HTTPFields = [.contentType: "application/json", .cacheControl: "no-store"]
        if !allow.isEmpty { headers[.allow] = allow.joined(separator: ", ") }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: json.bytes)))
    }

    static func unknownDevice(_ id: String) -> APIError {
        APIError(.notFound, "unknown_device", "no programmer with serial \(id) is known to the bridge")
    }

    static func unknownPump(_ id: String) -> APIError {
        APIError(.notFound, "unknown_pump", "no pump with id \(id) is known to the bridge (ids are <manufacturer code>-<serial>, as /v1/pumps lists them)")
    }

    static func badQuery(_ name: String, _ expected: String) -> APIError {
        APIError(.badRequest, "bad_request", "query parameter `\(name)`: expected \(expected)")
    }
}

/// Turns every error into a JSON error object: ours as they are, Hummingbird's (unknown path,
/// body too large, wrong method) with a stable code, a request body that cannot be parsed (a bad
/// chunk size, a body cut short) as a 400, anything else as a 500 that is logged.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    /// The daemon's own logger (the HTTP server's is silent).
    let logger = Logger(label: "itb-bridged.api")

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as any HTTPResponseError {
            // No route for this method: if the path is served with other methods, say so (405).
            let allowed = error.status == .notFound ? OpenAPIDocument.methods(servingPath: request.uri.path) : []
            if !allowed.isEmpty {
                var notAllowed = APIError(.methodNotAllowed, "method_not_allowed",
                                          "\(request.method) is not served at \(request.uri.path); allowed: \(allowed.joined(separator: ", "))")
                notAllowed.allow = allowed
                throw notAllowed
            }
            let code: String = switch error.status {
            case .notFound: "not_found"
            case .methodNotAllowed: "method_not_allowed"
            case .contentTooLarge: "body_too_large"
            case .badRequest: "bad_request"
            case .unsupportedMediaType: "unsupported_media_type"
            default: error.status.code < 500 ? "client_error" : "internal_error"
            }
            let message: String = switch error.status {
            case .notFound: "no such endpoint: \(request.method) \(request.uri.path); see GET /v1/openapi.json"
            case .contentTooLarge: "request body too large (limit \(context.maxUploadSize) bytes)"
            default: "\(error.status.reasonPhrase)"
            }
            throw APIError(error.status, code, message)
        } catch let error as HTTPParserError {
            throw APIError(.badRequest, "bad_request_body", "the request body is not valid HTTP/1.1 (\(error)): a bad chunk size, or a body cut short")
        } catch {
            logger.error("internal error answering \(request.method) \(request.uri.path)", metadata: ["error": "\(error)"])
            throw APIError(.internalServerError, "internal_error", "the bridge failed to answer; the error is in its log")
        }
    }
}
