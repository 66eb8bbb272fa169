// swift-tools-version:6.1
// libFuzzer targets (Swift's -sanitize=fuzzer with AddressSanitizer) for the parsers that read
// untrusted bytes. A package of its own so the main package's `swift test` never builds it with the
// sanitizers. Build and run through the main Makefile: `make fuzz` (FUZZ_SECONDS per target).
//
// Every target reads the library through public entry points only, so moving a parser means
// re-pointing one line here.
import PackageDescription

let targets = ["FuzzDocker", "FuzzCRI", "FuzzJSON", "FuzzLogfmt", "FuzzConfig", "FuzzBulkResponse", "FuzzRing", "FuzzCaptures", "FuzzTime"]

let package = Package(
    name: "anduin-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "anduin", path: "../..")],
    targets: targets.map {
        .executableTarget(
            name: $0,
            dependencies: [.product(name: "AnduinLibrary", package: "anduin")],
            path: "Sources/\($0)",
            swiftSettings: [.swiftLanguageMode(.v6)]
        )
    }
)
