import Foundation
import ReelayPostgres
import Testing

/// PostgreSQL's text form of timestamps, parsed and written without a server.
@Suite("PostgresTimestamp")
struct PostgresTimestampTests {
    @Test("parses PostgreSQL's text forms")
    func parse() {
        #expect(PostgresTimestamp.parse("1970-01-01 00:00:00+00") == Date(timeIntervalSince1970: 0))
        #expect(PostgresTimestamp.parse("2026-11-29 03:24:23.123456+00")?.timeIntervalSince1970 == 1_795_922_663.123456)
        #expect(PostgresTimestamp.parse("2026-11-29 05:24:23+02") == Date(timeIntervalSince1970: 1_795_922_663))
        #expect(PostgresTimestamp.parse("2026-11-28 22:54:23-04:30") == Date(timeIntervalSince1970: 1_795_922_663))
        #expect(PostgresTimestamp.parse("2026-11-29T03:24:23Z") == Date(timeIntervalSince1970: 1_795_922_663))
        #expect(PostgresTimestamp.parse("2026-11-29") == Date(timeIntervalSince1970: 1_795_910_400))
        #expect(PostgresTimestamp.parse("1960-02-29 12:00:00+00") == Date(timeIntervalSince1970: -310_478_400))
        #expect(PostgresTimestamp.parse("infinity") == .distantFuture)
        for bad in ["", "2026-13-01 00:00:00+00", "2026-11-29 03:24", "2026-11-29 03:24:23+0x", "yesterday", "2026-11-29 03:24:23 BC"] {
            #expect(PostgresTimestamp.parse(bad) == nil, "\(bad)")
        }
    }

    @Test("format and parse round trip to the microsecond")
    func roundTrip() {
        #expect(PostgresTimestamp.format(Date(timeIntervalSince1970: 0)) == "1970-01-01 00:00:00.000000+00")
        #expect(PostgresTimestamp.format(Date(timeIntervalSince1970: 1_795_922_663.5)) == "2026-11-29 03:24:23.500000+00")
        #expect(PostgresTimestamp.format(Date(timeIntervalSince1970: -0.25)) == "1969-12-31 23:59:59.750000+00")
        for seconds in stride(from: -2_000_000_000.0, to: 4_000_000_000.0, by: 123_456_789.012345) {
            let date = Date(timeIntervalSince1970: seconds)
            let parsed = PostgresTimestamp.parse(PostgresTimestamp.format(date))
            #expect(abs((parsed ?? .distantPast).timeIntervalSince(date)) < 0.000_001)
        }
    }
}
