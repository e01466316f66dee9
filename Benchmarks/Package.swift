// swift-tools-version: 6.1
//
// The benchmark harness: `demi-benchmarks` measures the libOSes next to plain C sockets and SwiftNIO in one run.
// SwiftNIO is a comparison baseline only: it is a dependency of this package, never of the Demikernel library.
import Foundation
import PackageDescription

/// The root package's identity is the name of its directory (whatever the clone is called).
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "DemikernelBenchmarks",
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .executableTarget(
            name: "demi-benchmarks",
            dependencies: [
                .product(name: "Demikernel", package: root),
                .product(name: "DemiBaselines", package: root),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
