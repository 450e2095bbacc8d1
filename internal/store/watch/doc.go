// Package watch is a placeholder.
package watch
