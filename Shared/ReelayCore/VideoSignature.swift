/// Whether a downloaded output starts like a video file: an ISO-BMFF `ftyp` box (MP4, MOV, M4V, 3GP) or the EBML magic
/// of WebM/Matroska. Checked on the first bytes while they stream in, so a web page or a 64 MiB blob is refused before it
/// is kept. Still-image and audio-only brands in an `ftyp` box (HEIF/HEIC, AVIF, JPEG 2000, M4A) are not videos.
public enum VideoSignature {
    /// Bytes needed for a decision: box size (4), "ftyp" (4), major brand (4).
    public static let prefixLength = 12

    public enum Verdict: Sendable, Equatable {
        /// Looks like a video; the container's name.
        case video(String)
        /// Not a video; what it looks like instead, for the refusal.
        case notVideo(String)
        /// Too few bytes yet.
        case needMoreBytes
    }

    private static let ebmlMagic: [UInt8] = [0x1A, 0x45, 0xDF, 0xA3]
    private static let ftyp = Array("ftyp".utf8)
    /// Major brands of `ftyp` files that hold no video track.
    private static let notVideoBrands: Set<String> = [
        "heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1", "avif", "avis", "jp2 ", "jpm ", "jpx ", "crx ",
        "M4A ", "M4B ", "M4P ", "F4A ", "F4B ",
    ]

    /// Classifies the first bytes of a body. `isComplete` says the body ended: then too few bytes are `notVideo`.
    public static func classify(_ prefix: [UInt8], isComplete: Bool) -> Verdict {
        if prefix.count >= 4, Array(prefix[0..<4]) == Self.ebmlMagic {
            return .video("WebM/Matroska")
        }
        if prefix.count >= 8, Array(prefix[4..<8]) == Self.ftyp {
            let size = prefix[0..<4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            // A box is at least its 8-byte header; 1 means a 64-bit size follows (odd for ftyp, but valid ISO-BMFF).
            guard size >= 8 || size == 1 else { return .notVideo("a broken ftyp box") }
            guard prefix.count >= 12 else { return isComplete ? .notVideo("an empty ftyp box") : .needMoreBytes }
            let brand = String(decoding: prefix[8..<12], as: UTF8.self)
            if Self.notVideoBrands.contains(brand) {
                return .notVideo("an image or audio file (brand '\(brand.trimmingCharacters(in: .whitespaces))')")
            }
            return .video("MP4/MOV")
        }
        if prefix.count < 8 && !isComplete {
            // Too early to tell, unless even these bytes already match neither magic.
            let ebmlPossible = Array(prefix.prefix(4)) == Array(Self.ebmlMagic.prefix(min(4, prefix.count)))
            let ftypPossible = prefix.count <= 4 || Array(prefix[4...]) == Array(Self.ftyp.prefix(prefix.count - 4))
            if ebmlPossible || ftypPossible { return .needMoreBytes }
        }
        return .notVideo(Self.describe(prefix))
    }

    /// A short guess of what a non-video body is, for the refusal ("an HTML page", "a PNG image", "an empty body").
    static func describe(_ prefix: [UInt8]) -> String {
        if prefix.isEmpty { return "an empty body" }
        let text = String(decoding: prefix.prefix(12), as: UTF8.self).lowercased()
        let known: [([UInt8], String)] = [
            ([0x89, 0x50, 0x4E, 0x47], "a PNG image"), ([0xFF, 0xD8, 0xFF], "a JPEG image"), (Array("GIF8".utf8), "a GIF image"),
            (Array("%PDF".utf8), "a PDF document"), ([0x50, 0x4B, 0x03, 0x04], "a ZIP archive"), ([0x1F, 0x8B], "a gzip archive"),
            (Array("RIFF".utf8), "a RIFF file (AVI/WAV/WebP), not an MP4 or WebM video"),
        ]
        for (magic, name) in known where prefix.starts(with: magic) {
            return name
        }
        let trimmed = text.drop { $0 == " " || $0 == "\n" || $0 == "\r" || $0 == "\t" || $0 == "\u{FEFF}" }
        if trimmed.hasPrefix("<") { return "an HTML or XML document" }
        if trimmed.hasPrefix("{") || trimmed.hasPrefix("[") { return "a JSON document" }
        return "\(prefix.count < 8 ? "only \(prefix.count) bytes" : "data"), neither an MP4/MOV nor a WebM/Matroska file"
    }
}
