import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// 2 MiB hugepages for the DPDK tests, reserved and mounted once per test process and given back at its exit.
///
/// ``reserve(pages:)`` adds `pages` to the kernel's pool (`/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages`;
/// it adds to whatever others reserved and later subtracts only its own share) and mounts a private hugetlbfs at
/// `/run/demi-hugepages-<pid>-<pages>` for the EAL's `--huge-dir`. At exit the mount is detached (`umount -l`: the
/// EAL's pages are still mapped then; the kernel frees them with the process), the directory removed and the
/// reservation returned. A later call in another process reaps what a crashed process left (the pid and the page
/// count are in the directory's name).
///
/// Returns nil (and the tests use `--no-huge`) without root, when `DEMI_DPDK_NO_HUGE=1`, or when the kernel cannot
/// find the pages (fragmented memory); the reason is printed once.
public enum TestHugepages {
    struct Reservation {
        let directory: String
        let pages: Int
    }

    nonisolated(unsafe) private static var done = false
    nonisolated(unsafe) private static var reservation: Reservation?
    private static let lock = NSLock()

    static let sysfs = "/sys/kernel/mm/hugepages/hugepages-2048kB"
    static let prefix = "/run/demi-hugepages-"

    /// The hugetlbfs directory with `pages` free 2 MiB pages reserved for this process, or nil.
    public static func reserve(pages: Int = 192) -> String? {
        lock.withLock {
            if done { return reservation?.directory }
            done = true
            switch make(pages: pages) {
            case .success(let r):
                reservation = r
                atexit { TestHugepages.release() }
                print("TestHugepages: reserved \(r.pages) 2 MiB hugepages, hugetlbfs on \(r.directory)")
                return r.directory
            case .failure(let why):
                print("TestHugepages: no hugepages (\(why.description)); DPDK runs with --no-huge")
                return nil
            }
        }
    }

    /// The current reservation's directory, if ``reserve(pages:)`` made one.
    public static var directory: String? { lock.withLock { reservation?.directory } }

    static func make(pages: Int) -> Result<Reservation, TestHosts.Failure> {
        if ProcessInfo.processInfo.environment["DEMI_DPDK_NO_HUGE"] == "1" { return .failure(.init("DEMI_DPDK_NO_HUGE=1")) }
        guard geteuid() == 0 else { return .failure(.init("not root")) }
        guard let before = readInt(sysfs + "/nr_hugepages") else { return .failure(.init("no \(sysfs)")) }
        reapStale()
        guard writeInt(sysfs + "/nr_hugepages", before + pages) else { return .failure(.init("cannot write nr_hugepages")) }
        let after = readInt(sysfs + "/nr_hugepages") ?? before
        let got = max(0, after - before)
        func giveBack() { adjust(by: -got) }
        guard got >= pages, (readInt(sysfs + "/free_hugepages") ?? 0) >= pages else {
            giveBack()
            return .failure(.init("the kernel found \(got) of \(pages) pages"))
        }
        let dir = "\(prefix)\(getpid())-\(got)"
        _ = mkdir(dir, 0o700)
        guard mount("nodev", dir, "hugetlbfs", 0, "pagesize=2M") == 0 else {
            let e = errno
            rmdir(dir)
            giveBack()
            return .failure(.init("mount hugetlbfs on \(dir): errno \(e)"))
        }
        return .success(Reservation(directory: dir, pages: got))
    }

    /// Detaches the mount, removes the directory and returns the pages (at exit).
    static func release() {
        guard let r = reservation else { return }
        reservation = nil
        _ = umount2(r.directory, Int32(MNT_DETACH))
        rmdir(r.directory)
        adjust(by: -r.pages)
    }

    /// Reaps directories of processes that no longer exist.
    static func reapStale() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/run") else { return }
        for name in names where ("/run/" + name).hasPrefix(prefix) {
            let parts = name.dropFirst(prefix.count - "/run/".count).split(separator: "-")
            guard parts.count == 2, let pid = Int32(parts[0]), let pages = Int(parts[1]) else { continue }
            if kill(pid, 0) == 0 || errno != ESRCH { continue }
            let dir = "/run/" + name
            _ = umount2(dir, Int32(MNT_DETACH))
            if rmdir(dir) == 0 { adjust(by: -pages) }
        }
    }

    static func adjust(by delta: Int) {
        guard delta != 0, let now = readInt(sysfs + "/nr_hugepages") else { return }
        _ = writeInt(sysfs + "/nr_hugepages", max(0, now + delta))
    }

    static func readInt(_ path: String) -> Int? {
        guard let s = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return Int(s.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    static func writeInt(_ path: String, _ value: Int) -> Bool {
        let fd = open(path, O_WRONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let text = Array("\(value)\n".utf8)
        return text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == text.count
    }
}
