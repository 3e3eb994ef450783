import Testing

@Suite struct ReelayIntegrationTestsPlaceholder {}
