/// A parsed `amqp://user:password@host:port/vhost` URL.
///
/// Defaults follow RabbitMQ's URI spec: user and password `guest`, host `localhost`, port 5672, vhost `/`
/// (an empty or missing path means `/`; `%2f` is the usual spelling of `/`). Query parameters are ignored.
/// TLS (`amqps://`) is not supported.
public struct AMQPURL: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String
    public var vhost: String

    /// Builds a URL from its parts.
    public init(host: String = "localhost", port: Int = 5672, user: String = "guest", password: String = "guest", vhost: String = "/") {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.vhost = vhost
    }

    /// Parses `text`; throws `AMQPError` (`.protocolError`) whose description never contains the password.
    public init(_ text: String) throws {
        let scheme = "amqp://"
        guard text.lowercased().hasPrefix(scheme) else {
            throw Self.invalid("the scheme must be amqp://")
        }
        var rest = Substring(text.dropFirst(scheme.count))
        if let query = rest.firstIndex(where: { $0 == "?" || $0 == "#" }) {
            rest = rest[..<query]
        }
        let authority: Substring
        let path: Substring?
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            path = rest[rest.index(after: slash)...]
        } else {
            authority = rest
            path = nil
        }

        var user = "guest"
        var password = "guest"
        let hostPort: Substring
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            hostPort = authority[authority.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                user = try Self.percentDecoded(userInfo[..<colon], what: "user")
                password = try Self.percentDecoded(userInfo[userInfo.index(after: colon)...], what: "password")
            } else {
                user = try Self.percentDecoded(userInfo, what: "user")
            }
        } else {
            hostPort = authority
        }

        var host: Substring
        var portText: Substring?
        if hostPort.hasPrefix("[") {
            // IPv6 literal: [::1]:5672
            guard let close = hostPort.firstIndex(of: "]") else {
                throw Self.invalid("unterminated IPv6 address")
            }
            host = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else if !after.isEmpty {
                throw Self.invalid("unexpected text after the IPv6 address")
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = hostPort[..<colon]
            portText = hostPort[hostPort.index(after: colon)...]
        } else {
            host = hostPort
        }
        if host.isEmpty {
            host = "localhost"
        }

        var port = 5672
        if let portText, !portText.isEmpty {
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw Self.invalid("the port must be a number from 1 to 65535")
            }
            port = value
        }

        var vhost = "/"
        if let path, !path.isEmpty {
            guard !path.contains("/") else {
                throw Self.invalid("the vhost must be one path segment (write / as %2f)")
            }
            vhost = try Self.percentDecoded(path, what: "vhost")
        }

        self.init(host: String(host), port: port, user: user, password: password, vhost: vhost)
    }

    /// The URL with the password replaced by `***`, safe for logs.
    public var redacted: String {
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        let user = Self.percentEncoded(self.user)
        return "amqp://\(user):***@\(host):\(self.port)/\(Self.percentEncoded(self.vhost))"
    }

    private static func invalid(_ reason: String) -> AMQPError {
        AMQPError(code: .protocolError, description: "invalid AMQP URL: \(reason)")
    }

    private static func percentDecoded(_ text: Substring, what: String) throws -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue) else {
                // Do not echo the text: it may be the password.
                throw Self.invalid("bad percent-encoding in the \(what)")
            }
            bytes.append(high << 4 | low)
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw Self.invalid("the \(what) is not valid UTF-8")
        }
        return decoded
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private static func percentEncoded(_ text: String) -> String {
        var result = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                result.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = String(byte, radix: 16, uppercase: true)
                result += byte < 16 ? "%0\(hex)" : "%\(hex)"
            }
        }
        return result
    }
}
