// swift-tools-version:6.1
// Per-stage micro-benchmarks (ordo-one/benchmark): ns and allocations per line for each stage of the
// hot path. A package of its own so that the main package's `swift test` (CI) never builds it.
//
//   cd Benchmarks && swift package benchmark
import PackageDescription

let package = Package(
    name: "anduin-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "anduin", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "StageBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "AnduinLibrary", package: "anduin"),
            ],
            path: "Benchmarks/StageBenchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
