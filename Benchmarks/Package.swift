// swift-tools-version: 6.1
//
// Benchmarks that need packages the library must not depend on (SwiftNIO, as a comparison baseline only).
import PackageDescription

let package = Package(
    name: "DemikernelBenchmarks",
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "nio-udp-echo",
            dependencies: [
                .product(name: "DemiBaselines", package: "main"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
