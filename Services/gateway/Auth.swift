import Foundation
import Hummingbird
import ReelayService
import ReelayStore

/// Who is calling: a user (by API key) or ops (by QUEUE_PROCESSOR_TOKEN).
enum Caller: Sendable, Equatable {
    case user(UserStore.User)
    case ops

    /// The user id, for a user.
    var userID: UUID? {
        if case .user(let user) = self {
            return user.id
        }
        return nil
    }

    /// Whether this caller may read a task owned by `ownerID`: its owner, or ops.
    func canRead(ownerID: UUID) -> Bool {
        switch self {
        case .ops: true
        case .user(let user): user.id == ownerID
        }
    }
}

/// Resolves `Authorization: Bearer <secret>` to a `Caller`. Neither the secret nor its hash is ever logged.
struct Authenticator: Sendable {
    let users: UserStore
    let opsToken: String?

    static let howToGetAKey = "Send 'Authorization: Bearer <api key>'. An operator creates a key with "
        + "'reelay keys create --user <uuid> --tier free|pro|premium'."

    /// The caller, or a 401 problem when the header is missing or the secret is unknown.
    func caller(_ request: Request) async throws -> Caller {
        guard let secret = Self.bearer(request.headers[.authorization]) else {
            throw Problem(.unauthorized, title: "Unauthorized", detail: "Missing API key. " + Self.howToGetAKey, headers: Self.challenge)
        }
        if let opsToken = self.opsToken, Self.constantTimeEquals(secret, opsToken) {
            return .ops
        }
        guard let user = try await self.users.user(apiKey: secret) else {
            throw Problem(
                .unauthorized, title: "Unauthorized", detail: "Unknown or revoked API key. " + Self.howToGetAKey, headers: Self.challenge)
        }
        return .user(user)
    }

    /// The caller when it is a user; ops gets 403 (the ops token owns no tasks).
    func user(_ request: Request) async throws -> UserStore.User {
        switch try await self.caller(request) {
        case .user(let user):
            return user
        case .ops:
            throw Problem(
                .forbidden, title: "Forbidden",
                detail: "The ops token has no tasks of its own; use a user's API key for this route.")
        }
    }

    /// Passes only for the ops token; anything else gets 401 (also when QUEUE_PROCESSOR_TOKEN is unset: ops routes are closed).
    func requireOps(_ request: Request) throws {
        guard let opsToken = self.opsToken else {
            throw Problem(
                .unauthorized, title: "Unauthorized",
                detail: "Ops routes are closed: set QUEUE_PROCESSOR_TOKEN on the gateway and send it as 'Authorization: Bearer <token>'.",
                headers: Self.challenge)
        }
        guard let secret = Self.bearer(request.headers[.authorization]), Self.constantTimeEquals(secret, opsToken) else {
            throw Problem(
                .unauthorized, title: "Unauthorized",
                detail: "This route is for operators: send QUEUE_PROCESSOR_TOKEN as 'Authorization: Bearer <token>'.",
                headers: Self.challenge)
        }
    }

    static let challenge: HTTPFields = [.wwwAuthenticate: "Bearer"]

    /// The credential of a `Bearer` authorization header (scheme matched case-insensitively), or nil.
    static func bearer(_ header: String?) -> String? {
        guard let header else {
            return nil
        }
        let parts = header.trimmingCharacters(in: .whitespaces).split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            return nil
        }
        let secret = parts[1].trimmingCharacters(in: .whitespaces)
        return secret.isEmpty ? nil : secret
    }

    /// Compares without an early exit, so response timing does not reveal how much of the ops token a guess got right.
    static func constantTimeEquals(_ lhs: String, _ rhs: String) -> Bool {
        let left = Array(lhs.utf8)
        let right = Array(rhs.utf8)
        var difference = UInt8(truncatingIfNeeded: left.count ^ right.count)
        for index in 0..<max(left.count, right.count) {
            let a = index < left.count ? left[index] : 0
            let b = index < right.count ? right[index] : 0
            difference |= a ^ b
        }
        return difference == 0 && left.count == right.count
    }
}
