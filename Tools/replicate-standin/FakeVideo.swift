/// A small fake MP4 per prediction: a valid ISO-BMFF box layout (`ftyp`, `free`, `mdat`) whose payload is derived
/// from the id alone, so a downloader can check it got the same bytes twice and that they look like a video.
enum FakeVideo {
    static let size = 4096

    static func bytes(for id: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.size)
        func box(_ type: String, _ payload: [UInt8]) {
            let length = UInt32(8 + payload.count)
            out += [UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF)]
            out += Array(type.utf8)
            out += payload
        }
        // major brand isom, minor version 0x200, compatible brands isom iso2 avc1 mp41.
        box("ftyp", Array("isom".utf8) + [0, 0, 2, 0] + Array("isomiso2avc1mp41".utf8))
        box("free", Array("replicate-standin \(id)".utf8))
        let payloadCount = Self.size - out.count - 8
        // FNV-1a of the id seeds an xorshift stream: deterministic, cheap, not all zeros.
        var state: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in id.utf8 {
            state = (state ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
        }
        var payload = [UInt8](repeating: 0, count: payloadCount)
        for index in 0..<payloadCount {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            payload[index] = UInt8(truncatingIfNeeded: state)
        }
        box("mdat", payload)
        return out
    }
}
