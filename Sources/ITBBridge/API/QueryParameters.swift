import Hummingbird

/// The query parameters each operation takes come from the OpenAPI document (which the tests
/// check against the routes), so the document and the daemon cannot disagree. A parameter an
/// operation does not take is a 400 naming it: a typo (`?actve=true`) must never read as "all
/// clear" by being ignored.
struct StrictQueryMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let allowed = OpenAPIDocument.queryParameters(method: request.method.rawValue, path: request.uri.path) {
            try QueryParameterRule.check(names: request.uri.queryParameters.map { String($0.key) },
                                         allowed: allowed, operation: "\(request.method) \(request.uri.path)")
        }
        return try await next(request, context)
    }
}

/// The rule itself, on plain values.
enum QueryParameterRule {
    /// Throws a 400 `unknown_query_parameter` for the first name not in `allowed`.
    static func check(names: [String], allowed: Set<String>, operation: String) throws(APIError) {
        for name in names where !allowed.contains(name) {
            let takes = allowed.isEmpty ? "it takes no query parameters" : "it takes " + allowed.sorted().map { "`\($0)`" }.joined(separator: ", ")
            throw APIError(.badRequest, "unknown_query_parameter", "unknown query parameter `\(name)` for \(operation); \(takes)")
        }
    }
}
