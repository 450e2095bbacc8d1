// Package lease is a placeholder.
package lease
