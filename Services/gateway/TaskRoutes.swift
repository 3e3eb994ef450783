import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ReelayAMQP
import ReelayCore
import ReelayMessaging
import ReelayService
import ReelayStore

extension Gateway {
    // MARK: POST /v1/tasks

    /// Validates a submission, publishes it to the scheduler and answers with the scheduler's verdict, or with 202
    /// "submitted" when no verdict came within ADMISSION_TIMEOUT_MS.
    func submit(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let user = try await self.auth.user(request)
        var logger = context.logger
        logger[metadataKey: "user.id"] = .string(TaskJSON.id(user.id))
        let submission = try await self.readSubmission(request)
        try await self.takeSubmissionToken(user, logger: logger)
        let taskID = try await self.claimIdempotencyKey(submission, user: user)

        let now = Date()
        let command = SubmitTaskCommand(
            taskID: taskID, userID: user.id, prompt: submission.prompt, inputImageURL: submission.inputImageURL,
            inputJSON: submission.inputJSON, idempotencyKey: submission.idempotencyKey, submittedAt: now,
            replyBy: now.addingTimeInterval(self.config.admissionTimeout.seconds))
        logger[metadataKey: "task.id"] = .string(TaskJSON.id(command.taskID))
        let correlationID = command.taskID.uuidString
        // Registered before publishing: the verdict may overtake the publish confirm. With the command, so a rejection
        // that arrives after the 202 below can still be stored for the client (VerdictWaiter).
        self.waiter.expect(correlationID, submission: command)
        do {
            try await self.publish(
                command, properties: AMQPProperties(correlationID: correlationID, replyTo: self.replyQueue), logger: logger)
        } catch {
            self.waiter.forget(correlationID)
            throw error
        }
        logger.debug("submission published; waiting for the admission verdict")

        guard let verdict = await self.waiter.wait(for: correlationID, timeout: self.config.admissionTimeout) else {
            logger.notice("no admission verdict in time; answering submitted")
            let priority = Priority.base(tier: user.tier, retryCount: 0, promptLength: command.prompt.count)
            return JSONResponse.make(
                .accepted, TaskJSON.submitted(command, priority: priority), headers: Self.location(command.taskID))
        }
        switch verdict.outcome {
        case .admitted, .duplicate:
            logger.info(
                "submission accepted",
                metadata: ["verdict": "\(verdict.outcome.rawValue)", "task.accepted_id": .string(TaskJSON.id(verdict.taskID))])
            do {
                if let task = try await self.tasks.task(id: verdict.taskID) {
                    return JSONResponse.make(
                        .accepted, try await self.representation(task), headers: Self.location(task.id))
                }
            } catch {
                // The task IS accepted: an error status here would invite a retry, and a retry without an Idempotency-Key
                // would create a second task. Answer 202 with what we know; the client reads the rest with GET.
                logger.warning("accepted task could not be read back", metadata: ["error": "\(error)"])
            }
            let priority = Priority.base(tier: user.tier, retryCount: 0, promptLength: command.prompt.count)
            var body = TaskJSON.submitted(command, priority: priority)
            body["id"] = TaskJSON.id(verdict.taskID)
            return JSONResponse.make(.accepted, body, headers: Self.location(verdict.taskID))
        case .rejected:
            logger.info("submission rejected", metadata: ["reason": "\(verdict.message ?? "-")"])
            throw Problem.admissionRefused(verdict)
        }
    }

    /// One token of the key's bucket (SUBMIT_RATE_PER_MIN, SUBMIT_BURST), or 429 with Retry-After.
    private func takeSubmissionToken(_ user: UserStore.User, logger: Logger) async throws {
        let rate = self.config.submitRatePerMinute
        guard
            let wait = try await self.rateLimits.acquire(
                "submit:key:\(TaskJSON.id(user.keyID))", perMinute: rate, burst: self.config.submitBurst)
        else {
            return
        }
        let seconds = max(1, Int((Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18).rounded(.up)))
        logger.info("submission rate limited", metadata: ["key.id": .string(TaskJSON.id(user.keyID)), "retry_after_s": "\(seconds)"])
        throw Problem(
            .tooManyRequests, title: "Submitting too fast",
            detail: "This API key may submit \(rate) tasks per minute (\(self.config.submitBurst) at once after a pause); "
                + "wait \(seconds) s (Retry-After) and submit again.",
            headers: [.retryAfter: String(seconds)])
    }

    /// The task id a submission gets: new, or, for an Idempotency-Key used before with the same submission, the first
    /// one's. The same key with a different submission is refused (422), so a retry can never silently stand for another task.
    private func claimIdempotencyKey(_ submission: ParsedSubmission, user: UserStore.User) async throws -> UUID {
        let newID = UUID()
        guard let key = submission.idempotencyKey else {
            return newID
        }
        let fingerprint = SubmissionFingerprint.of(
            prompt: submission.prompt, inputImageURL: submission.inputImageURL, inputJSON: submission.inputJSON)
        let claim = try await self.idempotency.claim(userID: user.id, key: key, fingerprint: fingerprint, taskID: newID)
        guard claim.fingerprint == fingerprint else {
            throw Problem(
                .unprocessableContent, title: "Idempotency-Key reused",
                detail: "This Idempotency-Key was already used for task \(TaskJSON.id(claim.taskID)) with a different submission. "
                    + "Send a new key for a new task, or repeat the first submission exactly to get its task.",
                fields: [
                    FieldError(
                        field: "Idempotency-Key",
                        message: "already used with a different prompt, input_image_url or input (task \(TaskJSON.id(claim.taskID)))")
                ])
        }
        return claim.taskID
    }

    private static func location(_ id: UUID) -> HTTPFields {
        [.location: "/v1/tasks/\(TaskJSON.id(id))"]
    }

    private struct ParsedSubmission {
        var prompt: String
        var inputImageURL: String
        var inputJSON: String?
        var idempotencyKey: String?
    }

    /// Content type, size, JSON shape and field rules of a submission; every field problem is reported at once (422).
    private func readSubmission(_ request: Request) async throws -> ParsedSubmission {
        let mediaType = request.headers[.contentType]?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased()
        guard mediaType == "application/json" else {
            throw Problem(
                .unsupportedMediaType, title: "Unsupported Media Type",
                detail: "Send the task as a JSON object with 'Content-Type: application/json'.")
        }
        let tooLarge = Problem(
            .contentTooLarge, title: "Content Too Large",
            detail: "The body may be at most \(Self.maxBodyBytes / 1024) KiB; shorten the prompt or the input object.")
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > Self.maxBodyBytes {
            throw tooLarge
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: Self.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw tooLarge
        }
        let parsed = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView), options: [.fragmentsAllowed])
        guard let object = parsed as? [String: Any] else {
            throw Problem(
                .badRequest, title: "Bad Request",
                detail: parsed == nil
                    ? "The body is not valid JSON. Send an object like {\"prompt\": \"...\", \"input_image_url\": \"https://...\"}."
                    : "The body must be a JSON object with 'prompt' and 'input_image_url'.")
        }

        var errors: [FieldError] = []
        func string(_ name: String) -> String? {
            guard let value = object[name], !(value is NSNull) else {
                return nil
            }
            guard let text = value as? String else {
                errors.append(FieldError(field: name, message: "\(name) must be a string"))
                return nil
            }
            return text
        }
        let prompt = string("prompt")
        let imageURL = string("input_image_url")
        var input: [String: Any]?
        // Parsed JSON: the keys and strings are checked (NUL, bounds) as they will be stored.
        if let value = object["input"], !(value is NSNull) {
            if let dictionary = value as? [String: Any] {
                input = dictionary
            } else {
                errors.append(FieldError(field: "input", message: "input must be a JSON object of model inputs"))
            }
        }
        let idempotencyKey = request.headers[.idempotencyKey]
        if let idempotencyKey, !Self.isIdempotencyKey(idempotencyKey) {
            errors.append(
                FieldError(
                    field: "Idempotency-Key", message: "the Idempotency-Key header must be 1 to 200 printable ASCII characters without spaces"))
        }
        // Type errors above already explain a missing value; validation adds what is wrong with the values themselves.
        let typeErrorFields = Set(errors.map(\.field))
        errors += SubmissionValidation.validate(
            prompt: prompt, inputImageURL: imageURL, input: input?.mapValues(Self.jsonValue),
            allowedInputKeys: self.config.allowedInputKeys, allowLocalImageURLs: self.config.allowLocalImageURLs
        ).filter { !typeErrorFields.contains($0.field) }
        guard errors.isEmpty, let prompt, let imageURL else {
            throw Problem(
                .unprocessableContent, title: "Invalid submission",
                detail: "Some fields are invalid; see invalid_fields, fix them and submit again.", fields: errors)
        }
        var inputJSON: String?
        if let input, !input.isEmpty {
            let data = try JSONSerialization.data(withJSONObject: input, options: [.sortedKeys])
            inputJSON = String(decoding: data, as: UTF8.self)
        }
        return ParsedSubmission(
            prompt: prompt.trimmingCharacters(in: .whitespacesAndNewlines), inputImageURL: imageURL, inputJSON: inputJSON,
            idempotencyKey: idempotencyKey)
    }

    static func isIdempotencyKey(_ key: String) -> Bool {
        (1...200).contains(key.utf8.count) && key.utf8.allSatisfy { (0x21...0x7E).contains($0) }
    }

    /// A JSONSerialization value as a `JSONValue`, for the pure validation (numbers only need to be judged finite).
    static func jsonValue(_ value: Any) -> JSONValue {
        switch value {
        case let text as String: .string(text)
        case let number as NSNumber: .number(number.doubleValue)
        case let array as [Any]: .array(array.map(Self.jsonValue))
        case let object as [String: Any]: .object(object.mapValues(Self.jsonValue))
        default: .null
        }
    }

    // MARK: GET /v1/tasks/{id}

    func show(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let caller = try await self.auth.caller(request)
        let task = try await self.visibleTask(context.parameters.get("id"), caller: caller)
        let history = try await self.tasks.events(taskID: task.id)
        return JSONResponse.make(.ok, try await self.representation(task, history: history))
    }

    // MARK: GET /v1/tasks

    static let defaultPageSize = 20
    static let pageSizes = 1...100

    func list(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let user = try await self.auth.user(request)
        let query = request.uri.queryParameters
        var status: TaskStatus?
        // A parameter that is present must be valid, even empty: `?status=` is not "any status".
        if let text = query["status"].map(String.init) {
            guard let parsed = TaskStatus(rawValue: text) else {
                throw Problem(
                    .badRequest, title: "Bad Request",
                    detail: "Unknown status '\(Self.clip(text))'; use one of "
                        + TaskStatus.allCases.map(\.rawValue).joined(separator: ", ") + ", or leave it out.")
            }
            status = parsed
        }
        var limit = Self.defaultPageSize
        if let text = query["limit"].map(String.init) {
            guard let parsed = Int(text), Self.pageSizes.contains(parsed) else {
                throw Problem(
                    .badRequest, title: "Bad Request",
                    detail: "limit must be a whole number from \(Self.pageSizes.lowerBound) to \(Self.pageSizes.upperBound), "
                        + "got '\(Self.clip(text))'.")
            }
            limit = parsed
        }
        var cursor: TaskCursor?
        if let text = query["cursor"].map(String.init), !text.isEmpty {
            guard let parsed = TaskCursor(encoded: text) else {
                throw Problem(
                    .badRequest, title: "Bad Request",
                    detail: "The cursor is not one this API issued; pass next_cursor from the previous page unchanged, "
                        + "or leave it out for the first page.")
            }
            cursor = parsed
        }
        let page = try await TaskPage.load(store: self.tasks, userID: user.id, status: status, cursor: cursor, limit: limit)
        var items: [[String: Any]] = []
        for task in page.tasks {
            items.append(try await self.representation(task))
        }
        return JSONResponse.make(.ok, ["tasks": items, "next_cursor": page.next?.encoded as Any? ?? NSNull()])
    }

    // MARK: POST /v1/tasks/{id}/cancel

    /// A pending task is canceled at once; a running one is marked and the scheduler cancels it at Replicate.
    func cancel(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let caller = try await self.auth.caller(request)
        // Only the owner may cancel: ops reads any task but cancels none, so for ops every task is "not found".
        guard case .user(let user) = caller else {
            throw Self.taskNotFound(context.parameters.get("id"))
        }
        let task = try await self.visibleTask(context.parameters.get("id"), caller: caller)
        var logger = context.logger
        logger[metadataKey: "task.id"] = .string(TaskJSON.id(task.id))
        logger[metadataKey: "user.id"] = .string(TaskJSON.id(user.id))
        if task.status.isTerminal {
            throw Self.alreadyTerminal(task.status)
        }
        guard let (updated, needsRemoteCancel) = try await self.tasks.requestCancel(taskID: task.id) else {
            throw Problem(.notFound, title: "Task not found", detail: "The task no longer exists.")
        }
        // It may have ended between our read and the cancel.
        if updated.status.isTerminal && updated.status != .canceled {
            throw Self.alreadyTerminal(updated.status)
        }
        if needsRemoteCancel {
            do {
                try await self.publish(CancelTaskCommand(taskID: task.id), properties: AMQPProperties(), logger: logger)
            } catch var problem as Problem {
                problem.detail = "The cancel request is recorded, but the broker is unavailable; repeat the request in a few seconds."
                throw problem
            }
        }
        logger.info("cancel requested", metadata: ["task.status": "\(updated.status.rawValue)", "remote": "\(needsRemoteCancel)"])
        return JSONResponse.make(.accepted, try await self.representation(updated))
    }

    private static func alreadyTerminal(_ status: TaskStatus) -> Problem {
        Problem(
            .conflict, title: "Task already finished",
            detail: "Task is already \(status.rawValue); only pending, dispatching or processing tasks can be canceled.")
    }

    // MARK: GET /v1/tasks/{id}/video

    func video(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let caller = try await self.auth.caller(request)
        let task = try await self.visibleTask(context.parameters.get("id"), caller: caller)
        switch task.status {
        case .completed:
            break
        case .pending, .dispatching, .processing:
            throw Problem(
                .conflict, title: "Video not ready",
                detail: "Task is \(task.status.rawValue); the video is available once it is completed. Poll GET /v1/tasks/\(TaskJSON.id(task.id)).")
        case .failed, .canceled, .rejected:
            throw Problem(
                .conflict, title: "No video",
                detail: "Task is \(task.status.rawValue), so it has no video. Submit a new task to try again.")
        }
        guard let key = task.outputStorageKey else {
            throw Problem(
                .notFound, title: "Video not stored",
                detail: "This task completed without a stored video; ask an operator to check the webhook finalizer's logs.")
        }
        let body: ResponseBody
        do {
            body = try await self.files.loadFile(path: self.storage.path(forKey: key), context: context)
        } catch {
            context.logger.error("stored video missing", metadata: ["task.id": .string(TaskJSON.id(task.id)), "storage.key": "\(key)"])
            throw Problem(
                .notFound, title: "Video not stored",
                detail: "The stored video of this task is missing; ask an operator to check the storage folder.")
        }
        return Response(
            status: .ok,
            headers: [.contentType: "video/mp4", .contentDisposition: "inline; filename=\"\(TaskJSON.id(task.id)).mp4\""],
            body: body)
    }

    // MARK: GET /v1/queue/stats

    func stats(_ request: Request) async throws -> Response {
        try self.auth.requireOps(request)
        let stats = try await self.tasks.stats()
        return JSONResponse.make(
            .ok,
            [
                "pending": stats.pending, "running": stats.running, "completed": stats.completed, "failed": stats.failed,
                "canceled": stats.canceled, "rejected": stats.rejected, "success_rate": stats.successRate,
                "wait_seconds": ["p50": stats.waitSecondsP50, "p95": stats.waitSecondsP95],
                "run_seconds": ["p50": stats.runSecondsP50, "p95": stats.runSecondsP95],
            ])
    }
}

extension HTTPField.Name {
    static let idempotencyKey = Self("Idempotency-Key")!
}
