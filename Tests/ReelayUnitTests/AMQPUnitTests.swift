import Testing

@testable import ReelayAMQP

/// Pure parts of ReelayAMQP; no broker needed.
@Suite struct AMQPURLTests {
    @Test func parsesEveryPart() throws {
        let url = try AMQPURL("amqp://reelay:s3cr%40t@mq.example.com:5673/%2f")
        #expect(url.host == "mq.example.com")
        #expect(url.port == 5673)
        #expect(url.user == "reelay")
        #expect(url.password == "s3cr@t")
        #expect(url.vhost == "/")
    }

    @Test func appliesDefaults() throws {
        #expect(try AMQPURL("amqp://") == AMQPURL(host: "localhost", port: 5672, user: "guest", password: "guest", vhost: "/"))
        #expect(try AMQPURL("amqp://10.0.0.1") == AMQPURL(host: "10.0.0.1"))
        #expect(try AMQPURL("amqp://10.0.0.1/") == AMQPURL(host: "10.0.0.1"))
        #expect(try AMQPURL("AMQP://u:p@h/prod?heartbeat=10") == AMQPURL(host: "h", user: "u", password: "p", vhost: "prod"))
        #expect(try AMQPURL("amqp://[::1]:5673").host == "::1")
    }

    @Test(arguments: ["http://h", "amqps://h", "amqp://h:0", "amqp://h:70000", "amqp://h:port", "amqp://h/a/b", "amqp://[::1"])
    func rejectsInvalid(_ text: String) {
        #expect(throws: AMQPError.self) { try AMQPURL(text) }
    }

    /// Invariant: logs and errors never show the password.
    @Test func neverShowsThePassword() throws {
        let url = try AMQPURL("amqp://svc:hunter2@127.0.0.1:5673/%2f")
        #expect(url.redacted == "amqp://svc:***@127.0.0.1:5673/%2F")
        #expect(!url.redacted.contains("hunter2"))
        do {
            _ = try AMQPURL("amqp://svc:hunter2%zz@127.0.0.1/")
            Issue.record("a bad escape in the password must be refused")
        } catch {
            #expect(!"\(error)".contains("hunter2"))
        }
    }
}

@Suite struct AMQPConfirmTrackerTests {
    /// Seen on the broker: ack(2, multiple) then ack(3).
    @Test func multipleAckSettlesEverythingUpToTheTag() {
        var tracker = ConfirmTracker()
        for id in [10, 11, 12] as [UInt64] {
            tracker.published(id: id)
        }
        #expect(tracker.settle(tag: 2, multiple: true) == [10, 11])
        #expect(tracker.settle(tag: 3, multiple: false) == [12])
        #expect(tracker.isEmpty)
    }

    @Test func singleAcksOutOfOrderAndDuplicates() {
        var tracker = ConfirmTracker()
        for id in [1, 2, 3] as [UInt64] {
            tracker.published(id: id * 100)
        }
        #expect(tracker.settle(tag: 2, multiple: false) == [200])
        #expect(tracker.settle(tag: 2, multiple: false) == [])
        #expect(tracker.settle(tag: 9, multiple: false) == [])
        #expect(tracker.settle(tag: 3, multiple: true) == [100, 300])
    }

    @Test func multipleWithTagZeroSettlesAll() {
        var tracker = ConfirmTracker()
        tracker.published(id: 7)
        tracker.published(id: 8)
        #expect(tracker.settle(tag: 0, multiple: true) == [7, 8])
    }

    /// Invariant: after a reconnect, unconfirmed messages are republished in order and numbering restarts at 1.
    @Test func resetReturnsUnconfirmedInOrderAndRestartsNumbering() {
        var tracker = ConfirmTracker()
        for id in [5, 6, 7, 8] as [UInt64] {
            tracker.published(id: id)
        }
        _ = tracker.settle(tag: 2, multiple: false)
        #expect(tracker.reset() == [5, 7, 8])
        #expect(tracker.isEmpty)
        #expect(tracker.published(id: 9) == 1)
    }
}

@Suite struct AMQPBackoffTests {
    /// Invariant: delays double from 250 ms, stay within [d/2, d], never exceed 10 s, and reset after a success.
    @Test func delaysGrowWithJitterUpToTheCap() {
        var backoff = Backoff()
        var generator = SystemRandomNumberGenerator()
        var ceiling = Duration.milliseconds(250)
        for _ in 0..<12 {
            let delay = backoff.next(using: &generator)
            #expect(delay >= ceiling / 2 && delay <= ceiling)
            ceiling = min(ceiling * 2, .seconds(10))
        }
        #expect(backoff.next(using: &generator) > .seconds(5))
        backoff.reset()
        #expect(backoff.next(using: &generator) <= .milliseconds(250))
    }

    @Test func durationToPollMilliseconds() {
        #expect(Duration.milliseconds(100).milliseconds == 100)
        #expect(Duration.microseconds(1).milliseconds == 1)
        #expect(Duration.zero.milliseconds == 0)
        #expect(Duration.seconds(-1).milliseconds == 0)
    }
}
