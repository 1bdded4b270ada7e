import Benchmark
import Glibc
import LayerSystem
import OverlayCore
import StrataBenchSupport

/// Per-name lookups through 1, 8 and 64 read-only layers, in process
/// (`OverlayFileSystem.lookup`, no FUSE). Each benchmark process generates its
/// stack once (`LookupStack`, fixed contents) in a temporary directory and
/// removes it at teardown. Names carry no spaces or slashes: ordo-one's
/// threshold files are named after them.
///
/// `hit` and `miss-*` do 1000 lookups per sample (scaling factor `.kilo`); the
/// table's `*` rows are per lookup.
///
/// - `hit`: `warm/target` again and again, after one lookup filled the cache
///   (the 1000 references are dropped with one `forget` per sample).
/// - `miss-cached`: `warm/absent` again and again (a cached negative entry).
/// - `miss-uncached`: 1000 different absent names in `cold/`, whose negative
///   cache was filled to its per-directory bound first, so none is cached:
///   each is answered from the directory's lower index (read at the second
///   probing lookup), with no syscall in any layer (before the index: 2 per layer).
/// - `deep-path`: `resolve(path:)` of `deep/d1/…/d8/leaf` (10 components),
///   then `forget` of all ten nodes, which drops their caches: the first
///   component comes from the root's cache, the nine below are resolved cold.
let benchmarks: @Sendable () -> Void = {
    for layers in [1, 8, 64] {
        // Zero-padded so that the suites list in layer order.
        let suffix = "layers-" + (layers < 10 ? "0\(layers)" : "\(layers)")
        Benchmark(
            "hit-\(suffix)",
            configuration: StrataBench.configuration(scalingFactor: .kilo)
        ) { (benchmark: Benchmark, state: LookupState) in
            let meter = SyscallMeter()
            for _ in benchmark.scaledIterations {
                blackHole(try state.fs.lookup(parent: state.directory, name: state.name))
            }
            meter.record(in: benchmark)
            state.fs.forget(state.node, count: UInt64(benchmark.scaledIterations.count))
        } setup: {
            let state = try LookupState(layers: layers, directory: "warm", name: "target")
            state.node = try state.fs.lookup(parent: state.directory, name: state.name).node
            return state
        } teardown: {
            LookupState.current?.stack.scratch.remove()
        }

        Benchmark(
            "miss-cached-\(suffix)",
            configuration: StrataBench.configuration(scalingFactor: .kilo)
        ) { (benchmark: Benchmark, state: LookupState) in
            let meter = SyscallMeter()
            for _ in benchmark.scaledIterations {
                do throws(OverlayError) {
                    blackHole(try state.fs.lookup(parent: state.directory, name: state.name))
                    benchmark.error("\(state.name) was found")
                } catch {
                    blackHole(error)
                }
            }
            meter.record(in: benchmark)
        } setup: {
            let state = try LookupState(layers: layers, directory: "warm", name: "absent")
            _ = try? state.fs.lookup(parent: state.directory, name: state.name)
            return state
        } teardown: {
            LookupState.current?.stack.scratch.remove()
        }

        Benchmark(
            "miss-uncached-\(suffix)",
            configuration: StrataBench.configuration(scalingFactor: .kilo, maxDuration: .seconds(3))
        ) { (benchmark: Benchmark, state: LookupState) in
            let meter = SyscallMeter()
            for i in benchmark.scaledIterations {
                do throws(OverlayError) {
                    blackHole(try state.fs.lookup(parent: state.directory, name: state.absentNames[i]))
                    benchmark.error("\(state.absentNames[i]) was found")
                } catch {
                    blackHole(error)
                }
            }
            meter.record(in: benchmark)
        } setup: {
            let state = try LookupState(layers: layers, directory: "cold", name: "unused")
            state.absentNames = (0..<1000).map { FileName("absent-\($0)") }
            // Fill the directory's negative cache (bounded per directory; 1024
            // now) with other names, so the measured names are never cached.
            for i in 0..<4096 { _ = try? state.fs.lookup(parent: state.directory, name: FileName("filler-\(i)")) }
            return state
        } teardown: {
            LookupState.current?.stack.scratch.remove()
        }

        Benchmark(
            "deep-path-\(suffix)",
            configuration: StrataBench.configuration(maxIterations: 5000)
        ) { (benchmark: Benchmark, state: LookupState) in
            let meter = SyscallMeter()
            do {
                var node = try state.fs.resolve(path: LookupStack.deepPath).node
                // One reference per component; the leaf goes first, then each parent.
                for _ in LookupStack.deepPath {
                    let parent = try state.fs.parent(of: node)
                    state.fs.forget(node, count: 1)
                    node = parent
                }
            } catch {
                benchmark.error("deep path: \(error)")
            }
            meter.record(in: benchmark)
        } setup: {
            let state = try LookupState(layers: layers, directory: nil, name: "unused")
            let node = try state.fs.resolve(path: LookupStack.deepPath).node
            guard try state.fs.attributes(of: node).kind == .regular else { throw FixtureError("deep leaf is not a file") }
            var current = node
            for _ in LookupStack.deepPath {
                let parent = try state.fs.parent(of: current)
                state.fs.forget(current, count: 1)
                current = parent
            }
            guard state.fs.nodeCount == 1 else { throw FixtureError("nodes left after forget: \(state.fs.nodeCount)") }
            return state
        } teardown: {
            LookupState.current?.stack.scratch.remove()
        }
    }
}

/// One benchmark's stack and overlay (one benchmark runs per process).
final class LookupState: @unchecked Sendable {
    nonisolated(unsafe) static var current: LookupState?

    let stack: LookupStack
    let fs: OverlayFileSystem
    /// The directory node looked up in (the root when `nil` was given).
    let directory: UInt64
    let name: FileName
    var node: UInt64 = 0
    var absentNames: [FileName] = []

    init(layers: Int, directory: String?, name: FileName) throws {
        stack = try LookupStack(layers: layers)
        let fs = try stack.overlay()
        self.fs = fs
        self.directory = try directory.map { try fs.lookup(parent: OverlayFileSystem.rootID, name: FileName($0)).node }
            ?? OverlayFileSystem.rootID
        self.name = name
        Self.current = self
    }
}
