import NIOCore
import Testing

@testable import CofferBench

/// The per-key model: bodies regenerate exactly, wrong bytes are invalid, a 404 after an acknowledged write is lost,
/// and writes whose answer never came leave both outcomes possible.
@Suite struct IntegrityModelTests {
    let sizes = SizeRange(0, 300_000)

    /// A GET of `key` answered 200 with `body`, streamed in chunks of `chunk` bytes.
    func get(_ model: inout IntegrityModel, _ key: Int, body: ByteBuffer, chunk: Int = 4096) -> IntegrityVerdict {
        var matcher = model.matcher(key)
        var rest = body
        while rest.readableBytes > 0 {
            matcher.feed(rest.readSlice(length: min(chunk, rest.readableBytes))!)
        }
        return model.read(key, status: 200, body: matcher)
    }

    @Test func bodiesAreDeterministicAndDistinct() {
        let sizes = SizeRange(1, 3 << 20)
        let a = BodyPattern(key: 7, version: 1, sizes: sizes)
        #expect(a == BodyPattern(key: 7, version: 1, sizes: sizes))
        #expect(a.size >= 1 && a.size <= 3 << 20)
        let bytes = a.makeBuffer(allocator: ByteBufferAllocator())
        #expect(bytes.readableBytes == a.size)
        #expect(bytes == BodyPattern(key: 7, version: 1, sizes: sizes).makeBuffer(allocator: ByteBufferAllocator()))
        // Another version or key differs even at the same size.
        let b = BodyPattern(key: 7, version: 2, size: a.size, seed: 99)
        let c = BodyPattern(key: 8, version: 1, size: a.size, seed: 99)
        #expect(b.makeBuffer(allocator: ByteBufferAllocator()) != c.makeBuffer(allocator: ByteBufferAllocator()))
        // A body over 1 MiB (wrapping the pool) matches itself in odd-sized chunks.
        var matcher = BodyMatcher(candidates: [BodyPattern(key: 1, version: 1, size: 2_500_000, seed: 12345)])
        var big = BodyPattern(key: 1, version: 1, size: 2_500_000, seed: 12345).makeBuffer(
            allocator: ByteBufferAllocator())
        while big.readableBytes > 0 { matcher.feed(big.readSlice(length: min(77_777, big.readableBytes))!) }
        #expect(matcher.matched.count == 1)
        // Sent in parts: the parts make up the whole body.
        let pattern = BodyPattern(key: 9, version: 4, size: 1_300_000, seed: 777)
        var parts = ByteBuffer()
        for start in stride(from: 0, to: pattern.size, by: 250_001) {
            var part = pattern.makeBuffer(
                allocator: ByteBufferAllocator(), range: start..<min(pattern.size, start + 250_001))
            parts.writeBuffer(&part)
        }
        #expect(parts == pattern.makeBuffer(allocator: ByteBufferAllocator()))
        #expect(pattern.makeBuffer(allocator: ByteBufferAllocator(), range: 3..<10).readableBytes == 7)
    }

    @Test func neverWrittenKeyReadsAsAbsent() {
        var model = IntegrityModel(globalKeys: [0, 5], sizes: sizes)
        #expect(model.read(0, status: 404, body: nil) == .ok)
        #expect(model.delete(1, status: 404) == .ok)
    }

    @Test func acknowledgedWriteReadsBack() {
        var model = IntegrityModel(globalKeys: [3], sizes: sizes)
        let written = model.newVersion(0)
        #expect(model.write(0, written, create: false, status: 201) == .ok)
        #expect(get(&model, 0, body: written.makeBuffer()) == .ok)
        #expect(get(&model, 0, body: written.makeBuffer(), chunk: 1) == .ok)
        let replaced = model.newVersion(0)
        #expect(model.write(0, replaced, create: false, status: 204) == .ok)
        // The old version is no longer acceptable: the server lost the replacement.
        #expect(get(&model, 0, body: written.makeBuffer()) == .invalid)
        #expect(get(&model, 0, body: replaced.makeBuffer()) == .ok)
    }

    @Test func wrongBytesAreInvalid() {
        var model = IntegrityModel(globalKeys: [3], sizes: SizeRange(1024, 1024))
        let written = model.newVersion(0)
        #expect(model.write(0, written, create: false, status: 201) == .ok)
        for position in [0, 15, 16, 500, 1023] {
            var body = written.makeBuffer()
            body.setInteger(body.getInteger(at: position, as: UInt8.self)! ^ 0x01, at: position)
            #expect(get(&model, 0, body: body) == .invalid, "flipped byte \(position)")
        }
        var short = written.makeBuffer()
        short.moveWriterIndex(to: 1000)
        #expect(get(&model, 0, body: short) == .invalid)
        var long = written.makeBuffer()
        long.writeInteger(UInt8(0))
        #expect(get(&model, 0, body: long) == .invalid)
        // Data for a key that was never written (or was deleted) is invalid too.
        var empty = IntegrityModel(globalKeys: [4], sizes: SizeRange(1024, 1024))
        #expect(get(&empty, 0, body: written.makeBuffer()) == .invalid)
        #expect(empty.read(0, status: 200, body: nil) == .invalid)
    }

    @Test func notFoundAfterAcknowledgedWriteIsLost() {
        var model = IntegrityModel(globalKeys: [3], sizes: sizes)
        #expect(model.write(0, model.newVersion(0), create: false, status: 201) == .ok)
        #expect(model.read(0, status: 404, body: nil) == .lost)
        // Counted once: the key is now expected absent.
        #expect(model.read(0, status: 404, body: nil) == .ok)

        #expect(model.write(0, model.newVersion(0), create: false, status: 200) == .ok)
        #expect(model.delete(0, status: 404) == .lost)
    }

    @Test func notFoundAfterAcknowledgedDeleteIsCorrect() {
        var model = IntegrityModel(globalKeys: [3], sizes: sizes)
        let written = model.newVersion(0)
        #expect(model.write(0, written, create: false, status: 201) == .ok)
        #expect(model.delete(0, status: 204) == .ok)
        #expect(model.read(0, status: 404, body: nil) == .ok)
        // The deleted version coming back is invalid.
        #expect(get(&model, 0, body: written.makeBuffer()) == .invalid)
    }

    @Test func inDoubtWriteAllowsBothOutcomes() {
        for readsNew in [false, true] {
            var model = IntegrityModel(globalKeys: [3], sizes: sizes)
            let old = model.newVersion(0)
            #expect(model.write(0, old, create: false, status: 201) == .ok)
            let new = model.newVersion(0)
            // No answer (connection dropped), or a 5xx: either version may be stored.
            #expect(model.write(0, new, create: false, status: readsNew ? nil : 503) == .ok)
            #expect(model.possibleVersions(0) == [old.version, new.version])
            #expect(get(&model, 0, body: (readsNew ? new : old).makeBuffer()) == .ok)
            // The read settles it: the other version is now wrong.
            #expect(get(&model, 0, body: (readsNew ? old : new).makeBuffer()) == .invalid)
        }
        // A delete in doubt: absent or the old version.
        var model = IntegrityModel(globalKeys: [3], sizes: sizes)
        let written = model.newVersion(0)
        #expect(model.write(0, written, create: false, status: 201) == .ok)
        #expect(model.delete(0, status: nil) == .ok)
        #expect(model.read(0, status: 404, body: nil) == .ok)
        // A 5xx GET says nothing.
        #expect(model.read(0, status: 500, body: nil) == .ok)
    }

    @Test func createConflicts() {
        var model = IntegrityModel(globalKeys: [3], sizes: sizes)
        // 409 on a key known absent: the server claims data nobody wrote.
        #expect(model.write(0, model.newVersion(0), create: true, status: 409) == .invalid)
        let created = model.newVersion(0)
        #expect(model.write(0, created, create: true, status: 201) == .ok)
        #expect(model.write(0, model.newVersion(0), create: true, status: 409) == .ok)
        #expect(get(&model, 0, body: created.makeBuffer()) == .ok)
        // A create that succeeds over an acknowledged write: that write was lost.
        #expect(model.write(0, model.newVersion(0), create: true, status: 201) == .lost)
    }
}
