import ReelayCore
import Testing

@Suite("Video signature")
struct VideoSignatureTests {
    static func ftyp(_ brand: String, size: UInt32 = 24) -> [UInt8] {
        [UInt8(size >> 24), UInt8((size >> 16) & 0xFF), UInt8((size >> 8) & 0xFF), UInt8(size & 0xFF)] + Array("ftyp\(brand)".utf8)
            + [0, 0, 2, 0] + Array("isomiso2".utf8)
    }

    @Test(arguments: ["isom", "mp41", "mp42", "avc1", "qt  ", "M4V ", "3gp5", "dash", "iso6"])
    func mp4AndMovAreVideos(brand: String) {
        #expect(VideoSignature.classify(Self.ftyp(brand), isComplete: false) == .video("MP4/MOV"))
        #expect(VideoSignature.classify(Self.ftyp(brand), isComplete: true) == .video("MP4/MOV"))
    }

    @Test func webmAndMatroskaAreVideos() {
        let webm: [UInt8] = [0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x86, 0x81, 0x01, 0x42, 0xF7, 0x81]
        #expect(VideoSignature.classify(webm, isComplete: false) == .video("WebM/Matroska"))
        #expect(VideoSignature.classify(Array(webm.prefix(4)), isComplete: true) == .video("WebM/Matroska"))
    }

    /// Invariant: a body is never called a video before enough bytes arrived to tell, and never after it ended too short.
    @Test func waitsForEnoughBytes() {
        let mp4 = Self.ftyp("isom")
        for count in 0..<12 {
            #expect(VideoSignature.classify(Array(mp4.prefix(count)), isComplete: false) == .needMoreBytes, "\(count) bytes")
            if case .video = VideoSignature.classify(Array(mp4.prefix(count)), isComplete: true) {
                Issue.record("\(count) bytes of a complete body were taken for a video")
            }
        }
        #expect(VideoSignature.classify([0x1A, 0x45], isComplete: false) == .needMoreBytes)
        #expect(VideoSignature.classify([], isComplete: true) == .notVideo("an empty body"))
    }

    @Test func decidesEarlyWhenNeitherMagicCanMatch() {
        // "<htm" could still be a box size; "<html" cannot be followed by "ftyp".
        #expect(VideoSignature.classify(Array("<htm".utf8), isComplete: false) == .needMoreBytes)
        if case .notVideo = VideoSignature.classify(Array("<html".utf8), isComplete: false) {} else {
            Issue.record("five bytes of HTML should already be refused")
        }
    }

    @Test(arguments: [
        ("<!DOCTYPE html><html>", "HTML"), ("  <?xml version=\"1.0\"?>", "HTML or XML"), ("{\"secret\": \"value\"}", "JSON"),
        ("[1, 2, 3, 4, 5, 6]", "JSON"), ("root:x:0:0:root:/root:/bin/bash", "neither an MP4/MOV nor a WebM/Matroska"),
        ("%PDF-1.7 blah", "PDF"), ("RIFF....AVI LIST", "RIFF"), ("GIF89a.......", "GIF"),
    ])
    func otherFilesAreNotVideos(text: String, words: String) {
        guard case .notVideo(let what) = VideoSignature.classify(Array(text.utf8), isComplete: true) else {
            Issue.record("\(text) was taken for a video")
            return
        }
        #expect(what.contains(words), "\(what)")
    }

    @Test func binaryNonVideos() {
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13]
        #expect(VideoSignature.classify(png, isComplete: false) == .notVideo("a PNG image"))
        let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0, 0, 16, 0x4A, 0x46, 0x49, 0x46, 0, 1]
        #expect(VideoSignature.classify(jpeg, isComplete: false) == .notVideo("a JPEG image"))
        let zeros = [UInt8](repeating: 0, count: 64)
        if case .video = VideoSignature.classify(zeros, isComplete: false) { Issue.record("zeros taken for a video") }
    }

    /// An `ftyp` box alone does not make a video: still images and audio use it too.
    @Test(arguments: ["heic", "mif1", "avif", "M4A ", "jp2 "])
    func imageAndAudioBrandsAreNotVideos(brand: String) {
        guard case .notVideo(let what) = VideoSignature.classify(Self.ftyp(brand), isComplete: false) else {
            Issue.record("\(brand) was taken for a video")
            return
        }
        #expect(what.contains("image or audio"))
    }

    @Test func brokenBoxSizes() {
        #expect(VideoSignature.classify(Self.ftyp("isom", size: 4), isComplete: false) == .notVideo("a broken ftyp box"))
        #expect(VideoSignature.classify(Self.ftyp("isom", size: 1), isComplete: false) == .video("MP4/MOV"))
    }
}
