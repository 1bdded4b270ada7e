import Benchmark
import LayerSystem

extension BenchmarkMetric {
    /// System calls made through LayerSystem (`SyscallCounter.shared`) in the
    /// measured part of one iteration; shown per inner iteration, like the
    /// malloc counts, where a suite uses a scaling factor. `close(2)` of a
    /// dropped `Descriptor` is not counted by LayerSystem, so not here either.
    public static var layerSyscalls: BenchmarkMetric { .custom("layerSyscalls") }
}

/// What every suite reports, and the tolerances `thresholds check` applies.
public enum StrataBench {
    /// Wall clock, mallocs (ordo-one's interposer) and LayerSystem syscalls.
    public static var metrics: [BenchmarkMetric] { [.wallClock, .throughput, .mallocCountTotal, .layerSyscalls] }

    /// Only the stable metrics are checked against `Thresholds/` (those files
    /// hold nothing else): syscalls must match exactly, malloc counts within
    /// 1 % at p90 (one-off allocations of the runtime at the first iteration
    /// fall outside p90 anyway).
    public static var thresholds: [BenchmarkMetric: BenchmarkThresholds] {
        [
            .layerSyscalls: BenchmarkThresholds(relative: [:], absolute: [.p90: 0]),
            .mallocCountTotal: BenchmarkThresholds(relative: [.p90: 1.0], absolute: [:]),
        ]
    }

    /// A configuration with the shared metrics and thresholds.
    public static func configuration(
        scalingFactor: BenchmarkScalingFactor = .one,
        maxDuration: Duration = .seconds(1),
        maxIterations: Int = 10_000,
        warmupIterations: Int = 1
    ) -> Benchmark.Configuration {
        Benchmark.Configuration(
            metrics: metrics,
            warmupIterations: warmupIterations,
            scalingFactor: scalingFactor,
            maxDuration: maxDuration,
            maxIterations: maxIterations,
            thresholds: thresholds
        )
    }
}

/// Counts LayerSystem syscalls over a stretch of a benchmark iteration.
public struct SyscallMeter {
    private let start: Int
    public init() { start = SyscallCounter.shared.syscallCount }
    /// Syscalls since `init`.
    public var count: Int { SyscallCounter.shared.syscallCount - start }
    /// Records the count as the iteration's `layerSyscalls` sample.
    public func record(in benchmark: Benchmark) { benchmark.measurement(.layerSyscalls, count) }
}
