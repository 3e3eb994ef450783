import Testing

@Suite struct ReelayCoreTestsPlaceholder {}
