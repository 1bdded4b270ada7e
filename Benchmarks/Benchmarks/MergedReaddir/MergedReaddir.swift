import Benchmark
import LayerSystem
import OverlayCore
import StrataBenchSupport

/// The merged listing (`OverlayFileSystem.listing(of:)`) of a 10 000-entry
/// directory spread over three layers with 1000 whiteouts (`ReaddirStack`),
/// cold every iteration: `big` is looked up (its name stays cached in the
/// root, its node is new), listed, and forgotten, which drops the node, its
/// cached listing and its three directory descriptors. So each iteration
/// reopens the three layer directories, reads all 13 000 entries and stats
/// the 1000 whiteouts (character devices need an `fstatat` to tell 0/0).
let benchmarks: @Sendable () -> Void = {
    Benchmark(
        "listing-cold-10k-3-layers-1k-whiteouts",
        configuration: StrataBench.configuration(maxDuration: .seconds(2), maxIterations: 1000)
    ) { (benchmark: Benchmark, state: ReaddirState) in
        let meter = SyscallMeter()
        do {
            let node = try state.fs.lookup(parent: OverlayFileSystem.rootID, name: state.name).node
            let entries = try state.fs.listing(of: node)
            state.fs.forget(node, count: 1)
            if entries.count != ReaddirStack.visibleEntries {
                benchmark.error("listing has \(entries.count) entries, not \(ReaddirStack.visibleEntries)")
            }
        } catch {
            benchmark.error("listing: \(error)")
        }
        meter.record(in: benchmark)
    } setup: {
        let state = try ReaddirState()
        // The same sequence once, checking the fixture and that nothing stays cached.
        let node = try state.fs.lookup(parent: OverlayFileSystem.rootID, name: state.name).node
        let count = try state.fs.listing(of: node).count
        state.fs.forget(node, count: 1)
        guard count == ReaddirStack.visibleEntries, state.fs.nodeCount == 1 else {
            throw FixtureError("fixture lists \(count) entries, \(state.fs.nodeCount) nodes left")
        }
        return state
    } teardown: {
        ReaddirState.current?.stack.scratch.remove()
    }
}

final class ReaddirState: @unchecked Sendable {
    nonisolated(unsafe) static var current: ReaddirState?
    let stack: ReaddirStack
    let fs: OverlayFileSystem
    let name: FileName = "big"

    init() throws {
        stack = try ReaddirStack()
        fs = try stack.overlay()
        Self.current = self
    }
}
