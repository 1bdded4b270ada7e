// swift-tools-version: 6.1
import PackageDescription

/// Module map: see ../shared/DESIGN.md and the README's "Architecture" section.
/// Unsafe code and C live only in CFuse, CStrataSys, LayerSystem and OverlayFUSE.
let package = Package(
    name: "Strata",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "strata", targets: ["strata"]),
        .library(name: "LayerSystem", targets: ["LayerSystem"]),
        .library(name: "OverlayCore", targets: ["OverlayCore"]),
        .library(name: "LayerDiff", targets: ["LayerDiff"]),
        .library(name: "OverlayFUSE", targets: ["OverlayFUSE"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CFuse", path: "CFuse", pkgConfig: "fuse3",
                       providers: [.apt(["libfuse3-dev"])]),
        .target(name: "CStrataSys", linkerSettings: [.linkedLibrary("attr")]),
        .target(name: "LayerSystem", dependencies: ["CStrataSys"]),
        .target(name: "OverlayCore", dependencies: ["LayerSystem"]),
        .target(name: "OverlayFUSE", dependencies: ["CFuse", "CStrataSys", "OverlayCore", "LayerSystem"]),
        .target(name: "LayerDiff", dependencies: ["OverlayCore", "LayerSystem"]),
        .target(name: "StrataCommands", dependencies: [
            "OverlayFUSE", "OverlayCore", "LayerDiff", "LayerSystem",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "strata", dependencies: ["StrataCommands"]),
        .target(name: "StrataTestSupport", dependencies: ["LayerSystem", "OverlayCore"]),
        .testTarget(name: "OverlayCoreTests", dependencies: ["OverlayCore", "LayerSystem", "StrataTestSupport"]),
        .testTarget(name: "StrataMountTests", dependencies: ["StrataTestSupport", "LayerSystem", "OverlayCore"]),
        .testTarget(name: "LayerDiffTests", dependencies: ["LayerDiff", "OverlayCore", "LayerSystem", "StrataTestSupport"]),
        .testTarget(name: "StrataCLITests", dependencies: ["StrataTestSupport", "LayerSystem"]),
    ],
    swiftLanguageModes: [.v6]
)
