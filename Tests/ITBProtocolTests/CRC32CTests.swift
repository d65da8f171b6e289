// CRC-32C (PROTOCOL.md §2.1): the golden values, and the CPU instruction against the table.

import ITBProtocol
import Testing

@Suite("CRC-32C")
struct CRC32CTests {
    @Test("every crc32c vector matches with the hardware, portable and preferred implementations", arguments: Vectors.crc32c)
    func goldenVector(_ vector: CRCVector) {
        vector.input.withUnsafeBytes { raw in
            #expect(CRC32C.checksum(raw, using: .hardware) == vector.crc)
            #expect(CRC32C.checksum(raw, using: .portable) == vector.crc)
            #expect(CRC32C.checksum(raw) == vector.crc)
        }
        #expect(CRC32C.checksum(vector.input[...]) == vector.crc)
    }

    @Test("the check value of ASCII 123456789 is 0xE3069283 and the CRC of nothing is 0")
    func checkValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8]()) == 0)
        #expect(Vectors.crc32c.contains { $0.input == Array("123456789".utf8) && $0.crc == 0xE306_9283 })
    }

    @Test("the preferred implementation is the hardware one exactly when the CPU has the instruction")
    func preferredImplementation() {
        #expect(CRC32C.preferred == (CRC32C.hardwareAvailable ? .hardware : .portable))
    }

    @Test("hardware and portable agree on seeded random buffers of every length 0...2100 at every alignment 0...7")
    func hardwareMatchesPortable() {
        var rng = SplitMix64(seed: 0xC4C3_2C00_0000_0001)
        var mismatches: [(length: Int, alignment: Int)] = []
        for length in 0...2100 {
            let alignment = length % 8
            let storage = rng.bytes(length + alignment)
            storage.withUnsafeBytes { all in
                let buffer = UnsafeRawBufferPointer(rebasing: all[alignment...])
                let hardware = CRC32C.checksum(buffer, using: .hardware)
                let portable = CRC32C.checksum(buffer, using: .portable)
                if hardware != portable || CRC32C.checksum(buffer) != portable {
                    mismatches.append((length, alignment))
                }
            }
        }
        #expect(mismatches.isEmpty, "hardware (available: \(CRC32C.hardwareAvailable)) and portable differ at \(mismatches.prefix(10))")
    }

    @Test("hardware and portable agree on seeded random buffers at every start offset of a 1044-byte frame")
    func everyOffsetOfAFrameSizedBuffer() {
        var rng = SplitMix64(seed: 0xC4C3_2C00_0000_0002)
        let storage = rng.bytes(FrameLayout.maximumFrameSize + 16)
        storage.withUnsafeBytes { all in
            for start in 0..<16 {
                for end in stride(from: start, through: all.count, by: 37) {
                    let buffer = UnsafeRawBufferPointer(rebasing: all[start..<end])
                    #expect(CRC32C.checksum(buffer, using: .hardware) == CRC32C.checksum(buffer, using: .portable))
                }
            }
        }
    }
}

@Suite("Decoder CRC implementations agree")
struct DecoderCRCImplementationTests {
    @Test("the decoder delivers and counts identically with the hardware and the portable CRC-32C")
    func hardwareAndPortableDecodeAlike() throws {
        var stream: [UInt8] = []
        for vector in Vectors.allStreams { stream += vector.bytes }
        var hardware = FrameDecoder(crc: .hardware)
        var portable = FrameDecoder(crc: .portable)
        var fromHardware: [[UInt8]] = []
        var fromPortable: [[UInt8]] = []
        stream.withUnsafeBytes { raw in
            hardware.feed(raw) { fromHardware.append(Array($0.bytes)) }
            portable.feed(raw) { fromPortable.append(Array($0.bytes)) }
        }
        #expect(!fromHardware.isEmpty)
        #expect(fromHardware == fromPortable)
        #expect(hardware.counters == portable.counters)
    }
}
