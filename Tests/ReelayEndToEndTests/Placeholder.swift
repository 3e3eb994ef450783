import Testing

@Suite struct ReelayEndToEndTestsPlaceholder {}
