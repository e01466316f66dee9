// swift-tools-version: 6.1
//
// Demikernel for Swift: a library OS architecture for kernel-bypass I/O.
//
// Layers (each target depends only on the ones above it):
//   DemiCore      core value types: errno, queue descriptors, qtokens, addresses, time
//   DemiBuffers   the memory manager: pooled, reference-counted I/O buffers and scatter-gather arrays
//   DemiRuntime   the coroutine scheduler, timers, completions, the socket state machine
//   DemiWire      wire formats (views over bytes, header values, checksums)
//   DemiDevices   the physical-layer protocol; in-memory link, fault injection and pcap capture as devices
//   DemiInet      the user-space TCP/IP stack: sans-I/O protocol state machines (time is an input)
//   DemiStackLibOS      PDPIX over the user-space stack on any physical layer (in-memory link, AF_PACKET, ...)
//   DemiKernelSockets   libOS over Linux kernel sockets (LIBOS=catnap)
//   DemiSharedMemory    libOS of shared-memory queues between processes (LIBOS=catmem)
//   Demikernel    the facade: libOS selection, configuration, the async/await layer
//   DemikernelC   the C ABI: libdemikernel.so implementing include/demi/*.h
//   demi          the command-line tool (echo, ping, bench)
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

let package = Package(
    name: "Demikernel",
    products: [
        .library(name: "Demikernel", targets: ["Demikernel"]),
        .executable(name: "demi", targets: ["demi"]),
        /// libdemikernel.so: the C ABI (headers in Sources/CDemikernelABI/include/demi), drop-in for upstream's.
        .library(name: "demikernel", type: .dynamic, targets: ["DemikernelC"]),
        /// The plain C socket baselines, for the benchmark package.
        .library(name: "DemiBaselines", targets: ["CDemiBaselines"]),
    ],
    traits: [
        /// AF_XDP (DemiXDP.XDPSocketDevice) through libxdp: needs `apt-get install libxdp-dev libbpf-dev`.
        .trait(name: "AFXDP", description: "AF_XDP device through libxdp/libbpf (libxdp-dev, libbpf-dev)"),
        /// DPDK (DemiDPDK.DPDKDevice, catnip's device) through a C shim: needs `apt-get install libdpdk-dev` (22.11).
        .trait(name: "DPDK", description: "DPDK device through the CDPDK shim (libdpdk-dev 22.11)"),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // MARK: - C shims
        .target(
            name: "CDemiLinux",
            cSettings: [.define("_GNU_SOURCE")]
        ),

        // MARK: - Layers
        .target(name: "DemiCore", swiftSettings: swiftSettings),
        .target(name: "DemiBuffers", dependencies: ["DemiCore"], swiftSettings: swiftSettings),
        .target(name: "DemiRuntime", dependencies: ["DemiCore", "DemiBuffers"], swiftSettings: swiftSettings),
        .target(name: "DemiWire", dependencies: ["DemiCore", "DemiBuffers"], swiftSettings: swiftSettings),
        .target(name: "DemiDevices", dependencies: ["DemiCore", "DemiBuffers", "CDemiLinux"], swiftSettings: swiftSettings),
        .target(
            name: "DemiInet",
            dependencies: ["DemiCore", "DemiBuffers", "DemiRuntime", "DemiWire", "DemiDevices"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DemiStackLibOS",
            dependencies: ["DemiCore", "DemiBuffers", "DemiRuntime", "DemiWire", "DemiDevices", "DemiInet"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DemiKernelSockets",
            dependencies: ["DemiCore", "DemiBuffers", "DemiRuntime", "CDemiLinux"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DemiSharedMemory",
            dependencies: ["DemiCore", "DemiBuffers", "DemiRuntime", "CDemiLinux"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "Demikernel",
            dependencies: [
                "DemiCore", "DemiBuffers", "DemiRuntime", "DemiKernelSockets", "DemiSharedMemory", "CDemiLinux",
                "DemiWire", "DemiDevices", "DemiInet", "DemiStackLibOS", "DemiXDP", "DemiDPDK",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: - C ABI
        .target(name: "CDemikernelABI"),
        .target(
            name: "DemikernelC",
            dependencies: ["Demikernel", "CDemikernelABI"],
            swiftSettings: swiftSettings + [.enableExperimentalFeature("CImplementation")]
        ),

        // MARK: - Tools
        .target(name: "CDemiBaselines", cSettings: [.define("_GNU_SOURCE")]),
        .executableTarget(
            name: "demi",
            dependencies: [
                "Demikernel", "CDemiLinux", "CDemiBaselines", "SharedMemoryPattern", "DemiDPDK", "DemiDevices",
                "DemiXDP", "CDemiXDPBare",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        /// Hot paths run N times for instruction counting (scripts/check-hotpaths.sh, the CI regression check).
        .executableTarget(
            name: "demi-hotpaths",
            dependencies: ["DemiCore", "DemiBuffers", "DemiRuntime", "DemiDevices", "DemiInet", "DemiStackLibOS",
                           "DemiSharedMemory", "Demikernel"],
            swiftSettings: swiftSettings
        ),

        .target(name: "SharedMemoryPattern", dependencies: ["Demikernel"], swiftSettings: swiftSettings),
        .executableTarget(
            name: "demi-shm-peer",
            dependencies: ["Demikernel", "SharedMemoryPattern"],
            swiftSettings: swiftSettings
        ),

        // MARK: - AF_XDP (trait AFXDP; without it DemiXDP is empty and libxdp is not needed)
        .systemLibrary(name: "CDemiXDP", pkgConfig: "libxdp", providers: [.apt(["libxdp-dev", "libbpf-dev"])]),
        .target(
            name: "DemiXDP",
            dependencies: ["DemiCore", "DemiBuffers", "DemiDevices", "CDemiLinux",
                           .target(name: "CDemiXDP", condition: .when(traits: ["AFXDP"]))],
            swiftSettings: swiftSettings
        ),

        /// The bare AF_XDP frame ping-pong of `demi frame-pingpong` (plain C on libxdp's rings); without the trait
        /// its functions return -EOPNOTSUPP and libxdp is not needed.
        .target(
            name: "CDemiXDPBare",
            cSettings: [.define("DEMI_AFXDP", .when(traits: ["AFXDP"]))],
            linkerSettings: ["xdp", "bpf"].map { .linkedLibrary($0, .when(traits: ["AFXDP"])) }
        ),

        // MARK: - DPDK (trait DPDK; without it CDPDK and DemiDPDK compile to nothing and DPDK is not needed)
        // Debian's libdpdk.pc does not parse in SwiftPM and its `-include`/`-march` flags are prohibited, so the shim
        // (only it) gets DPDK's include paths, -march and libraries here; its header includes no DPDK header.
        .target(
            name: "CDPDK",
            cSettings: [
                .define("DEMI_DPDK", .when(traits: ["DPDK"])),
                .unsafeFlags(["-I/usr/include/dpdk", "-I/usr/include/x86_64-linux-gnu/dpdk", "-march=corei7"],
                             .when(traits: ["DPDK"])),
            ],
            linkerSettings: ["rte_ethdev", "rte_mbuf", "rte_mempool", "rte_ring", "rte_eal", "rte_kvargs"].map {
                .linkedLibrary($0, .when(traits: ["DPDK"]))
            }
        ),
        .target(
            name: "DemiDPDK",
            dependencies: ["DemiCore", "DemiBuffers", "DemiDevices",
                           .target(name: "CDPDK", condition: .when(traits: ["DPDK"]))],
            swiftSettings: swiftSettings
        ),

        // MARK: - Tests
        .target(name: "CAllocCounter", path: "Tests/CAllocCounter"),
        .testTarget(name: "DemiCoreTests", dependencies: ["DemiCore"], swiftSettings: swiftSettings),
        .testTarget(name: "DemiBuffersTests", dependencies: ["DemiBuffers"], swiftSettings: swiftSettings),
        .testTarget(name: "DemiRuntimeTests", dependencies: ["DemiRuntime"], swiftSettings: swiftSettings),
        .testTarget(name: "DemiWireTests", dependencies: ["DemiWire"], swiftSettings: swiftSettings),
        /// Test hosts: network namespaces joined by veth pairs (198.18.0.0/15, no default route), removed afterwards.
        .target(name: "TestHostFixture", dependencies: ["CDemiLinux"], path: "Tests/TestHostFixture",
                swiftSettings: swiftSettings),
        .testTarget(name: "DemiDevicesTests", dependencies: ["DemiDevices", "DemiWire", "TestHostFixture"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "DemiXDPTests", dependencies: ["DemiXDP", "DemiDevices", "DemiWire", "TestHostFixture"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "DemiDPDKTests", dependencies: ["DemiDPDK", "DemiDevices", "DemiWire", "TestHostFixture"],
                    swiftSettings: swiftSettings),
        .testTarget(name: "DemiInetTests", dependencies: ["DemiInet", "DemiStackLibOS", "TestHostFixture"],
                    exclude: ["PacketScripts"], swiftSettings: swiftSettings),
        .testTarget(
            name: "DemikernelTests",
            dependencies: ["Demikernel", "CAllocCounter", "CDemiBaselines", "CDemiLinux", "SharedMemoryPattern",
                           "demi-shm-peer", "DemiStackLibOS", "DemiDPDK", "TestHostFixture"],
            swiftSettings: swiftSettings
        ),
    ]
)
