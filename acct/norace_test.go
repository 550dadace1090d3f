//go:build !race

package acct

const raceEnabled = false
