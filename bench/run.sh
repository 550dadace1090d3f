#!/usr/bin/env bash
# smta versus Postfix, same machine, same run, same clients (make bench).
#
# Runs the Go microbenchmarks of smtp/, spool/ and ring/ (those that exist),
# then four scenarios against a private Postfix instance and bin/smta, each
# relaying to an smta-loadgen sink on loopback:
#
#   1. inbound acceptance: MESSAGES x 10 KiB over 50 connections, timed
#      until the client has every 250 reply;
#   2. relay: the same, timed until the sink has every message;
#   3. small messages: 1 KiB over 200 connections, smta-loadgen with
#      PIPELINING (smtp-source has no option for it, so it runs without);
#   4. idle connections: memory per open SMTP session at BENCH_IDLE
#      connections for smta; Postfix runs one smtpd process per session,
#      so it is measured at its process limit (PF_PROCESS_LIMIT).
#
# Each measurement runs BENCH_RUNS times, alternating servers so machine
# noise hits both alike, and prints median [min-max]. Environment:
#   BENCH_RUNS (3), BENCH_MESSAGES (5000), BENCH_SMALL_MESSAGES (10000),
#   BENCH_IDLE (10000), PF_PROCESS_LIMIT (1000), BENCH_SKIP_MICRO (unset),
#   BENCH_OUT (unset: a directory to keep the benchstat files in),
#   BENCH_SCENARIOS ("1 2 3 4": the scenarios to run).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
bench_require

RUNS=${BENCH_RUNS:-3}
SCENARIOS=" ${BENCH_SCENARIOS:-1 2 3 4} "
want() { [[ $SCENARIOS == *" $1 "* ]]; }
MESSAGES=${BENCH_MESSAGES:-5000}
SMALL_MESSAGES=${BENCH_SMALL_MESSAGES:-10000}
IDLE=${BENCH_IDLE:-10000}
export PF_PROCESS_LIMIT=${PF_PROCESS_LIMIT:-1000}

# The idle scenario needs BENCH_IDLE descriptors in both smta and the
# client, which the default soft limit (often 1024) does not allow.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < IDLE + 1000)); then
	echo "bench: open file limit $(ulimit -n) is below BENCH_IDLE=$IDLE + 1000; the idle scenario may fail" >&2
fi

echo "# smta versus Postfix"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
echo "postfix: $(/usr/sbin/postconf -d -h mail_version 2>/dev/null || echo unknown)"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) before the run"
echo

# --- Microbenchmarks -------------------------------------------------------
if [[ -z ${BENCH_SKIP_MICRO:-} ]]; then
	pkgs=()
	for p in smtp spool ring; do
		compgen -G "$p/*_test.go" >/dev/null && pkgs+=("./$p/")
	done
	if ((${#pkgs[@]} > 0)); then
		echo "## Microbenchmarks: ${pkgs[*]}"
		# A failing package is reported, and the scenarios still run.
		go test -run XXX -bench . -benchmem -timeout 10m "${pkgs[@]}" || echo "microbenchmarks failed (exit $?); continuing"
		echo
	fi
fi

# --- Servers ---------------------------------------------------------------
PF_PORT=$(bench_free_port)
PF_SINK=$(bench_free_port)
bench_log "starting private Postfix on 127.0.0.1:$PF_PORT, relaying to 127.0.0.1:$PF_SINK"
bench_start_postfix "$PF_PORT" "$PF_SINK"

HAVE_SMTA=0
if bench_smta_available; then
	SMTA_PORT=$(bench_free_port)
	SMTA_SINK=$(bench_free_port)
	bench_log "starting smta on 127.0.0.1:$SMTA_PORT, relaying to 127.0.0.1:$SMTA_SINK"
	if bench_start_smta "$SMTA_PORT" "$SMTA_SINK"; then
		HAVE_SMTA=1
	else
		echo "bench: smta side not measured: it did not start" >&2
	fi
fi

# scenario NAME MODE CLIENT CONNS N SIZE [FLAGS...] runs RUNS rounds per
# server and prints one table row.
scenario() {
	local name=$1 mode=$2 client=$3 conns=$4 n=$5 size=$6
	shift 6
	local pf=() sm=() ceiling=() r
	for ((r = 1; r <= RUNS; r++)); do
		bench_log "$name, $client, round $r of $RUNS"
		if bench_measure "$mode" postfix "$client" "$conns" "$n" "$size" "$@"; then pf+=("$RATE"); fi
		if ((HAVE_SMTA)) && bench_measure "$mode" smta "$client" "$conns" "$n" "$size" "$@"; then
			sm+=("$RATE")
		fi
		if [[ $client == loadgen ]] && bench_measure "$mode" sink "$client" "$conns" "$n" "$size" "$@"; then
			ceiling+=("$RATE")
		fi
	done
	row "$name" "$client" pf sm ceiling
}

row() {
	local name=$1 client=$2
	local -n pfv=$3 smv=$4 cev=$5
	local pfs="failed" sms="not measured" ces="-" ratio="n/a"
	if ((${#pfv[@]} > 0)); then pfs=$(fmt_stats "${pfv[@]}"); fi
	if ((${#smv[@]} > 0)); then sms=$(fmt_stats "${smv[@]}"); fi
	if ((${#cev[@]} > 0)); then ces=$(fmt_stats "${cev[@]}"); fi
	if ((${#pfv[@]} > 0 && ${#smv[@]} > 0)); then
		ratio=$(bench_ratio "$(bench_stats "${smv[@]}" | cut -d' ' -f1)" "$(bench_stats "${pfv[@]}" | cut -d' ' -f1)")
	fi
	printf '| %-34s | %-12s | %-24s | %-24s | %-6s | %-24s |\n' "$name" "$client" "$pfs" "$sms" "$ratio" "$ces"
}

fmt_stats() {
	local s
	read -r med lo hi <<<"$(bench_stats "$@")"
	printf '%s [%s-%s]' "$med" "$lo" "$hi"
}

if want 1 || want 2 || want 3; then
	# Warm-up, not recorded: Postfix forks its smtpd processes on demand and
	# keeps them for max_idle (100 s), and both servers fault in their code
	# and buffers on first use.
	bench_log "warming up"
	bench_measure accept postfix loadgen 200 1000 1024 >/dev/null || echo "bench: Postfix warm-up failed" >&2
	if ((HAVE_SMTA)); then
		bench_measure accept smta loadgen 200 1000 1024 >/dev/null || echo "bench: smta warm-up failed" >&2
	fi
	rm -f "$BENCH_TMP"/bench-*.txt

	echo "## Throughput, msgs/s: median [min-max] of $RUNS runs"
	echo
	printf '| %-34s | %-12s | %-24s | %-24s | %-6s | %-24s |\n' scenario client postfix smta ratio "harness ceiling (sink)"
	printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..36})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..26})" "$(printf -- '-%.0s' {1..26})" "$(printf -- '-%.0s' {1..8})" "$(printf -- '-%.0s' {1..26})"
	want 1 && scenario "1 accept $MESSAGES x 10 KiB, 50 conns" accept loadgen 50 "$MESSAGES" 10240
	want 1 && scenario "1 accept $MESSAGES x 10 KiB, 50 conns" accept smtp-source 50 "$MESSAGES" 10240
	want 2 && scenario "2 relay $MESSAGES x 10 KiB, 50 conns" relay loadgen 50 "$MESSAGES" 10240
	want 2 && scenario "2 relay $MESSAGES x 10 KiB, 50 conns" relay smtp-source 50 "$MESSAGES" 10240
	want 3 && scenario "3 small $SMALL_MESSAGES x 1 KiB, 200 conns" accept loadgen 200 "$SMALL_MESSAGES" 1024 --pipelining
	want 3 && scenario "3 small $SMALL_MESSAGES x 1 KiB, 200 conns" accept smtp-source 200 "$SMALL_MESSAGES" 1024
	echo
fi

# --- Idle connections ------------------------------------------------------
# idle SERVER PORT N sets OPEN, BEFORE and AFTER: the sessions opened and
# the server's summed PSS in KiB before and while N idle sessions (greeted,
# EHLO sent) are open.
idle() {
	local server=$1 port=$2 n=$3 out=$BENCH_TMP/idle.out
	server_pids() {
		if [[ $server == postfix ]]; then bench_postfix_pids; else echo "$SMTA_PID"; fi
	}
	# shellcheck disable=SC2046
	BEFORE=$(bench_pss_kib $(server_pids))
	: >"$out"
	"$LOADGEN" idle --target "127.0.0.1:$port" --connections "$n" --ehlo --hold 15s --timeout 120s \
		>"$out" 2>"$BENCH_TMP/idle.log" &
	local idle_pid=$!
	BENCH_PIDS+=("$idle_pid")
	local deadline=$((SECONDS + 180))
	until grep -q '^open' "$out"; do
		if ((SECONDS > deadline)) || ! kill -0 "$idle_pid" 2>/dev/null; then
			echo "bench: idle connections to $server did not open; see $BENCH_TMP/idle.log" >&2
			return 1
		fi
		sleep 0.2
	done
	sleep 1 # let the server settle after the last greeting
	# shellcheck disable=SC2046
	AFTER=$(bench_pss_kib $(server_pids))
	OPEN=$(awk '/^open/ {print $2}' "$out")
	bench_wait_pid "$idle_pid" 60 || true
}

if want 4; then
	echo "## Idle connections: memory per open SMTP session (PSS, greeted and past EHLO)"
	echo
	printf '| %-8s | %-12s | %-16s | %-16s | %-16s |\n' server connections "PSS before, KiB" "PSS open, KiB" "KiB per session"
	printf '|----------|--------------|------------------|------------------|------------------|\n'
	idle_row() {
		local server=$1 port=$2 n=$3
		if idle "$server" "$port" "$n"; then
			printf '| %-8s | %-12s | %-16s | %-16s | %-16s |\n' "$server" "$OPEN" "$BEFORE" "$AFTER" \
				"$(python3 -c 'import sys; o, b, a = map(int, sys.argv[1:]); print(f"{(a - b) / o:.1f}" if o else "n/a")' "$OPEN" "$BEFORE" "$AFTER")"
		else
			printf '| %-8s | %-12s | %-16s | %-16s | %-16s |\n' "$server" failed - - -
		fi
	}
	# Fresh servers: smtpd processes left from the throughput scenarios, or
	# heap the Go runtime kept, would absorb new sessions and make the
	# per-session figure too small.
	bench_log "restarting both servers for the idle-connection scenario"
	bash bench/postfix.sh stop "$PF_DIR" >/dev/null 2>&1 || true
	PF_PORT=$(bench_free_port)
	bench_start_postfix "$PF_PORT" "$PF_SINK"
	if ((HAVE_SMTA)); then
		bench_stop_smta
		SMTA_PORT=$(bench_free_port)
		bench_start_smta "$SMTA_PORT" "$SMTA_SINK" || HAVE_SMTA=0
	fi
	sleep 2 # let both finish starting up before the baseline is read
	idle_row postfix "$PF_PORT" "$PF_PROCESS_LIMIT"
	if ((HAVE_SMTA)); then
		idle_row smta "$SMTA_PORT" "$IDLE"
	else
		printf '| %-8s | %-12s | %-16s | %-16s | %-16s |\n' smta "not measured" - - -
	fi
	echo
	echo "Postfix runs one smtpd process per session, so it is measured at its"
	echo "process limit (default_process_limit = $PF_PROCESS_LIMIT), not at $IDLE."
	echo
fi

echo "## Go benchmark lines of smta-loadgen (for benchstat)"
for f in "$BENCH_TMP"/bench-*.txt; do
	[[ -f $f ]] || continue
	echo "### $(basename "$f")"
	cat "$f"
	if [[ -n ${BENCH_OUT:-} ]]; then
		mkdir -p "$BENCH_OUT"
		cp "$f" "$BENCH_OUT/"
	fi
done
if [[ -n ${BENCH_OUT:-} ]]; then
	echo "copied to $BENCH_OUT; compare with: benchstat $BENCH_OUT/bench-postfix.txt $BENCH_OUT/bench-smta.txt"
fi
echo
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) after the run"
