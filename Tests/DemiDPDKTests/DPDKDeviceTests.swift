import Testing

@Suite struct DPDKDeviceTests {
    @Test func placeholder() {}
}
