// swift-tools-version:6.1
import PackageDescription

// Every plugin is one target under plugins/<name>, depending on AnduinCore only (and `Multiline`,
// the line-joining rules the tail input and the multiline filter share).
// Adding one: a folder, a line in `plugins` below, and a line in Sources/anduin/Plugins.swift.
let plugins = ["in_tail", "filter_parse", "filter_kubernetes", "out_file", "out_stdout", "out_blackhole", "out_http", "out_es"]
    + ["filter_multiline", "filter_grep", "filter_modify", "filter_throttle"]

let swift6: [SwiftSetting] = [.swiftLanguageMode(.v6)]

var targets: [Target] = [
    .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
                   providers: [.apt(["zlib1g-dev"])]),
    // libdeflate: whole-buffer gzip for request bodies (faster than zlib at a smaller output); zlib
    // stays for streaming decompression.
    .systemLibrary(name: "CDeflate", path: "Sources/CDeflate", pkgConfig: "libdeflate",
                   providers: [.apt(["libdeflate-dev"])]),
    .systemLibrary(name: "CLZ4", path: "Sources/CLZ4", pkgConfig: "liblz4",
                   providers: [.apt(["liblz4-dev"])]),
    // PCRE2 (JIT): the parse filter's `regex:` and built-in formats; 89x faster than glibc's regexec
    // with captures on an nginx corpus.
    .systemLibrary(name: "CPCRE2", path: "Sources/CPCRE2", pkgConfig: "libpcre2-8",
                   providers: [.apt(["libpcre2-dev"])]),
    // libyaml: the config file's parser (events; Sources/AnduinCore/Config/YAMLLoader.swift builds the tree).
    .systemLibrary(name: "CYAML", path: "Sources/CYAML", pkgConfig: "yaml-0.1",
                   providers: [.apt(["libyaml-dev"])]),
    .systemLibrary(name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl",
                   providers: [.apt(["libcurl4-openssl-dev"])]),
    // Small C helpers where Swift has no access to a CPU instruction (CRC32C).
    .target(name: "CSupport", path: "Sources/CSupport"),
    .target(
        name: "AnduinCore",
        dependencies: [
            "CZlib", "CDeflate", "CLZ4", "CCurl", "CPCRE2", "CSupport", "CYAML",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ],
        path: "Sources/AnduinCore",
        swiftSettings: swift6
    ),
    .target(name: "Multiline", dependencies: ["AnduinCore"], path: "Sources/Multiline", swiftSettings: swift6),
    .executableTarget(
        name: "anduin",
        dependencies: ["AnduinCore", .product(name: "ArgumentParser", package: "swift-argument-parser")]
            + plugins.map { .target(name: $0) },
        path: "Sources/anduin",
        swiftSettings: swift6
    ),
    .testTarget(
        name: "AnduinCoreTests",
        dependencies: ["AnduinCore", "CZlib"],
        path: "Tests/AnduinCoreTests",
        swiftSettings: swift6
    ),
    .testTarget(
        name: "PluginTests",
        dependencies: ["AnduinCore", "Multiline"] + plugins.map { .target(name: $0) },
        path: "Tests/PluginTests",
        swiftSettings: swift6
    ),
    .testTarget(
        name: "IntegrationTests",
        dependencies: ["AnduinCore"],
        path: "Tests/IntegrationTests",
        swiftSettings: swift6
    ),
]
targets += plugins.map {
    .target(name: $0, dependencies: ["AnduinCore"] + (["in_tail", "filter_multiline"].contains($0) ? ["Multiline"] : []),
            path: "plugins/\($0)", swiftSettings: swift6)
}

let package = Package(
    name: "anduin",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "anduin", targets: ["anduin"]),
        // For Benchmarks/ (a package of its own, so CI's `swift test` does not build the harness).
        .library(name: "AnduinLibrary", targets: ["AnduinCore", "Multiline"] + plugins),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: targets
)
