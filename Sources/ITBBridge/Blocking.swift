import Dispatch

/// Runs `body`, which blocks its thread (a journal commit with its fsync), on a Dispatch worker
/// thread and waits for it without blocking the caller's: for async callers such as API handlers
/// on an event loop, the main loop, tests and tools. Link threads call the blocking forms directly.
func offloaded<T: Sendable, E: Error>(_ body: @escaping @Sendable () throws(E) -> T) async throws(E) -> T {
    let result: Result<T, E> = await withCheckedContinuation { continuation in
        DispatchQueue.global(qos: .userInitiated).async {
            do throws(E) {
                continuation.resume(returning: .success(try body()))
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
    }
    return try result.get()
}
