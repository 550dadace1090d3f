//go:build race

package acct

const raceEnabled = true
