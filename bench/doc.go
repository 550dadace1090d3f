// Package bench contains no code: it holds the benchmark harness scripts
// (run.sh, perf-check.sh, postfix.sh) and a test that runs the private
// Postfix instance of postfix.sh against a loadgen sink, so a broken
// Postfix setup shows up in `make test` rather than in a benchmark run.
package bench
