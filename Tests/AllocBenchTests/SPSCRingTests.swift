// The workloads' single-producer single-consumer ring, on one thread: what each side publishes
// and when (prodcons hands objects over in batches; larson, one at a time).

@testable import AllocBench
import XCTest

final class SPSCRingTests: XCTestCase {
    private func object(_ k: Int) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: 0x1000 * (k + 1))! }

    func test_unbatchedRing_publishesEveryPushAndPop() {
        let ring = SPSCRing()
        defer { ring.deallocate() }
        var p = SPSCRing.Producer(ring)
        var c = SPSCRing.Consumer(ring)
        XCTAssertTrue(p.push(object(0)))
        XCTAssertEqual(ring.tail.pointee, 1)
        XCTAssertEqual(c.pop(), object(0))
        XCTAssertEqual(ring.head.pointee, 1)
        XCTAssertNil(c.pop())
    }

    func test_batchedProducer_publishesOncePerBatch_andOnPublish() {
        let ring = SPSCRing()
        defer { ring.deallocate() }
        var p = SPSCRing.Producer(ring, batch: 4)
        var c = SPSCRing.Consumer(ring, batch: 4)
        for k in 0..<3 { XCTAssertTrue(p.push(object(k))) }
        XCTAssertEqual(ring.tail.pointee, 0, "three of a batch of four stay private")
        XCTAssertNil(c.pop(), "the consumer sees nothing yet")
        XCTAssertTrue(p.push(object(3)))
        XCTAssertEqual(ring.tail.pointee, 4, "the fourth push publishes the batch")
        XCTAssertTrue(p.push(object(4)))
        p.publish()
        XCTAssertEqual(ring.tail.pointee, 5, "publish() makes a partial batch visible")
        for k in 0..<5 { XCTAssertEqual(c.pop(), object(k), "in order") }
    }

    func test_batchedConsumer_publishesOncePerBatch_andWhenItFindsTheRingEmpty() {
        let ring = SPSCRing()
        defer { ring.deallocate() }
        var p = SPSCRing.Producer(ring)
        var c = SPSCRing.Consumer(ring, batch: 4)
        for k in 0..<6 { XCTAssertTrue(p.push(object(k))) }
        for k in 0..<3 { XCTAssertEqual(c.pop(), object(k)) }
        XCTAssertEqual(ring.head.pointee, 0)
        XCTAssertEqual(c.pop(), object(3))
        XCTAssertEqual(ring.head.pointee, 4)
        XCTAssertEqual(c.pop(), object(4))
        XCTAssertEqual(c.pop(), object(5))
        XCTAssertEqual(ring.head.pointee, 4)
        XCTAssertNil(c.pop())
        XCTAssertEqual(ring.head.pointee, 6, "an empty ring: everything taken is given back")
    }

    /// A full ring refuses a push after publishing the producer's partial batch, so that the
    /// consumer can always drain it.
    func test_fullRing_publishesThePartialBatchBeforeRefusing() {
        let ring = SPSCRing()
        defer { ring.deallocate() }
        var p = SPSCRing.Producer(ring, batch: 32)
        var c = SPSCRing.Consumer(ring, batch: 32)
        let n = SPSCRing.capacity
        for k in 0..<5 { XCTAssertTrue(p.push(object(k))) }
        p.publish()
        for k in 0..<5 { XCTAssertEqual(c.pop(), object(k)) }
        XCTAssertNil(c.pop())
        XCTAssertEqual(ring.head.pointee, 5)
        // n more: the ring is full, and the last five (1024..1028) are not a whole batch.
        for k in 5..<(5 + n) { XCTAssertTrue(p.push(object(k))) }
        XCTAssertEqual(ring.tail.pointee, UInt64(n), "published up to the last whole batch")
        XCTAssertFalse(p.push(object(0)), "full")
        XCTAssertEqual(ring.tail.pointee, UInt64(n + 5), "the refusal published the partial batch")
        for k in 5..<(5 + n) { XCTAssertEqual(c.pop(), object(k)) }
        XCTAssertNil(c.pop())
        XCTAssertEqual(ring.head.pointee, UInt64(n + 5))
    }
}
