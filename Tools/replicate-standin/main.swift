// replicate-standin: a local Replicate for development and tests (see /work/shared/REPLICATE.md for the contract).
// Configuration: StandinConfig.swift. Test controls: GET /_standin/stats, POST /_standin/faults, POST /_standin/reset.
import Foundation
import Hummingbird
import Logging
import ReelayCore
import ReelayHTTPClient

// Webhook receivers may hang up mid-request; that must be an error code, never a process-killing signal.
signal(SIGPIPE, SIG_IGN)

func fail(_ line: String) -> Never {
    FileHandle.standardError.write(Data("replicate-standin: \(line)\n".utf8))
    exit(2)
}

let config: StandinConfig
do {
    config = try StandinConfig.fromEnvironment()
} catch {
    fail(error.description)
}
let signer: StandardWebhook
do {
    signer = try StandardWebhook(secret: config.webhookSecret)
} catch {
    fail("REPLICATE_WEBHOOK_SECRET is not a valid whsec_ secret")
}

var logger = Logger(label: "replicate-standin")
logger.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? .info

let client = HTTPClient(threads: 4, connectTimeout: .seconds(5), userAgent: "Replicate-Webhooks/standin", logger: logger)
let book = PredictionBook(seed: config.seed, ratePerMinute: config.createRatePerMinute, outputTTL: config.outputTTL, faults: config.faults)
let standin = Standin(
    config: config, book: book,
    sender: WebhookSender(client: client, signer: signer, book: book, retryWindow: config.webhookRetryWindow, logger: logger),
    logger: logger)

let router = Router()
StandinRoutes(standin: standin).register(on: router)
let app = Application(
    router: router,
    configuration: .init(address: .hostname(config.host, port: config.port), serverName: "replicate-standin"),
    logger: logger)

logger.info(
    "replicate-standin starting",
    metadata: [
        "address": "\(config.host):\(config.port)", "public_url": "\(config.publicURL)",
        "run_ms": "\(Int(config.runTime.seconds * 1000))", "faults": "\(String(decoding: config.faults.json.bytes, as: UTF8.self))",
    ])
do {
    // runService installs SIGTERM/SIGINT handlers and drains in-flight requests before returning.
    try await app.runService()
} catch {
    await client.shutdown()
    fail("server stopped: \(error)")
}
await client.shutdown()
logger.info("replicate-standin stopped")
