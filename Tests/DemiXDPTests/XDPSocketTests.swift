import Testing

#if !AFXDP
/// Built without the `AFXDP` trait: the AF_XDP device is not compiled in.
@Suite struct XDPSocketTests {
    @Test func skippedWithoutTrait() {
        print("XDPSocketTests: skipped: built without the AFXDP trait (swift test --traits AFXDP, needs libxdp-dev libbpf-dev)")
    }
}
#endif
