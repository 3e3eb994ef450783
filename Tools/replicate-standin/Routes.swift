import Foundation
import Hummingbird

/// HTTP routes: Replicate's API under /v1, output files under /files, test controls under /_standin (among them two
/// hostile file servers for tests of the output download: `/_standin/redirect?to=URL` answers 302 to any URL, and
/// `/_standin/blob?bytes=N&kind=mp4|html&chunked=1` serves N bytes of a fake video or a web page).
struct StandinRoutes: Sendable {
    let standin: Standin
    static let maxBodyBytes = 1 << 20
    static let pageSize = 100

    func register(on router: Router<BasicRequestContext>) {
        router.get("/healthz") { _, _ in Self.json(.ok, .object(["status": .string("ok")])) }

        router.post("/v1/models/:owner/:name/predictions") { request, context in
            let owner = context.parameters.get("owner") ?? ""
            let name = context.parameters.get("name") ?? ""
            return await self.create(request, endpoint: .model(owner: owner, name: name))
        }
        router.post("/v1/deployments/:owner/:name/predictions") { request, context in
            let owner = context.parameters.get("owner") ?? ""
            let name = context.parameters.get("name") ?? ""
            return await self.create(request, endpoint: .model(owner: owner, name: name))
        }
        router.post("/v1/predictions") { request, _ in
            await self.create(request, endpoint: .version)
        }
        router.get("/v1/predictions") { request, _ in
            await self.authorized(request) { await self.list(request) }
        }
        router.get("/v1/predictions/:id") { request, context in
            await self.authorized(request) {
                guard let id = context.parameters.get("id"), let prediction = await self.standin.book.prediction(id: id) else {
                    return Self.problem(.notFound)
                }
                return Self.json(.ok, self.standin.render(prediction))
            }
        }
        router.post("/v1/predictions/:id/cancel") { request, context in
            await self.authorized(request) {
                guard let id = context.parameters.get("id"), let prediction = await self.standin.cancel(id: id) else {
                    return Self.problem(.notFound)
                }
                return Self.json(.ok, self.standin.render(prediction))
            }
        }
        router.get("/v1/webhooks/default/secret") { request, _ in
            await self.authorized(request) {
                Self.json(.ok, .object(["key": .string(self.standin.config.webhookSecret)]))
            }
        }

        router.get("/files/:file") { _, context in
            await self.file(context.parameters.get("file") ?? "")
        }

        router.get("/_standin/stats") { _, _ in
            Self.json(.ok, await self.standin.book.stats())
        }
        router.get("/_standin/faults") { _, _ in
            Self.json(.ok, await self.standin.book.faults.json)
        }
        router.post("/_standin/faults") { request, _ in
            await self.setFaults(request)
        }
        router.get("/_standin/redirect") { request, _ in
            guard let target = request.uri.queryParameters.get("to"), !target.isEmpty else {
                return Self.problem(Problem(status: 400, title: "No target", detail: "Name the redirect target: ?to=URL."))
            }
            return Response(status: .found, headers: [.location: target, .contentLength: "0"])
        }
        router.get("/_standin/blob") { request, _ in
            self.blob(request)
        }
        router.post("/_standin/reset") { _, _ in
            await self.standin.book.reset()
            self.standin.logger.info("state reset")
            return Self.json(.ok, .object(["reset": .bool(true)]))
        }
    }

    // MARK: Handlers

    private func create(_ request: Request, endpoint: CreateValidation.Endpoint) async -> Response {
        await self.authorized(request) {
            guard let body = await Self.body(of: request) else {
                await self.standin.book.countRejectedAttempt()
                return Self.problem(Problem(status: 413, title: "Payload too large", detail: "The request body is too large."))
            }
            let cancelAfter = request.headers.first { $0.name.canonicalName == "cancel-after" }?.value
            let validated = CreateValidation.validate(
                body: body, endpoint: endpoint, requiredInput: self.standin.config.requiredInput, cancelAfter: cancelAfter)
            switch validated {
            case .failure(let problem):
                await self.standin.book.countRejectedAttempt()
                return Self.problem(problem)
            case .success(let newPrediction):
                switch await self.standin.create(newPrediction) {
                case .serverError:
                    return Self.problem(.serverError)
                case .throttled(let wait):
                    return Self.problem(.throttled(retryAfterSeconds: wait))
                case .created(let prediction, let withhold):
                    if withhold {
                        // The prediction runs; its creator hears nothing until long after any sane client timeout.
                        try? await Task.sleep(for: .milliseconds(await self.standin.book.faults.timeoutMs))
                    }
                    return Self.json(.created, self.standin.render(prediction))
                }
            }
        }
    }

    /// Newest first, pages of 100; the cursor is the offset of the page's first entry.
    private func list(_ request: Request) async -> Response {
        let all = await self.standin.book.all()
        let offset = request.uri.queryParameters.get("cursor").flatMap { Int($0) }.map { max(0, $0) } ?? 0
        let page = all.dropFirst(offset).prefix(Self.pageSize)
        let now = Date()
        let base = "\(self.standin.config.publicURL)/v1/predictions"
        let next: JSON = offset + Self.pageSize < all.count ? .string("\(base)?cursor=\(offset + Self.pageSize)") : .null
        let previous: JSON =
            offset > 0 ? .string(offset - Self.pageSize > 0 ? "\(base)?cursor=\(offset - Self.pageSize)" : base) : .null
        return Self.json(
            .ok,
            .object([
                "results": .array(page.map { self.standin.render($0, now: now) }),
                "next": next,
                "previous": previous,
            ]))
    }

    private func file(_ name: String) async -> Response {
        guard name.hasSuffix(".mp4") else { return Self.problem(.notFound) }
        let id = String(name.dropLast(4))
        guard await self.standin.book.outputAvailable(id: id, now: Date()) else {
            return Self.problem(.notFound)
        }
        let bytes = FakeVideo.bytes(for: id)
        return Response(
            status: .ok, headers: [.contentType: "video/mp4", .contentLength: String(bytes.count)],
            body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// N bytes (at most 1 GiB) of a fake MP4 (`kind=mp4`, the default) or of an HTML page, with a Content-Length, or
    /// chunked without one (`chunked=1`), in 64 KiB pieces so a large one never sits in memory.
    private func blob(_ request: Request) -> Response {
        let parameters = request.uri.queryParameters
        guard let count = parameters.get("bytes").flatMap({ Int($0) }), (0...(1 << 30)).contains(count) else {
            return Self.problem(Problem(status: 400, title: "Bad size", detail: "Give bytes=N with N from 0 to 1073741824."))
        }
        let kind = parameters.get("kind") ?? "mp4"
        guard kind == "mp4" || kind == "html" else {
            return Self.problem(Problem(status: 400, title: "Bad kind", detail: "kind is mp4 or html."))
        }
        let chunked = parameters.get("chunked") == "1"
        let pattern: [UInt8] = kind == "mp4" ? FakeVideo.bytes(for: "blob") : Array("<!DOCTYPE html><html><body>internal page</body></html>\n".utf8)
        let body = ResponseBody(contentLength: chunked ? nil : count) { writer in
            var sent = 0
            while sent < count {
                let size = min(1 << 16, count - sent)
                try await writer.write(ByteBuffer(bytes: (sent..<(sent + size)).map { pattern[$0 % pattern.count] }))
                sent += size
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: kind == "mp4" ? "video/mp4" : "text/html"], body: body)
    }

    private func setFaults(_ request: Request) async -> Response {
        guard let body = await Self.body(of: request), let update = JSON.parse(body)?.objectValue else {
            return Self.problem(Problem(status: 400, title: "Invalid faults", detail: "Send a JSON object of fault percentages."))
        }
        do {
            let faults = try await self.standin.book.updateFaults(update)
            self.standin.logger.info("faults changed", metadata: ["faults": "\(String(decoding: faults.json.bytes, as: UTF8.self))"])
            return Self.json(.ok, faults.json)
        } catch {
            return Self.problem(Problem(status: 400, title: "Invalid faults", detail: error.description))
        }
    }

    // MARK: Helpers

    /// Runs `handler` only for the configured token (`Bearer`, or Replicate's older `Token` scheme).
    private func authorized(_ request: Request, _ handler: () async -> Response) async -> Response {
        let token = self.standin.config.apiToken
        guard let header = request.headers[.authorization], header == "Bearer \(token)" || header == "Token \(token)" else {
            return Self.problem(.unauthenticated)
        }
        return await handler()
    }

    private static func body(of request: Request) async -> [UInt8]? {
        var request = request
        guard let buffer = try? await request.collectBody(upTo: Self.maxBodyBytes) else { return nil }
        return Array(buffer.readableBytesView)
    }

    static func json(_ status: HTTPResponse.Status, _ value: JSON) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: value.bytes)))
    }

    static func problem(_ problem: Problem) -> Response {
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        if let wait = problem.retryAfterSeconds {
            headers[.retryAfter] = String(wait)
        }
        return Response(
            status: HTTPResponse.Status(code: problem.status), headers: headers,
            body: .init(byteBuffer: ByteBuffer(bytes: problem.json.bytes)))
    }
}
