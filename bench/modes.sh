#!/usr/bin/env bash
# smta's inbound modes compared in one run (make bench-modes).
#
# Starts one bin/smta per inbound mode (goroutine, epoll, io_uring), each
# relaying to its own smta-loadgen sink on loopback, and runs:
#
#   1. accept: MESSAGES x 10 KiB over 50 connections, timed until the
#      client has every 250 reply;
#   3. small: SMALL_MESSAGES x 1 KiB over 200 connections with PIPELINING;
#   4. idle: smta's PSS per open SMTP session (greeted, EHLO sent) at
#      BENCH_IDLE connections, each time on a freshly started smta.
#
# The scenario numbers are those of bench/run.sh. Each figure is measured
# BENCH_RUNS times. The order of the modes rotates each round, so a burst of
# load from other work does not always hit the same mode. The script prints
# median [min-max] and each mode's median divided by goroutine mode's.
#
# Optional steps:
#   BENCH_SYSCALLS=1  system calls per accepted message in each mode:
#                     SYSCALL_MESSAGES x 1 KiB over 20 connections with
#                     PIPELINING, counted over all of smta's threads by
#                     `perf stat -e raw_syscalls:sys_enter` (total) and
#                     `strace -c -f` (per system call, in a second pass).
#   BENCH_MAX_IDLE=N  open N idle connections to smta in epoll mode, spread
#                     over 4 listener addresses (127.0.0.1 to 127.0.0.4) so
#                     no source/destination address pair runs out of
#                     ephemeral ports, and report PSS per connection. N is
#                     capped by the open file limit (ulimit -n), because
#                     smta uses one descriptor per connection.
#
# Environment: BENCH_RUNS (3), BENCH_MESSAGES (15000), BENCH_SMALL_MESSAGES
# (30000; runs of about a second varied too much between rounds), BENCH_IDLE (10000), BENCH_SCENARIOS ("1 3 4"), BENCH_MODES
# ("goroutine epoll io_uring"), SYSCALL_MESSAGES (2000), BENCH_IDLE_PER_CLIENT
# (25000: sessions per smta-loadgen idle process in the BENCH_MAX_IDLE step).
#
# Every process started here is stopped by PID from the EXIT trap, and the
# temporary directory is removed. All traffic stays on 127.0.0.0/8.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

if [[ ! -x $LOADGEN || ! -x $SMTA ]]; then
	echo "bench: $LOADGEN or $SMTA not found; run make build" >&2
	exit 1
fi

RUNS=${BENCH_RUNS:-3}
SCENARIOS=" ${BENCH_SCENARIOS:-1 3 4} "
want() { [[ $SCENARIOS == *" $1 "* ]]; }
read -r -a MODES <<<"${BENCH_MODES:-goroutine epoll io_uring}"
MESSAGES=${BENCH_MESSAGES:-15000}
SMALL_MESSAGES=${BENCH_SMALL_MESSAGES:-30000}
IDLE=${BENCH_IDLE:-10000}
SYSCALL_MESSAGES=${SYSCALL_MESSAGES:-2000}

# The idle scenarios need one descriptor per connection in smta and in
# the client. Raising the soft limit to the hard limit needs no privilege.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if ((NOFILE < IDLE + 500)); then
	echo "bench: open file limit $NOFILE is below BENCH_IDLE=$IDLE + 500; the idle scenario may fail" >&2
fi

echo "# smta inbound modes"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
echo "limits:  ulimit -n $NOFILE, fs.nr_open $(cat /proc/sys/fs/nr_open), ip_local_port_range $(tr '\t' ' ' </proc/sys/net/ipv4/ip_local_port_range)"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) before the run"
echo

# PORT, SINK, PID, DIR and RUNNING are keyed by mode. VALUES is keyed by
# "SCENARIO MODE" and contains the measured figures, separated by spaces.
declare -A PORT SINK PID DIR RUNNING VALUES

# start_mode MODE [EXTRA] starts a fresh smta in MODE on new ports and
# records them. EXTRA is appended to its config.
start_mode() {
	local mode=$1 extra=${2:-}
	PORT[$mode]=$(bench_free_port)
	SINK[$mode]=$(bench_free_port)
	bench_log "starting smta in $mode mode on 127.0.0.1:${PORT[$mode]}, relaying to 127.0.0.1:${SINK[$mode]}"
	bench_start_smta "${PORT[$mode]}" "${SINK[$mode]}" "inbound-mode $mode"$'\n'"$extra" || return 1
	PID[$mode]=$SMTA_PID
	DIR[$mode]=$SMTA_DIR
	# The engine falls back to epoll where io_uring is missing; report the
	# mode that actually runs.
	local deadline=$((SECONDS + 10))
	until grep -q 'smta started' "$SMTA_DIR/stderr.log"; do
		((SECONDS < deadline)) || break
		sleep 0.05
	done
	RUNNING[$mode]=$(grep -o 'inbound_mode=[a-z_]*' "$SMTA_DIR/stderr.log" | head -1 | cut -d= -f2)
	RUNNING[$mode]=${RUNNING[$mode]:-unknown}
}

stop_mode() {
	SMTA_PID=${PID[$1]}
	bench_stop_smta
}

# use_mode MODE points bench_measure's smta target at MODE's instance.
use_mode() {
	SMTA_PORT=${PORT[$1]}
	SMTA_SINK=${SINK[$1]}
	SMTA_PID=${PID[$1]}
}

# measure MODE CONNS N SIZE [FLAGS...] sets RATE to one accept figure of
# MODE's smta. It first waits out the 2 s for which smta keeps an idle
# delivery connection open. bench_measure starts a new sink per
# measurement, and smta defers a message sent on a connection to the
# previous sink (EOF) for a later retry. The new sink would then not
# receive it within the measurement.
measure() {
	local mode=$1
	shift
	sleep 2.5
	use_mode "$mode"
	local before after
	before=$(cpu_ticks "$SMTA_PID")
	bench_measure accept smta loadgen "$@" || return 1
	after=$(cpu_ticks "$SMTA_PID")
	CPU_US=$(python3 -c 'import sys; b, a, t, n = map(int, sys.argv[1:]); print(f"{(a - b) * 1e6 / t / n:.1f}")' \
		"$before" "$after" "$CLK_TCK" "$2")
}

# cpu_ticks PID prints the user plus system CPU time of PID and all its
# threads, in clock ticks (/proc/PID/stat fields 14 and 15).
cpu_ticks() {
	awk '{print $14 + $15}' "/proc/$1/stat"
}
CLK_TCK=$(getconf CLK_TCK)

# round_order R prints the modes rotated by R-1 places.
round_order() {
	local r=$1 n=${#MODES[@]} i
	for ((i = 0; i < n; i++)); do
		printf '%s ' "${MODES[$(((i + r - 1) % n))]}"
	done
}

fmt_stats() {
	local med lo hi
	read -r med lo hi <<<"$(bench_stats "$@")"
	printf '%s [%s-%s]' "$med" "$lo" "$hi"
}

median() { bench_stats "$@" | cut -d' ' -f1; }

# print_row NAME SCENARIO prints one table row from VALUES.
print_row() {
	local name=$1 scenario=$2 mode cells=() meds=() vals
	for mode in "${MODES[@]}"; do
		read -r -a vals <<<"${VALUES["$scenario $mode"]:-}"
		if ((${#vals[@]} > 0)); then
			cells+=("$(fmt_stats "${vals[@]}")")
			meds+=("$(median "${vals[@]}")")
		else
			cells+=("failed")
			meds+=("n/a")
		fi
	done
	local ratios=() i
	for ((i = 1; i < ${#MODES[@]}; i++)); do
		ratios+=("$(bench_ratio "${meds[$i]}" "${meds[0]}")")
	done
	printf '| %s |' "$name"
	printf ' %s |' "${cells[@]}" "${ratios[@]}"
	printf '\n'
}

print_header() {
	local first=$1 mode
	printf '| %s |' "$first"
	printf ' %s |' "${MODES[@]}"
	for mode in "${MODES[@]:1}"; do printf ' %s/%s |' "$mode" "${MODES[0]}"; done
	printf '\n|'
	for ((i = 0; i < 2 * ${#MODES[@]}; i++)); do printf -- '---|'; done
	printf '\n'
}

# --- Throughput ------------------------------------------------------------
# throughput NAME SCENARIO CONNS N SIZE [FLAGS...] measures every mode
# RUNS times and prints a row.
throughput() {
	local name=$1 scenario=$2 conns=$3 n=$4 size=$5
	shift 5
	local mode r
	for ((r = 1; r <= RUNS; r++)); do
		for mode in $(round_order "$r"); do
			bench_log "$name, $mode, round $r of $RUNS"
			if measure "$mode" "$conns" "$n" "$size" --label "$mode" "$@"; then
				VALUES["$scenario $mode"]+="$RATE "
				VALUES["$scenario-cpu $mode"]+="$CPU_US "
			fi
		done
	done
	print_row "$name" "$scenario"
	CPU_ROWS+=("$name|$scenario-cpu")
}
CPU_ROWS=()

if want 1 || want 3; then
	for mode in "${MODES[@]}"; do
		start_mode "$mode"
	done
	# Warm-up, not recorded: fault in code, buffers and delivery connections.
	for mode in "${MODES[@]}"; do
		measure "$mode" 200 1000 1024 >/dev/null || echo "bench: $mode warm-up failed" >&2
	done

	echo "## Throughput, msgs/s: median [min-max] of $RUNS runs, smta-loadgen"
	echo
	echo "modes running: $(for m in "${MODES[@]}"; do printf '%s=%s ' "$m" "${RUNNING[$m]}"; done)"
	echo
	print_header "scenario"
	want 1 && throughput "1 accept $MESSAGES x 10 KiB, 50 conns" s1 50 "$MESSAGES" 10240
	want 3 && throughput "3 small $SMALL_MESSAGES x 1 KiB, 200 conns, PIPELINING" s3 200 "$SMALL_MESSAGES" 1024 --pipelining
	echo
	echo "## smta CPU time per accepted message, µs: median [min-max] of $RUNS runs"
	echo
	echo "User plus system time of every smta thread from the first connection"
	echo "until the sink had every message, so delivery is included. Lower is"
	echo "better: on a machine where smta has the CPUs to itself, throughput"
	echo "scales with the inverse."
	echo
	print_header "scenario"
	for row in "${CPU_ROWS[@]}"; do
		print_row "${row%%|*}" "${row##*|}"
	done
	echo
fi

# --- Idle connections ------------------------------------------------------
# idle_open PID N HOLD TARGET... opens N idle sessions spread evenly over
# the targets, one smta-loadgen process per target, and sets OPEN, BEFORE
# and AFTER: the sessions open and smta's PSS in KiB before and while they
# are open.
idle_open() {
	local pid=$1 n=$2 hold=$3
	shift 3
	local targets=("$@") per=$(((n + $# - 1) / $#)) i pids=() outs=()
	BEFORE=$(bench_pss_kib "$pid")

	for ((i = 0; i < ${#targets[@]}; i++)); do
		local count=$((n - i * per < per ? n - i * per : per))
		local out=$BENCH_TMP/idle.$i.out
		: >"$out"
		"$LOADGEN" idle --target "${targets[$i]}" --connections "$count" --ehlo --hold "$hold" --timeout 120s \
			>"$out" 2>"$BENCH_TMP/idle.$i.log" &
		pids+=("$!")
		BENCH_PIDS+=("$!")
		outs+=("$out")
	done

	local deadline=$((SECONDS + 240)) out
	for ((i = 0; i < ${#outs[@]}; i++)); do
		until grep -q '^open' "${outs[$i]}"; do
			if ((SECONDS > deadline)) || ! kill -0 "${pids[$i]}" 2>/dev/null; then
				echo "bench: idle connections to ${targets[$i]} did not open; see $BENCH_TMP/idle.$i.log:" >&2
				tail -3 "$BENCH_TMP/idle.$i.log" >&2
				for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
				return 1
			fi
			sleep 0.2
		done
	done

	sleep 1 # let smta settle after the last EHLO reply
	AFTER=$(bench_pss_kib "$pid")
	OPEN=0
	for out in "${outs[@]}"; do
		OPEN=$((OPEN + $(awk '/^open/ {print $2}' "$out")))
	done
	for p in "${pids[@]}"; do
		bench_wait_pid "$p" 60 || true
	done
}

per_session() {
	python3 -c 'import sys; o, b, a = map(int, sys.argv[1:]); print(f"{(a - b) / o:.2f}" if o else "n/a")' "$@"
}

if want 4; then
	IDLE_LOG=$BENCH_TMP/idle-rows.txt
	: >"$IDLE_LOG"
	for ((r = 1; r <= RUNS; r++)); do
		for mode in $(round_order "$r"); do
			# A fresh smta per measurement, because heap that the Go
			# runtime kept from earlier sessions would absorb new ones.
			[[ -n ${PID[$mode]:-} ]] && stop_mode "$mode"
			start_mode "$mode" || continue
			sleep 2 # let it finish starting before the baseline is read
			bench_log "4 idle $IDLE, $mode, round $r of $RUNS"
			if idle_open "${PID[$mode]}" "$IDLE" 5s "127.0.0.1:${PORT[$mode]}" && ((OPEN == IDLE)); then
				kib=$(per_session "$OPEN" "$BEFORE" "$AFTER")
				VALUES["s4 $mode"]+="$kib "
				echo "$mode round $r: $OPEN open, PSS $BEFORE -> $AFTER KiB, $kib KiB per session" >>"$IDLE_LOG"
			else
				echo "bench: $mode idle round $r failed (${OPEN:-0} of $IDLE open)" >&2
			fi
		done
	done
	echo "## Idle connections: smta PSS per open session, KiB: median [min-max] of $RUNS runs"
	echo
	print_header "scenario"
	print_row "4 idle $IDLE sessions, greeted, past EHLO" s4
	echo
	sed 's/^/    /' "$IDLE_LOG"
	echo
fi

# --- System calls per message ----------------------------------------------
if [[ -n ${BENCH_SYSCALLS:-} ]]; then
	if ! command -v strace >/dev/null || ! command -v perf >/dev/null; then
		echo "bench: BENCH_SYSCALLS needs strace and perf" >&2
		exit 1
	fi
	# trace_run MODE TOOL-ARGS... attaches TOOL to MODE's smta, sends
	# SYSCALL_MESSAGES messages, waits until the sink has them all, and
	# stops TOOL with SIGINT so it writes its summary.
	trace_run() {
		local mode=$1
		shift
		sleep 2.5 # see measure
		"$@" &
		local tracer=$!
		BENCH_PIDS+=("$tracer")
		sleep 1 # let the tracer attach to every thread
		use_mode "$mode"
		bench_measure accept smta loadgen 20 "$SYSCALL_MESSAGES" 1024 --pipelining --label syscalls || echo "bench: $mode syscall run failed" >&2
		kill -INT "$tracer" 2>/dev/null || true
		bench_wait_pid "$tracer" 30 || kill "$tracer" 2>/dev/null || true
	}
	echo "## System calls per accepted message: $SYSCALL_MESSAGES x 1 KiB, 20 conns, PIPELINING"
	echo
	echo "Counted over every thread of smta from before the first connection until"
	echo "the sink had every message: SMTP sessions, spool writes and fdatasync,"
	echo "Pebble, delivery to the sink, accounting logs and the runtime's own calls."
	echo
	printf '| mode | syscalls per message (perf stat) | top system calls per message (strace -c -f) |\n|---|---|---|\n'
	for mode in "${MODES[@]}"; do
		[[ -n ${PID[$mode]:-} ]] && stop_mode "$mode"
		start_mode "$mode" || continue
		measure "$mode" 20 1000 1024 --pipelining >/dev/null || true # warm-up
		perf_out=$BENCH_TMP/perf.$mode.txt
		trace_run "$mode" perf stat -e raw_syscalls:sys_enter -p "${PID[$mode]}" -o "$perf_out"
		total=$(awk '/raw_syscalls:sys_enter/ {gsub(",", "", $1); print $1}' "$perf_out")
		strace_out=$BENCH_TMP/strace.$mode.txt
		trace_run "$mode" strace -c -f -q -S calls -o "$strace_out" -p "${PID[$mode]}"
		top=$(awk -v n="$SYSCALL_MESSAGES" '
			$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {
				printf "%s %.2f, ", $NF, $4 / n; if (++k == 6) exit
			}' "$strace_out")
		printf '| %s (%s) | %s | %s |\n' "$mode" "${RUNNING[$mode]}" \
			"$(python3 -c 'import sys; print(f"{int(sys.argv[1]) / int(sys.argv[2]):.1f}" if sys.argv[1] else "n/a")' "${total:-}" "$SYSCALL_MESSAGES")" \
			"${top%, }"
		cp "$strace_out" "$BENCH_TMP/keep.strace.$mode.txt"
	done
	echo
	for mode in "${MODES[@]}"; do
		echo "### strace -c -f, $mode"
		sed 's/^/    /' "$BENCH_TMP/keep.strace.$mode.txt" 2>/dev/null | head -16
		echo
	done
fi

# --- Many idle connections -------------------------------------------------
if [[ -n ${BENCH_MAX_IDLE:-} ]]; then
	want_n=$BENCH_MAX_IDLE
	# smta needs one descriptor per session plus an estimated 200 of its own
	# (listeners, spool segments, Pebble, logs, epoll instances).
	n=$((want_n < NOFILE - 500 ? want_n : NOFILE - 500))
	echo "## Many idle connections, epoll mode"
	echo
	if ((n < want_n)); then
		echo "Requested $want_n; capped at $n because the open file limit is $NOFILE"
		echo "(hard limit $(ulimit -Hn)) and smta uses one descriptor per session."
		echo
	fi
	[[ -n ${PID[epoll]:-} ]] && stop_mode epoll
	listeners=$'smtp-listener 127.0.0.2:@P@\nsmtp-listener 127.0.0.3:@P@\nsmtp-listener 127.0.0.4:@P@'
	port=$(bench_free_port)
	# Started without start_mode, which picks the port itself, because
	# the extra listeners need the port in the config.
	PORT[epoll]=$port
	SINK[epoll]=$(bench_free_port)
	bench_start_smta "$port" "${SINK[epoll]}" "inbound-mode epoll"$'\n'"${listeners//@P@/$port}"
	PID[epoll]=$SMTA_PID
	sleep 2
	targets=()
	# One client process per 25,000 sessions (BENCH_IDLE_PER_CLIENT), each
	# to the next listener address: the default ip_local_port_range gives
	# 28,232 ports per source and destination address pair.
	per_client=${BENCH_IDLE_PER_CLIENT:-25000}
	per_client=$(((NOFILE - 200) < per_client ? NOFILE - 200 : per_client))
	clients=$(((n + per_client - 1) / per_client))
	for ((i = 0; i < clients; i++)); do
		targets+=("127.0.0.$((i % 4 + 1)):$port")
	done
	bench_log "opening $n idle sessions over ${#targets[@]} client processes"
	# The clients open their sessions in parallel, and each holds them for
	# 30 s after its own last one opened, which leaves time for the slowest.
	if idle_open "${PID[epoll]}" "$n" 30s "${targets[@]}"; then
		echo "| sessions open | PSS before, KiB | PSS open, KiB | KiB per session |"
		echo "|---|---|---|---|"
		echo "| $OPEN of $n | $BEFORE | $AFTER | $(per_session "$OPEN" "$BEFORE" "$AFTER") |"
	else
		echo "failed to open $n sessions; see the log above"
	fi
	echo
fi

echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) after the run"
