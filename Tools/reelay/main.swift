import ArgumentParser

// reelay: the ops command line (reelay migrate | keys create/list/revoke | stats | dlq). Each subcommand is in Commands.swift.

// What AsyncParsableCommand.main() does, written out: in a main.swift, `ReelayCommand.main()` resolves to the synchronous
// ParsableCommand entry point, which cannot run async subcommands (it prints their help instead).
do {
    var command = try await ReelayCommand.asyncParseAsRoot()
    if var asyncCommand = command as? any AsyncParsableCommand {
        try await CLI.run(&asyncCommand)
    } else {
        try command.run()
    }
} catch {
    ReelayCommand.exit(withError: error)
}
