// swift-tools-version: 6.1
import PackageDescription

/// Strata's micro-benchmarks (ordo-one/benchmark), a package of its own so that
/// the main package does not depend on the benchmark tooling.
///
///     cd Benchmarks && swift package --disable-sandbox benchmark          # run all
///     make bench / make bench-check                                      # from the top
///
/// Malloc counts come from ordo-one's malloc interposer (Swift 6.3+, no jemalloc
/// needed). Only the `MallocInterposer` trait is enabled: the default
/// `RuntimeInterposer` trait (ARC counters on Swift 6.3/Linux) needs
/// ordo-one/swift-runtime-interposer, which is not among the packages here.
let package = Package(
    name: "StrataBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Strata", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // Stack generators and the LayerSystem syscall metric, shared by the suites.
        .target(
            name: "StrataBenchSupport",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "OverlayCore", package: "Strata"),
                .product(name: "LayerSystem", package: "Strata"),
            ]
        ),
    ]
)

// One executable per suite; the BenchmarkPlugin generates each one's main.
for suite in ["OverlayLookup", "MergedReaddir", "CopyUp"] {
    package.targets.append(
        .executableTarget(
            name: suite,
            dependencies: [
                "StrataBenchSupport",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "OverlayCore", package: "Strata"),
                .product(name: "LayerSystem", package: "Strata"),
            ],
            path: "Benchmarks/\(suite)",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    )
}
