import Foundation

/// The webhook URL handed to Replicate carries the task id and attempt, so a completion can be matched (and fenced by
/// attempt) even when the prediction id was never recorded.
public enum WebhookURL {
    /// The path the webhook service serves.
    public static let path = "/webhooks/replicate"

    /// base (WEBHOOK_PUBLIC_URL, with or without trailing slash) + "/webhooks/replicate?task=<uuid>&attempt=<n>"
    public static func make(base: String, taskID: UUID, attempt: Int) -> String {
        var trimmed = Substring(base)
        while trimmed.hasSuffix("/") {
            trimmed = trimmed.dropLast()
        }
        return "\(trimmed)\(Self.path)?task=\(taskID.uuidString.lowercased())&attempt=\(attempt)"
    }

    /// Reads task and attempt back from a URL or a query string; nil when absent/invalid (attempt must be >= 0).
    public static func parse(_ urlOrQuery: String) -> (taskID: UUID, attempt: Int)? {
        var query = Substring(urlOrQuery)
        if let fragment = query.firstIndex(of: "#") {
            query = query[..<fragment]
        }
        if let questionMark = query.firstIndex(of: "?") {
            query = query[query.index(after: questionMark)...]
        }
        var taskID: UUID?
        var attempt: Int?
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                continue
            }
            let value = String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(parts[1])
            switch parts[0] {
            case "task":
                taskID = UUID(uuidString: value)
            case "attempt":
                attempt = Int(value).flatMap { $0 >= 0 ? $0 : nil }
            default:
                continue
            }
        }
        guard let taskID, let attempt else {
            return nil
        }
        return (taskID, attempt)
    }
}
