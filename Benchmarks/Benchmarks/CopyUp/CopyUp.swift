import Benchmark
import LayerSystem
import OverlayCore
import StrataBenchSupport

/// Copy-up (`OverlayFileSystem.copyUp`) of a 4 KiB and a 64 MiB lower file.
/// Every iteration gets a new, empty upper and work directory, an overlay over
/// them and a lookup of the file; only `copyUp` itself is measured
/// (`startMeasurement`/`stopMeasurement`), and removing the copy afterwards is
/// not either. Data moves by FICLONE where the filesystem shares extents, else
/// by `copy_file_range`.
///
/// Default options sync the copy (`fdatasync` before the rename, as kernel
/// overlayfs); the `-volatile` variants are `-o fsync=0`/`volatile`, which
/// shows how much of the time is the disk flush.
let benchmarks: @Sendable () -> Void = {
    let cases: [(name: String, file: FileName, synchronous: Bool, iterations: Int, duration: Duration)] = [
        ("copyup-4KiB", "small", true, 2000, .seconds(2)),
        ("copyup-4KiB-volatile", "small", false, 2000, .seconds(2)),
        ("copyup-64MiB", "large", true, 20, .seconds(5)),
        ("copyup-64MiB-volatile", "large", false, 20, .seconds(5)),
    ]
    for c in cases {
        Benchmark(
            c.name,
            configuration: StrataBench.configuration(maxDuration: c.duration, maxIterations: c.iterations)
        ) { (benchmark: Benchmark, source: CopyUpSource) in
            CopyUpState.run += 1
            do {
                let (fs, directory) = try source.freshOverlay(run: CopyUpState.run, synchronous: c.synchronous)
                defer { source.discard(directory) }
                let node = try fs.lookup(parent: OverlayFileSystem.rootID, name: c.file).node
                benchmark.startMeasurement()
                let meter = SyscallMeter()
                try fs.copyUp(node)
                meter.record(in: benchmark)
                benchmark.stopMeasurement()
                guard try fs.resolution(of: node).topLayer == 0 else {
                    benchmark.error("\(c.file) was not copied up")
                    return
                }
            } catch {
                benchmark.error("copy-up of \(c.file): \(error)")
            }
        } setup: {
            let source = try CopyUpSource()
            CopyUpState.source = source
            return source
        } teardown: {
            CopyUpState.source?.scratch.remove()
        }
    }
}

enum CopyUpState {
    nonisolated(unsafe) static var source: CopyUpSource?
    nonisolated(unsafe) static var run = 0
}
