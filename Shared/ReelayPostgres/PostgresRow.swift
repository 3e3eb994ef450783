import Foundation

/// Column names of one result, shared by all of its rows.
final class PostgresColumns: Sendable {
    let names: [String]
    let index: [String: Int]

    init(names: [String]) {
        self.names = names
        var index: [String: Int] = [:]
        // The first column of a name wins, as it does for `SELECT a.id, b.id`.
        for (position, name) in names.enumerated() where index[name] == nil {
            index[name] = position
        }
        self.index = index
    }
}

/// A row of a result, values in PostgreSQL's text format (all params and results use text format).
public struct PostgresRow: Sendable {
    let columns: PostgresColumns
    /// The values in column order; nil for SQL NULL.
    public let values: [String?]

    init(columns: PostgresColumns, values: [String?]) {
        self.columns = columns
        self.values = values
    }

    /// The column names in order.
    public var columnNames: [String] { self.columns.names }

    /// The text value of `column`; nil for SQL NULL or a missing column.
    public subscript(_ column: String) -> String? {
        guard let position = self.columns.index[column] else { return nil }
        return self.values[position]
    }

    /// The text value; throws if the column is missing or NULL.
    public func string(_ column: String) throws -> String {
        guard let value = try self.optionalString(column) else {
            throw PostgresError.decoding("column \"\(column)\" is NULL")
        }
        return value
    }

    /// The text value or nil for NULL; throws if the column is missing.
    public func optionalString(_ column: String) throws -> String? {
        guard let position = self.columns.index[column] else {
            throw PostgresError.decoding("no column \"\(column)\" in the result")
        }
        return self.values[position]
    }

    public func int(_ column: String) throws -> Int {
        try self.decode(column, as: "integer") { Int($0) }
    }

    public func optionalInt(_ column: String) throws -> Int? {
        try self.optionalString(column).map { text in try self.decode(column, text, as: "integer") { Int($0) } }
    }

    public func double(_ column: String) throws -> Double {
        try self.decode(column, as: "double") { Double($0) }
    }

    /// A boolean in text format ("t"/"f").
    public func bool(_ column: String) throws -> Bool {
        try self.decode(column, as: "boolean") { text in
            switch text {
            case "t", "true": true
            case "f", "false": false
            default: nil
            }
        }
    }

    public func optionalBool(_ column: String) throws -> Bool? {
        try self.optionalString(column).map { _ in try self.bool(column) }
    }

    public func uuid(_ column: String) throws -> UUID {
        try self.decode(column, as: "uuid") { UUID(uuidString: $0) }
    }

    public func optionalUUID(_ column: String) throws -> UUID? {
        try self.optionalString(column).map { text in try self.decode(column, text, as: "uuid") { UUID(uuidString: $0) } }
    }

    /// A timestamptz in text format, e.g. "2026-11-29 03:24:23.123456+00".
    public func date(_ column: String) throws -> Date {
        try self.decode(column, as: "timestamp") { PostgresTimestamp.parse($0) }
    }

    public func optionalDate(_ column: String) throws -> Date? {
        try self.optionalString(column).map { text in try self.decode(column, text, as: "timestamp") { PostgresTimestamp.parse($0) } }
    }

    private func decode<T>(_ column: String, as type: String, _ parse: (String) -> T?) throws -> T {
        try self.decode(column, try self.string(column), as: type, parse)
    }

    private func decode<T>(_ column: String, _ text: String, as type: String, _ parse: (String) -> T?) throws -> T {
        guard let value = parse(text) else {
            // The value itself stays out of the message: it may be user data.
            throw PostgresError.decoding("column \"\(column)\" is not a valid \(type)")
        }
        return value
    }
}

/// The outcome of one statement.
public struct PostgresResult: Sendable {
    public var rows: [PostgresRow]
    /// Rows inserted, updated, deleted, selected... as the command tag reports (0 when it reports none).
    public var affectedRows: Int

    public init(rows: [PostgresRow], affectedRows: Int) {
        self.rows = rows
        self.affectedRows = affectedRows
    }
}

/// PostgreSQL's text format for timestamps, both ways, without DateFormatter (slow, and locale-dependent).
public enum PostgresTimestamp {
    /// Parses "YYYY-MM-DD[ HH:MM:SS[.ffffff]][±HH[:MM[:SS]]]" (also "T" and "Z", and "infinity"); nil if malformed or BC.
    public static func parse(_ text: String) -> Date? {
        switch text {
        case "infinity": return .distantFuture
        case "-infinity": return .distantPast
        default: break
        }
        var scanner = Scanner(Array(text.utf8))
        guard let year = scanner.number(minDigits: 4, maxDigits: 7), scanner.skip(UInt8(ascii: "-")),
            let month = scanner.number(minDigits: 2, maxDigits: 2), scanner.skip(UInt8(ascii: "-")),
            let day = scanner.number(minDigits: 2, maxDigits: 2), (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        var seconds = Self.daysFromCivil(year: year, month: month, day: day) * 86_400
        var fraction = 0.0
        if !scanner.atEnd {
            guard scanner.skip(UInt8(ascii: " ")) || scanner.skip(UInt8(ascii: "T")),
                let hour = scanner.number(minDigits: 2, maxDigits: 2), scanner.skip(UInt8(ascii: ":")),
                let minute = scanner.number(minDigits: 2, maxDigits: 2), scanner.skip(UInt8(ascii: ":")),
                let second = scanner.number(minDigits: 2, maxDigits: 2), hour <= 24, minute < 60, second <= 60
            else { return nil }
            seconds += hour * 3600 + minute * 60 + second
            if scanner.skip(UInt8(ascii: ".")) {
                guard let digits = scanner.digits(max: 9), !digits.isEmpty else { return nil }
                var scale = 0.1
                for digit in digits {
                    fraction += Double(digit) * scale
                    scale /= 10
                }
            }
            if !scanner.atEnd {
                if scanner.skip(UInt8(ascii: "Z")) {
                    // UTC
                } else {
                    let sign: Int
                    if scanner.skip(UInt8(ascii: "+")) {
                        sign = 1
                    } else if scanner.skip(UInt8(ascii: "-")) {
                        sign = -1
                    } else {
                        return nil
                    }
                    guard let offsetHours = scanner.number(minDigits: 2, maxDigits: 2) else { return nil }
                    var offset = offsetHours * 3600
                    if scanner.skip(UInt8(ascii: ":")) {
                        guard let offsetMinutes = scanner.number(minDigits: 2, maxDigits: 2) else { return nil }
                        offset += offsetMinutes * 60
                        if scanner.skip(UInt8(ascii: ":")) {
                            guard let offsetSeconds = scanner.number(minDigits: 2, maxDigits: 2) else { return nil }
                            offset += offsetSeconds
                        }
                    }
                    seconds -= sign * offset
                }
            }
        }
        guard scanner.atEnd else { return nil }
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }

    /// Formats a date as PostgreSQL text in UTC with microseconds, e.g. "2026-11-29 03:24:23.123456+00".
    public static func format(_ date: Date) -> String {
        let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        let (secondsTotal, micro) = Self.floorDivMod(micros, 1_000_000)
        let (days, secondOfDay) = Self.floorDivMod(secondsTotal, 86_400)
        let (year, month, day) = Self.civilFromDays(Int(days))
        let hour = Int(secondOfDay / 3600)
        let minute = Int(secondOfDay % 3600 / 60)
        let second = Int(secondOfDay % 60)
        return Self.pad(year, 4) + "-" + Self.pad(month, 2) + "-" + Self.pad(day, 2) + " " + Self.pad(hour, 2) + ":"
            + Self.pad(minute, 2) + ":" + Self.pad(second, 2) + "." + Self.pad(Int(micro), 6) + "+00"
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }

    private static func floorDivMod(_ value: Int64, _ divisor: Int64) -> (Int64, Int64) {
        var quotient = value / divisor
        var remainder = value % divisor
        if remainder < 0 {
            quotient -= 1
            remainder += divisor
        }
        return (quotient, remainder)
    }

    /// Days since 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's algorithm).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civilFromDays(_ days: Int) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    private struct Scanner {
        let bytes: [UInt8]
        var position = 0

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        var atEnd: Bool { self.position == self.bytes.count }

        mutating func skip(_ byte: UInt8) -> Bool {
            guard !self.atEnd, self.bytes[self.position] == byte else { return false }
            self.position += 1
            return true
        }

        mutating func digits(max: Int) -> [Int]? {
            var result: [Int] = []
            while !self.atEnd, result.count < max, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self.bytes[self.position]) {
                result.append(Int(self.bytes[self.position] - UInt8(ascii: "0")))
                self.position += 1
            }
            return result
        }

        mutating func number(minDigits: Int, maxDigits: Int) -> Int? {
            guard let digits = self.digits(max: maxDigits), digits.count >= minDigits else { return nil }
            return digits.reduce(0) { $0 * 10 + $1 }
        }
    }
}
