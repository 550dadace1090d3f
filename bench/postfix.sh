#!/usr/bin/env bash
# Start or stop a private Postfix instance for benchmarks.
#
#   bench/postfix.sh start DIR PORT RELAYPORT
#   bench/postfix.sh stop  DIR
#
# The instance lives entirely under DIR: DIR/etc is its config_directory
# (main.cf and master.cf are written here on every start), DIR/queue its
# queue_directory and DIR/data its data_directory. It listens on
# 127.0.0.1:PORT only and relays every message to [127.0.0.1]:RELAYPORT.
# The system instance (/etc/postfix, /var/spool/postfix) is neither read
# for settings nor started, stopped or changed.
#
# Environment:
#   PF_PROCESS_LIMIT  default_process_limit, the maximum number of smtpd
#                     (and smtp) processes (default 500)
#   PF_DEST_CONCURRENCY  smtp_destination_concurrency_limit (default 50)
set -euo pipefail

usage() {
	echo "usage: $0 start DIR PORT RELAYPORT | stop DIR" >&2
	exit 2
}

postfix_bin=/usr/sbin/postfix
if [[ ! -x $postfix_bin ]]; then
	echo "postfix.sh: $postfix_bin not found; install the postfix package" >&2
	exit 1
fi

cmd=${1:-}
dir=${2:-}
[[ -n $cmd && -n $dir ]] || usage

write_config() {
	local dir=$1 port=$2 relayport=$3
	local etc=$dir/etc
	mkdir -p "$etc" "$dir/queue" "$dir/data"
	# Postfix requires root-owned config and queue directories and checks
	# that no parent is writable by others than root. mktemp directories
	# are mode 0700, so only the name under /tmp needs a look.
	chown root:root "$dir" "$etc" "$dir/queue"
	chmod 0755 "$dir" "$etc" "$dir/queue"
	chown postfix:postfix "$dir/data"
	# The postfix user must reach data_directory, so every parent of DIR
	# must be searchable by it (mktemp -d creates mode 0700).
	if ! runuser -u postfix -- test -w "$dir/data"; then
		echo "postfix.sh: user postfix cannot write $dir/data; make every parent directory of $dir searchable (chmod 0755)" >&2
		exit 1
	fi

	cat >"$etc/main.cf" <<CONF
# Private benchmark instance written by bench/postfix.sh; do not edit.
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-bench.localdomain
mydomain = localdomain
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains =
mynetworks_style = host
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$relayport
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject
biff = no
# Log to a file: the machine may run no syslog daemon.
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
# No DNS at all: the peer name of 127.0.0.1 is not looked up and the
# relayhost is a literal address.
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtp_tls_security_level = none
smtpd_tls_security_level = none
# Throughput tuning a Postfix operator would apply for a bulk relay, so
# smta is compared with a tuned Postfix and not a desktop default.
# in_flow_delay (default 1s) throttles clients when the queue manager
# lags. The anvil limit (default 50 connections per client) would reject
# a 200-connection load from one address. The destination concurrency
# limit (default 20) caps parallel deliveries to the sink.
in_flow_delay = 0s
default_process_limit = ${PF_PROCESS_LIMIT:-500}
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
smtpd_client_new_tls_session_rate_limit = 0
default_destination_concurrency_limit = ${PF_DEST_CONCURRENCY:-50}
smtp_destination_concurrency_limit = ${PF_DEST_CONCURRENCY:-50}
smtp_destination_rate_delay = 0s
smtp_connection_cache_on_demand = yes
initial_destination_concurrency = 5
# Bounces of test traffic would go to the sink; keep them simple.
notify_classes =
CONF

	cat >"$etc/master.cf" <<CONF
# Private benchmark instance written by bench/postfix.sh; do not edit.
# service type  private unpriv chroot wakeup maxproc command
127.0.0.1:$port inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CONF
}

case $cmd in
start)
	port=${3:-}
	relayport=${4:-}
	[[ $port =~ ^[0-9]+$ && $relayport =~ ^[0-9]+$ ]] || usage
	write_config "$dir" "$port" "$relayport"
	# postfix prints fatal errors only to a terminal or the mail log, so
	# show the log on failure.
	if ! "$postfix_bin" -c "$dir/etc" check || ! "$postfix_bin" -c "$dir/etc" start; then
		echo "postfix.sh: postfix -c $dir/etc failed to start; last lines of $dir/maillog:" >&2
		tail -5 "$dir/maillog" >&2 2>/dev/null || true
		exit 1
	fi
	# Wait (bounded: 10 s) until smtpd accepts connections.
	for _ in $(seq 1 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			exit 0
		fi
		sleep 0.1
	done
	echo "postfix.sh: postfix started but 127.0.0.1:$port does not accept connections; see $dir/maillog" >&2
	exit 1
	;;
stop)
	if [[ -f $dir/etc/main.cf ]]; then
		"$postfix_bin" -c "$dir/etc" stop || true
		# postfix stop returns before master exits; wait (bounded: 10 s)
		# for the pid file's process to go so DIR can be removed.
		pidfile=$dir/queue/pid/master.pid
		if [[ -f $pidfile ]]; then
			pid=$(tr -d ' \n' <"$pidfile")
			for _ in $(seq 1 100); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
		fi
	fi
	;;
*)
	usage
	;;
esac
