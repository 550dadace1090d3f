# Shared functions of bench/run.sh and bench/perf-check.sh. Source it from
# the repository root after `make build`.
#
# Every process started here is recorded by PID and stopped by bench_cleanup
# (installed as an EXIT trap), and every temporary file lives under
# $BENCH_TMP, which the trap removes. All traffic stays on 127.0.0.1.

BENCH_ROOT=$(pwd)
LOADGEN=$BENCH_ROOT/bin/smta-loadgen
SMTA=$BENCH_ROOT/bin/smta
SMTP_SOURCE=/usr/sbin/smtp-source
BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/smta-bench.XXXXXX")
# Postfix daemons run as user postfix and must reach their directories.
chmod 0755 "$BENCH_TMP"
BENCH_PIDS=()
BENCH_POSTFIX_DIRS=()

bench_log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

bench_cleanup() {
	local pid dir
	for pid in "${BENCH_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${BENCH_PIDS[@]}"; do
		bench_wait_pid "$pid" 10 || kill -9 "$pid" 2>/dev/null || true
	done
	for dir in "${BENCH_POSTFIX_DIRS[@]}"; do
		bash "$BENCH_ROOT/bench/postfix.sh" stop "$dir" >/dev/null 2>&1 || true
	done
	rm -rf "$BENCH_TMP"
}

# bench_require checks the tools every scenario needs.
bench_require() {
	if [[ ! -x $LOADGEN ]]; then
		echo "bench: $LOADGEN not found; run make build" >&2
		exit 1
	fi
	if [[ ! -x $SMTP_SOURCE ]]; then
		echo "bench: $SMTP_SOURCE not found; install the postfix package" >&2
		exit 1
	fi
	if [[ $(id -u) != 0 ]]; then
		echo "bench: the private Postfix instance needs root (postfix -c DIR start)" >&2
		exit 1
	fi
}

# bench_smta_available returns 0 when bin/smta exists and prints the
# reason otherwise.
bench_smta_available() {
	if [[ ! -x $SMTA ]]; then
		echo "bench: smta side not measured: $SMTA not found (make build did not produce it)" >&2
		return 1
	fi
	return 0
}

bench_free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# bench_wait_pid PID SECONDS waits (bounded) for PID to exit.
bench_wait_pid() {
	local pid=$1 deadline=$((SECONDS + $2))
	while kill -0 "$pid" 2>/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.05
	done
	# Reap it if it is our child; the status is not needed here.
	wait "$pid" 2>/dev/null || true
	return 0
}

# bench_wait_port PORT SECONDS waits (bounded) until 127.0.0.1:PORT accepts.
bench_wait_port() {
	local port=$1 deadline=$((SECONDS + $2))
	until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.05
	done
}

bench_now() { date +%s.%N; }

# bench_run CMD... runs a command in the background and waits for it.
# Bash runs traps only between foreground commands, and wait is
# interruptible, so SIGINT or SIGTERM stops the command at once through
# bench_cleanup. Returns the command's exit status.
bench_run() {
	"$@" &
	local pid=$!
	BENCH_PIDS+=("$pid")
	wait "$pid"
}

# bench_json FILE KEY prints a top-level number from a JSON file.
bench_json() {
	python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# bench_start_sink PORT MESSAGES JSON starts a counting sink that exits
# after MESSAGES messages (or 600 s) and sets SINK_PID.
bench_start_sink() {
	local port=$1 messages=$2 json=$3
	"$LOADGEN" sink --listen "127.0.0.1:$port" --messages "$messages" --duration 600s \
		--count-only --json "$json" 2>>"$BENCH_TMP/sink.log" &
	SINK_PID=$!
	BENCH_PIDS+=("$SINK_PID")
	if ! bench_wait_port "$port" 10; then
		echo "bench: sink on port $port did not start; see $BENCH_TMP/sink.log" >&2
		return 1
	fi
}

# bench_finish_sink SECONDS waits (bounded) for the sink to reach its
# message count and exit; on timeout it stops the sink and fails.
bench_finish_sink() {
	if bench_wait_pid "$SINK_PID" "$1"; then
		return 0
	fi
	kill "$SINK_PID" 2>/dev/null || true
	bench_wait_pid "$SINK_PID" 10 || true
	echo "bench: the sink did not receive every message within $1 s" >&2
	return 1
}

# bench_abort_sink stops the sink after a failed measurement, so the next
# one can listen on its port.
bench_abort_sink() {
	kill "$SINK_PID" 2>/dev/null || true
	bench_wait_pid "$SINK_PID" 10 || kill -9 "$SINK_PID" 2>/dev/null || true
}

# bench_start_postfix PORT RELAYPORT starts a private Postfix and sets
# PF_DIR.
bench_start_postfix() {
	PF_DIR=$(mktemp -d "$BENCH_TMP/postfix.XXXXXX")
	BENCH_POSTFIX_DIRS+=("$PF_DIR")
	if ! PF_PROCESS_LIMIT=${PF_PROCESS_LIMIT:-1000} bash "$BENCH_ROOT/bench/postfix.sh" start "$PF_DIR" "$1" "$2" >"$BENCH_TMP/postfix-start.log" 2>&1; then
		cat "$BENCH_TMP/postfix-start.log" >&2
		return 1
	fi
}

# bench_start_smta PORT RELAYPORT [EXTRA] writes a config for this run and
# starts bin/smta; it sets SMTA_PID and SMTA_DIR. EXTRA, when given, is
# appended to the config, for example "inbound-mode epoll".
bench_start_smta() {
	local port=$1 relayport=$2 extra=${3:-}
	SMTA_DIR=$(mktemp -d "$BENCH_TMP/smta.XXXXXX")
	mkdir -p "$SMTA_DIR/spool" "$SMTA_DIR/log"
	sed -e "s|@PORT@|$port|g" -e "s|@RELAYPORT@|$relayport|g" -e "s|@DIR@|$SMTA_DIR|g" \
		"$BENCH_ROOT/bench/smta-bench.conf" >"$SMTA_DIR/smta.conf"
	if [[ -n $extra ]]; then
		printf '%s\n' "$extra" >>"$SMTA_DIR/smta.conf"
	fi
	if ! "$SMTA" check-config --config "$SMTA_DIR/smta.conf" >"$SMTA_DIR/check.log" 2>&1; then
		echo "bench: bench/smta-bench.conf is not a valid smta configuration:" >&2
		cat "$SMTA_DIR/check.log" >&2
		return 1
	fi
	"$SMTA" run --config "$SMTA_DIR/smta.conf" >"$SMTA_DIR/stdout.log" 2>"$SMTA_DIR/stderr.log" &
	SMTA_PID=$!
	BENCH_PIDS+=("$SMTA_PID")
	if ! bench_wait_port "$port" 15; then
		echo "bench: smta did not listen on 127.0.0.1:$port within 15 s; its stderr:" >&2
		tail -20 "$SMTA_DIR/stderr.log" >&2
		return 1
	fi
}

bench_stop_smta() {
	kill "$SMTA_PID" 2>/dev/null || true
	bench_wait_pid "$SMTA_PID" 15 || kill -9 "$SMTA_PID" 2>/dev/null || true
}

# bench_loadgen PORT CONNS MESSAGES SIZE [FLAGS...] runs smta-loadgen send
# and sets RATE to its msgs/s. The Go benchmark line is appended to
# $BENCH_TMP/bench-$BENCH_SERVER.txt, one file per server, so that
# `benchstat bench-postfix.txt bench-smta.txt` compares them. Functions that start processes set globals
# instead of printing, so they run in the main shell and the EXIT trap
# has every PID.
bench_loadgen() {
	local port=$1 conns=$2 messages=$3 size=$4
	shift 4
	local json=$BENCH_TMP/send.json
	rm -f "$json"
	if ! bench_run "$LOADGEN" send --target "127.0.0.1:$port" --connections "$conns" --messages "$messages" \
		--size "$size" --duration 300s --quiet --json "$json" "$@" \
		>>"$BENCH_TMP/bench-${BENCH_SERVER:-server}.txt" 2>"$BENCH_TMP/send.log"; then
		echo "bench: smta-loadgen send failed:" >&2
		tail -5 "$BENCH_TMP/send.log" >&2
		return 1
	fi
	local sent failed
	sent=$(bench_json "$json" sent)
	failed=$(bench_json "$json" failed)
	if [[ $sent != "$messages" ]]; then
		echo "bench: smta-loadgen sent $sent of $messages messages ($failed failed):" >&2
		tail -5 "$BENCH_TMP/send.log" >&2
		return 1
	fi
	RATE=$(bench_json "$json" msgs_per_sec)
}

# bench_smtp_source PORT CONNS MESSAGES SIZE runs Postfix's smtp-source
# and sets RATE to msgs/s over its wall time. smtp-source sends one message per
# connection unless -d is given, so -d keeps connections open as
# smta-loadgen does.
bench_smtp_source() {
	local port=$1 conns=$2 messages=$3 size=$4
	local start end
	start=$(bench_now)
	if ! bench_run timeout 300 "$SMTP_SOURCE" -d -s "$conns" -m "$messages" -l "$size" \
		-f loadgen@example.org -t user@example.com "127.0.0.1:$port" \
		>"$BENCH_TMP/smtp-source.log" 2>&1; then
		echo "bench: smtp-source failed:" >&2
		tail -5 "$BENCH_TMP/smtp-source.log" >&2
		return 1
	fi
	end=$(bench_now)
	RATE=$(bench_rate "$messages" "$start" "$end")
}

# bench_rate MESSAGES START END prints MESSAGES / (END - START).
bench_rate() {
	python3 -c 'import sys; print(round(int(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2])), 1))' "$@"
}

# bench_stats V... prints "median min max" of the values.
bench_stats() {
	python3 -c 'import statistics, sys; v = [float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.1f} {min(v):.1f} {max(v):.1f}")' "$@"
}

# bench_ratio A B prints A/B with two decimals, or n/a.
bench_ratio() {
	python3 -c 'import sys
try:
    print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}")
except (ValueError, ZeroDivisionError):
    print("n/a")' "$1" "$2"
}

# bench_pss_kib PID... prints the summed proportional set size in KiB.
bench_pss_kib() {
	local total=0 pid pss
	for pid in "$@"; do
		pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
		total=$((total + ${pss:-0}))
	done
	echo "$total"
}

# bench_rss_kib PID... prints the summed resident set size in KiB.
bench_rss_kib() {
	local total=0 pid rss
	for pid in "$@"; do
		rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
		total=$((total + ${rss:-0}))
	done
	echo "$total"
}

# bench_postfix_pids prints the master PID of the instance in PF_DIR and
# every descendant.
bench_postfix_pids() {
	local master
	master=$(tr -d ' \n' <"$PF_DIR/queue/pid/master.pid")
	echo "$master"
	ps -o pid= --ppid "$master" | tr -d ' '
}

# bench_measure MODE SERVER CLIENT CONNS N SIZE [FLAGS...] sets RATE to one
# msgs/s figure. SERVER is postfix (PF_PORT, PF_SINK), smta (SMTA_PORT,
# SMTA_SINK) or sink (the client sends straight to a sink: the harness
# ceiling). MODE accept times the client; relay times until the sink has
# every message. Either way the sink must receive all N before the next
# measurement starts, so no queue carries over.
bench_measure() {
	local mode=$1 server=$2 client=$3 conns=$4 n=$5 size=$6
	shift 6
	local port sinkport start
	BENCH_SERVER=$server
	case $server in
	postfix) port=$PF_PORT sinkport=$PF_SINK ;;
	smta) port=$SMTA_PORT sinkport=$SMTA_SINK ;;
	sink) port=$(bench_free_port) sinkport=$port ;; # harness ceiling: no server
	esac
	bench_start_sink "$sinkport" "$n" "$BENCH_TMP/sink.json" || return 1
	start=$(bench_now)
	case $client in
	loadgen) bench_loadgen "$port" "$conns" "$n" "$size" --label "$mode" "$@" || { bench_abort_sink; return 1; } ;;
	smtp-source) bench_smtp_source "$port" "$conns" "$n" "$size" || { bench_abort_sink; return 1; } ;;
	esac
	bench_finish_sink 300 || return 1
	if [[ $mode == relay ]]; then
		RATE=$(bench_rate "$n" "$start" "$(bench_json "$BENCH_TMP/sink.json" last_message_unix)")
	fi
}
