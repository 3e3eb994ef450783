import ReelayCRabbitMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A method frame from the broker that is not a delivery, already copied out of library memory.
enum AMQPFrame {
    case ack(tag: UInt64, multiple: Bool)
    case nack(tag: UInt64, multiple: Bool)
    /// A mandatory publish reached no queue (basic.return, read with its content); its headers identify it.
    case returned(headers: [String: String])
    /// The broker closed channel 1 (close-ok already sent); the connection itself can still be closed politely.
    case channelClosed(AMQPError)
    /// The broker closed the connection (close-ok already sent).
    case connectionClosed(AMQPError)
    /// The broker cancelled a consumer (e.g. its queue was deleted).
    case consumerCancelled(tag: String)
    case other
}

/// A delivery copied out of library memory.
struct AMQPRawDelivery {
    var body: [UInt8]
    var exchange: String
    var routingKey: String
    var consumerTag: String
    var deliveryTag: UInt64
    var redelivered: Bool
    var properties: AMQPProperties
}

/// What one non-blocking consume attempt found.
enum AMQPConsumeResult {
    case nothing
    case delivery(AMQPRawDelivery)
    case frame(AMQPFrame)
}

/// One `amqp_connection_state_t` with channel 1 open: connect, declare, publish, poll frames, close.
///
/// Not Sendable: it is created, used and destroyed by exactly one thread (its publisher's or consumer's), because
/// rabbitmq-c aborts when a connection is used from two threads. Every method may block for up to `rpcTimeout`.
final class AMQPConnection {
    static let channel: amqp_channel_t = 1
    /// A connection that lived this long resets the reconnect backoff when it dies; one that the broker kills right
    /// after setup (e.g. a poison publish, a queue in a bad state) keeps backing off instead of reconnecting in a loop.
    static let stableAfter: Duration = .seconds(5)

    private let state: amqp_connection_state_t
    /// The socket, for poll(2) between library calls.
    let socket: Int32
    /// False once the socket or the connection is known dead: closing then skips the close handshake.
    private var connectionOpen = true
    private var channelOpen = true

    /// Connects, logs in (PLAIN, heartbeat), and opens channel 1.
    /// - Parameters:
    ///   - name: shown by the broker as the connection name.
    init(url: AMQPURL, name: String, heartbeat: Duration = .seconds(30), connectTimeout: Duration = .seconds(5),
         rpcTimeout: Duration = .seconds(10)) throws {
        let heartbeatSeconds = Int32(clamping: max(heartbeat.components.seconds, 1))
        guard let state = amqp_new_connection() else {
            throw AMQPError(code: .connectionFailed, description: "cannot allocate an AMQP connection")
        }
        guard let socket = amqp_tcp_socket_new(state) else {
            amqp_destroy_connection(state)
            throw AMQPError(code: .connectionFailed, description: "cannot allocate a TCP socket")
        }
        let target = "\(url.host):\(url.port)"
        var connectTimeval = timeval(connectTimeout)
        let opened = url.host.withCString { host in
            amqp_socket_open_noblock(socket, host, Int32(url.port), &connectTimeval)
        }
        guard opened == AMQP_STATUS_OK.rawValue else {
            amqp_destroy_connection(state)
            throw AMQPError(code: .connectionFailed, description: "cannot connect to \(target): \(Self.libraryMessage(opened))")
        }

        var rpcTimeval = timeval(rpcTimeout)
        _ = amqp_set_handshake_timeout(state, &rpcTimeval)
        _ = amqp_set_rpc_timeout(state, &rpcTimeval)

        let arena = CArena()
        var capabilities = amqp_field_value_t()
        capabilities.kind = UInt8(AMQP_FIELD_KIND_TABLE.rawValue)
        var cancelNotify = amqp_field_value_t()
        cancelNotify.kind = UInt8(AMQP_FIELD_KIND_BOOLEAN.rawValue)
        cancelNotify.value.boolean = 1
        // Without consumer_cancel_notify the broker drops a consumer of a deleted queue silently, and we would wait forever.
        capabilities.value.table = arena.table(entries: [("consumer_cancel_notify", cancelNotify)])
        var connectionName = amqp_field_value_t()
        connectionName.kind = UInt8(AMQP_FIELD_KIND_UTF8.rawValue)
        connectionName.value.bytes = arena.bytes(name)
        var clientProperties = arena.table(entries: [("capabilities", capabilities), ("connection_name", connectionName)])

        let login = reelay_amqp_login_plain_with_properties(
            state, arena.cString(url.vhost), 0, 131_072, heartbeatSeconds, &clientProperties, arena.cString(url.user),
            arena.cString(url.password))
        if let error = Self.error(login, doing: "log in to \(target) vhost \(url.vhost)") {
            amqp_destroy_connection(state)
            throw AMQPError(code: .connectionFailed, description: error.description)
        }

        _ = amqp_channel_open(state, Self.channel)
        if let error = Self.error(amqp_get_rpc_reply(state), doing: "open a channel") {
            amqp_destroy_connection(state)
            throw AMQPError(code: .connectionFailed, description: error.description)
        }

        self.state = state
        self.socket = amqp_socket_get_sockfd(socket)
    }

    deinit {
        amqp_destroy_connection(self.state)
    }

    /// Whether the library holds data or frames that poll(2) on the socket would not report.
    var hasBufferedData: Bool {
        amqp_frames_enqueued(self.state) != 0 || amqp_data_in_buffer(self.state) != 0
    }

    // MARK: Topology and setup

    /// Declares exchanges (durable), queues (with their arguments) and bindings.
    ///
    /// A queue that already exists with another length limit (`x-max-length`, `x-max-length-bytes`) than the one asked
    /// for, typically declared by an older version before the limit existed, makes the broker close the channel with 406
    /// PRECONDITION_FAILED. That one mismatch is tolerated on purpose: the channel is reopened, the queue is checked to
    /// exist (passively) and keeps its own arguments, and the mismatch is returned for the caller to log with the
    /// migration step (a policy; deploy/README.md). Any other mismatch still fails the declaration.
    /// - Parameter includeExclusive: false for publishers: an exclusive queue belongs to the consumer connection declaring it.
    /// - Returns: the tolerated length-limit mismatches.
    @discardableResult
    func declare(_ topology: AMQPTopology, includeExclusive: Bool) throws -> [AMQPLimitMismatch] {
        let arena = CArena()
        let empty = amqp_table_t(num_entries: 0, entries: nil)
        for exchange in topology.exchanges {
            _ = amqp_exchange_declare(
                self.state, Self.channel, arena.bytes(exchange.name), arena.bytes(exchange.type.rawValue), 0, 1, 0, 0, empty)
            try self.checkReply(doing: "declare exchange \(exchange.name)")
        }
        var skipped: Set<String> = []
        var mismatches: [AMQPLimitMismatch] = []
        for queue in topology.queues {
            if queue.exclusive && !includeExclusive {
                skipped.insert(queue.name)
                continue
            }
            _ = amqp_queue_declare(
                self.state, Self.channel, arena.bytes(queue.name), 0, queue.durable ? 1 : 0, queue.exclusive ? 1 : 0,
                queue.autoDelete ? 1 : 0, arena.table(queue.arguments))
            do {
                try self.checkReply(doing: "declare queue \(queue.name)")
            } catch let error as AMQPError {
                guard let mismatch = AMQPLimitMismatch(error, queue: queue) else { throw error }
                try self.reopenChannel()
                _ = amqp_queue_declare(self.state, Self.channel, arena.bytes(queue.name), 1, 0, 0, 0, empty)
                try self.checkReply(doing: "inspect queue \(queue.name)")
                mismatches.append(mismatch)
            }
        }
        for binding in topology.bindings where !skipped.contains(binding.queue) {
            _ = amqp_queue_bind(
                self.state, Self.channel, arena.bytes(binding.queue), arena.bytes(binding.exchange), arena.bytes(binding.routingKey),
                empty)
            try self.checkReply(doing: "bind queue \(binding.queue) to \(binding.exchange)")
        }
        return mismatches
    }

    /// Opens channel 1 again after the broker closed it (close-ok already sent).
    private func reopenChannel() throws {
        _ = amqp_channel_open(self.state, Self.channel)
        try self.checkReply(doing: "reopen the channel")
        self.channelOpen = true
    }

    /// Puts channel 1 in publisher-confirm mode; publishes are then numbered from 1.
    func confirmSelect() throws {
        _ = amqp_confirm_select(self.state, Self.channel)
        try self.checkReply(doing: "select publisher confirms")
    }

    /// Sets the per-consumer prefetch (global qos is not supported by quorum queues).
    func qos(prefetch: UInt16) throws {
        _ = amqp_basic_qos(self.state, Self.channel, 0, prefetch, 0)
        try self.checkReply(doing: "set prefetch")
    }

    /// Starts consuming `queue` with manual acks under consumer tag `tag`.
    func consume(queue: String, tag: String) throws {
        let arena = CArena()
        _ = amqp_basic_consume(
            self.state, Self.channel, arena.bytes(queue), arena.bytes(tag), 0, 0, 0, amqp_table_t(num_entries: 0, entries: nil))
        try self.checkReply(doing: "consume queue \(queue)")
    }

    /// Cancels a consumer; deliveries already in flight stay unacked and return to the queue when the channel closes.
    func cancel(tag: String) throws {
        let arena = CArena()
        _ = amqp_basic_cancel(self.state, Self.channel, arena.bytes(tag))
        try self.checkReply(doing: "cancel consumer")
    }

    // MARK: Administration (tests and tools)

    /// Deletes a queue (unconditionally).
    func deleteQueue(_ name: String) throws {
        let arena = CArena()
        _ = amqp_queue_delete(self.state, Self.channel, arena.bytes(name), 0, 0)
        try self.checkReply(doing: "delete queue \(name)")
    }

    /// Deletes an exchange (unconditionally).
    func deleteExchange(_ name: String) throws {
        let arena = CArena()
        _ = amqp_exchange_delete(self.state, Self.channel, arena.bytes(name), 0)
        try self.checkReply(doing: "delete exchange \(name)")
    }

    /// The number of ready messages in a queue (passive declare; a missing queue closes the channel with 404).
    func messageCount(queue: String) throws -> UInt32 {
        let arena = CArena()
        let ok = amqp_queue_declare(self.state, Self.channel, arena.bytes(queue), 1, 0, 0, 0, amqp_table_t(num_entries: 0, entries: nil))
        try self.checkReply(doing: "inspect queue \(queue)")
        return ok?.pointee.message_count ?? 0
    }

    // MARK: Messages

    /// Sends one message; the confirm arrives later as an `AMQPFrame.ack` / `.nack`. A `mandatory` message that no queue
    /// takes comes back first as `AMQPFrame.returned`.
    func publish(exchange: String, routingKey: String, body: [UInt8], properties: AMQPProperties, mandatory: Bool = false) throws {
        let arena = CArena()
        var basicProperties = arena.basicProperties(properties)
        let exchangeBytes = arena.bytes(exchange)
        let routingKeyBytes = arena.bytes(routingKey)
        let status = body.withUnsafeBytes { raw in
            // The library writes the body frames before returning, so lending the array's storage is enough.
            let bodyBytes = amqp_bytes_t(len: raw.count, bytes: UnsafeMutableRawPointer(mutating: raw.baseAddress))
            return amqp_basic_publish(
                self.state, Self.channel, exchangeBytes, routingKeyBytes, mandatory ? 1 : 0, 0, &basicProperties, bodyBytes)
        }
        try self.checkStatus(status, doing: "publish")
    }

    func ack(tag: UInt64) throws {
        try self.checkStatus(amqp_basic_ack(self.state, Self.channel, tag, 0), doing: "ack")
    }

    func reject(tag: UInt64, requeue: Bool) throws {
        try self.checkStatus(amqp_basic_reject(self.state, Self.channel, tag, requeue ? 1 : 0), doing: "reject")
    }

    /// Reads one frame if one is ready; never blocks. Also sends a heartbeat when one is due and notices a missed one.
    func nextFrame() throws -> AMQPFrame? {
        amqp_maybe_release_buffers(self.state)
        var frame = amqp_frame_t()
        var immediately = timeval(tv_sec: 0, tv_usec: 0)
        let status = amqp_simple_wait_frame_noblock(self.state, &frame, &immediately)
        if status == AMQP_STATUS_TIMEOUT.rawValue {
            return nil
        }
        try self.checkStatus(status, doing: "read a frame")
        return self.decode(frame)
    }

    /// Reads one delivery (or another frame) if one is ready; never waits for a delivery to start.
    func consumeMessage() throws -> AMQPConsumeResult {
        // Frees the memory of earlier deliveries (already copied out); the library keeps pools of queued frames.
        amqp_maybe_release_buffers(self.state)
        var envelope = amqp_envelope_t()
        var immediately = timeval(tv_sec: 0, tv_usec: 0)
        let reply = amqp_consume_message(self.state, &envelope, &immediately, 0)
        if reply.reply_type == AMQP_RESPONSE_NORMAL {
            defer { amqp_destroy_envelope(&envelope) }
            return .delivery(
                AMQPRawDelivery(
                    body: envelope.message.body.array, exchange: envelope.exchange.string, routingKey: envelope.routing_key.string,
                    consumerTag: envelope.consumer_tag.string, deliveryTag: envelope.delivery_tag, redelivered: envelope.redelivered != 0,
                    properties: AMQPProperties(copying: envelope.message.properties)))
        }
        if reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION {
            if reply.library_error == AMQP_STATUS_TIMEOUT.rawValue {
                return .nothing
            }
            if reply.library_error == AMQP_STATUS_UNEXPECTED_STATE.rawValue {
                // Not a delivery: the library put the frame back in its queue, so this returns it without blocking.
                var frame = amqp_frame_t()
                var immediately = timeval(tv_sec: 0, tv_usec: 0)
                let status = amqp_simple_wait_frame_noblock(self.state, &frame, &immediately)
                if status == AMQP_STATUS_TIMEOUT.rawValue {
                    return .nothing
                }
                try self.checkStatus(status, doing: "read a frame")
                return .frame(self.decode(frame))
            }
        }
        let error = Self.error(reply, doing: "consume") ?? AMQPError(code: .protocolError, description: "consume: no reply")
        self.connectionOpen = false
        throw error
    }

    // MARK: Closing

    /// Closes the channel and the connection politely when they are still open (bounded by a short RPC timeout).
    /// The library state itself is destroyed with the object.
    func close() {
        guard self.connectionOpen else {
            return
        }
        var timeout = timeval(.seconds(2))
        _ = amqp_set_rpc_timeout(self.state, &timeout)
        if self.channelOpen {
            self.channelOpen = false
            let reply = amqp_channel_close(self.state, Self.channel, AMQP_REPLY_SUCCESS)
            guard reply.reply_type == AMQP_RESPONSE_NORMAL else {
                self.connectionOpen = false
                return
            }
        }
        self.connectionOpen = false
        _ = amqp_connection_close(self.state, AMQP_REPLY_SUCCESS)
    }

    // MARK: Errors

    private func decode(_ frame: amqp_frame_t) -> AMQPFrame {
        guard frame.frame_type == UInt8(AMQP_FRAME_METHOD), let decoded = frame.payload.method.decoded else {
            return .other
        }
        switch frame.payload.method.id {
        case AMQP_BASIC_ACK_METHOD:
            let ack = decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            return .ack(tag: ack.delivery_tag, multiple: ack.multiple != 0)
        case AMQP_BASIC_NACK_METHOD:
            let nack = decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            return .nack(tag: nack.delivery_tag, multiple: nack.multiple != 0)
        case AMQP_BASIC_RETURN_METHOD:
            // The returned message's header and body frames follow at once; read them so the next frame is a method.
            var message = amqp_message_t()
            let reply = amqp_read_message(self.state, Self.channel, &message, 0)
            guard reply.reply_type == AMQP_RESPONSE_NORMAL else {
                return .returned(headers: [:])
            }
            defer { amqp_destroy_message(&message) }
            return .returned(headers: AMQPProperties(copying: message.properties).headers)
        case AMQP_BASIC_CANCEL_METHOD:
            let cancel = decoded.assumingMemoryBound(to: amqp_basic_cancel_t.self).pointee
            return .consumerCancelled(tag: cancel.consumer_tag.string)
        case AMQP_CHANNEL_CLOSE_METHOD, AMQP_CONNECTION_CLOSE_METHOD:
            let error = self.acknowledgeClose(frame.payload.method, doing: nil)
            return frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ? .channelClosed(error) : .connectionClosed(error)
        default:
            return .other
        }
    }

    /// Answers a channel.close / connection.close from the broker with close-ok and describes it.
    private func acknowledgeClose(_ method: amqp_method_t, doing action: String?) -> AMQPError {
        let prefix = action.map { "\($0): " } ?? ""
        if method.id == AMQP_CHANNEL_CLOSE_METHOD {
            let close = method.decoded!.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            var closeOK = amqp_channel_close_ok_t()
            _ = amqp_send_method(self.state, Self.channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &closeOK)
            self.channelOpen = false
            return AMQPError(
                code: .channelClosed,
                description: "\(prefix)channel closed by the broker: \(close.reply_code) \(close.reply_text.string)")
        }
        let close = method.decoded!.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
        var closeOK = amqp_connection_close_ok_t()
        _ = amqp_send_method(self.state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &closeOK)
        self.channelOpen = false
        self.connectionOpen = false
        return AMQPError(
            code: .connectionClosed,
            description: "\(prefix)connection closed by the broker: \(close.reply_code) \(close.reply_text.string)")
    }

    /// Throws the error of the last RPC, answering a broker-side close first.
    private func checkReply(doing action: String) throws {
        let reply = amqp_get_rpc_reply(self.state)
        guard reply.reply_type != AMQP_RESPONSE_NORMAL else {
            return
        }
        if reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION,
            reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD || reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD,
            reply.reply.decoded != nil
        {
            throw self.acknowledgeClose(reply.reply, doing: action)
        }
        self.connectionOpen = false
        throw Self.error(reply, doing: action) ?? AMQPError(code: .protocolError, description: "\(action): no reply")
    }

    private func checkStatus(_ status: Int32, doing action: String) throws {
        guard status != AMQP_STATUS_OK.rawValue else {
            return
        }
        // Every library-level failure leaves the connection unusable (socket error, heartbeat timeout, bad data).
        self.connectionOpen = false
        throw Self.libraryError(status, doing: action)
    }

    private static func error(_ reply: amqp_rpc_reply_t, doing action: String) -> AMQPError? {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return nil
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            return Self.libraryError(reply.library_error, doing: action)
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            guard let decoded = reply.reply.decoded else {
                return AMQPError(code: .protocolError, description: "\(action): broker exception without details")
            }
            switch reply.reply.id {
            case AMQP_CHANNEL_CLOSE_METHOD:
                let close = decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
                return AMQPError(
                    code: .channelClosed, description: "\(action): channel closed by the broker: \(close.reply_code) \(close.reply_text.string)")
            case AMQP_CONNECTION_CLOSE_METHOD:
                let close = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
                return AMQPError(
                    code: .connectionClosed,
                    description: "\(action): connection closed by the broker: \(close.reply_code) \(close.reply_text.string)")
            default:
                return AMQPError(code: .protocolError, description: "\(action): unexpected method \(reply.reply.id)")
            }
        default:
            return AMQPError(code: .connectionClosed, description: "\(action): the connection ended without a reply")
        }
    }

    private static func libraryError(_ status: Int32, doing action: String) -> AMQPError {
        let code: AMQPError.Code
        switch status {
        case AMQP_STATUS_TIMEOUT.rawValue:
            code = .timeout
        case AMQP_STATUS_CONNECTION_CLOSED.rawValue, AMQP_STATUS_SOCKET_ERROR.rawValue, AMQP_STATUS_SOCKET_CLOSED.rawValue,
            AMQP_STATUS_HEARTBEAT_TIMEOUT.rawValue, AMQP_STATUS_TCP_ERROR.rawValue, AMQP_STATUS_SSL_ERROR.rawValue:
            code = .connectionClosed
        default:
            code = .protocolError
        }
        return AMQPError(code: code, description: "\(action): \(Self.libraryMessage(status))")
    }

    private static func libraryMessage(_ status: Int32) -> String {
        guard let message = amqp_error_string2(status) else {
            return "library error \(status)"
        }
        return String(cString: message)
    }
}

extension timeval {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}
