// Package delivery sends mail to other MTAs: it resolves the next hops of a
// domain, runs outbound SMTP transactions and builds the delivery status
// notifications (DSNs) that report failures to senders.
//
// # Design
//
// Outbound traffic is the opposite of inbound. Inbound has many short
// connections from clients we do not control, so the engine multiplexes
// them on per-core event loops. Outbound has few connections, each kept
// open for many messages to one destination, and every step waits on a
// remote server for up to minutes. A goroutine per connection with blocking
// I/O and deadlines is therefore the simpler and cheaper model here: the
// Go runtime parks it on the network poller, and the code reads as the
// protocol dialogue it is.
//
// A Conn carries one transaction at a time and is reused for the next
// message to the same host. Round trips, not bandwidth, limit the rate of
// a single connection, so Send pipelines the envelope (RFC 2920) when the
// server offers PIPELINING. MAIL, every RCPT and DATA then leave in one
// write, which costs one round trip per message instead of one per command.
//
// # Who retries what
//
// This package retries only the cheap steps below and otherwise reports
// what happened. Retrying a delivery is the queue's decision.
//
//   - Resolver retries a DNS query once after a timeout, repeats a
//     truncated UDP answer over TCP, and queries the next configured server
//     after SERVFAIL or REFUSED. IsPermanent distinguishes a bounce
//     (NXDOMAIN, null MX) from a failure to retry later.
//   - Dial retries once in plain text when the STARTTLS handshake fails,
//     because TLS is opportunistic. It does not try other addresses or MX
//     hosts; the caller walks the Host list.
//   - Send never retries. Each recipient gets the reply that decided its
//     fate (RCPT, DATA or the final dot), or a synthesized 421 4.4.2 when
//     the connection failed, which the queue treats as temporary.
//
// Timeouts follow RFC 5321 section 4.5.3.2 and can be shortened per
// connection in DialOptions.
package delivery
