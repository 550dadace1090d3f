// Package bench contains no code. It holds the benchmark harness scripts
// (run.sh, perf-check.sh, postfix.sh) and a test that relays mail through
// the private Postfix instance of postfix.sh to a loadgen sink. A broken
// Postfix setup then shows up in `make test`, not in a benchmark run.
package bench
