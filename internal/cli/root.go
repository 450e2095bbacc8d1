// Package cli implements herd's command line: one cobra command per file.
package cli

// Main runs the herd command line with args and returns the exit code.
func Main(args []string) int { return 0 }
