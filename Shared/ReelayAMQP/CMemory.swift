import ReelayCRabbitMQ

/// C copies of Swift values lent to librabbitmq, freed together when the arena goes away.
///
/// Why: `amqp_cstring_bytes(swiftString)` compiles but dangles, and nesting `withUTF8` scopes for every field of a
/// properties struct or argument table is unreadable. An arena lives exactly as long as the library call that uses it.
final class CArena {
    private var allocations: [UnsafeMutableRawPointer] = []

    init() {}

    deinit {
        for pointer in self.allocations {
            pointer.deallocate()
        }
    }

    /// A NUL-terminated copy of `string`.
    func cString(_ string: String) -> UnsafePointer<CChar> {
        let bytes = self.copy(string)
        return UnsafePointer(bytes.bytes.assumingMemoryBound(to: CChar.self))
    }

    /// An `amqp_bytes_t` over a NUL-terminated copy of `string`.
    func bytes(_ string: String) -> amqp_bytes_t {
        self.copy(string)
    }

    /// A field table of queue / consumer arguments.
    func table(_ arguments: [String: AMQPArgument]) -> amqp_table_t {
        self.table(
            entries: arguments.sorted { $0.key < $1.key }.map { key, argument in
                var value = amqp_field_value_t()
                switch argument {
                case .string(let text):
                    value.kind = UInt8(AMQP_FIELD_KIND_UTF8.rawValue)
                    value.value.bytes = self.bytes(text)
                case .int(let number):
                    // Signed 64-bit ('l'): RabbitMQ rejects or converts unsigned integers ('L').
                    value.kind = UInt8(AMQP_FIELD_KIND_I64.rawValue)
                    value.value.i64 = number
                case .bool(let flag):
                    value.kind = UInt8(AMQP_FIELD_KIND_BOOLEAN.rawValue)
                    value.value.boolean = flag ? 1 : 0
                }
                return (key, value)
            })
    }

    /// A field table of string headers.
    func table(strings: [String: String]) -> amqp_table_t {
        self.table(strings.mapValues { AMQPArgument.string($0) })
    }

    /// A field table from ready-made values (may nest tables built by this arena).
    func table(entries: [(String, amqp_field_value_t)]) -> amqp_table_t {
        guard !entries.isEmpty else {
            return amqp_table_t(num_entries: 0, entries: nil)
        }
        let pointer = UnsafeMutablePointer<amqp_table_entry_t>.allocate(capacity: entries.count)
        self.allocations.append(UnsafeMutableRawPointer(pointer))
        for (index, (key, value)) in entries.enumerated() {
            (pointer + index).initialize(to: amqp_table_entry_t(key: self.bytes(key), value: value))
        }
        return amqp_table_t(num_entries: Int32(entries.count), entries: pointer)
    }

    /// Basic properties for a publish.
    func basicProperties(_ properties: AMQPProperties) -> amqp_basic_properties_t {
        var result = amqp_basic_properties_t()
        var flags = amqp_flags_t(AMQP_BASIC_DELIVERY_MODE_FLAG)
        result.delivery_mode = properties.persistent ? 2 : 1
        if let contentType = properties.contentType {
            result.content_type = self.bytes(contentType)
            flags |= amqp_flags_t(AMQP_BASIC_CONTENT_TYPE_FLAG)
        }
        if let correlationID = properties.correlationID {
            result.correlation_id = self.bytes(correlationID)
            flags |= amqp_flags_t(AMQP_BASIC_CORRELATION_ID_FLAG)
        }
        if let replyTo = properties.replyTo {
            result.reply_to = self.bytes(replyTo)
            flags |= amqp_flags_t(AMQP_BASIC_REPLY_TO_FLAG)
        }
        if let messageID = properties.messageID {
            result.message_id = self.bytes(messageID)
            flags |= amqp_flags_t(AMQP_BASIC_MESSAGE_ID_FLAG)
        }
        if let expiration = properties.expiration {
            result.expiration = self.bytes(expiration)
            flags |= amqp_flags_t(AMQP_BASIC_EXPIRATION_FLAG)
        }
        if !properties.headers.isEmpty {
            result.headers = self.table(strings: properties.headers)
            flags |= amqp_flags_t(AMQP_BASIC_HEADERS_FLAG)
        }
        result._flags = flags
        return result
    }

    private func copy(_ string: String) -> amqp_bytes_t {
        let utf8 = Array(string.utf8)
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: utf8.count + 1, alignment: 1)
        self.allocations.append(pointer)
        utf8.withUnsafeBytes { source in
            if let base = source.baseAddress {
                pointer.copyMemory(from: base, byteCount: source.count)
            }
        }
        pointer.storeBytes(of: 0, toByteOffset: utf8.count, as: UInt8.self)
        return amqp_bytes_t(len: utf8.count, bytes: pointer)
    }
}

// Copies out of library memory: everything the library returns is invalid after its next call.
extension amqp_bytes_t {
    /// A Swift copy of the bytes.
    var array: [UInt8] {
        guard self.len > 0, let bytes = self.bytes else {
            return []
        }
        return Array(UnsafeRawBufferPointer(start: bytes, count: self.len))
    }

    /// A Swift copy of the bytes as text (invalid UTF-8 is repaired).
    var string: String {
        guard self.len > 0, let bytes = self.bytes else {
            return ""
        }
        return String(decoding: UnsafeRawBufferPointer(start: bytes, count: self.len), as: UTF8.self)
    }
}

extension AMQPProperties {
    /// Copies received properties out of library memory.
    init(copying properties: amqp_basic_properties_t) {
        let flags = properties._flags
        func has(_ flag: Int32) -> Bool {
            flags & amqp_flags_t(flag) != 0
        }
        self.init(
            contentType: has(AMQP_BASIC_CONTENT_TYPE_FLAG) ? properties.content_type.string : nil,
            correlationID: has(AMQP_BASIC_CORRELATION_ID_FLAG) ? properties.correlation_id.string : nil,
            replyTo: has(AMQP_BASIC_REPLY_TO_FLAG) ? properties.reply_to.string : nil,
            messageID: has(AMQP_BASIC_MESSAGE_ID_FLAG) ? properties.message_id.string : nil,
            persistent: has(AMQP_BASIC_DELIVERY_MODE_FLAG) && properties.delivery_mode == 2,
            headers: has(AMQP_BASIC_HEADERS_FLAG) ? Self.headers(copying: properties.headers) : [:],
            expiration: has(AMQP_BASIC_EXPIRATION_FLAG) ? properties.expiration.string : nil
        )
    }

    private static func headers(copying table: amqp_table_t) -> [String: String] {
        guard table.num_entries > 0, let entries = table.entries else {
            return [:]
        }
        var headers: [String: String] = [:]
        for index in 0..<Int(table.num_entries) {
            let entry = entries[index]
            if let text = Self.text(of: entry.value) {
                headers[entry.key.string] = text
            }
        }
        return headers
    }

    /// Scalars as text; nested tables and arrays (e.g. `x-death`) are left out.
    private static func text(of value: amqp_field_value_t) -> String? {
        switch Int32(value.kind) {
        case Int32(AMQP_FIELD_KIND_UTF8.rawValue), Int32(AMQP_FIELD_KIND_BYTES.rawValue): value.value.bytes.string
        case Int32(AMQP_FIELD_KIND_BOOLEAN.rawValue): value.value.boolean != 0 ? "true" : "false"
        case Int32(AMQP_FIELD_KIND_I8.rawValue): String(value.value.i8)
        case Int32(AMQP_FIELD_KIND_U8.rawValue): String(value.value.u8)
        case Int32(AMQP_FIELD_KIND_I16.rawValue): String(value.value.i16)
        case Int32(AMQP_FIELD_KIND_U16.rawValue): String(value.value.u16)
        case Int32(AMQP_FIELD_KIND_I32.rawValue): String(value.value.i32)
        case Int32(AMQP_FIELD_KIND_U32.rawValue): String(value.value.u32)
        case Int32(AMQP_FIELD_KIND_I64.rawValue): String(value.value.i64)
        case Int32(AMQP_FIELD_KIND_U64.rawValue), Int32(AMQP_FIELD_KIND_TIMESTAMP.rawValue): String(value.value.u64)
        case Int32(AMQP_FIELD_KIND_F32.rawValue): String(value.value.f32)
        case Int32(AMQP_FIELD_KIND_F64.rawValue): String(value.value.f64)
        default: nil
        }
    }
}
