// Package loadgen generates SMTP load and receives it, so that smta and
// other mail servers can be measured the same way in the same run.
//
// Send drives a target server over a fixed number of connections. In the
// default closed loop each connection sends its next message as soon as
// the previous one got its reply to end of data, so the offered load
// adapts to the server. With SendConfig.Rate set it runs an open loop
// instead: a scheduler fixes the intended start time of message i at
// start + i/Rate, and latency is measured from that intended time, not
// from the moment a connection became free. A stalled server therefore
// shows up as queueing delay in the latency percentiles instead of
// silently lowering the offered load ("coordinated omission").
//
// Sink is a fast SMTP receiver for the other end of a relay: one
// goroutine per connection, buffered I/O, PIPELINING, 8BITMIME and SIZE.
// It counts messages, recipients and bytes, can check message structure,
// and can inject temporary or permanent RCPT failures and reply delays.
//
// Both sides default to loopback. Send rejects a target that is not a
// loopback address unless SendConfig.AllowRemote is set, and every run is
// bounded by a message count, a duration or both.
package loadgen
