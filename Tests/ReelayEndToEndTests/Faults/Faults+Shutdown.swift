import Foundation
import ReelayTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Services killed or stopped (SIGKILL, SIGTERM) while work is in flight or a peer is unreachable.
extension Faults {
    // MARK: 11. dispatcher killed

    /// Guards: a dispatcher SIGKILLed while its creates are in flight (created at Replicate, answers not yet back) loses
    /// nothing and duplicates nothing: after a restart every task completes, each from exactly one prediction, and
    /// the tasks that were still queued behind the slots run on the new dispatcher.
    @Test func dispatcherKilledWhileCreating() async throws {
        try await Faulty.withSystem(
            "dispatcher-kill", overrides: ["MAX_CONCURRENT_TASKS": "3"],
            standin: ["STANDIN_FAULT_CREATE_TIMEOUT": "100", "STANDIN_FAULT_TIMEOUT_MS": "20000", "STANDIN_RUN_MS": "3000"]
        ) { system in
            let users = [try FaultUser(system), try FaultUser(system)]
            var tasks: [(user: FaultUser, id: String)] = []
            for (index, user) in users.enumerated() {
                for round in 0..<3 {
                    tasks.append((user, try await user.submit("kill-\(index)-\(round)")))
                }
            }
            // Three creates made at Replicate, their answers withheld: the dispatcher is mid-call for all three.
            try await eventually("three creates in flight", timeout: .seconds(60), every: .milliseconds(50)) {
                try await system.standin.stats()["creates"].int == 3
            }
            let dispatcher = try #require(system.process("dispatcher"))
            dispatcher.kill()
            #expect(await dispatcher.waitForExit(timeout: .seconds(30)))
            #expect(dispatcher.exitCode == 128 + SIGKILL)
            try await system.standin.setFaults(["create_timeout": 0])
            try system.startService("dispatcher")

            for (user, id) in tasks {
                try await user.waitFor(id, status: "completed", timeout: .seconds(40))
                #expect(try await user.video(id).status == 200)
                let history = try await system.transitions(id)
                #expect(history.filter { $0.to == "completed" }.count == 1, "\(history)")
                #expect(try await system.row(id).int("retry_count") == 0)
            }
            #expect(try await system.slotsHeld() == 0)
            let stats = try await system.standin.stats()
            #expect(stats["create_attempts"].int == tasks.count, "never a second create: \(stats)")
            expectStandin(stats, predictions: Dictionary(uniqueKeysWithValues: tasks.map { ($0.id, 1) }), maxRunning: 3)
        }
    }

    // MARK: 12. graceful shutdown

    /// Guards: every service exits 0 after SIGTERM, inside its shutdown budget (ServiceRunner's 20 s, under the pods' 30 s
    /// grace period), even with a task in flight, and what was in flight is not lost: after all four restart, the task
    /// completes from its one prediction.
    @Test func sigtermStopsEveryServiceCleanly() async throws {
        try await Faulty.withSystem("sigterm", standin: ["STANDIN_RUN_MS": "15000"]) { system in
            let user = try FaultUser(system)
            let id = try await user.submit("in-flight")
            try await user.waitFor(id, status: "processing", timeout: .seconds(60))

            // The webhook service first, so nothing can finalize the task while the others stop.
            for name in ["webhook", "dispatcher", "scheduler", "gateway"] {
                let process = try #require(system.process(name))
                // Waiting past the 20 s budget tells "stopped by itself" (exit 0) from "killed by the harness" (nil or 9).
                let code = await process.terminate(grace: .seconds(40))
                #expect(code == 0, "\(name) exited \(code.map(String.init) ?? "?") after SIGTERM\n\(process.logTail(lines: 20))")
            }
            #expect(try await system.row(id)["status"] == "processing", "nothing finalized while every service was down")

            for name in ["webhook", "scheduler", "dispatcher", "gateway"] {
                try system.startService(name)
            }
            try await waitForHTTP(system.gatewayURL + "/readyz", timeout: .seconds(60))
            try await user.waitFor(id, status: "completed", timeout: .seconds(60))
            #expect(try await user.video(id).status == 200)
            let history = try await system.transitions(id)
            #expect(history.map(\.to) == ["pending", "dispatching", "processing", "completed"], "\(history)")
            let stats = try await system.standin.stats()
            expectStandin(stats, predictions: [id: 1], maxRunning: 1)
        }
    }

    /// Guards: every service stops on SIGTERM with exit 0, well inside its shutdown budget, whatever its peers are doing:
    /// started against an unreachable RabbitMQ, or an unreachable PostgreSQL, each keeps running (and retrying), then
    /// stops cleanly when asked.
    @Test func sigtermWhileAPeerIsUnreachable() async throws {
        try await Faulty.withSystem("sigterm-peer-down") { system in
            let unreachable = [
                ("rabbitmq", ["AMQP_URL": "amqp://guest:guest@127.0.0.1:1/%2f"]),
                ("postgres", ["DATABASE_URL": "postgresql://reelay@127.0.0.1:1/reelay"]),
            ]
            for (peer, overrides) in unreachable {
                for service in ["gateway", "scheduler", "dispatcher", "webhook"] {
                    let name = "\(service)-without-\(peer)"
                    let ports = ["GATEWAY_PORT": String(freePort()), "WEBHOOK_PORT": String(freePort())]
                    try system.startService(name, executable: service, overrides: overrides.merging(ports) { $1 })
                    let process = try #require(system.process(name))
                    // Long enough to have met the unreachable peer and gone into its retry path.
                    try await Task.sleep(for: .seconds(2))
                    #expect(process.isRunning, "\(name) keeps running while \(peer) is unreachable\n\(process.logTail(lines: 20))")
                    let clock = ContinuousClock()
                    let started = clock.now
                    let code = await process.terminate(grace: .seconds(40))
                    let took = clock.now - started
                    print("sigtermWhileAPeerIsUnreachable: \(name) stopped \(took) after SIGTERM")
                    #expect(code == 0, "\(name) exited \(code.map(String.init) ?? "?")\n\(process.logTail(lines: 20))")
                    // Contract: inside the 20 s budget with room to spare; it takes well under a second when idle.
                    #expect(took < .seconds(15), "\(name) took \(took) to stop")
                }
            }
        }
    }

    /// Guards: a dispatcher whose create hangs at Replicate (answer withheld far longer than any shutdown budget) stops on
    /// SIGTERM by abandoning the call once its drain limit passes, exits 0, leaves the create's unknown outcome to the
    /// reconciliation, and the next dispatcher never creates again: the task completes from its one prediction.
    @Test func sigtermWhileACreateHangs() async throws {
        try await Faulty.withSystem(
            "sigterm-hanging-create",
            standin: ["STANDIN_FAULT_CREATE_TIMEOUT": "100", "STANDIN_FAULT_TIMEOUT_MS": "120000", "STANDIN_RUN_MS": "3000"]
        ) { system in
            let user = try FaultUser(system)
            let id = try await user.submit("hanging")
            try await eventually("the create sent to Replicate", timeout: .seconds(30), every: .milliseconds(20)) {
                try await system.standin.stats()["creates"].int == 1
            }
            let dispatcher = try #require(system.process("dispatcher"))
            let clock = ContinuousClock()
            let started = clock.now
            let code = await dispatcher.terminate(grace: .seconds(60))
            let took = clock.now - started
            print("sigtermWhileACreateHangs: the dispatcher stopped \(took) after SIGTERM (drain limit 2 s)")
            #expect(code == 0, "the dispatcher exited \(code.map(String.init) ?? "?")\n\(dispatcher.logTail(lines: 20))")
            // The call was abandoned by the drain limit, not by the 20 s hard budget that cancels everything.
            let log = dispatcher.logTail(lines: 200)
            #expect(log.contains("handlers still running after the drain limit"), "\(log)")
            #expect(log.contains("handler abandoned at shutdown"), "\(log)")
            // Contract: well inside the 20 s budget. The drain limit is 2 s; 15 s is more than 5x that, so only a
            // dispatcher that waited on Replicate fails it.
            #expect(took < .seconds(15), "the dispatcher took \(took) to stop")

            try await system.standin.setFaults(["create_timeout": 0])
            try system.startService("dispatcher")
            try await user.waitFor(id, status: "completed", timeout: .seconds(120))
            #expect(try await system.row(id).int("attempt") == 1)
            let stats = try await system.standin.stats()
            #expect(stats["create_attempts"].int == 1, "never a second create: \(stats)")
            expectStandin(stats, predictions: [id: 1], maxRunning: 1)
        }
    }
}
