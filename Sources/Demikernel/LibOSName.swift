/// The libOSes this build knows, by descriptive name; upstream's codenames are accepted where users type them.
public enum LibOSName: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Linux kernel sockets (upstream: catnap).
    case kernelSockets = "kernel-sockets"
    /// Shared-memory queues between processes, and in-process memory queues (upstream: catmem).
    case sharedMemory = "shared-memory"
    case rawSockets = "raw-sockets"
    case dpdk = "dpdk"

    /// Every spelling accepted for each libOS, in `LIBOS` and on command lines (case-insensitive).
    public var spellings: [String] {
        switch self {
        case .kernelSockets: ["catnap", "kernel-sockets", "kernel", "sockets", "posix"]
        case .sharedMemory: ["catmem", "shared-memory", "shm", "memory"]
        case .rawSockets: ["catpowder", "raw-sockets", "raw", "af-packet", "af_packet", "afpacket"]
        case .dpdk: ["catnip", "dpdk"]
        }
    }

    /// Upstream's codename.
    public var codename: String {
        switch self {
        case .kernelSockets: "catnap"
        case .sharedMemory: "catmem"
        case .rawSockets: "catpowder"
        case .dpdk: "catnip"
        }
    }

    public var description: String { "\(rawValue) (\(codename))" }

    /// Parses a name; the error lists the available libOSes.
    public init(parsing text: String) throws(ConfigurationError) {
        let t = text.lowercased().trimmingCharacters(in: .whitespaces)
        for c in LibOSName.allCases where c.spellings.contains(t) {
            self = c
            return
        }
        throw .unknownLibOS(text, available: LibOSName.allCases.map { "\($0.codename) (\($0.spellings.joined(separator: ", ")))" })
    }

    /// The default when `LIBOS` is not set.
    public static var `default`: LibOSName { .kernelSockets }
}

/// A problem with the configuration or the libOS choice. Maps to an errno at the C ABI.
public enum ConfigurationError: Error, CustomStringConvertible, Sendable {
    case unknownLibOS(String, available: [String])
    case unreadableFile(String)
    case invalidYAML(String)
    case invalidValue(key: String, value: String)

    public var description: String {
        switch self {
        case .unknownLibOS(let n, let a): "unknown libOS '\(n)'; available: \(a.joined(separator: "; "))"
        case .unreadableFile(let p): "cannot read configuration file '\(p)'"
        case .invalidYAML(let m): "invalid configuration YAML: \(m)"
        case .invalidValue(let k, let v): "invalid value '\(v)' for configuration key '\(k)'"
        }
    }
}
