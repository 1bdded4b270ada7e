import LayerSystem
@testable import OverlayCore
import StrataTestSupport
import Testing

@Suite("Directory listings under concurrent changes")
struct ListingRaceTests {
    /// A listing is read outside the table lock. One read while a name was
    /// created used to be kept anyway: every later `ls` missed the name and
    /// `rm -rf` failed with ENOTEMPTY (seen once in the soak test under
    /// stress-ng). The interleaving is forced here step by step.
    @Test("a listing read before a change that lands during the read is not kept; one read after is")
    func staleListingIsNotKept() throws {
        let tmp = TemporaryDirectory(prefix: "listrace")
        let lower = tmp.makeDirectory("lower"), upper = tmp.makeDirectory("upper"), work = tmp.makeDirectory("work")
        try Fixture.build([.dir("d", [.file("below", "x")])], at: lower)
        try Fixture.build([.dir("d", [.file("old", "x")])], at: upper)
        let fs = try OverlayFileSystem(stack: LayerStack(lowerPaths: [lower], upperPath: upper, workPath: work))
        let (d, _) = try fs.lookup(parent: OverlayFileSystem.rootID, name: "d")
        let before = try fs.listing(of: d)   // kept
        #expect(Set(before.map(\.name)) == ["old", "below"])

        // A reader takes its stamp and reads; a create lands meanwhile (its
        // dropListing runs after the reader read the directory); the reader
        // then offers what it read.
        let stamp = try #require(fs.table.withLock { t in
            t.dropListing(d)                 // (some earlier change: nothing cached now)
            return t.listingStamp(d)
        })
        let made = try fs.create(parent: d, name: "new", mode: 0o644, flags: 0, caller: Caller(userID: 0, groupID: 0))
        fs.forget(made.node, count: 1)
        let kept = fs.table.withLock { $0.setListing(d, before, stamp: stamp) }
        #expect(kept.map(\.name) == before.map(\.name))   // the reader still gets its own read
        #expect(fs.table.withLock { $0.record(d)?.listing } == nil)
        #expect(Set(try fs.listing(of: d).map(\.name)) == ["old", "new", "below"])

        // Without a change in between, the listing is kept.
        let fresh = try #require(fs.table.withLock { $0.listingStamp(d) })
        let read = try fs.listing(of: d)   // (kept by itself already; offered again, it stays)
        _ = fs.table.withLock { $0.setListing(d, read, stamp: fresh) }
        #expect(fs.table.withLock { $0.record(d)?.listing }.map { Set($0.map(\.name)) } == ["old", "new", "below"])
    }
}
