/// Which methods a server answers on which paths, so a wrong method on an existing path gets 405 with `Allow` (not 404),
/// and HEAD is answered wherever GET is.
///
/// Paths are patterns as the router prints them: `/v1/tasks/{id}`; a `{...}`, `:name` or `*` segment matches any one
/// segment, `**` the rest. Empty segments are ignored, as the router ignores them (`/v1//tasks/` is `/v1/tasks`).
public struct RouteTable: Sendable, Equatable {
    public struct Route: Sendable, Equatable {
        public var method: String
        public var pattern: String

        public init(method: String, pattern: String) {
            self.method = method.uppercased()
            self.pattern = pattern
        }
    }

    /// What a request gets before any handler runs.
    public enum Decision: Sendable, Equatable {
        /// A route exists for this method: run it.
        case route
        /// HEAD where only GET exists: run GET and send its head without the body.
        case headAsGet
        /// The path exists, the method does not: 405 with these methods in `Allow`.
        case methodNotAllowed(allow: [String])
        /// OPTIONS on an existing path: 204 with these methods in `Allow`.
        case options(allow: [String])
        /// No route has this path: 404.
        case notFound
    }

    public private(set) var routes: [Route]

    public init(_ routes: [Route]) {
        self.routes = routes
    }

    /// The methods served at `path` (HEAD added where GET is, OPTIONS always), sorted; nil when no route has this path.
    public func allowedMethods(path: String) -> [String]? {
        let segments = Self.segments(path)
        var methods = Set(self.routes.filter { Self.matches(pattern: Self.segments($0.pattern), path: segments) }.map(\.method))
        guard !methods.isEmpty else {
            return nil
        }
        if methods.contains("GET") {
            methods.insert("HEAD")
        }
        methods.insert("OPTIONS")
        return methods.sorted()
    }

    public func decide(method: String, path: String) -> Decision {
        guard let allowed = self.allowedMethods(path: path) else {
            return .notFound
        }
        let method = method.uppercased()
        let explicit = self.routes.contains { $0.method == method && Self.matches(pattern: Self.segments($0.pattern), path: Self.segments(path)) }
        if explicit {
            return .route
        }
        switch method {
        case "HEAD" where allowed.contains("GET"):
            return .headAsGet
        case "OPTIONS":
            return .options(allow: allowed)
        default:
            return .methodNotAllowed(allow: allowed)
        }
    }

    static func segments(_ path: String) -> [Substring] {
        let pathOnly = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        return pathOnly.split(separator: "/", omittingEmptySubsequences: true)
    }

    static func matches(pattern: [Substring], path: [Substring]) -> Bool {
        var index = 0
        for (position, segment) in pattern.enumerated() {
            if segment == "**" {
                return true
            }
            guard index < path.count else {
                return false
            }
            let wildcard = segment == "*" || segment.hasPrefix(":") || (segment.hasPrefix("{") && segment.hasSuffix("}"))
            if !wildcard && segment != path[index] {
                return false
            }
            index += 1
            if position == pattern.count - 1 {
                return index == path.count
            }
        }
        return pattern.isEmpty && path.isEmpty
    }
}
