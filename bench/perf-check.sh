#!/usr/bin/env bash
# Short smta-versus-Postfix relay check for CI (make perf-check).
#
# Runs scenarios 1 (accept) and 2 (relay) of bench/run.sh in short form:
# PERF_MESSAGES messages of 10 KiB over 50 connections with smta-loadgen,
# three runs per server, alternating servers. It fails (exit 1) when the
# median smta/Postfix msgs/s ratio of a scenario is below its floor in
# bench/perf-floor.txt. Every process it starts is stopped and its
# temporary directory removed on exit. Takes about one to two minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
bench_require

MESSAGES=${PERF_MESSAGES:-1500}
RUNS=3
FLOORS=bench/perf-floor.txt

if ! bench_smta_available; then
	echo "perf-check: FAIL: cannot compare without bin/smta" >&2
	exit 1
fi

floor() {
	awk -v name="$1" '$1 == name {print $2; found = 1} END {if (!found) exit 1}' "$FLOORS"
}

PF_PORT=$(bench_free_port)
PF_SINK=$(bench_free_port)
bench_start_postfix "$PF_PORT" "$PF_SINK"
SMTA_PORT=$(bench_free_port)
SMTA_SINK=$(bench_free_port)
if ! bench_start_smta "$SMTA_PORT" "$SMTA_SINK"; then
	echo "perf-check: FAIL: smta did not start" >&2
	exit 1
fi

# Warm-up, not recorded (see bench/run.sh).
bench_measure accept postfix loadgen 50 500 10240 || true
bench_measure accept smta loadgen 50 500 10240 || true

status=0
for scenario in accept relay; do
	want=$(floor "$scenario") || {
		echo "perf-check: FAIL: no floor for $scenario in $FLOORS" >&2
		exit 1
	}
	pf=() sm=()
	for ((r = 1; r <= RUNS; r++)); do
		bench_log "$scenario round $r of $RUNS"
		if bench_measure "$scenario" postfix loadgen 50 "$MESSAGES" 10240; then pf+=("$RATE"); fi
		if bench_measure "$scenario" smta loadgen 50 "$MESSAGES" 10240; then sm+=("$RATE"); fi
	done
	if ((${#pf[@]} < RUNS || ${#sm[@]} < RUNS)); then
		echo "perf-check: FAIL: $scenario: runs failed (Postfix ${#pf[@]} of $RUNS, smta ${#sm[@]} of $RUNS ok)" >&2
		status=1
		continue
	fi
	read -r pf_med pf_min pf_max <<<"$(bench_stats "${pf[@]}")"
	read -r sm_med sm_min sm_max <<<"$(bench_stats "${sm[@]}")"
	ratio=$(bench_ratio "$sm_med" "$pf_med")
	verdict=ok
	if ! python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)' "$ratio" "$want"; then
		verdict=FAIL
		status=1
	fi
	printf 'perf-check: %s: %s: smta %s msgs/s [%s-%s], Postfix %s msgs/s [%s-%s], ratio %s, floor %s\n' \
		"$verdict" "$scenario" "$sm_med" "$sm_min" "$sm_max" "$pf_med" "$pf_min" "$pf_max" "$ratio" "$want"
done
exit "$status"
